"""The fused CPU kernel for the gene layer + first interaction layer equals the two torch layers it replaces."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from scvi_networkvi.nn import WiredEncoder
from scvi_networkvi.nn._fused_gene_interaction import EdgePlan, FusedGeneInteraction
from scvi_networkvi.nn._fused_gene_layer import GenePlan

GENES = [f"g{i}" for i in range(1, 11)]  # the tiny GAF's genes


@pytest.fixture
def wiring(tiny_wiring):
    """One feature per gene (as RNA), with gene-gene edges beside the self loops."""
    torch.manual_seed(0)
    wiring = tiny_wiring(GENES)
    assert wiring.gene_edges.shape[1] > wiring.n_genes
    return wiring


def run(encoder, x, cats, fuse: bool, seed: int = 5):
    encoder.fuse_gene_layers = fuse
    encoder.zero_grad()
    torch.manual_seed(seed)
    hidden = encoder.hidden(x, *cats)
    g = torch.linspace(-1.0, 1.0, hidden.numel(), dtype=hidden.dtype).view_as(hidden)
    (hidden * g).sum().backward()
    return hidden.detach(), {n: p.grad.clone() for n, p in encoder.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("n_interaction_layers", [1, 2])
@pytest.mark.parametrize("extra_ids", [[], ["['g1', 'g8']", None]], ids=["one-feature-per-gene", "several-features"])
def test_fused_kernel_equals_the_torch_layers(tiny_wiring, train, n_interaction_layers, extra_ids, monkeypatch):
    """Same output and parameter gradients (float64), same dropout mask for the same seed, in training and eval; with
    one feature per gene (RNA) and with genes reading several features (a feature mapped to g1 and g8)."""
    torch.manual_seed(0)
    wiring = tiny_wiring([*GENES, *extra_ids])
    calls = []
    apply = FusedGeneInteraction.apply
    monkeypatch.setattr(FusedGeneInteraction, "apply", lambda *a: calls.append(1) or apply(*a))
    encoder = WiredEncoder(
        wiring,
        n_latent=3,
        gene_layer="interaction",
        n_interaction_layers=n_interaction_layers,
        dropout_rate=0.3,
        n_cat_list=[2],
        inject_covariates=True,
    ).double()
    encoder.train(train)
    x = torch.rand(11, wiring.n_features, dtype=torch.float64) * 4
    cats = (torch.randint(0, 2, (11, 1)),)
    reference, reference_grads = run(encoder, x, cats, fuse=False)
    assert not calls
    fused, fused_grads = run(encoder, x, cats, fuse=True)
    assert len(calls) == 1
    torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)
    assert fused_grads.keys() == reference_grads.keys()
    assert any(name.startswith("interaction_layers.0.") for name in fused_grads)
    for name, grad in reference_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-10, atol=1e-12, msg=name)
    if train:  # dropout really acted (a different seed gives another output)
        other, _ = run(encoder, x, cats, fuse=True, seed=6)
        assert not torch.allclose(other, fused)


def random_problem(seed, n_genes=6, size=3, n_cells=7, n_features=8, dropout=0.0, features_per_gene=(1,)):
    """A gene layer (features per gene drawn from ``features_per_gene``, some features unused) and random edges, not
    all genes self-looped. Returns the inputs of FusedGeneInteraction after ``x``: genes, w1, b1, w2, b2, mask."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    pairs = {(int(a), int(b)) for a, b in rng.integers(0, n_genes, (2, 2 * n_genes)).T}
    pairs |= {(g, g) for g in range(0, n_genes, 2)}
    connections = np.array(sorted(pairs)).T
    counts = rng.choice(features_per_gene, n_genes)
    feature_gene = (
        np.array(
            sorted({(int(f), g) for g, k in enumerate(counts) for f in rng.choice(n_features, k, replace=False)}),
            dtype=np.int64,
        )
        .reshape(-1, 2)
        .T
    )
    # the layer's two-path connections: (feature, gene) then (feature, gene + n_genes), in parameter order
    layer_connections = np.unique(
        np.concatenate([feature_gene, feature_gene + np.array([[0], [n_genes]])], axis=1), axis=1
    )
    genes = GenePlan.from_connections(layer_connections, n_genes)
    double = {"dtype": torch.float64}
    x = torch.rand(n_features, n_cells, **double) * 3 - 1
    n_entries = len(genes.src)
    params = [
        torch.randn(n_entries, size, **double, requires_grad=True),
        torch.randn(n_genes, size, **double, requires_grad=True),
        torch.randn(n_entries, size, **double, requires_grad=True),
        torch.randn(n_genes, size, **double, requires_grad=True),
    ]
    weight = torch.randn(connections.shape[1], size, size, **double, requires_grad=True)
    bias = torch.randn(n_genes * size, **double, requires_grad=True)
    mask = (rng.random((n_genes, size, n_cells)) >= dropout).astype(np.uint8) if dropout else None
    return x, genes, params, weight, bias, connections, mask


