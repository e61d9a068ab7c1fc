"""The NETWORKVI scvi-tools model."""

from ._networkvi import NETWORKVI

__all__ = ["NETWORKVI"]
