"""The GO encoder's inference from the nonzero counts (:mod:`scvi_networkvi.nn._sparse_counts`) against the dense path
and the plain-torch dense reference (:meth:`BlockSparseLinear.to_dense`), within float rounding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from scvi_networkvi.nn import WiredEncoder
from scvi_networkvi.nn import _sparse_counts as sparse
from scvi_networkvi.nn import _torch_threads as threads
from scvi_networkvi.wiring import compile_wiring

DATA = Path(__file__).parent / "data"
GENES = [f"g{i}" for i in range(1, 11)]  # the tiny GAF's genes


def wiring(gene_size: int, term_size: int, extra: int = 5):
    """The tiny GO's wiring of its 10 genes plus ``extra`` unannotated features (no gene-gene edges)."""
    ids = [*GENES, *[f"unknown{i}" for i in range(extra)]]
    return compile_wiring(ids, go=DATA / "tiny.obo", annotations=DATA / "tiny.gaf", max_depth=3,
                          gene_size=gene_size, term_size=term_size, root_size=5, cache=False)  # fmt: skip


def encoder(gene_size=4, term_size=6, dtype=torch.float32, **kwargs) -> WiredEncoder:
    torch.manual_seed(0)
    enc = WiredEncoder(wiring(gene_size, term_size), n_latent=3, gene_layer="standard", **kwargs).to(dtype).eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_(0, 0.5)  # both signs before every ReLU, nonzero biases
        for norm in enc.go_network.norms:  # non-trivial running statistics
            norm.running_mean.normal_()
            norm.running_var.uniform_(0.5, 2.0)
    return enc


