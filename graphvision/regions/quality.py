"""Superpixel quality against a ground-truth segmentation.

* **ASA** (achievable segmentation accuracy): the fraction of pixels whose region's
  majority ground-truth label equals the pixel's own ground-truth label; the best accuracy
  any labelling of the regions can reach.
* **Boundary recall**: the fraction of ground-truth boundary pixels that lie within
  ``tolerance`` pixels (Chebyshev distance) of a region boundary.

A pixel is a boundary pixel of a label map when one of its 4-neighbours carries another
label (both pixels of such a pair are boundary pixels).
"""

from __future__ import annotations

import numpy as np


def achievable_segmentation_accuracy(segments: np.ndarray, truth: np.ndarray) -> float:
    """ASA of ``segments`` against ``truth`` (same ``[H, W]`` shape, integer labels)."""
    if segments.shape != truth.shape:
        raise ValueError(f"segments {segments.shape} and truth {truth.shape} differ in shape")
    _, seg = np.unique(segments.ravel(), return_inverse=True)
    _, gt = np.unique(truth.ravel(), return_inverse=True)
    n_gt = int(gt.max()) + 1
    counts = np.bincount(seg * n_gt + gt, minlength=(int(seg.max()) + 1) * n_gt)
    return float(counts.reshape(-1, n_gt).max(axis=1).sum() / seg.size)


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """``[H, W]`` bool: pixels with a 4-neighbour of another label."""
    out = np.zeros(labels.shape, dtype=bool)
    horizontal = labels[:, 1:] != labels[:, :-1]
    vertical = labels[1:, :] != labels[:-1, :]
    out[:, 1:] |= horizontal
    out[:, :-1] |= horizontal
    out[1:, :] |= vertical
    out[:-1, :] |= vertical
    return out


def boundary_recall(segments: np.ndarray, truth: np.ndarray, tolerance: int = 2) -> float:
    """Fraction of ``truth``'s boundary pixels within ``tolerance`` px of a ``segments``
    boundary (1.0 when ``truth`` has no boundary)."""
    from scipy import ndimage

    if segments.shape != truth.shape:
        raise ValueError(f"segments {segments.shape} and truth {truth.shape} differ in shape")
    gt_boundary = boundary_map(truth)
    if not gt_boundary.any():
        return 1.0
    size = 2 * tolerance + 1
    near = ndimage.binary_dilation(boundary_map(segments), structure=np.ones((size, size), bool))
    return float((near & gt_boundary).sum() / gt_boundary.sum())


def instance_label_map(masks: list[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """Ground truth for ASA: background 0, instance ``i`` painted as ``i + 1`` in the given
    order (later instances cover earlier ones)."""
    truth = np.zeros(shape, dtype=np.int64)
    for i, mask in enumerate(masks):
        truth[mask.astype(bool)] = i + 1
    return truth
