"""Index plans of the block kernel of :class:`~scvi_networkvi.nn.BlockSparseLinear`.

A plan lists, for one connection group (one block shape), the "major" blocks it writes (output blocks in the forward
plan, input blocks in the backward plan) in buckets: all major blocks of a bucket are computed by one gather and one
batched matmul. Blocks are bucketed by their number ``k`` of connections rounded up to a geometric grid
(:func:`bucket_size`), the missing connections padded with a zero weight: a plan has at most
``BUCKETS_PER_OCTAVE * ceil(log2(max k)) + 1`` buckets (+1 for an in-place self-loop bucket), however many GO terms
and distinct ``k`` there are. Bucketing by the exact ``k`` issued ~1,500 gathers and ~630 matmuls per training step
with the full human GO annotations at depth 4, one per distinct ``k``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import torch

#: Grid sizes per doubling of ``k``: 1 gives powers of two (up to 2x padding, ~1.4x measured on the full human GO
#: levels), 2 adds 1.5x the powers of two (1, 2, 3, 4, 6, 8, 12, ...: ~1.15x padding, twice the buckets); 0 buckets
#: by the exact ``k`` (the earlier kernel). A GPU step costs what it launches; a CPU step the bytes it moves, and there
#: the grid costs nothing once the buckets run in cache-sized runs (first GO level of the full human annotations,
#: one thread, 128 cells, same process: 64 ms per forward and backward with the grid and with exact buckets).
BUCKETS_PER_OCTAVE = 2


@dataclass(frozen=True)
class _Bucket:
    """Major blocks of one connection group with ``k`` connection slots each, as slices of the index buffers.

    ``gather``, ``place`` and ``edges`` slice the plan's concatenated buffers of rows to gather (the ``k`` minor
    blocks of each major block), rows to write (the major blocks) and connection (parameter) indices; the
    ``*_range`` twins are ``(start, stop)`` when those indices are exactly ``arange(start, stop)`` (a view instead of
    a gather). ``accumulate``: add to rows that another bucket writes, instead of writing them. ``padded``: some
    blocks have fewer than ``k`` connections; their missing slots gather the block's first minor block again and
    index the zero row appended after the group's parameters (connection index ``e``, the group's size).
    ``twins``: 2 when every output block ``o`` of the group has a twin ``o + h`` with the same inputs (the two paths
    of a GO level): a forward bucket then writes both blocks from one gather (connections laid out ``(blocks, 2,
    k)``), a backward bucket gathers both blocks' gradient rows per slot (``(blocks, k, 2)``). ``read`` (backward
    plans): the input rows of the major blocks, for the weight gradient (the rows written are those of the input
    gradient, which may be compacted). ``per_block``: rows gathered, rows written, connections and rows read per
    block (for cutting the bucket into runs).
    """

    k: int
    n_blocks: int
    gather: slice
    place: slice
    edges: slice
    gather_range: tuple[int, int] | None
    place_range: tuple[int, int] | None
    edges_range: tuple[int, int] | None
    accumulate: bool
    padded: bool = False
    twins: int = 1
    per_block: tuple[int, ...] = (0, 0, 0, 0)
    read: slice = field(default_factory=lambda: slice(0, 0))  # slices are unhashable before Python 3.12
    read_range: tuple[int, int] | None = None


def bucket_size(k: np.ndarray, per_octave: int = BUCKETS_PER_OCTAVE) -> np.ndarray:
    """The smallest grid size at least ``k`` (``k >= 1``): powers of two, with ``per_octave=2`` also ``3 * 2**j``."""
    k = np.asarray(k, dtype=np.int64)
    if per_octave == 0:  # exact sizes (benchmarks)
        return k
    power = np.left_shift(1, np.ceil(np.log2(np.maximum(k, 1))).astype(np.int64))
    if per_octave == 1:
        return power
    if per_octave != 2:
        raise ValueError(f"per_octave must be 1 or 2, got {per_octave}.")
    three_quarters = 3 * power // 4
    return np.where((power >= 4) & (k <= three_quarters), three_quarters, power)


@dataclass(frozen=True)
class KernelPlan:
    """The kernel groups' forward and backward plans (one bucket list per group) and their index tensors.

    ``index`` holds the concatenated buffers ``fg``, ``fp``, ``fe`` (forward: rows to gather, rows to write,
    connections) and ``bg``, ``bp``, ``be`` (backward) that the buckets slice; ``fwd_init`` / ``bwd_init`` say how
    each pass's output starts (:func:`init_mode`). The input comes as row blocks ("parts"): group ``g`` reads part
    ``part_of[g]`` only, and its rows are indexed within that part; the input gradient of part ``k`` has
    ``grad_rows[k]`` rows, which are the rows ``sparse_rows`` of part 0 when its gradient is returned sparse.
    ``bwd_init == "rest"``: the backward buckets write their rows once each, and only the ``unwritten`` others are
    zeroed (the first GO level: gene nodes that feed only a dense group), instead of zero-filling the whole gradient.
    """

    fwd: list[list[_Bucket]]
    bwd: list[list[_Bucket]]
    index: dict[str, torch.Tensor]
    fwd_init: str
    bwd_init: str
    part_of: list[int]
    grad_rows: list[int]
    sparse_rows: torch.Tensor | None = None
    unwritten: torch.Tensor | None = None


def build_plan(
    shapes: list[tuple[int, int]],
    sources: list[np.ndarray],
    targets: list[np.ndarray],
    in_offsets: np.ndarray,
    out_offsets: np.ndarray,
    n_out: int,
    per_octave: int,
    device: torch.device,
    bounds: np.ndarray,
    sparse_first: bool = False,
) -> KernelPlan | None:
    """Plan the kernel groups (block shape ``(b_in, b_out)``, connections ``sources`` -> ``targets`` each).

    ``bounds``: the first input row of every part, then the number of input rows. ``None`` when a group reads more
    than one part. ``sparse_first``: the gradient of part 0 holds only the rows of the input blocks read (with
    several parts: a GO level above the first, reading a few of the many gene nodes). With one kernel group each
    row is written by one bucket (bias folded in) and only the buckets added after the self-loop bucket accumulate;
    with several groups every bucket accumulates.
    """
    layout = part_layout(shapes, sources, in_offsets, bounds, sparse_first)
    if layout is None:
        return None
    part_of, grad_rows, grad_offsets, sparse_rows = layout
    sparse_rows = None if sparse_rows is None else sparse_rows.to(device)
    fwd, bwd = [], []
    buffers = {name: [] for name in ("fg", "fp", "fe", "bg", "bp", "be", "bx")}
    several = len(shapes) > 1
    for (b_in, b_out), s, d, part, offsets in zip(shapes, sources, targets, part_of, grad_offsets, strict=True):
        twins = _twin_partners(s, d, len(out_offsets))
        # Forward: output blocks by (padded) number of inputs; gather input rows, write output rows.
        names, local = ("fg", "fp", "fe"), in_offsets - bounds[part]
        fwd.append(
            plan_buckets(d, s, out_offsets, b_out, local, b_in, n_out, several, buffers, names, per_octave, twins)
        )
        # Backward (transposed map): input blocks by (padded) number of outputs; gather output-gradient rows.
        names, rows = ("bg", "bp", "be", "bx"), grad_rows[part]
        twins = None if twins is None else (*twins, "minor")
        bwd.append(
            plan_buckets(
                s, d, offsets, b_in, out_offsets, b_out, rows, several, buffers, names, per_octave, twins, local
            )
        )
    index = {
        name: torch.as_tensor(np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64), device=device)
        for name, parts in buffers.items()
    }
    bwd_init, unwritten = init_mode(bwd, grad_rows[0]) if len(bounds) == 2 else "fill", None
    if bwd_init == "fill" and len(bounds) == 2 and not any(b.accumulate for buckets in bwd for b in buckets):
        written = np.concatenate([np.zeros(0, dtype=np.int64), *buffers["bp"]])
        unwritten = torch.as_tensor(np.setdiff1d(np.arange(grad_rows[0]), written), device=device)
        bwd_init = "rest"
    fwd_init = init_mode(fwd, n_out)
    return KernelPlan(fwd, bwd, index, fwd_init, bwd_init, part_of, grad_rows, sparse_rows, unwritten)


def part_layout(
    shapes: list[tuple[int, int]],
    sources: list[np.ndarray],
    in_offsets: np.ndarray,
    bounds: np.ndarray,
    sparse_first: bool,
) -> tuple[list[int], list[int], list[np.ndarray], torch.Tensor | None] | None:
    """Where each group's input blocks and their gradient rows lie when the input comes as row blocks ("parts").

    ``bounds``: the first input row of every part, then the number of input rows. Returns ``(part_of, grad_rows,
    grad_offsets, sparse_rows)``: the part each group reads, the gradient rows of every part, each group's
    gradient-row offset of every input block, and (``sparse_first`` with several parts) the rows of part 0 whose
    gradient is kept, compacted, or ``None``; ``None`` when a group reads rows of several parts.
    """
    in_sizes = np.diff(np.append(in_offsets, bounds[-1]))
    part_of = []
    for (b_in, _), s in zip(shapes, sources, strict=True):
        first, last = (int(in_offsets[s].min()), int(in_offsets[s].max()) + b_in) if len(s) else (0, 0)
        part = int(np.searchsorted(bounds, first, side="right")) - 1
        if part + 1 >= len(bounds) or last > bounds[part + 1]:
            return None
        part_of.append(part)
    grad_rows = [int(b) for b in np.diff(bounds)]
    grad_offsets = [in_offsets - bounds[part] for part in part_of]
    sparse_rows = None
    if sparse_first and len(bounds) > 2 and 0 in part_of:
        touched = np.unique(np.concatenate([s for s, part in zip(sources, part_of, strict=True) if part == 0]))
        compact = np.zeros(len(in_offsets), dtype=np.int64)
        compact[touched] = np.cumsum(in_sizes[touched]) - in_sizes[touched]
        grad_offsets = [compact if part == 0 else offsets for part, offsets in zip(part_of, grad_offsets, strict=True)]
        sparse_rows = torch.as_tensor(_expand(in_offsets[touched], in_sizes[touched]))
        grad_rows[0] = len(sparse_rows)
    return part_of, grad_rows, grad_offsets, sparse_rows


def plan_buckets(
    major: np.ndarray,
    minor: np.ndarray,
    major_offsets: np.ndarray,
    major_size: int,
    minor_offsets: np.ndarray,
    minor_size: int,
    n_major_rows: int,
    accumulate: bool,
    buffers: dict[str, list[np.ndarray]],
    names: tuple[str, ...],
    per_octave: int = BUCKETS_PER_OCTAVE,
    twins: tuple | None = None,
    read_offsets: np.ndarray | None = None,
) -> list[_Bucket]:
    """Bucket the ``major`` blocks of one connection group by their number of connections, on the grid.

    Appends to ``buffers[names]`` the rows to gather (the ``minor`` blocks' rows, ``k`` blocks per major block), the
    rows to write (the major blocks' rows) and the connection indices (parameter order within the group; padded
    slots index ``len(major)``), and returns the buckets. When the group's self loops (same block, same rows on both
    sides) cover all ``n_major_rows`` rows, they come first as a bucket that works in place, and the other
    connections accumulate onto it. ``twins``: ``(partner, shift)`` from :func:`_twin_partners` with the twins on
    the major side (forward), or ``(partner, shift, "minor")`` (backward); only the first twin's connections are
    bucketed, each bucket computing both.
    """
    buckets: list[_Bucket] = []
    starts = [sum(len(a) for a in buffers[name]) for name in names]
    n_edges = len(major)
    partner, shift, side = (None, 0, "") if twins is None else (*twins[:2], twins[2] if len(twins) > 2 else "major")
    m = 1 if partner is None else 2

    def add(k: int, edges: np.ndarray, blocks: np.ndarray, accumulate: bool) -> None:
        # padded slots (-1): the block's first connection's minor rows (any finite rows do: their weight is zero)
        slots = np.where(edges >= 0, edges, edges[:, :1]).reshape(-1)
        minor_rows = minor_offsets[minor[slots]]
        major_rows = major_offsets[blocks]
        real = np.where(edges >= 0, edges, n_edges)
        if side == "major":  # both twins of every block from one gather: connections (blocks, 2, k)
            major_rows = np.stack([major_rows, major_offsets[blocks + shift]], axis=1).reshape(-1)
            real = np.stack([real, np.where(edges >= 0, partner[np.maximum(edges, 0)], n_edges)], axis=1)
        elif side == "minor":  # both twins' gradient rows per slot: connections (blocks, k, 2)
            minor_rows = np.stack([minor_rows, minor_offsets[minor[slots] + shift]], axis=1).reshape(-1)
            real = np.stack([real, np.where(edges >= 0, partner[np.maximum(edges, 0)], n_edges)], axis=2)
        gather = _expand(minor_rows, np.full(minor_rows.size, minor_size))
        place = _expand(major_rows, np.full(major_rows.size, major_size))
        parts = [gather, place, real.reshape(-1)]
        if read_offsets is not None:
            parts.append(_expand(read_offsets[blocks], np.full(len(blocks), major_size)))
        slices = []
        for name, part, start in zip(names, parts, starts, strict=True):
            slices.append(slice(start, start + len(part)))
            buffers[name].append(part)
        starts[:] = [piece.stop for piece in slices]
        ranges = [_as_range(part) for part in parts]
        per_block = tuple(len(part) // len(blocks) for part in parts)
        read = {"read": slices[3], "read_range": ranges[3]} if read_offsets is not None else {}
        padded = bool((edges < 0).any())
        buckets.append(_Bucket(int(k), len(blocks), *slices[:3], *ranges[:3], accumulate, padded, m, per_block, **read))

    rest = np.arange(n_edges) if partner is None else np.flatnonzero(partner >= 0)
    if not accumulate and major_size == minor_size and partner is None:
        self_loops = np.flatnonzero((major == minor) & (major_offsets[major] == minor_offsets[minor]))
        self_loops = self_loops[np.argsort(major[self_loops], kind="stable")]
        place = _expand(major_offsets[major[self_loops]], np.full(len(self_loops), major_size))
        if len(self_loops) and _as_range(place) == (0, n_major_rows):
            add(1, self_loops[:, None], major[self_loops], False)
            rest = np.setdiff1d(rest, self_loops)
            accumulate = True
    order = rest[np.lexsort((rest, major[rest]))]  # by major block, then parameter order
    blocks, first, counts = np.unique(major[order], return_index=True, return_counts=True)
    sizes = bucket_size(counts, per_octave)
    for k in np.unique(sizes):
        sel = np.flatnonzero(sizes == k)
        slot = np.arange(k)
        position = np.minimum(first[sel][:, None] + slot, len(order) - 1)
        edges = np.where(slot < counts[sel][:, None], order[position], -1)
        add(int(k), edges, blocks[sel], accumulate)
    return buckets


def _twin_partners(src: np.ndarray, dst: np.ndarray, n_out_blocks: int) -> tuple[np.ndarray, int] | None:
    """``(partner, h)`` when output blocks ``o`` and ``o + h`` (``h`` = half the blocks) read the same inputs.

    ``partner[e]`` is the connection ``src[e] -> dst[e] + h`` for every connection into the first half, ``-1`` for
    the others. The two paths of a GO level (:class:`~scvi_networkvi.nn._wired_encoder._TwoPathBlockLayer`) stack
    their blocks so; computed as twins, their shared inputs are gathered once (half the rows gathered).
    """
    h = n_out_blocks // 2
    first = dst < h
    if n_out_blocks % 2 or not len(dst) or 2 * int(first.sum()) != len(dst):
        return None
    one, two = np.flatnonzero(first), np.flatnonzero(~first)
    one, two = one[np.lexsort((src[one], dst[one]))], two[np.lexsort((src[two], dst[two]))]
    if not (np.array_equal(src[one], src[two]) and np.array_equal(dst[one], dst[two] - h)):
        return None
    partner = np.full(len(dst), -1, dtype=np.int64)
    partner[one] = two
    return partner, h


def init_mode(plans: list[list[_Bucket]], n_rows: int) -> str:
    """How a kernel plan's output starts.

    ``"empty"``: its buckets write every row (the first one all of them, in order, or each one its own rows);
    ``"fill"``: bias or zeros, then the buckets write or add.
    """
    if len(plans) != 1 or not plans[0]:
        return "fill"
    buckets = plans[0]
    if not buckets[0].accumulate and buckets[0].place_range == (0, n_rows):
        return "empty"
    written = sum(b.place.stop - b.place.start for b in buckets)
    if not any(b.accumulate for b in buckets) and written == n_rows:
        return "empty"
    return "fill"


def _as_range(index: np.ndarray) -> tuple[int, int] | None:
    """``(start, stop)`` when ``index`` is ``arange(start, stop)`` (rows that can be sliced instead of gathered)."""
    if len(index) and index[-1] - index[0] + 1 == len(index) and np.all(np.diff(index) == 1):
        return int(index[0]), int(index[-1]) + 1
    return None


def _expand(offsets: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Concatenate ``arange(offset, offset + size)`` over pairs, vectorised."""
    sizes = np.asarray(sizes, dtype=np.int64)
    if sizes.size == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.repeat(np.asarray(offsets, dtype=np.int64), sizes)
    within = np.arange(int(sizes.sum())) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return starts + within


