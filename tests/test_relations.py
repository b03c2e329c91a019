"""Relations follow sg2im's rules (google/sg2im, data/coco.py), checked on hand-made cases;
annotated relations map onto the kept objects exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest

from graphvision.data.relations import (
    ABOVE,
    BELOW,
    INSIDE,
    LEFT_OF,
    RELATIONS,
    RIGHT_OF,
    SURROUNDING,
    annotated_relations,
    kept_relations,
    pairwise_relations,
    relation,
)

SMALL = (0.40, 0.40, 0.50, 0.50)
BIG = (0.10, 0.10, 0.90, 0.90)
SIDE = (0.60, 0.60, 0.70, 0.70)  # no containment with SMALL


def test_names_in_sg2im_order():
    assert RELATIONS == ("left of", "right of", "above", "below", "inside", "surrounding")


@pytest.mark.parametrize(
    "d, expected",
    [
        ((-1.0, 0.0), LEFT_OF),  # theta = pi
        ((1.0, 0.0), RIGHT_OF),  # theta = 0
        ((0.0, -1.0), ABOVE),  # theta = -pi/2 (y points down: s is higher in the image)
        ((0.0, 1.0), BELOW),  # theta = pi/2
        ((-1.0, 1.0), LEFT_OF),  # theta = 3pi/4 exactly: ">= 3pi/4" -> left of
        ((-1.0, -1.0), LEFT_OF),  # theta = -3pi/4 exactly: "<= -3pi/4" -> left of
        ((1.0, -1.0), RIGHT_OF),  # theta = -pi/4 exactly: [-pi/4, pi/4) -> right of
        ((1.0, 1.0), BELOW),  # theta = pi/4 exactly: [pi/4, 3pi/4) -> below
        ((-1.0, -0.999), LEFT_OF),  # just past -3pi/4 toward pi
        ((-0.999, -1.0), ABOVE),  # just inside [-3pi/4, -pi/4)
        ((1.0, -0.999), RIGHT_OF),
        ((0.999, 1.0), BELOW),
        ((0.0, 0.0), RIGHT_OF),  # same centre: atan2(0, 0) = 0 -> right of
    ],
)
def test_angle_bins(d, expected):
    centre_o = np.array([0.45, 0.45])
    assert relation(SIDE, SMALL, centre_o + np.array(d) * 0.1, centre_o) == expected


def test_boundaries_are_the_exact_angles():
    assert math.atan2(1.0, -1.0) == 3 * math.pi / 4
    assert math.atan2(-1.0, 1.0) == -math.pi / 4


def test_containment_wins_over_angles():
    assert relation(BIG, SMALL, (0.9, 0.5), (0.45, 0.45)) == SURROUNDING
    assert relation(SMALL, BIG, (0.1, 0.5), (0.5, 0.5)) == INSIDE


def test_containment_is_strict():
    """A shared edge is not containment (sg2im uses < and >): the angle decides."""
    touching = (0.40, 0.30, 0.60, 0.50)  # same y1 as SMALL's... x0 equal to SMALL's x0
    assert relation(touching, SMALL, (0.5, 0.4), (0.45, 0.45)) != SURROUNDING
    assert relation(SMALL, (0.40, 0.30, 0.60, 0.60), (0.45, 0.45), (0.5, 0.45)) != INSIDE


def test_every_ordered_pair():
    boxes = np.array([BIG, SMALL, SIDE])
    centres = np.array([[0.5, 0.5], [0.45, 0.45], [0.65, 0.47]])
    index, labels = pairwise_relations(boxes, centres)
    assert index.T.tolist() == [[0, 1], [0, 2], [1, 0], [1, 2], [2, 0], [2, 1]]
    assert labels.tolist() == [SURROUNDING, SURROUNDING, INSIDE, LEFT_OF, INSIDE, RIGHT_OF]


def test_no_pairs_for_fewer_than_two_objects():
    for m in (0, 1):
        index, labels = pairwise_relations(np.zeros((m, 4)), np.zeros((m, 2)))
        assert index.shape == (2, 0) and labels.shape == (0,)


def test_annotated_relations_over_the_kept_objects():
    """Annotation ids -> positions among the kept objects, in the order given; a triplet
    naming an object not kept is left out."""
    kept = [30, 10, 20]  # annotation ids of objects 0, 1, 2
    triplets = [(10, 30, 2), (20, 40, 0), (30, 20, 1), (30, 20, 3), (40, 10, 1)]
    index, labels = annotated_relations(kept, triplets)
    assert index.tolist() == [[1, 0, 0], [0, 2, 2]] and labels.tolist() == [2, 1, 3]
    assert index.dtype == labels.dtype == np.int64
    index, labels = annotated_relations(kept, [])
    assert index.shape == (2, 0) and labels.shape == (0,)


def test_kept_relations_renumber_and_drop_those_of_objects_gone():
    index = np.array([[0, 2, 3, 1], [2, 0, 1, 3]])
    labels = np.array([5, 6, 7, 8])
    new_index, new_labels = kept_relations(index, labels, np.array([0, 2, 3]), 4)
    assert new_index.tolist() == [[0, 1], [1, 0]] and new_labels.tolist() == [5, 6]
    none_index, none_labels = kept_relations(index, labels, np.array([], dtype=np.int64), 4)
    assert none_index.shape == (2, 0) and none_labels.shape == (0,)
