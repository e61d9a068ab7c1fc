"""The NetworkVI variational autoencoder (a scvi-tools ``BaseModuleClass``)."""

from ._mixing import ModalityMixer, pairwise_penalty
from ._networkvae import DATA_KEYS, DEPTH_TARGET, MASK_KEY, MODALITIES, NetworkVAE

__all__ = ["DATA_KEYS", "DEPTH_TARGET", "MASK_KEY", "MODALITIES", "ModalityMixer", "NetworkVAE", "pairwise_penalty"]