def plain_gene_layer(x, genes, params, mask, scale):
    """The gene layer written plainly: ``(genes, size, n)``."""
    w1, b1, w2, b2 = params
    n_genes, size = b1.shape
    n = x.shape[1]
    h = []
    for g in range(n_genes):
        entries = range(genes.ptr[g], genes.ptr[g + 1])
        path1 = b1[g][:, None] + sum((w1[p][:, None] * x[genes.src[p]] for p in entries), torch.zeros(size, n))
        path2 = b2[g][:, None] + sum((w2[p][:, None] * x[genes.src[p]] for p in entries), torch.zeros(size, n))
        h.append(torch.relu(path1) + path2)
    h = torch.stack(h)
    return h if mask is None else h * torch.as_tensor(mask, dtype=h.dtype) * scale


def reference_layers(x, genes, params, weight, bias, connections, mask, scale):
    """The two layers written plainly (row blocks of size neurons per gene)."""
    h = plain_gene_layer(x, genes, params, mask, scale)
    n_genes, size, n = h.shape
    pre = bias.view(n_genes, size, 1).expand(n_genes, size, n)
    contributions = [torch.zeros(size, n, dtype=h.dtype) for _ in range(n_genes)]
    for e, (s, d) in enumerate(connections.T):
        contributions[d] = contributions[d] + weight[e].T @ h[s]
    pre = pre + torch.stack(contributions)
    return (torch.relu(pre) + h).reshape(n_genes * size, n)


@pytest.mark.parametrize("dropout", [0.0, 0.4])
@pytest.mark.parametrize("features_per_gene", [(1,), (0, 1, 3)])
def test_fused_kernel_gradients(dropout, features_per_gene):
    """Numerical gradients (float64) and a plain reference, with and without a dropout mask, for one feature per gene
    (RNA) and for none, one or several (ATAC peaks)."""
    x, genes, params, weight, bias, connections, mask = random_problem(
        1, dropout=dropout, features_per_gene=features_per_gene
    )
    assert (np.diff(genes.ptr) == 1).all() == (features_per_gene == (1,))
    scale = 1.0 / (1.0 - dropout)
    plan = EdgePlan.from_connections(connections, len(genes.ptr) - 1)

    def fused(w1, b1, w2, b2, weight, bias):
        return FusedGeneInteraction.apply(x, genes, w1, b1, w2, b2, mask, scale, weight, bias, plan)

    inputs = (*params, weight, bias)
    assert torch.autograd.gradcheck(fused, inputs)
    out = fused(*inputs)
    expected = reference_layers(x, genes, params, weight, bias, connections, mask, scale)
    torch.testing.assert_close(out, expected)
    g = torch.randn_like(out)
    for a, b in zip(torch.autograd.grad(out, inputs, g), torch.autograd.grad(expected, inputs, g), strict=True):
        torch.testing.assert_close(a, b)


