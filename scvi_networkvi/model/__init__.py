"""The NETWORKVI scvi-tools model, its training plan and its training check."""

from ._finite_loss import FiniteLossCheck
from ._networkvi import NETWORKVI
from ._training_plan import NetworkVITrainingPlan

__all__ = ["NETWORKVI", "FiniteLossCheck", "NetworkVITrainingPlan"]
