"""Which genes reach which terms: an annotation incidence OR-ed up a DAG whose edges always point to shallower terms."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def propagate_up(incidence: sp.spmatrix, child: np.ndarray, parent: np.ndarray, depth: np.ndarray) -> sp.csc_matrix:
    """Genes reaching each term directly or through descendants: the incidence (genes x terms) OR-ed up the DAG.

    ``child -> parent`` edges connect deeper terms to shallower ones. Works level by level from the deepest: a
    term's descendants are all deeper, so its column is final when its level is pushed up to the parents. Returns a
    float32 0/1 matrix without explicit zeros.
    """
    matrix = incidence.tocsc().astype(np.float32)
    n = incidence.shape[1]
    for level in sorted(set(depth[child].tolist()), reverse=True):
        sel = depth[child] == level
        up = sp.csr_matrix((np.ones(int(sel.sum()), np.float32), (child[sel], parent[sel])), shape=(n, n))
        matrix = matrix + matrix @ up
        matrix.data[:] = 1.0
    matrix.eliminate_zeros()
    return matrix.tocsc()


def term_reach(gene_term: np.ndarray, term_term: np.ndarray, term_depth: np.ndarray, n_genes: int) -> sp.csc_matrix:
    """``(n_genes, n_terms)`` 0/1 matrix of the genes reaching each term.

    From a wiring's ``(2, k)`` gene -> term and ``(2, m)`` child -> parent connections (see :func:`propagate_up`).
    """
    incidence = sp.csr_matrix(
        (np.ones(gene_term.shape[1], np.float32), (gene_term[0], gene_term[1])), shape=(n_genes, len(term_depth))
    )
    return propagate_up(incidence, term_term[0], term_term[1], term_depth)