def test_gene_plan_groups_each_genes_features_and_pairs_the_paths():
    # features 0-3, genes 0-2 (gene 1 reads features 0 and 3, gene 2 none); path-2 copies are blocks 3-5
    feature_gene = np.array([[0, 0, 1, 3], [0, 1, 0, 1]])
    connections = np.unique(np.concatenate([feature_gene, feature_gene + np.array([[0], [3]])], axis=1), axis=1)
    plan = GenePlan.from_connections(connections, 3)
    assert plan.ptr.tolist() == [0, 2, 4, 4]
    assert plan.src.tolist() == [0, 1, 0, 3]
    assert connections[1, plan.edge1.numpy()].tolist() == [0, 0, 1, 1]
    assert (connections[:, plan.edge2.numpy()] - np.array([[0], [3]])).tolist() == connections[
        :, plan.edge1.numpy()
    ].tolist()
    different = connections.copy()
    different[0, -1] = 2  # the second path of gene 1 reads feature 2 instead of 3
    assert GenePlan.from_connections(different, 3) is None


def test_fused_kernel_is_deterministic_and_skips_frozen_parameters():
    x, genes, params, weight, bias, connections, _ = random_problem(2, features_per_gene=(1, 2))
    plan = EdgePlan.from_connections(connections, len(genes.ptr) - 1)
    params = [p.float().detach().requires_grad_(k % 2 == 0) for k, p in enumerate(params)]
    weight = weight.float().detach().requires_grad_()
    bias = bias.float().detach()  # frozen
    x = x.float()
    results = []
    for _ in range(2):
        out = FusedGeneInteraction.apply(x, genes, *params, None, 1.0, weight, bias, plan)
        grads = torch.autograd.grad(out.square().sum(), [params[0], params[2], weight])
        results.append((out, *grads))
    for a, b in zip(*results, strict=True):
        assert torch.equal(a, b)
    out = FusedGeneInteraction.apply(x, genes, *params, None, 1.0, weight, bias, plan)
    out.sum().backward()
    assert params[1].grad is None and params[3].grad is None and bias.grad is None
    assert weight.grad is not None and params[0].grad is not None


def test_edge_plan_lists_each_connection_once_per_direction():
    connections = np.array([[0, 0, 1, 2, 2], [0, 2, 2, 1, 2]])
    plan = EdgePlan.from_connections(connections, 4)
    assert plan.in_ptr.tolist() == [0, 1, 2, 5, 5]  # gene 3 has no inputs
    assert plan.in_src.tolist() == [0, 2, 0, 1, 2]
    assert connections[:, plan.in_edge].tolist() == [plan.in_src.tolist(), [0, 1, 2, 2, 2]]
    assert plan.out_ptr.tolist() == [0, 2, 3, 5, 5]
    assert connections[:, plan.out_edge].tolist() == [[0, 0, 1, 2, 2], plan.out_dst.tolist()]


def test_fused_kernel_applies_only_where_it_is_exact(wiring, tiny_wiring):
    encoder = WiredEncoder(wiring, n_latent=2, gene_layer="interaction")
    gene_layer, interaction = encoder.gene_layer, encoder.interaction_layers[0]
    xt = torch.rand(wiring.n_features, 4)
    assert gene_layer.forward_t_with(xt, interaction) is not None
    assert gene_layer.forward_t_with(xt.clone().requires_grad_(), interaction) is None  # input gradient: torch
    assert gene_layer.forward_t_with(xt.double(), interaction) is None  # dtype differs from the parameters
    leaky = WiredEncoder(wiring, n_latent=2, gene_layer="interaction", activation="leaky_relu")
    assert leaky.gene_layer.forward_t_with(xt, leaky.interaction_layers[0]) is None
    one_path = WiredEncoder(wiring, n_latent=2, gene_layer="interaction", linear_path=False)
    assert one_path.gene_layer.forward_t_with(xt, one_path.interaction_layers[0]) is None
    several = tiny_wiring([*GENES, "['g1', 'g8']"])  # g1 and g8 read two features each
    multi = WiredEncoder(several, n_latent=2, gene_layer="interaction")
    assert multi.gene_layer.forward_t_with(torch.rand(several.n_features, 4), multi.interaction_layers[0]) is not None


