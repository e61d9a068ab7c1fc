"""The module's options: which keywords of :class:`NetworkVAE` are options, their allowed values, and their checks."""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any, ClassVar

from scvi_networkvi.nn import WiredEncoder, check_choices, keyword_defaults

#: Modality roles in a fixed order (the order of the mixing weights and of the masks); the roles an option may name.
MODALITIES = ("rna", "protein", "atac")


class NetworkVAEOptionsMixin:
    """Option tables and checks of :class:`NetworkVAE`, used by the model before anything is built.

    The options are the module's keywords other than the data-derived ones, and the GO encoders' ``**encoder_kwargs``.
    """

    #: Allowed values of the module's choice options (the GO encoders' are ``WiredEncoder.CHOICES``).
    CHOICES: ClassVar[dict[str, tuple[Any, ...]]] = {
        "gene_likelihood": ("zinb", "nb", "poisson"),
        "latent_distribution": ("normal", "ln"),
        "modality_penalty": ("jeffreys", "mmd", None),
        "modality_penalty_anchor": (None, "rna", "protein", "atac"),
        "protein_dispersion": ("protein", "protein-batch"),
    }
    #: Keywords derived from the data, which the model sets (not options of ``NETWORKVI``).
    DATA_ARGUMENTS = (
        "n_inputs",
        "wirings",
        "n_batch",
        "n_continuous_cov",
        "continuous_covariate_stats",
        "n_cats_per_cov",
        "protein_background_prior_mean",
        "protein_background_prior_scale",
        "input_shifts",
        "input_spreads",
        "use_size_factor_key",
    )
    #: WiredEncoder keywords this module sets from its own arguments (the rest are ``**encoder_kwargs``).
    ENCODER_ARGUMENTS = (
        "wiring",
        "n_latent",
        "gene_layer",
        "dropout_rate",
        "n_cat_list",
        "n_cont",
        "inject_covariates",
    )

    @classmethod
    def options(cls) -> dict[str, Any]:
        """The module's options (its keywords, then the GO encoders' ``**encoder_kwargs``) and their defaults."""
        return {
            **keyword_defaults(cls, exclude=cls.DATA_ARGUMENTS),
            **keyword_defaults(WiredEncoder, exclude=cls.ENCODER_ARGUMENTS),
        }

    @classmethod
    def check_options(cls, options: Mapping[str, Any], *, wired: bool, caller: str = "NetworkVAE") -> None:
        """Check module options before anything is built.

        Parameters
        ----------
        options
            Option name -> value (a subset of :meth:`options`; missing ones take their defaults).
        wired
            Whether any encoder is GO-wired (``covariate_attention`` acts on GO levels).
        caller
            The name the errors give (``"NETWORKVI"`` when the model checks its ``**model_kwargs``).

        Raises
        ------
        TypeError
            For a name that is no option.
        ValueError
            For a value outside its allowed ones, a negative ``modality_penalty_scale``, or ``covariate_attention``
            without encoded covariates or GO-wired encoders.
        """
        valid = cls.options()
        unknown = [name for name in options if name not in valid]
        if unknown:
            raise TypeError(
                f"{caller}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; the module options "
                f"are: {', '.join(valid)} (see NetworkVAE and WiredEncoder)."
            )
        check_choices(options, cls.CHOICES)
        scale = options.get("modality_penalty_scale", 1.0)
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not scale >= 0:
            raise ValueError(f"modality_penalty_scale must be a number >= 0, got {scale!r}.")
        rate = options.get("modality_dropout", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            raise ValueError(f"{caller}(modality_dropout={rate!r}): give a probability in [0, 1).")
        raw = options.get("log_variational", True)
        if not isinstance(raw, bool):
            raise ValueError(f"{caller}(log_variational={raw!r}): give True (log1p counts) or False (raw counts).")
        roles = options.get("depth_normalized_input", ())
        if not isinstance(roles, tuple | list) or not all(isinstance(r, str) and r in MODALITIES for r in roles):
            raise ValueError(
                f"{caller}(depth_normalized_input={roles!r}): give a tuple of modality roles, some of {MODALITIES}."
            )
        WiredEncoder.check_options(options)
        attention = options.get("covariate_attention", "none")
        if attention != "none" and not options.get("encode_covariates", False):
            raise ValueError(
                f"covariate_attention={attention!r} attends over the encoders' covariates: set "
                "encode_covariates=True (the original crashed later in this case)."
            )
        if attention != "none" and not wired:
            raise ValueError("covariate_attention acts on GO levels: it needs encoder='go'.")
