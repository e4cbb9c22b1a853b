"""Field position of an emitter from its aberrations: barycentric coordinates in a grid of aberration vectors.

The PSF models receive aberrations, not positions.  A fast library that interpolates over the
field finds where on the field an emitter's aberration vector lies: among the triangles of a
regular node grid (each cell split along its diagonal; segments on a one-row or one-column
grid) touching the node nearest in aberration space (k-d tree; the four nearest when that
leaves a residual), the one whose plane is
closest to the vector in the least-squares sense, with barycentric weights ``>= -0.1`` (mild
extrapolation at cell edges).  Its residual (distance from that plane, rad RMS of wavefront)
tells whether the emitter belongs to the field.  Every step is element-wise per emitter.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["TriangleLookup"]

_RIDGE = 1e-10  # rad^2: regularises nearly coincident nodes
_INSIDE = -0.1  # smallest barycentric weight accepted
_NEAREST = 4  # nearest nodes whose triangles are tried
_BLOCK_BYTES = 96 * 1024  # bytes of one (rows, candidates, n_vec) float64 temporary


def _candidates(rows: int, cols: int) -> np.ndarray:
    """Per node, the vertex triples ``(n_nodes, 8, 3)`` of the triangles touching it (-1 = none)."""
    idx = np.arange(rows * cols).reshape(rows, cols)
    out = np.full((rows * cols, 8, 3), -1, np.intp)
    for i in range(rows):
        for j in range(cols):
            tris = []
            for ci in (i - 1, i):
                for cj in (j - 1, j):
                    if rows > 1 and cols > 1:
                        if 0 <= ci < rows - 1 and 0 <= cj < cols - 1:
                            a, b = idx[ci, cj], idx[ci, cj + 1]
                            c, d = idx[ci + 1, cj], idx[ci + 1, cj + 1]
                            tris += [(a, b, d), (a, c, d)]
                    elif rows == 1 and ci == i and 0 <= cj < cols - 1:
                        tris.append((idx[0, cj], idx[0, cj + 1], idx[0, cj + 1]))
                    elif cols == 1 and cj == j and 0 <= ci < rows - 1:
                        tris.append((idx[ci, 0], idx[ci + 1, 0], idx[ci + 1, 0]))
            for t, tri in enumerate(tris):
                out[idx[i, j], t] = tri
    return out


class TriangleLookup:
    """Barycentric lookup of aberration vectors in a regular grid of field nodes.

    Parameters
    ----------
    nodes : ndarray, shape (rows * cols, n_vec)
        Aberration vectors of the nodes (rad), row-major over ``grid``.
    grid : (int, int)
        ``(rows, cols)``.
    """

    def __init__(self, nodes: np.ndarray, grid: tuple[int, int]):
        from scipy.spatial import cKDTree

        self.nodes = np.ascontiguousarray(nodes, dtype=np.float64)
        self.cands = _candidates(int(grid[0]), int(grid[1]))
        self.tree: Any = cKDTree(self.nodes)
        # per node, its candidate triangles' corners and Gram matrices (the same numbers for every
        # emitter near that node: computed once here; ~0.5 KiB per node, the edges are not kept)
        cand = self.cands
        self.valid = cand[:, :, 0] >= 0
        c = np.where(cand >= 0, cand, 0)
        nd = self.nodes
        self.corner = c
        self.seg = c[:, :, 1] == c[:, :, 2]
        e1 = nd[c[:, :, 1]] - nd[c[:, :, 0]]
        e2 = np.where(self.seg[:, :, None], 0.0, nd[c[:, :, 2]] - nd[c[:, :, 0]])
        self.g11 = (e1 * e1).sum(-1) + _RIDGE
        self.g22 = (e2 * e2).sum(-1) + _RIDGE
        self.g12 = (e1 * e2).sum(-1)
        self.det = self.g11 * self.g22 - self.g12 * self.g12

    def locate(self, v: np.ndarray, retry_above: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Triangle, barycentric weights and squared residual of each vector.

        The triangles around the nearest node are tried first; a vector whose squared residual
        then exceeds ``retry_above`` tries those around the four nearest (a field whose
        aberrations repeat, or a strongly anisotropic one) and keeps the better.

        Parameters
        ----------
        v : ndarray, shape (N, n_vec)
            Aberration vectors (rad).
        retry_above : float
            Squared residual (rad^2) above which the wider search runs.

        Returns
        -------
        nodes : ndarray (N, 3) int
            Vertex indices (a repeated index carries weight 0).
        weights : ndarray (N, 3) float64
            Barycentric weights (sum 1).
        res2 : ndarray (N,) float64
            Squared RMS wavefront distance (rad^2) from the interpolation ``sum_v weight_v node_v``;
            the nearest node's (weight 1) when no triangle accepts the vector.
        """
        nodes, weights, out = self._locate(v, 1)
        kn = min(_NEAREST, self.nodes.shape[0])
        redo = np.flatnonzero(out > retry_above)
        if kn > 1 and redo.size:
            n2, w2, o2 = self._locate(v[redo], kn)
            better = o2 < out[redo]
            nodes[redo[better]], weights[redo[better]], out[redo[better]] = n2[better], w2[better], o2[better]
        return nodes, weights, out

    def _locate(self, v: np.ndarray, kn: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = v.shape[0]
        # blocks whose (rows, 8 kn, n_vec) float64 temporaries stay below ~96 KiB: larger ones tend
        # to be fresh mmap()s whose page faults cost more than the arithmetic (5.3-6.2 against 2.1 us
        # per emitter on the default whole chip); every step is per emitter, so blocks change no bits
        rows = max(16, _BLOCK_BYTES // (8 * kn * self.nodes.shape[1] * 8))
        if n <= rows:
            return self._locate_block(v, kn)
        nodes, weights, out = np.empty((n, 3), np.intp), np.empty((n, 3)), np.empty(n)
        for s in range(0, n, rows):
            b = slice(s, s + rows)
            nodes[b], weights[b], out[b] = self._locate_block(v[b], kn)
        return nodes, weights, out

    def _locate_block(self, v: np.ndarray, kn: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = v.shape[0]
        if n == 0:
            return np.zeros((0, 3), np.intp), np.zeros((0, 3)), np.zeros(0)
        _, near = self.tree.query(v, k=kn)
        near = np.asarray(near).reshape(n, kn)
        m = 8 * kn
        c = self.corner[near].reshape(n, m, 3)
        seg = self.seg[near].reshape(n, m)
        g11, g22 = self.g11[near].reshape(n, m), self.g22[near].reshape(n, m)
        g12, det = self.g12[near].reshape(n, m), self.det[near].reshape(n, m)
        nd = self.nodes
        n0 = nd[c[:, :, 0]]
        e1 = nd[c[:, :, 1]] - n0
        e2 = np.where(seg[:, :, None], 0.0, nd[c[:, :, 2]] - n0)
        r = v[:, None, :] - n0
        r1 = (e1 * r).sum(-1)
        r2 = (e2 * r).sum(-1)
        l1 = np.where(seg, r1 / g11, (g22 * r1 - g12 * r2) / det)
        l2 = np.where(seg, 0.0, (g11 * r2 - g12 * r1) / det)
        l0 = 1.0 - l1 - l2
        # squared distance from the triangle's plane: |r|^2 minus the part its edges explain
        res2 = np.maximum((r * r).sum(-1) - l1 * r1 - l2 * r2, 0.0)
        ok = self.valid[near].reshape(n, m) & (np.minimum(np.minimum(l0, l1), l2) >= _INSIDE)
        score = np.where(ok, res2, np.inf)
        best = np.argmin(score, axis=1)
        rows = np.arange(n)
        nodes = c[rows, best]
        weights = np.stack([l0[rows, best], l1[rows, best], l2[rows, best]], 1)
        out = score[rows, best]
        bad = ~np.isfinite(out)
        if bad.any():  # outside every triangle: the nearest node alone
            nodes[bad] = near[bad, :1]
            weights[bad] = (1.0, 0.0, 0.0)
            out[bad] = ((v[bad] - self.nodes[near[bad, 0]]) ** 2).sum(-1)
        return nodes, weights, out
