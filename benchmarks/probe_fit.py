"""Probe fitting: batched Newton ``fit_logistic`` against sequential scikit-learn ``LogisticRegression`` fits.

Synthetic probe workload: ``k`` GO nodes with widths cycling through ``--widths`` (nodes of equal width are fitted
together), ``p`` one-vs-rest phenotypes with prevalences 2-50 % (a few nodes carry signal), ``n`` cells, standardised
activations with a dead neuron here and there, ``class_weight="balanced"``, ``C=1``. The reference is scikit-learn's
lbfgs at its default tolerance on a random subset of the (node, phenotype) problems, extrapolated to all of them;
agreement of both on that subset is printed as well.

    python benchmarks/probe_fit.py [--k 50] [--p 44] [--n 3500] [--widths 2 3 4 5 6 7 8 9 10] [--subset 60]
    python benchmarks/probe_fit.py --k 4000 --widths 5 --subset 40   # large run (about 0.3 GB of float32 input)
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from scvi_networkvi.interpret._logistic import decision_function, fit_logistic
from scvi_networkvi.interpret._standardize import standardize


def make_data(k: int, p: int, n: int, widths: list[int], seed: int = 0):
    rng = np.random.default_rng(seed)
    prevalence = rng.uniform(0.02, 0.5, size=p)
    labels = (rng.random((p, n)) < prevalence[:, None]).astype(np.float64)
    node_width = np.array([widths[i % len(widths)] for i in range(k)])
    groups = {}
    for w in sorted(set(node_width)):
        nodes = np.flatnonzero(node_width == w)
        x = rng.standard_normal(size=(len(nodes), n, w), dtype=np.float32)
        # Signal: every 5th node reads one phenotype on its first neuron; ReLU-like sparsity with dead neurons.
        for j, node in enumerate(nodes):
            if node % 5 == 0:
                x[j, :, 0] += 1.5 * labels[node % p]
        np.maximum(x, 0.0, out=x)
        x[::7, :, -1] = 0.0
        groups[w] = (nodes, standardize(x)[0])
    return labels, groups


def balanced(labels: np.ndarray) -> np.ndarray:
    n = labels.shape[1]
    n_pos = labels.sum(1, keepdims=True)
    return np.where(labels == 1, n / (2 * n_pos), n / (2 * (n - n_pos)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--k", type=int, default=50)
    parser.add_argument("--p", type=int, default=44)
    parser.add_argument("--n", type=int, default=3500)
    parser.add_argument("--widths", type=int, nargs="+", default=list(range(2, 11)))
    parser.add_argument("--subset", type=int, default=60, help="problems fitted with scikit-learn")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    labels, groups = make_data(args.k, args.p, args.n, args.widths)
    weights = balanced(labels)
    n_problems = args.k * args.p
    print(
        f"k={args.k} nodes (widths {[int(w) for w in sorted(groups)]}), p={args.p} phenotypes, n={args.n} cells: {n_problems} problems; "
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)"
    )

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    input_mib = sum(x.nbytes for _, x in groups.values()) / 2**20
    times, cpu, fits = [], [], {}
    for _ in range(args.repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        for w, (_, x) in groups.items():
            fits[w] = fit_logistic(x, labels, sample_weight=weights)
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    ours = min(times)
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    iters = np.concatenate([f.n_iter.ravel() for f in fits.values()])
    converged = all(f.converged.all() for f in fits.values())
    print(
        f"fit_logistic: {ours:.3f} s wall, {min(cpu):.3f} s CPU (best of {args.repeats}; "
        f"{ours / n_problems * 1e3:.3f} ms/problem), "
        f"Newton iterations median {np.median(iters):.0f} max {iters.max()}, all converged: {converged}, "
        f"input {input_mib:.0f} MiB (float32), peak RSS {rss_before / 1024:.0f} MiB before the fits, "
        f"{rss_after / 1024:.0f} MiB after"
    )

    # scikit-learn on a random subset of (node, phenotype) problems, extrapolated.
    rng = np.random.default_rng(1)
    pairs = [(w, i, j) for w, (nodes, _) in groups.items() for i in range(len(nodes)) for j in range(args.p)]
    subset = [pairs[t] for t in rng.choice(len(pairs), size=min(args.subset, len(pairs)), replace=False)]
    coef_err, auc_err = [], []
    start, start_cpu = time.perf_counter(), time.process_time()
    models = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for w, i, j in subset:
            x = groups[w][1][i]
            models.append(LogisticRegression(C=1.0).fit(x, labels[j], sample_weight=weights[j]))
    sk_time = time.perf_counter() - start
    sk_cpu = time.process_time() - start_cpu
    for (w, i, j), model in zip(subset, models, strict=True):
        fit = fits[w]
        ref = np.concatenate([model.coef_[0], model.intercept_])
        got = np.concatenate([fit.coef[i, j], [fit.intercept[i, j]]])
        coef_err.append(np.abs(got - ref).max() / max(1.0, np.abs(ref).max()))
        x = groups[w][1][i]
        score = decision_function(fit[i, j], x)
        auc_err.append(abs(roc_auc_score(labels[j], score) - roc_auc_score(labels[j], model.decision_function(x))))
    sk_full = sk_time / len(subset) * n_problems
    print(
        f"scikit-learn lbfgs (default tol), sequential: {sk_time / len(subset) * 1e3:.2f} ms/problem on "
        f"{len(subset)} problems ({sk_cpu / len(subset) * 1e3:.2f} ms CPU) -> {sk_full:.1f} s extrapolated to all "
        f"{n_problems}"
    )
    print(
        f"speed-up: {sk_full / ours:.0f}x wall, {sk_cpu / len(subset) * n_problems / min(cpu):.0f}x CPU; max relative coefficient difference {max(coef_err):.1e} (sklearn at its "
        f"default tol=1e-4), max in-sample AUROC difference {max(auc_err):.1e}"
    )


if __name__ == "__main__":
    main()
