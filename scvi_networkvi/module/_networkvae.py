"""NetworkVAE: per-modality GO-wired encoders, modality mixing, scvi-tools decoders and the NetworkVI loss."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from scvi import REGISTRY_KEYS
from scvi.module.base import BaseModuleClass, auto_move_data
from scvi.nn import Encoder
from torch import nn
from torch.distributions import Normal

from scvi_networkvi.nn import WideDropout, WiredEncoder, log1p, log1p_shift_scale_t
from scvi_networkvi.wiring import Wiring

from ._decoders import NetworkVAEDecodersMixin
from ._loss import NetworkVAELossMixin
from ._mixing import MixingType, ModalityMixer, PenaltyType, drop_modalities
from ._options import MODALITIES, NetworkVAEOptionsMixin

logger = logging.getLogger(__name__)

#: The one table of modality role -> scvi-tools registry key of its counts: the model registers each modality's data
#: under it (``setup_mudata``) and reads it back, the module and ``nvi.interpret`` take it from the minibatches.
DATA_KEYS = {"rna": REGISTRY_KEYS.X_KEY, "protein": REGISTRY_KEYS.PROTEIN_EXP_KEY, "atac": REGISTRY_KEYS.ATAC_X_KEY}
#: Registry key of the per-cell modality presence mask (cells x modalities in MODALITIES order, mosaic data).
MASK_KEY = "networkvi_modality_mask"


#: ``input_spreads``: added to both standard deviations (a feature nearly constant in one batch is not blown up) and
#: the bounds of the factor.
SPREAD_FLOOR, SCALE_BOUNDS = 0.1, (0.2, 5.0)
#: ``depth_normalized_input``: the total every cell's counts are scaled to before ``log1p`` (scanpy's usual target).
DEPTH_TARGET = 1e4


class NetworkVAE(NetworkVAEOptionsMixin, NetworkVAEDecodersMixin, NetworkVAELossMixin, BaseModuleClass):
    """The NetworkVI variational autoencoder.

    Its options are also ``NETWORKVI``'s: the model passes its ``**model_kwargs`` here, and this class passes its
    ``**encoder_kwargs`` on to the GO encoders (:class:`~scvi_networkvi.nn.WiredEncoder`). The arguments derived from
    the data (``n_inputs``, ``wirings``, ``n_batch``, the covariate counts and statistics, the protein prior's start,
    ``input_shifts``, ``use_size_factor_key``) are set by the model.

    Parameters
    ----------
    n_inputs
        Modality role (``rna``, ``protein``, ``atac``) -> number of features; roles absent here are not modelled.
    wirings
        Role -> :class:`~scvi_networkvi.wiring.Wiring` (or its ``to_dict()``) for GO-wired encoders; roles missing
        here get a dense scvi-tools encoder.
    n_batch
        Number of batches.
    n_hidden
        Width of dense layers (and of the GO root node, which the wiring already fixes).
    n_latent
        Latent dimensions.
    n_layers_encoder
        Depth of dense encoders.
    n_layers_decoder
        Depth of the decoders.
    n_continuous_cov, n_cats_per_cov
        Extra covariates.
    continuous_covariate_stats
        ``(location, scale)`` per continuous covariate: the module reads ``(value - location) / scale`` wherever it
        uses them (encoders, attention, decoders). Kept as buffers, so a saved or query model reuses the reference's.
        ``None``: the raw values (location 0, scale 1).
    dropout_rate
        Encoder dropout.
    gene_likelihood
        ``"zinb"``, ``"nb"`` or ``"poisson"`` for RNA.
    latent_distribution
        ``"normal"`` or ``"ln"``.
    modality_mixing
        ``"moe"``, ``"poe"`` or ``"mean"``; see :class:`~scvi_networkvi.module.ModalityMixer`.
    modality_penalty
        ``"jeffreys"``, ``"mmd"`` or ``None``; see :func:`~scvi_networkvi.module.pairwise_penalty`.
    modality_penalty_warmup
        Scale the modality penalty by the KL warm-up weight, like every other KL-type term. ``False``: the
        original's full weight from the first step (it embedded cell types less well: results page, smaller
        measurements).
    modality_penalty_scale
        Weight of the modality penalty relative to the KL term (after the warm-up). Larger values pull every
        modality's posterior towards the others of the same cell, so the joint latent of a cell depends less on which
        modalities it has.
    modality_penalty_anchor
        A modality role whose posterior the modality penalty does not move (its gradient flows only into the other
        modalities' encoders): in a mosaic, the modality every dataset shares, so the others align to it rather than
        it to them. ``None``: the penalty pulls both posteriors of a pair.
    modality_dropout
        In training, the probability that a cell with two or more modalities is placed by one of them alone (drawn
        at random; the reconstruction still covers all of them), so that each modality's posterior learns to predict
        the cell's others. ``0`` (the default): every cell is placed by all its modalities. Inference is unchanged.
        Measured worse on CITE-seq and on a multiome mosaic (results page, converged budgets).
    depth_normalized_input
        Roles whose encoder reads each cell's counts scaled to :data:`DEPTH_TARGET` in total before ``log1p`` (as
        scanpy's ``normalize_total``), so that a cell's sequencing depth does not enter the encoder. ``()`` (the
        default): raw counts.
    encode_covariates
        Encoders see batch and covariates (GO encoders through a covariate projection after the root). A reference
        for query mapping needs it, so that the query's new batches get encoder columns to learn
        (``NETWORKVI.load_query_data``); ``nvi.tl.train(..., query_ready=True)`` sets it with
        ``deeply_inject_covariates``.
    deeply_inject_covariates
        Covariates enter every decoder layer.
    gene_layer
        ``"interaction"`` (gene nodes + gene–gene layers where a wiring has gene–gene edges, else as
        ``"standard"``), ``"standard"`` (features -> gene nodes) or ``"none"`` (features straight into GO terms).
    protein_dispersion
        ``"protein"`` or ``"protein-batch"``.
    protein_background_prior
        Add totalVI's KL between the protein background posterior and a learned per-protein, per-batch prior (the
        original creates that prior but never uses it).
    protein_background_prior_mean, protein_background_prior_scale
        Initial mean and scale of that prior, ``(n_proteins, n_batch)`` (totalVI's empirical initialisation, see
        :func:`~scvi_networkvi.model.empirical_protein_background`); ``None``: drawn at random (the original's).
    input_shifts
        Role -> ``(n_batch, n_features)`` array subtracted from that encoder's input (``log1p`` counts) for each
        cell's batch, so that the encoder reads its features centred within the batch; roles not here: not centred.
    input_spreads
        Role -> ``(per_batch, target)``: the standard deviation of every feature's ``log1p`` count within each batch,
        ``(n_batch, n_features)``, and the spread to give every batch, ``(n_features,)``. That encoder's centred
        input is multiplied by ``(target + 0.1) / (per_batch + 0.1)`` for each cell's batch, kept within [0.2, 5]
        (a role here must be centred too); roles not here: not rescaled.
    region_factors
        Learn per-region accessibility factors.
    use_size_factor_key
        Use the registered size factor as RNA library size.
    use_observed_lib_size
        Use the observed RNA library size (log of the counts' sum); else learn it with a library encoder.
    log_variational
        Encoders read ``log1p`` of the counts. ``False``: raw counts, as the original's encoders and MULTIVI's RNA
        encoder read them; ``NETWORKVI`` then refuses batch-centred and depth-normalised inputs (defined on
        ``log1p``).
    **encoder_kwargs
        Options of the GO encoders, see :class:`~scvi_networkvi.nn.WiredEncoder`: ``n_interaction_layers``,
        ``activation``, ``linear_path``, ``covariate_attention`` (needs ``encode_covariates=True`` and GO-wired
        encoders), ``go_norm``, ``head_input``, ``var_eps``.

    Raises
    ------
    TypeError
        For a keyword that is no option (named, with the valid ones).
    ValueError
        For an option value outside its allowed ones (:meth:`check_options`).
    """

    def __init__(
        self,
        n_inputs: Mapping[str, int],
        *,
        wirings: Mapping[str, Wiring | Mapping[str, Any]] | None = None,
        n_batch: int = 0,
        n_hidden: int = 128,
        n_latent: int = 10,
        n_layers_encoder: int = 2,
        n_layers_decoder: int = 2,
        n_continuous_cov: int = 0,
        continuous_covariate_stats: tuple[Sequence[float], Sequence[float]] | None = None,
        n_cats_per_cov: Iterable[int] | None = None,
        dropout_rate: float = 0.1,
        gene_likelihood: Literal["zinb", "nb", "poisson"] = "zinb",
        latent_distribution: Literal["normal", "ln"] = "normal",
        modality_mixing: MixingType = "poe",
        modality_penalty: PenaltyType = "jeffreys",
        modality_penalty_warmup: bool = True,
        modality_penalty_scale: float = 1.0,
        modality_penalty_anchor: Literal["rna", "protein", "atac"] | None = None,
        modality_dropout: float = 0.0,
        depth_normalized_input: Sequence[str] = (),
        encode_covariates: bool = False,
        deeply_inject_covariates: bool = False,
        gene_layer: Literal["none", "standard", "interaction"] = "interaction",
        protein_dispersion: Literal["protein", "protein-batch"] = "protein",
        protein_background_prior: bool = True,
        protein_background_prior_mean: Any = None,
        protein_background_prior_scale: Any = None,
        input_shifts: Mapping[str, Any] | None = None,
        input_spreads: Mapping[str, Any] | None = None,
        region_factors: bool = True,
        use_size_factor_key: bool = False,
        use_observed_lib_size: bool = True,
        log_variational: bool = True,
        **encoder_kwargs: Any,
    ):
        options = self.options()
        self.check_options(
            {**{name: value for name, value in locals().items() if name in options}, **encoder_kwargs},
            wired=bool(wirings),
        )
        super().__init__()
        wirings = {m: w if isinstance(w, Wiring) else Wiring.from_dict(dict(w)) for m, w in (wirings or {}).items()}
        unknown = [m for m in n_inputs if m not in MODALITIES]
        if unknown or not n_inputs:
            raise ValueError(f"n_inputs must map some of {MODALITIES} to feature counts, got {dict(n_inputs)}.")
        self.modalities = [m for m in MODALITIES if m in n_inputs]
        self.n_inputs = {m: int(n_inputs[m]) for m in self.modalities}
        self.n_batch = n_batch
        self.n_latent = n_latent
        self.gene_likelihood = gene_likelihood
        self.latent_distribution = latent_distribution
        self.modality_penalty = modality_penalty
        self.penalty_warmup = modality_penalty_warmup
        self.penalty_scale = float(modality_penalty_scale)
        if modality_penalty_anchor is not None and modality_penalty_anchor not in self.modalities:
            raise ValueError(
                f"modality_penalty_anchor={modality_penalty_anchor!r} is not a modality of this model "
                f"({self.modalities})."
            )
        self.penalty_anchor = modality_penalty_anchor
        self.modality_dropout = float(modality_dropout)
        wrong = [m for m in depth_normalized_input if m not in self.modalities]
        if wrong:
            raise ValueError(
                f"depth_normalized_input names {wrong}, which this model does not have (its modalities: "
                f"{self.modalities})."
            )
        self.depth_normalized_modalities = tuple(depth_normalized_input)
        self.encode_covariates = encode_covariates
        self.protein_dispersion = protein_dispersion
        self.protein_background_prior = protein_background_prior
        self.use_size_factor_key = use_size_factor_key
        self.use_observed_lib_size = use_size_factor_key or use_observed_lib_size
        if not log_variational and (input_shifts or depth_normalized_input):
            raise ValueError(
                "log_variational=False feeds the encoders raw counts, but input_shifts / depth_normalized_input "
                "transform log1p counts: leave them out, or keep log_variational=True."
            )
        self.log_variational = log_variational
        cat_list = [n_batch, *list(n_cats_per_cov or [])]
        self.n_cats_per_cov = list(n_cats_per_cov or [])
        encoder_cats = cat_list if encode_covariates else None
        if n_continuous_cov:
            loc, scale = continuous_covariate_stats or ([0.0] * n_continuous_cov, [1.0] * n_continuous_cov)
            loc, scale = torch.as_tensor(loc, dtype=torch.float32), torch.as_tensor(scale, dtype=torch.float32)
            if loc.shape != (n_continuous_cov,) or scale.shape != (n_continuous_cov,) or not bool((scale > 0).all()):
                raise ValueError(
                    f"continuous_covariate_stats must be (location, scale) with {n_continuous_cov} entries each and "
                    "positive scales."
                )
            self.register_buffer("continuous_covariate_loc", loc)
            self.register_buffer("continuous_covariate_scale", scale)
        encoder_cont = n_continuous_cov if encode_covariates else 0
        if (
            gene_layer == "interaction"
            and wirings
            and not any(w.gene_edges.shape[1] > w.n_genes for w in wirings.values())
        ):
            logger.info("gene_layer='interaction' without gene-gene edges in the wirings: no gene-gene layer is built.")
            gene_layer = "standard"  # self loops only would be an identity-like extra layer

        self.encoders = nn.ModuleDict()
        for m in self.modalities:
            if m in wirings:
                if wirings[m].n_features != self.n_inputs[m]:
                    raise ValueError(
                        f"The {m} wiring has {wirings[m].n_features} features but the data has {self.n_inputs[m]}."
                    )
                self.encoders[m] = WiredEncoder(
                    wirings[m],
                    n_latent,
                    gene_layer=gene_layer,
                    dropout_rate=dropout_rate,
                    n_cat_list=encoder_cats,
                    n_cont=encoder_cont,
                    inject_covariates=encode_covariates,
                    **encoder_kwargs,
                )
            else:
                self.encoders[m] = Encoder(
                    self.n_inputs[m] + encoder_cont,
                    n_latent,
                    n_cat_list=encoder_cats,
                    n_layers=n_layers_encoder,
                    n_hidden=n_hidden,
                    dropout_rate=dropout_rate,
                    use_batch_norm=False,
                    use_layer_norm=True,
                    var_eps=1e-4,
                    return_dist=False,
                )
        self.mixer = ModalityMixer(len(self.modalities), n_latent, modality_mixing)

        self._build_decoders(
            n_latent + n_continuous_cov,
            cat_list=cat_list,
            n_hidden=n_hidden,
            n_layers_decoder=n_layers_decoder,
            n_layers_encoder=n_layers_encoder,
            deeply_inject_covariates=deeply_inject_covariates,
            protein_background_prior_mean=protein_background_prior_mean,
            protein_background_prior_scale=protein_background_prior_scale,
            region_factors=region_factors,
        )
        self.centered_modalities = []
        for m, shift in (input_shifts or {}).items():
            shift = torch.as_tensor(shift, dtype=torch.float32)
            expected = (max(n_batch, 1), self.n_inputs.get(m, 0))
            if m not in self.modalities or tuple(shift.shape) != expected:
                raise ValueError(f"input_shifts[{m!r}] must be a {expected} array, got {tuple(shift.shape)}.")
            self.register_buffer(f"input_shift_{m}", shift)
            self.centered_modalities.append(m)
        self.scaled_modalities = []
        for m, (per_batch, target) in (input_spreads or {}).items():
            per_batch = torch.as_tensor(per_batch, dtype=torch.float32)
            target = torch.as_tensor(target, dtype=torch.float32)
            expected = (max(n_batch, 1), self.n_inputs.get(m, 0))
            if m not in self.centered_modalities or tuple(per_batch.shape) != expected or target.shape != expected[1:]:
                raise ValueError(
                    f"input_spreads[{m!r}] must be a {expected} array and a ({expected[1]},) one for a centred "
                    f"modality, got {tuple(per_batch.shape)} and {tuple(target.shape)}."
                )
            self.register_buffer(f"input_sd_{m}", per_batch)
            self.register_buffer(f"input_target_sd_{m}", target)
            self.scaled_modalities.append(m)
        _use_wide_dropout(self)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for m in self.centered_modalities:
            key = f"{prefix}input_shift_{m}"
            if key not in state_dict:  # saved before batch-centred inputs existed: zero shift, the encoder as saved
                state_dict[key] = torch.zeros_like(getattr(self, f"input_shift_{m}"))
        for m in self.scaled_modalities:
            for name in (f"input_sd_{m}", f"input_target_sd_{m}"):
                if f"{prefix}{name}" not in state_dict:  # saved before input spreads existed: zeros give factor 1
                    state_dict[f"{prefix}{name}"] = torch.zeros_like(getattr(self, name))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # ---- inputs ----------------------------------------------------------------------------------------------------
    def _covariates(self, tensors: dict[str, torch.Tensor]):
        batch = tensors[REGISTRY_KEYS.BATCH_KEY]
        cat = tensors.get(REGISTRY_KEYS.CAT_COVS_KEY)
        cont = tensors.get(REGISTRY_KEYS.CONT_COVS_KEY)
        if cont is not None:
            loc, scale = self.continuous_covariate_loc, self.continuous_covariate_scale
            cont = (cont.to(loc.device) - loc) / scale
        return batch, cat, cont

    def _masks(self, tensors: dict[str, torch.Tensor], n: int, like: torch.Tensor) -> torch.Tensor:
        mask = tensors.get(MASK_KEY)
        if mask is None:
            return like.new_ones(n, len(self.modalities))
        return mask.to(like.dtype)

    def _get_inference_input(self, tensors: dict[str, torch.Tensor]) -> dict[str, Any]:
        batch, cat, cont = self._covariates(tensors)
        data = {m: tensors[DATA_KEYS[m]] for m in self.modalities}
        first = data[self.modalities[0]]
        return {
            "data": data,
            "batch_index": batch,
            "cat_covs": cat,
            "cont_covs": cont,
            "masks": self._masks(tensors, first.shape[0], first),
            "size_factor": tensors.get(REGISTRY_KEYS.SIZE_FACTOR_KEY),
        }

    def _get_generative_input(self, tensors, inference_outputs, transform_batch: int | None = None):
        batch, cat, cont = self._covariates(tensors)
        if transform_batch is not None:
            batch = torch.full_like(batch, transform_batch)
        return {
            "z": inference_outputs["z"],
            "qz_m": inference_outputs["qz_m"],
            "batch_index": batch,
            "cat_covs": cat,
            "cont_covs": cont,
            "library": inference_outputs.get("library"),
        }

    # ---- model -----------------------------------------------------------------------------------------------------
    def input_scale_table(self, m: str) -> torch.Tensor:
        """The factors of :meth:`input_scale` for every batch, ``(n_batch, n_features)``: row ``b`` is batch ``b``'s."""
        target = getattr(self, f"input_target_sd_{m}")
        return ((target + SPREAD_FLOOR) / (getattr(self, f"input_sd_{m}") + SPREAD_FLOOR)).clamp(*SCALE_BOUNDS)

    def input_scale(self, m: str, batch: torch.Tensor) -> torch.Tensor:
        """Factors that give modality ``m``'s centred input of each cell's ``batch`` the target spread."""
        return self.input_scale_table(m).index_select(0, batch.reshape(-1).long())

    def _encode(self, m: str, x: torch.Tensor, batch, cat, cont):
        encoder = self.encoders[m]
        cats = (batch, *torch.split(cat, 1, dim=1)) if (self.encode_covariates and cat is not None) else (batch,)
        normalized = m in self.depth_normalized_modalities
        if normalized:
            x = x * (DEPTH_TARGET / x.sum(dim=1, keepdim=True).clamp_min(1.0))
        if isinstance(encoder, WiredEncoder) and self.log_variational and not normalized:
            # On CPU counts: log1p, shift and scale in one pass, written in the encoder's feature-major layout
            # (nn._input_transform; bitwise the torch composition below). None: the torch composition.
            shift = getattr(self, f"input_shift_{m}") if m in self.centered_modalities else None
            scale = self.input_scale_table(m) if m in self.scaled_modalities else None
            covariates, covariate_cont = (cats, cont) if self.encode_covariates else ((), None)
            # Inference on sparse CPU counts: the GO levels' gene-node products from the nonzero counts only
            # (nn._sparse_counts; float rounding apart the same). None: the dense path.
            out = encoder.forward_counts(x, batch, shift, scale, *covariates, cont=covariate_cont)
            if out is not None:
                return out
            xt = log1p_shift_scale_t(x, batch, shift, scale)
            if xt is not None:
                return encoder(xt, *covariates, cont=covariate_cont, feature_major=True)
        x_in = log1p(x) if self.log_variational else x  # bitwise torch.log1p, faster on CPU counts (nn._log1p)
        if m in self.centered_modalities:
            x_in = x_in - getattr(self, f"input_shift_{m}").index_select(0, batch.reshape(-1).long())
        if m in self.scaled_modalities:
            x_in = x_in * self.input_scale(m, batch)
        if isinstance(encoder, WiredEncoder):
            if not self.encode_covariates:
                return encoder(x_in)
            return encoder(x_in, *cats, cont=cont)
        if self.encode_covariates:
            if cont is not None:
                x_in = torch.cat([x_in, cont], dim=-1)
            return encoder(x_in, *cats)
        return encoder(x_in)

    @auto_move_data
    def inference(
        self,
        data: dict[str, torch.Tensor],
        batch_index: torch.Tensor,
        cat_covs: torch.Tensor | None = None,
        cont_covs: torch.Tensor | None = None,
        masks: torch.Tensor | None = None,
        size_factor: torch.Tensor | None = None,
        n_samples: int = 1,
    ) -> dict[str, Any]:
        """Per-modality posteriors, their mixture, a joint sample and library sizes."""
        first = data[self.modalities[0]]
        n = first.shape[0]
        if masks is None:
            masks = first.new_ones(n, len(self.modalities))
        means, variances = [], []
        out: dict[str, Any] = {}
        for i, m in enumerate(self.modalities):
            present = masks[:, i] > 0
            q_m = first.new_zeros(n, self.n_latent)
            q_v = first.new_ones(n, self.n_latent)  # absent cells: a harmless N(0, 1) that mixing weights to zero
            if bool(present.all()):
                q_m, q_v, _ = self._encode(m, data[m], batch_index, cat_covs, cont_covs)
            elif bool(present.any()):  # encoders run only on the cells that have the modality
                rows = present.nonzero().squeeze(1)
                sub = [t.index_select(0, rows) if t is not None else None for t in (batch_index, cat_covs, cont_covs)]
                q_m_p, q_v_p, _ = self._encode(m, data[m].index_select(0, rows), *sub)
                q_m = q_m.index_copy(0, rows, q_m_p)
                q_v = q_v.index_copy(0, rows, q_v_p)
            means.append(q_m)
            variances.append(q_v)
            out[f"qz_m_{m}"], out[f"qz_v_{m}"] = q_m, q_v
        means_t, variances_t = torch.stack(means, 1), torch.stack(variances, 1)
        mixed = drop_modalities(masks, self.modality_dropout) if self.training else masks
        qz_m, qz_v, weights = self.mixer(means_t, variances_t, mixed)
        qz = Normal(qz_m, qz_v.sqrt(), validate_args=False)
        untransformed_z = qz.rsample() if n_samples == 1 else qz.rsample((n_samples,))
        z = F.softmax(untransformed_z, dim=-1) if self.latent_distribution == "ln" else untransformed_z
        if "rna" in self.modalities:
            x = data["rna"]
            if self.use_size_factor_key and size_factor is not None:
                out["library"] = torch.log(size_factor)
            elif self.use_observed_lib_size:
                out["library"] = torch.log(x.sum(1, keepdim=True).clamp_min(1.0))
            else:
                out["library"] = self.l_encoder(torch.log1p(x))[0]
        if "atac" in self.modalities:
            out["atac_depth"] = self.atac_depth_encoder(data["atac"], batch_index)
        out.update(
            {
                "z": z,
                "qz_m": qz_m,
                "qz_v": qz_v,
                "qz": qz,
                "qzm": qz_m,
                "qzv": qz_v,
                "means": means_t,
                "variances": variances_t,
                "masks": masks,
                "weights": weights,
                "data": data,
            }
        )
        return out


def _use_wide_dropout(module: nn.Module) -> None:
    """Replace every plain :class:`torch.nn.Dropout` inside ``module`` by ``WideDropout``.

    They sit in scvi-tools' ``FCLayers`` (decoders, covariate layers). Same semantics and no state, with a cheaper
    CPU keep mask than torch's ``bernoulli_`` (results page, smaller measurements).
    """
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, WideDropout(child.p, inplace=child.inplace))
