"""The NETWORKVI scvi-tools model, its training plan, its training check and totalVI's protein prior start."""

from ._finite_loss import FiniteLossCheck
from ._networkvi import NETWORKVI
from ._protein_prior import empirical_protein_background
from ._training_plan import NetworkVITrainingPlan

__all__ = ["NETWORKVI", "FiniteLossCheck", "NetworkVITrainingPlan", "empirical_protein_background"]
