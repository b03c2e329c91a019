"""ASA and boundary recall: exact values on hand-made label maps."""

from __future__ import annotations

import numpy as np
import pytest

from graphvision.regions.quality import (
    achievable_segmentation_accuracy,
    boundary_map,
    boundary_recall,
    instance_label_map,
)

TRUTH = np.array(
    [
        [0, 0, 0, 1],
        [0, 0, 1, 1],
        [2, 2, 1, 1],
        [2, 2, 1, 1],
    ]
)


def test_asa_of_the_truth_itself_is_one():
    assert achievable_segmentation_accuracy(TRUTH, TRUTH) == 1.0


def test_asa_exact():
    segments = np.array(
        [
            [0, 0, 1, 1],  # region 0: truth {0, 0} -> 2 right
            [2, 2, 1, 1],  # region 1: truth {0, 1, 1, 1} -> 3 right
            [2, 2, 3, 3],  # region 2: truth {0, 0, 2, 2} -> 2 right (tie: one majority counts)
            [3, 3, 3, 3],  # region 3: truth {1, 1, 2, 2, 1, 1} -> 4 right
        ]
    )
    assert achievable_segmentation_accuracy(segments, TRUTH) == pytest.approx((2 + 3 + 2 + 4) / 16)


def test_asa_one_region_is_the_majority_share():
    assert achievable_segmentation_accuracy(np.zeros((4, 4), int), TRUTH) == pytest.approx(7 / 16)


def test_boundary_map_exact():
    labels = np.array([[0, 0, 1], [0, 0, 1], [2, 2, 2]])
    assert boundary_map(labels).astype(int).tolist() == [[0, 1, 1], [1, 1, 1], [1, 1, 1]]


def test_boundary_recall_exact_with_tolerance():
    truth = np.zeros((1, 12), int)
    truth[0, 6:] = 1  # boundary pixels: columns 5 and 6
    segments = np.zeros((1, 12), int)
    segments[0, 9:] = 1  # boundary pixels: columns 8 and 9
    assert boundary_recall(segments, truth, tolerance=2) == 0.5  # column 6 is 2 px from 8
    assert boundary_recall(segments, truth, tolerance=3) == 1.0
    assert boundary_recall(segments, truth, tolerance=1) == 0.0
    assert boundary_recall(segments, np.zeros((1, 12), int)) == 1.0


def test_instance_label_map_paints_in_order():
    a = np.zeros((2, 3), bool)
    a[:, :2] = True
    b = np.zeros((2, 3), bool)
    b[0, 1:] = True
    assert instance_label_map([a, b], (2, 3)).tolist() == [[1, 2, 2], [1, 1, 0]]


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in shape"):
        achievable_segmentation_accuracy(np.zeros((2, 2), int), np.zeros((3, 2), int))