def split_buckets(buckets: list[_Bucket], row_bytes: int, budget: int) -> list[_Bucket]:
    """``buckets`` cut into runs of whole major blocks whose gathered rows take at most ``budget`` bytes each.

    On CPU a gather of many megabytes runs at main-memory speed and its result is cold when the matmul reads it;
    gathered in cache-sized runs, each consumed at once, the same work ran 4x faster (one thread, 8000 blocks of
    40 rows x 128 cells: 197 -> 49 ms). ``row_bytes``: bytes of one gathered row (cells x item size). A block
    larger than the budget is a run of its own.
    """
    out = []
    for bucket in buckets:
        per_block = bucket.per_block[0] * row_bytes
        step = max(1, budget // max(per_block, 1))
        if step >= bucket.n_blocks:
            out.append(bucket)
            continue
        for first in range(0, bucket.n_blocks, step):
            count = min(step, bucket.n_blocks - first)
            cuts = (
                (bucket.gather, bucket.gather_range, bucket.per_block[0]),
                (bucket.place, bucket.place_range, bucket.per_block[1]),
                (bucket.edges, bucket.edges_range, bucket.per_block[2]),
                (bucket.read, bucket.read_range, bucket.per_block[3] if len(bucket.per_block) > 3 else 0),
            )
            slices, ranges = [], []
            for whole, span, per in cuts:
                start = whole.start + first * per
                slices.append(slice(start, start + count * per))
                ranges.append(None if span is None else (span[0] + first * per, span[0] + (first + count) * per))
            names = ("gather", "place", "edges", "read")
            cut = dict(zip(names, slices, strict=True)) | {f"{n}_range": r for n, r in zip(names, ranges, strict=True)}
            out.append(replace(bucket, n_blocks=count, **cut))
    return out