def counts(n: int, n_features: int, share: float, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    """Whole-number counts (a few fractions and large values) with about ``share`` nonzero; cells 0 and 3 all zero."""
    rng = np.random.default_rng(seed)
    x = rng.poisson(3.0, (n, n_features)) * (rng.random((n, n_features)) < share)
    x = x.astype(np.float64)
    x[1, :3] = [0.5, 70000.0, 2.25]  # outside the log1p table: math.log1p
    x[[0, 3]] = 0
    return torch.as_tensor(x, dtype=dtype)


def batch_tables(n_batch: int, n_features: int, dtype, centred: bool, scaled: bool):
    generator = torch.Generator().manual_seed(1)
    shift = torch.rand(n_batch, n_features, generator=generator, dtype=dtype) if centred else None
    scale = torch.rand(n_batch, n_features, generator=generator, dtype=dtype) + 0.5 if scaled else None
    return shift, scale


def dense_input(x, batch, shift, scale):
    """The encoder input of the dense path, in plain torch."""
    h = torch.log1p(x)
    if shift is not None:
        h = h - shift[batch]
    if scale is not None:
        h = h * scale[batch]
    return h


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("gene_size, term_size", [(4, 6), (3, 2)], ids=["vector-path", "generic-path"])
@pytest.mark.parametrize("centred, scaled", [(True, True), (True, False), (False, False)])
def test_counts_path_equals_the_dense_path(dtype, gene_size, term_size, centred, scaled):
    enc = encoder(gene_size, term_size, dtype)
    n, n_features = 37, enc.n_features
    x = counts(n, n_features, 0.2, dtype)
    batch = torch.arange(n) % 3  # several batches
    shift, scale = batch_tables(3, n_features, dtype, centred, scaled)
    with torch.inference_mode():
        fast = enc.forward_counts(x, batch[:, None], shift, scale)
        reference = enc(dense_input(x, batch, shift, scale))
    assert fast is not None
    tolerance = {"rtol": 1e-4, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-10, "atol": 1e-12}
    for a, b in zip(fast[:2], reference[:2], strict=True):  # posterior mean and variance
        torch.testing.assert_close(a, b, **tolerance)


@pytest.mark.parametrize("gene_layer", ["standard", "none"])
def test_level_products_equal_the_dense_reference(gene_layer):
    """Each level's gene-node product (bias included), against the dense matrices of the plain-torch reference."""
    torch.manual_seed(0)
    enc = WiredEncoder(wiring(4, 6), n_latent=3, gene_layer=gene_layer).double().eval()
    with torch.no_grad():
        for p in enc.parameters():
            p.normal_(0, 0.5)
    n, n_features = 23, enc.n_features
    x, batch = counts(n, n_features, 0.3, torch.float64), torch.arange(n) % 2
    shift, scale = batch_tables(2, n_features, torch.float64, True, True)
    with torch.inference_mode():
        products = enc._counts_path().level_products(x, batch, shift, scale)
    h = dense_input(x, batch, shift, scale).t()
    if gene_layer == "standard":
        linear = enc.gene_layer.layer.linear
        y = linear.to_dense() @ h + linear.bias[:, None]
        half = len(y) // 2
        h = torch.relu(y[:half]) + y[half:]
    for level, product in zip(enc.go_network.levels, products, strict=True):
        weight = level.linear.to_dense()[:, : len(h)]  # the gene-node columns
        torch.testing.assert_close(product, weight @ h + level.linear.bias[:, None], rtol=1e-10, atol=1e-12)


def test_attention_covariates_and_all_levels_follow_the_dense_path():
    enc = encoder(n_cat_list=[2], covariate_attention="go", head_input="levels", inject_covariates=True)
    n = 19
    x, batch = counts(n, enc.n_features, 0.15), torch.arange(n) % 2
    shift, scale = batch_tables(2, enc.n_features, torch.float32, True, True)
    with torch.inference_mode():
        fast = enc.forward_counts(x, batch, shift, scale, batch[:, None])
        reference = enc(dense_input(x, batch, shift, scale), batch[:, None])
    assert fast is not None
    torch.testing.assert_close(fast[0], reference[0], rtol=1e-4, atol=1e-5)


def test_same_result_for_every_thread_count_and_call(monkeypatch):
    enc = encoder()
    n = 64
    x, batch = counts(n, enc.n_features, 0.2, seed=3), torch.arange(n) % 3
    shift, scale = batch_tables(3, enc.n_features, torch.float32, True, True)
    monkeypatch.setattr(threads, "MIN_TEAM_ELEMENTS", 0)  # the team path even for the tiny wiring
    results = []
    threads_before = torch.get_num_threads()
    try:
        for count in (1, 2, 1, 2):
            torch.set_num_threads(count)
            with torch.inference_mode():
                results.append(enc.forward_counts(x, batch, shift, scale)[0])
    finally:
        torch.set_num_threads(threads_before)
    assert all(torch.equal(results[0], r) for r in results[1:])


def test_caches_follow_the_weights_and_the_batch_tables():
    enc = encoder()
    n = 16
    x, batch = counts(n, enc.n_features, 0.2), torch.arange(n) % 2
    shift, scale = batch_tables(2, enc.n_features, torch.float32, True, True)

    def both():
        with torch.inference_mode():
            return enc.forward_counts(x, batch, shift, scale)[0], enc(dense_input(x, batch, shift, scale))[0]

    both()
    with torch.no_grad():  # in place, as an optimiser step
        enc.go_network.levels[0].linear.weights[0].mul_(-1.5)
        enc.gene_layer.layer.linear.bias.add_(0.3)
        enc.go_network.levels[-1].linear.weights[0].mul_(0.5)  # the root reads deeper terms: the term layers
    shift = shift + 0.25
    fast, reference = both()
    torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5)


