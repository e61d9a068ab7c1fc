"""Scoring of one embedding for the integration benchmarks: scib-metrics' Benchmarker and a kNN accuracy."""

from __future__ import annotations

import warnings

LABEL_KEY, BATCH_KEY = "cell_type", "Site"
BIO = ("Isolated labels", "Leiden NMI", "Leiden ARI", "Silhouette label", "cLISI")
BATCH = ("BRAS", "iLISI", "KBET", "Graph connectivity", "PCR comparison")
SCORES = ("Bio conservation", "Batch correction", "Total")


def knn_accuracy(latent, labels, seed: int = 0) -> float:
    """kNN-15 cell-type accuracy of an embedding, stratified 3-fold cross-validation (shuffled, seeded)."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # labels with fewer than 3 cells
        folds = StratifiedKFold(n_splits=3, shuffle=True, random_state=seed)
        return float(cross_val_score(KNeighborsClassifier(n_neighbors=15), latent, labels, cv=folds).mean())


def scib_scores(obs, latent, pca) -> dict[str, float]:
    """scib-metrics Benchmarker scores of one embedding, unscaled, with ``pca`` as the pre-integration embedding."""
    import anndata
    import numpy as np
    from scib_metrics.benchmark import BatchCorrection, Benchmarker, BioConservation

    adata = anndata.AnnData(obs=obs[[LABEL_KEY, BATCH_KEY]].copy())
    adata.obsm["X_pre"] = pca
    adata.obsm["X_emb"] = np.asarray(latent, dtype=np.float32)
    bench = Benchmarker(
        adata,
        batch_key=BATCH_KEY,
        label_key=LABEL_KEY,
        embedding_obsm_keys=["X_emb"],
        bio_conservation_metrics=BioConservation(
            nmi_ari_cluster_labels_leiden=True, nmi_ari_cluster_labels_kmeans=False
        ),
        batch_correction_metrics=BatchCorrection(),  # BRAS, iLISI, kBET per label, graph connectivity, PCR comparison
        pre_integrated_embedding_obsm_key="X_pre",
        n_jobs=1,
        progress_bar=False,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. "PCR comparison score is negative ... Setting to 0."
        bench.benchmark()
    results = bench.get_results(min_max_scale=False, clean_names=True)
    return {name: float(results.loc["X_emb", name]) for name in (*BIO, *BATCH, *SCORES)}
