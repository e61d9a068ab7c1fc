"""Inference on many genes: the GO levels' sparse inference path and the gene-count advice of ``nvi.tl.train``."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import mudata as md
import numpy as np
import pytest
import scvi
import torch

import scvi_networkvi as nvi
from scvi_networkvi.nn._block_sparse import BlockSparseLinear
from scvi_networkvi.tl import _train

DATA = Path(__file__).parent / "data"  # written by scripts/make_test_data.py (tests/data/README.md)
CITE = DATA / "bmmc_cite.h5mu"
CITE_MODS = {"rna_layer": "rna", "protein_layer": "adt", "batch_key": "rna"}
EXAMPLE = nvi.datasets.example_resources()
GO_KW = {"go": EXAMPLE["go"], "annotations": EXAMPLE["annotations"], "interactions": EXAMPLE["interactions"]}


@pytest.fixture(scope="module", autouse=True)
def isolated_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("SCVI_NETWORKVI_DATA_DIR", str(tmp_path_factory.mktemp("nvi-cache")))
        monkeypatch.setenv("SCVI_NETWORKVI_OFFLINE", "1")
        yield


def _sparse_layer(seed: int = 0) -> BlockSparseLinear:
    """A GO-level-like layer: 300 inputs of 4 neurons into 40 outputs of 6, about 5 % of the block pairs."""
    rng = np.random.default_rng(seed)
    pairs = np.argwhere(rng.random((300, 40)) < 0.05).T
    layer = BlockSparseLinear(np.full(300, 4), np.full(40, 6), pairs, dense_limit=1 << 30)
    assert layer.dense and layer.inference_csr  # dense matmuls over mostly zeros: the inference path applies
    return layer


def _set_csr(model, enabled: bool) -> int:
    """Put every block-sparse layer of the model on the inference path (``enabled``) or off it; how many there are.

    Forced on every layer, not only where the rule of ``BlockSparseLinear.inference_csr`` picks it (on the test
    data's small wiring it picks none): the path must give the same result wherever it runs.
    """
    layers = [m for m in model.module.modules() if isinstance(m, BlockSparseLinear)]
    for layer in layers:
        layer.inference_csr = enabled
    return len(layers) if enabled else 0


def test_inference_path_equals_training_path_and_follows_weight_changes():
    layer = _sparse_layer()
    x = torch.rand(layer.n_in, 37)
    parts = list(x.split([700, 500]))
    expected = layer.forward_t(x)  # autograd on: the training path
    assert expected.requires_grad
    with torch.inference_mode():
        got = layer.forward_t(x)
        got_parts = layer.forward_t(parts)
        residual_in = torch.rand(layer.n_out, 5)
    torch.testing.assert_close(got, expected.detach(), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got_parts, expected.detach(), rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # an optimiser step changes the weights in place: the CSR values follow
        layer.weights[0].mul_(-2.0)
        layer.bias.add_(1.0)
        changed = layer.forward_t(x)
    torch.testing.assert_close(changed, layer.forward_t(x).detach(), rtol=1e-5, atol=1e-5)
    assert not torch.allclose(changed, expected.detach())
    assert residual_in.shape[0] == layer.n_out  # not square: the residual form needs a square layer
    with pytest.raises(ValueError, match="residual"):
        layer.forward_t_relu_residual(x)


def test_inference_path_residual_and_float64():
    rng = np.random.default_rng(1)
    pairs = np.argwhere(rng.random((200, 200)) < 0.03).T
    layer = BlockSparseLinear(np.full(200, 3), np.full(200, 3), pairs, dense_limit=1 << 30).double()
    layer.inference_csr = True
    x = torch.rand(layer.n_in, 11, dtype=torch.float64)
    expected = torch.relu(layer.forward_t(x)) + x
    with torch.no_grad():
        got = layer.forward_t_relu_residual(x)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected.detach())


def test_inference_path_is_not_taken_with_autograd():
    layer = _sparse_layer(2)
    x = torch.rand(layer.n_in, 8, requires_grad=True)
    layer.forward_t(x).sum().backward()  # the training path: gradients reach the weights
    assert not layer._csr_plans and all(w.grad is not None for w in layer.weights)


def test_latent_is_unchanged_by_the_inference_path():
    scvi.settings.seed = 0
    mdata = md.read_h5mu(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    model = nvi.NETWORKVI(mdata, **GO_KW)  # the model defaults (gene_size 4, go_size 6, depth 2)
    model.train(max_epochs=2, accelerator="cpu", enable_progress_bar=False)
    assert _set_csr(model, False) == 0
    before = model.get_latent_representation()
    before_rna = model.get_latent_representation(modality="rna")
    assert _set_csr(model, True) >= 6  # gene layers and GO levels of both encoders
    after = model.get_latent_representation()
    after_rna = model.get_latent_representation(modality="rna")
    np.testing.assert_allclose(after, before, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(after_rna, before_rna, rtol=1e-4, atol=1e-5)
    model.train(max_epochs=1, accelerator="cpu", enable_progress_bar=False)  # weights change: caches follow
    trained_on = model.get_latent_representation()
    _set_csr(model, False)
    np.testing.assert_allclose(trained_on, model.get_latent_representation(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(trained_on, after)


def _set_eval_kernels(model, enabled: bool) -> int:
    """Switch the inference-only kernels (block product, gene layer) on or off; how many layers have one."""
    from scvi_networkvi.nn._two_path import _TwoPathBlockLayer

    layers = [m for m in model.module.modules() if isinstance(m, (BlockSparseLinear, _TwoPathBlockLayer))]
    for layer in layers:
        layer.eval_kernel = enabled
    return len(layers)


def test_inference_kernels_and_default_batch_size_keep_the_latent(monkeypatch):
    """The inference-only kernels give bitwise the latent and activations of the autograd kernels; the default
    minibatch of the latent is INFERENCE_BATCH_SIZE, with the same latent as scvi-tools' 128 within rounding."""
    from scvi_networkvi.model import _outputs

    scvi.settings.seed = 0
    mdata = md.read_h5mu(CITE)
    nvi.NETWORKVI.setup_mudata(mdata, batch_key="batch", modalities=CITE_MODS)
    model = nvi.NETWORKVI(mdata, **GO_KW)
    model.train(max_epochs=2, accelerator="cpu", enable_progress_bar=False)
    assert _set_eval_kernels(model, False) >= 8
    before = model.get_latent_representation(batch_size=128)
    before_rna = model.get_latent_representation(batch_size=128, modality="rna")
    before_acts = model.get_activations().modalities["rna"].terms
    _set_eval_kernels(model, True)
    from scvi_networkvi.nn import _block_sparse, _two_path

    calls = {"block": 0, "gene": 0}
    for module, name, key in (
        (_block_sparse, "block_csr_forward_eval", "block"),
        (_two_path, "two_path_relu_eval", "gene"),
    ):
        original = getattr(module, name)
        monkeypatch.setattr(module, name, lambda *a, f=original, k=key: calls.__setitem__(k, calls[k] + 1) or f(*a))
    assert np.array_equal(model.get_latent_representation(batch_size=128), before)
    # the block kernel ran (the test data's gene layers read several features per gene: the gene-layer kernel's
    # equality is checked in tests/test_two_path_eval.py)
    assert calls["block"] > 0
    assert np.array_equal(model.get_latent_representation(batch_size=128, modality="rna"), before_rna)
    assert np.array_equal(model.get_activations().modalities["rna"].terms, before_acts)
    sizes = []
    make = model._make_data_loader
    monkeypatch.setattr(model, "_make_data_loader", lambda **kw: sizes.append(kw["batch_size"]) or make(**kw))
    default = model.get_latent_representation()
    default_rna = model.get_latent_representation(modality="rna")
    assert sizes == [_outputs.INFERENCE_BATCH_SIZE] * 2 and _outputs.INFERENCE_BATCH_SIZE == 256
    np.testing.assert_allclose(default, before, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(default_rna, before_rna, rtol=1e-5, atol=1e-6)


def test_gene_count_advice_above_the_documented_threshold_only():
    limit = _train.HVG_ADVICE_GENES
    assert _train.gene_count_advice(limit) is None
    assert _train.gene_count_advice(limit + 1, "dense") is None
    message = _train.gene_count_advice(limit + 1)
    assert message is not None and f"{limit + 1} genes" in message and "highly_variable_genes" in message


@pytest.mark.parametrize("limit, fires", [(10_000, False), (500, True)])
def test_train_logs_the_advice_once_above_the_threshold(monkeypatch, caplog, limit, fires):
    monkeypatch.setattr(_train, "HVG_ADVICE_GENES", limit)  # the test data has 1000 genes
    mdata = md.read_h5mu(CITE)
    with caplog.at_level(logging.INFO, logger="scvi_networkvi"):
        nvi.tl.train(
            mdata,
            batch_key="batch",
            modalities={"rna_layer": "rna", "protein_layer": "adt"},
            **GO_KW,
            max_epochs=1,
            train_kwargs={"accelerator": "cpu", "enable_progress_bar": False},
        )
    advice = [r for r in caplog.records if "highly_variable_genes" in r.getMessage()]
    assert len(advice) == int(fires)
    if fires:
        assert advice[0].levelno == logging.INFO and "1000 genes" in advice[0].getMessage()


def test_inference_path_prints_no_torch_notice():
    # torch warns once per process that sparse CSR support is in beta: a fresh interpreter, warnings as errors
    code = (
        "import numpy as np, torch\n"
        "from scvi_networkvi.nn._block_sparse import BlockSparseLinear\n"
        "pairs = np.argwhere(np.random.default_rng(1).random((200, 200)) < 0.03).T\n"
        "layer = BlockSparseLinear(np.full(200, 3), np.full(200, 3), pairs, dense_limit=1 << 30)\n"
        "layer.inference_csr = True\n"
        "with torch.no_grad():\n"
        "    layer.forward_t(torch.rand(layer.n_in, 11))\n"
    )
    result = subprocess.run([sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