def test_dense_path_where_the_counts_path_does_not_apply(monkeypatch):
    enc = encoder()
    n = 12
    x, batch = counts(n, enc.n_features, 0.2), torch.arange(n) % 2
    shift, scale = batch_tables(2, enc.n_features, torch.float32, True, True)
    with torch.inference_mode():
        assert enc.forward_counts(x, batch, shift, scale) is not None
        dense = counts(n, enc.n_features, 0.9) + 1  # above SPARSE_MAX_SHARE
        assert enc.forward_counts(dense, batch, shift, scale) is None
        enc.sparse_counts = False
        assert enc.forward_counts(x, batch, shift, scale) is None
        enc.sparse_counts = True
        enc.go_network.levels[0].linear.eval_kernel = False  # the previous code path
        assert enc.forward_counts(x, batch, shift, scale) is None
        enc.go_network.levels[0].linear.eval_kernel = True
        handle = enc.gene_tap.register_forward_hook(lambda *a: None)  # gene activations wanted
        assert enc.forward_counts(x, batch, shift, scale) is None
        handle.remove()
        assert enc.forward_counts(x[:, :-1], batch, shift[:, :-1], scale[:, :-1]) is None  # other features
    assert enc.forward_counts(x, batch, shift, scale.requires_grad_()) is None  # autograd
    enc.train()
    with torch.inference_mode():
        assert enc.forward_counts(x, batch, shift, scale.detach()) is None
    gene_gene = WiredEncoder(wiring(4, 6), n_latent=3, gene_layer="interaction").eval()
    assert gene_gene.interaction_layers and gene_gene._counts_path() is None  # gene–gene layers mix the genes


def test_the_threshold_and_the_rng_are_untouched():
    assert 0 < sparse.SPARSE_MAX_SHARE < 1
    enc = encoder()
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    assert enc._counts_path() is not None  # first use builds the term layers: no draw from the generator
    assert torch.equal(torch.rand(3), expected)


def test_model_latent_and_activations_on_the_counts_path(monkeypatch):
    """Through NetworkVAE: the RNA encoder (no gene-gene layer) takes the counts path, within float rounding of the
    dense path; the latent of scvi-tools' minibatches and the activations of interpretation."""
    import mudata as md
    import scvi

    import scvi_networkvi as nvi

    example = nvi.datasets.example_resources()
    scvi.settings.seed = 0
    mdata = md.read_h5mu(DATA / "bmmc_cite.h5mu")
    modalities = {"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"}
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=modalities)
    model = nvi.NETWORKVI(mdata, go=example["go"], annotations=example["annotations"], gene_layer="standard")
    model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)
    rna = model.module.encoders["rna"]
    calls = []
    original = type(rna).forward_counts
    monkeypatch.setattr(type(rna), "forward_counts", lambda *a, **k: calls.append(o := original(*a, **k)) or o)
    fast = model.get_latent_representation()
    fast_terms = model.get_activations().modalities["rna"].terms
    assert any(result is not None for result in calls)  # the RNA minibatches took the counts path
    rna.sparse_counts = False
    torch.testing.assert_close(torch.as_tensor(fast), torch.as_tensor(model.get_latent_representation()),
                               rtol=1e-4, atol=1e-5)  # fmt: skip
    dense_terms = model.get_activations().modalities["rna"].terms
    np.testing.assert_allclose(fast_terms, dense_terms, rtol=1e-4, atol=1e-4)


def test_other_devices_and_copies_build_nothing():
    import copy

    enc = encoder()
    x, batch = counts(8, enc.n_features, 0.2), torch.arange(8) % 2
    with torch.inference_mode():
        assert enc.forward_counts(x.to("meta"), batch.to("meta"), None, None) is None
        assert getattr(enc, "_sparse_path", None) is None  # nothing built from a device's tensors
        first = enc.forward_counts(x, batch, None, None)[0]
    twin = copy.deepcopy(enc)
    assert twin._sparse_path is None  # the cache is not copied: rebuilt from the copy's own layers
    with torch.inference_mode():
        torch.testing.assert_close(twin.forward_counts(x, batch, None, None)[0], first, rtol=0, atol=0)
        inference_twin = copy.deepcopy(enc)  # parameters without a version counter: packed on every call
        torch.testing.assert_close(inference_twin.forward_counts(x, batch, None, None)[0], first, rtol=0, atol=0)
