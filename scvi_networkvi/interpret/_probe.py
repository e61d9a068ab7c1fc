"""Fitting and scoring the node probes: nodes of equal width are fitted together, for all phenotypes at once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import norm

from ._auroc import auroc, delong, delong_paired
from ._logistic import decision_function, fit_logistic
from ._nodes import NodeTable
from ._progress import track
from ._standardize import standardize

#: Upper bound on cells x neurons x nodes gathered at once (float64), to bound memory on gene nodes.
MAX_CHUNK_ELEMENTS = 40_000_000


@dataclass(frozen=True)
class Targets:
    """Cases and controls of the usable phenotypes on the fitting and held-out cells (``(p, n)`` boolean arrays)."""

    case_fit: np.ndarray
    control_fit: np.ndarray
    case_eval: np.ndarray
    control_eval: np.ndarray

    @property
    def n_phenotypes(self) -> int:
        """Number of phenotypes."""
        return self.case_fit.shape[0]


@dataclass(frozen=True)
class ProbeStats:
    """Per node and phenotype (``(k, p)``): held-out AUROC with interval and one-sided p-value, in-sample AUROC."""

    auroc: np.ndarray
    low: np.ndarray
    high: np.ndarray
    pval: np.ndarray
    auroc_fit: np.ndarray
    n_fit: np.ndarray
    n_eval: np.ndarray
    n_cases_eval: np.ndarray


@dataclass(frozen=True)
class ChangeStats:
    """Per node and phenotype (``(k, p)``): AUROC before, after, their difference with interval and p-value.

    ``fit_before`` / ``fit_after`` are the in-sample AUROCs on the fitting cells (what the original read).
    """

    before: np.ndarray
    after: np.ndarray
    delta: np.ndarray
    low: np.ndarray
    high: np.ndarray
    pval: np.ndarray
    fit_before: np.ndarray
    fit_after: np.ndarray


def node_chunks(table: NodeTable, n_cells: int) -> Iterator[tuple[str, np.ndarray]]:
    """``(source matrix, node positions)`` groups of equal width, split so a gathered chunk stays bounded."""
    frame = table.frame
    for (source, width), group in frame.groupby(["source", "width"], sort=True):
        positions = group.index.to_numpy()
        per_chunk = max(1, MAX_CHUNK_ELEMENTS // max(1, n_cells * int(width)))
        for start in range(0, len(positions), per_chunk):
            yield str(source), positions[start : start + per_chunk]


def gather(matrix: np.ndarray, table: NodeTable, positions: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``(k, n, w)`` float64 activations of nodes ``positions`` on ``rows``."""
    columns = np.stack([table.columns[p] for p in positions])  # (k, w)
    block = matrix[rows][:, columns]  # (n, k, w)
    return np.ascontiguousarray(block.transpose(1, 0, 2), dtype=np.float64)


def sample_weights(case: np.ndarray, control: np.ndarray, class_weight: str | None) -> np.ndarray:
    """``(p, n)`` weights: 0 for cells outside a phenotype; ``balanced`` weighs both classes to the same total."""
    case_w = case.astype(np.float64)
    control_w = control.astype(np.float64)
    if class_weight == "balanced":
        n = case_w.sum(1, keepdims=True) + control_w.sum(1, keepdims=True)
        case_w *= n / (2.0 * case_w.sum(1, keepdims=True))
        control_w *= n / (2.0 * control_w.sum(1, keepdims=True))
    return case_w + control_w


def fitted_scores(
    x_fit: np.ndarray,
    x_eval: np.ndarray,
    targets: Targets,
    C: float,
    class_weight: str | None,
    device: torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray, object]:
    """Fit ``k x p`` probes on standardised ``x_fit`` (on ``device``); decision values ``(k, p, n)`` on both splits."""
    x_fit, x_eval = standardize(x_fit, x_eval)
    weights = sample_weights(targets.case_fit, targets.control_fit, class_weight)
    fit = fit_logistic(x_fit, targets.case_fit.astype(np.float64), C=C, sample_weight=weights, device=device)
    return tied(decision_function(fit, x_fit)), tied(decision_function(fit, x_eval)), fit


def tied(scores: np.ndarray) -> np.ndarray:
    """Scores rounded to 1e-9, so that cells with identical activations tie.

    Batched matrix products round differently by row position (~1e-16): unrounded, ties would break at random and
    move the AUROC of a node with few distinct activation values (mostly inactive ReLUs) by whole percentage points.
    """
    return np.round(scores, 9)


