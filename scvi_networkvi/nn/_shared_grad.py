"""One gradient buffer for the gene-node rows that several GO levels read in one forward pass (CPU kernel).

Every GO level reads ``[gene nodes | deeper terms]``; the first reads most gene rows, the levels above it a few more
(full human annotations, depth 3: 18,305 of the 20,000 rows at the second level). Handing autograd one gradient per
level makes it add them: sparse ones (:attr:`BlockSparseLinear.sparse_first_part_grad`) cost a sparse sum and a
zero-filled copy, dense ones a zero-filled full-size tensor each. Here the levels on the CPU kernel
(:class:`._block_csr.BlockCSRFunction`) write their gene-row gradients into one buffer instead: the first level whose
backward pass runs writes it (zeroing only the rows it does not reach), the others add to it, and the level that ran
first in the forward pass, whose backward pass runs last, hands it to autograd; the others return no gradient for
those rows. Same sum in another order (float rounding), deterministic.

Why the last backward is the owner's: every level above the owner reads the owner's output (directly or through the
levels between), so autograd runs their backward passes before the owner's. :class:`~scvi_networkvi.nn.GONetwork`
creates one :class:`SharedPartGrad` per forward pass and passes it to its levels; nothing else does.

Speed it buys (full human annotations, GO depth 3, 128 cells, one thread, module steps alternated in one process):
the sparse sums and their zero-fills, about 2 ms of an 85 ms training step (medians 85.9 -> 83.5 ms).
"""

from __future__ import annotations

import torch


class SharedPartGrad:
    """The gene rows' gradient of one forward pass, shared by the GO levels that read them on the CPU kernel.

    A level joins in its forward pass (:meth:`join`) with the tensor it reads as its first input part; the first to
    join owns the buffer. In the backward pass each joined level takes the buffer (:meth:`take`), writes or adds its
    rows, and the owner hands it over (:meth:`hand_over`). The buffer belongs to one backward pass (autograd's graph
    task): a pass that stopped before the owner's (``torch.autograd.grad`` of an upper level's output) leaves a partial
    buffer, which another pass through the same graph (``retain_graph``) does not add to.
    """

    def __init__(self) -> None:
        self._source: torch.Tensor | None = None
        self._members = 0
        self._buffer: torch.Tensor | None = None
        self._taken: set[int] = set()
        self._task = -1

    def join(self, part: torch.Tensor) -> int | None:
        """Register a level reading ``part`` as its first input part; its token (0: the owner), or ``None``.

        ``None`` (the level returns its own gradient) when ``part`` is not the tensor the first member reads, or
        needs no gradient.
        """
        if not part.requires_grad or (self._source is not None and part is not self._source):
            return None
        self._source = part
        self._members += 1
        return self._members - 1

    def take(self, token: int, rows: int, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """The buffer (``rows`` x ``like``'s columns) for member ``token``, and whether it is new (to be written)."""
        task = _graph_task()
        fresh = self._buffer is None or task != self._task or token in self._taken
        if fresh:
            self._buffer = like.new_empty(rows, like.shape[1])
            self._taken, self._task = set(), task
        self._taken.add(token)
        return self._buffer, fresh

    def hand_over(self) -> torch.Tensor | None:
        """The owner's last step: the summed gradient (``None`` if no member wrote one in this pass), and a reset."""
        buffer, self._buffer, self._taken = self._buffer, None, set()
        return buffer if buffer is not None and self._task == _graph_task() else None


def _graph_task() -> int:
    """Autograd's id of the running backward pass (as ``torch.utils.checkpoint`` reads it); ``-1`` outside one."""
    return torch._C._current_graph_task_id()