def test_gene_attention_keeps_the_torch_layers(wiring, monkeypatch):
    """Covariate attention sits between the gene layer and the interaction layer: nothing to fuse."""
    monkeypatch.setattr(FusedGeneInteraction, "apply", lambda *a: pytest.fail("fused despite gene attention"))
    encoder = WiredEncoder(
        wiring, n_latent=2, gene_layer="interaction", n_cat_list=[2], covariate_attention="genes"
    ).train()
    q_m, _, _ = encoder(torch.rand(5, wiring.n_features), torch.randint(0, 2, (5, 1)))
    assert q_m.shape == (5, 2)


def test_changing_the_weight_in_place_before_backward_raises():
    x, genes, params, weight, bias, connections, _ = random_problem(4)
    plan = EdgePlan.from_connections(connections, len(genes.ptr) - 1)
    out = FusedGeneInteraction.apply(x, genes, *params, None, 1.0, weight, bias, plan)
    with torch.no_grad():
        weight.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def assert_team_equals_serial(apply, inputs, monkeypatch):
    """``apply(*inputs)`` and its gradients with two torch threads (the team, also for a small problem) are bit for bit
    those of one thread; with OpenMP the forward and backward passes went to the team."""
    from scvi_networkvi.nn import _torch_threads as threads

    runs, team_run = [], threads.run
    monkeypatch.setattr(threads, "run", lambda *a: runs.append(1) or team_run(*a))
    monkeypatch.setattr(threads, "MIN_TEAM_ELEMENTS", 0)  # a small problem, handed to the team all the same
    results = {}
    before = torch.get_num_threads()
    try:
        for n_threads in (2, 1):
            torch.set_num_threads(n_threads)
            out = apply(*inputs)
            g = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
            results[n_threads] = (out, *torch.autograd.grad(out, inputs, g))
    finally:
        torch.set_num_threads(before)
    if "parallel backend: OpenMP" in torch.__config__.parallel_info():
        assert len(runs) == 2  # forward and backward went to the team with two threads, not with one
    for a, b in zip(results[2], results[1], strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("features_per_gene", [(1,), (0, 1, 3)])
def test_torch_threads_give_the_serial_kernels_result_bit_for_bit(dtype, features_per_gene, monkeypatch):
    """Genes are split into chunks for torch's CPU threads; every chunk computes exactly what the serial loop does."""
    x, genes, params, weight, bias, connections, mask = random_problem(
        3, n_genes=60, size=4, n_cells=33, n_features=70, dropout=0.3, features_per_gene=features_per_gene
    )
    plan = EdgePlan.from_connections(connections, len(genes.ptr) - 1)
    inputs = [t.detach().to(dtype).requires_grad_() for t in (*params, weight, bias)]

    def apply(w1, b1, w2, b2, w, b):
        return FusedGeneInteraction.apply(x.to(dtype), genes, w1, b1, w2, b2, mask, 1 / 0.7, w, b, plan)

    assert_team_equals_serial(apply, inputs, monkeypatch)


def test_team_workers_come_from_numbas_disk_cache():
    """Closure variables would change numba's cache key in every process (a recompile of about 1.5 s and one more
    cache file each time): the workers must have none, and a second definition must load the first one's code."""
    from scvi_networkvi.nn import _fused_gene_interaction as fused
    from scvi_networkvi.nn import _keep_mask

    workers = [*fused._team_workers(np.float32), _keep_mask._team_worker(np.uint8)]
    assert all(worker._pyfunc.__closure__ is None for worker in workers)
    fused._team_workers.cache_clear()
    assert all(worker.cache_hits == 1 for worker in fused._team_workers(np.float32))


def test_team_workers_exist_for_float32_and_float64_only():
    from scvi_networkvi.nn import _fused_gene_interaction as fused

    assert fused._team_workers(np.float16) is None  # other float types keep the serial kernels
    assert len(fused._team_workers(np.float64)) == 2