def fit_probes(
    matrices: Mapping[str, np.ndarray | None],
    table: NodeTable,
    fit_rows: np.ndarray,
    eval_rows: np.ndarray,
    targets: Targets,
    *,
    C: float,
    class_weight: str | None,
    level: float,
    device: torch.device | None = None,
    progress: bool = False,
    description: str = "Probes",
) -> ProbeStats:
    """Fit and score every node's probes; AUROC statistics per node and phenotype.

    ``progress``: draw scvi-tools' progress bar over the chunks of nodes fitted together, with ``description``.
    """
    k, p = len(table.frame), targets.n_phenotypes
    out = {name: np.full((k, p), np.nan) for name in ("auroc", "low", "high", "pval", "auroc_fit")}
    chunks = list(node_chunks(table, len(fit_rows) + len(eval_rows)))
    for source, positions in track(chunks, description, enabled=progress):
        x_fit = gather(matrices[source], table, positions, fit_rows)
        x_eval = gather(matrices[source], table, positions, eval_rows)
        scores_fit, scores_eval, _ = fitted_scores(x_fit, x_eval, targets, C, class_weight, device)
        for j in range(p):
            held = targets.case_eval[j] | targets.control_eval[j]
            stats = delong(scores_eval[:, j, held], targets.case_eval[j, held], level=level)
            out["auroc"][positions, j] = stats.auroc
            out["low"][positions, j] = stats.low
            out["high"][positions, j] = stats.high
            out["pval"][positions, j] = one_sided(stats.auroc, np.sqrt(stats.variance))
            member = targets.case_fit[j] | targets.control_fit[j]
            out["auroc_fit"][positions, j] = auroc(scores_fit[:, j, member], targets.case_fit[j, member])
    members_fit = targets.case_fit | targets.control_fit
    members_eval = targets.case_eval | targets.control_eval
    return ProbeStats(
        **out,
        n_fit=members_fit.sum(1),
        n_eval=members_eval.sum(1),
        n_cases_eval=targets.case_eval.sum(1),
    )


def one_sided(auc: np.ndarray, se: np.ndarray) -> np.ndarray:
    """P-value of AUROC > 0.5 (the probe was fitted to rank cases first), from the DeLong standard error."""
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (np.asarray(auc) - 0.5) / np.asarray(se)
    p = norm.sf(z)
    # SE 0: every case above (or below) every control, or constant scores; the AUROC itself decides.
    degenerate = ~np.isfinite(z)
    p = np.where(degenerate, np.where(np.asarray(auc) > 0.5, 0.0, 1.0), p)
    return np.where(np.isnan(auc), np.nan, p)


def change_probes(
    before: Mapping[str, np.ndarray | None],
    after: Mapping[str, np.ndarray | None],
    table: NodeTable,
    fit_rows: np.ndarray,
    eval_rows: np.ndarray,
    targets: Targets,
    *,
    C: float,
    class_weight: str | None,
    level: float,
    refit: bool,
    device: torch.device | None = None,
) -> ChangeStats:
    """Held-out AUROC of every node's probe before and after a perturbation, and the paired change.

    ``refit=True`` fits new probes on the perturbed fitting cells (the same cells and split); ``False`` scores the
    perturbed held-out cells with the unperturbed probes (standardisation included). The in-sample AUROCs on the
    fitting cells, before and after, come along for comparison.
    """
    k, p = len(table.frame), targets.n_phenotypes
    names = ("before", "after", "delta", "low", "high", "pval", "fit_before", "fit_after")
    out = {name: np.full((k, p), np.nan) for name in names}
    for source, positions in node_chunks(table, 2 * (len(fit_rows) + len(eval_rows))):
        x_fit = gather(before[source], table, positions, fit_rows)
        x_eval = gather(before[source], table, positions, eval_rows)
        y_fit = gather(after[source], table, positions, fit_rows)
        y_eval = gather(after[source], table, positions, eval_rows)
        fit_before, scores_before, fit = fitted_scores(x_fit, x_eval, targets, C, class_weight, device)
        if refit:
            fit_after, scores_after, _ = fitted_scores(y_fit, y_eval, targets, C, class_weight, device)
        else:
            _, y_fit_std, y_eval_std = standardize(x_fit, y_fit, y_eval)
            fit_after = tied(decision_function(fit, y_fit_std))
            scores_after = tied(decision_function(fit, y_eval_std))
        for j in range(p):
            member = targets.case_fit[j] | targets.control_fit[j]
            out["fit_before"][positions, j] = auroc(fit_before[:, j, member], targets.case_fit[j, member])
            out["fit_after"][positions, j] = auroc(fit_after[:, j, member], targets.case_fit[j, member])
            held = targets.case_eval[j] | targets.control_eval[j]
            change = delong_paired(
                scores_before[:, j, held], scores_after[:, j, held], targets.case_eval[j, held], level=level
            )
            out["before"][positions, j] = change.auroc_a
            out["after"][positions, j] = change.auroc_b
            out["delta"][positions, j] = change.delta
            out["low"][positions, j] = change.low
            out["high"][positions, j] = change.high
            out["pval"][positions, j] = change.pvalue
    return ChangeStats(**out)
