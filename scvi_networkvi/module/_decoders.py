"""The generative side of :class:`~scvi_networkvi.module.NetworkVAE`: the decoders and the likelihood of the data.

scVI's decoder for RNA (ZINB, NB or Poisson), totalVI's protein decoder (background / foreground negative binomial
mixture, with the per-batch background prior) and PeakVI's for ATAC (Bernoulli accessibility with a depth encoder and
region factors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from scvi.distributions import NegativeBinomialMixture
from scvi.module._multivae import DecoderADT  # protein-only totalVI decoder (scvi-tools >= 1.1)
from scvi.module._peakvae import Decoder as DecoderPeakVI
from scvi.module.base import auto_move_data
from scvi.nn import DecoderSCVI, Encoder
from torch import nn
from torch.distributions import Poisson

from ._likelihood import nb_log_prob_cells, zinb_log_prob_cells
from ._peak_likelihood import peak_nll_cells


class NetworkVAEDecodersMixin:
    """The decoders of every modelled modality: their construction, the generative pass, reconstruction losses."""

    def _build_decoders(
        self,
        n_input_decoder: int,
        *,
        cat_list: Sequence[int],
        n_hidden: int,
        n_layers_decoder: int,
        n_layers_encoder: int,
        deeply_inject_covariates: bool,
        protein_background_prior_mean: Any,
        protein_background_prior_scale: Any,
        region_factors: bool,
    ) -> None:
        """Build the decoders (the module's arguments of the same names; ``n_input_decoder``: latent + covariates)."""
        decoder_kwargs = {"n_cat_list": cat_list, "n_layers": n_layers_decoder, "n_hidden": n_hidden}
        if "rna" in self.modalities:
            self.rna_decoder = DecoderSCVI(
                n_input_decoder,
                self.n_inputs["rna"],
                inject_covariates=deeply_inject_covariates,
                use_batch_norm=False,
                use_layer_norm=True,
                scale_activation="softplus" if self.use_size_factor_key else "softmax",
                **decoder_kwargs,
            )
            self.px_r = nn.Parameter(torch.randn(self.n_inputs["rna"]))
            if not self.use_observed_lib_size:
                self.l_encoder = Encoder(
                    self.n_inputs["rna"], 1, n_layers=1, n_hidden=n_hidden, dropout_rate=0.0, return_dist=False
                )
        if "protein" in self.modalities:
            n_proteins = self.n_inputs["protein"]
            self.protein_decoder = DecoderADT(
                n_input_decoder,
                n_proteins,
                deep_inject_covariates=deeply_inject_covariates,
                use_batch_norm=False,
                use_layer_norm=True,
                **decoder_kwargs,
            )
            shape = (n_proteins, max(self.n_batch, 1)) if self.protein_dispersion == "protein-batch" else (n_proteins,)
            self.py_r = nn.Parameter(2 * torch.rand(shape))
            if self.protein_background_prior:
                shape = (n_proteins, max(self.n_batch, 1))
                if protein_background_prior_mean is not None:
                    mean = torch.as_tensor(protein_background_prior_mean, dtype=torch.float32)
                    scale = torch.as_tensor(protein_background_prior_scale, dtype=torch.float32)
                    if mean.shape != shape or scale.shape != shape or not bool((scale > 0).all()):
                        raise ValueError(
                            f"protein_background_prior_mean / _scale must be {shape} arrays (scales > 0), got "
                            f"{tuple(mean.shape)} / {tuple(scale.shape)}."
                        )
                    self.background_pro_alpha = nn.Parameter(mean.clone())
                    self.background_pro_log_beta = nn.Parameter(scale.log())
                else:
                    self.background_pro_alpha = nn.Parameter(torch.randn(shape))
                    self.background_pro_log_beta = nn.Parameter(torch.clamp(torch.randn(shape), -10, 1))
        if "atac" in self.modalities:
            n_regions = self.n_inputs["atac"]
            self.atac_decoder = DecoderPeakVI(
                n_input=n_input_decoder,
                n_output=n_regions,
                n_hidden=n_hidden,
                n_cat_list=cat_list,
                n_layers=n_layers_decoder,
                use_batch_norm=False,
                use_layer_norm=True,
                deep_inject_covariates=deeply_inject_covariates,
            )
            self.atac_depth_encoder = DecoderPeakVI(
                n_input=n_regions,
                n_output=1,
                n_hidden=n_hidden,
                n_cat_list=cat_list,
                n_layers=n_layers_encoder,
                use_batch_norm=False,
                use_layer_norm=True,
            )
            self.region_factors = nn.Parameter(torch.zeros(n_regions)) if region_factors else None

    @auto_move_data
    def generative(
        self,
        z: torch.Tensor,
        qz_m: torch.Tensor,
        batch_index: torch.Tensor,
        cat_covs: torch.Tensor | None = None,
        cont_covs: torch.Tensor | None = None,
        library: torch.Tensor | None = None,
        use_z_mean: bool = False,
    ) -> dict[str, Any]:
        """Decoders of every modeled modality."""
        latent = qz_m if use_z_mean else z
        if cont_covs is not None:
            cont = cont_covs if latent.dim() == cont_covs.dim() else cont_covs.expand(latent.shape[0], -1, -1)
            latent = torch.cat([latent, cont], dim=-1)
        cats = torch.split(cat_covs, 1, dim=1) if cat_covs is not None else ()
        out: dict[str, Any] = {}
        if "rna" in self.modalities:
            px_scale, _, px_rate, px_dropout = self.rna_decoder("gene", latent, library, batch_index, *cats)
            out.update(px_scale=px_scale, px_rate=px_rate, px_dropout=px_dropout, px_r=torch.exp(self.px_r))
        if "protein" in self.modalities:
            py_, log_back = self.protein_decoder(latent, batch_index, *cats)
            py_r = self.py_r
            if self.protein_dispersion == "protein-batch":
                py_r = F.linear(F.one_hot(batch_index.squeeze(-1), self.py_r.shape[1]).float(), self.py_r)
            py_["r"] = torch.exp(py_r)
            out.update(py_=py_, log_pro_back_mean=log_back)
        if "atac" in self.modalities:
            # DecoderPeakVI's output (Linear, Sigmoid) in two steps: the likelihood reads the logits.
            hidden = self.atac_decoder.px_decoder(latent, batch_index, *cats)
            out["p_logits"] = self.atac_decoder.output[0](hidden)
            out["p"] = torch.sigmoid(out["p_logits"])
        return out

    def reconstruction_losses(self, data, inference_outputs, generative_outputs) -> dict[str, torch.Tensor]:
        """Per-cell negative log-likelihood of each modality (not yet masked)."""
        losses = {}
        if "rna" in self.modalities:
            x = data["rna"]
            rate, theta = generative_outputs["px_rate"], generative_outputs["px_r"]
            if self.gene_likelihood == "zinb":
                log_prob = zinb_log_prob_cells(x, rate, theta, generative_outputs["px_dropout"])
            elif self.gene_likelihood == "nb":
                log_prob = nb_log_prob_cells(x, rate, theta)
            else:
                log_prob = Poisson(rate, validate_args=False).log_prob(x).sum(-1)
            losses["rna"] = -log_prob
        if "protein" in self.modalities:
            py_ = generative_outputs["py_"]
            dist = NegativeBinomialMixture(
                mu1=py_["rate_back"], mu2=py_["rate_fore"], theta1=py_["r"], mixture_logits=py_["mixing"]
            )
            losses["protein"] = -dist.log_prob(data["protein"]).sum(-1)
        if "atac" in self.modalities:
            factors = torch.sigmoid(self.region_factors) if self.region_factors is not None else None
            losses["atac"] = peak_nll_cells(
                generative_outputs["p_logits"],
                generative_outputs["p"],
                inference_outputs["atac_depth"],
                factors,
                data["atac"],
            )
        return losses
