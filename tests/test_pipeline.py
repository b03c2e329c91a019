"""The image-to-graph-and-targets pipeline: annotated relations as targets, relations naming
objects that are not kept dropped and counted, cache keys unchanged for jobs without them."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from PIL import Image

from graphvision.data.cache import build_cache, load_entry
from graphvision.data.objects import ObjectConfig
from graphvision.data.pipeline import RELATION_DROPPED, ImageJob, build_entry
from graphvision.data.relations import pairwise_relations
from graphvision.regions import RegionConfig

REGIONS = RegionConfig(size=(32, 32), n_segments=16)


def _box(ann_id: int, x: int, y: int, w: int, h: int, category: int = 1, crowd: int = 0):
    """A rectangular COCO annotation (its polygon, the box)."""
    return {
        "id": ann_id,
        "category_id": category,
        "bbox": [x, y, w, h],
        "iscrowd": crowd,
        "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
    }


#: 32x32: two 10x10 objects (ids 1, 2), a 3x3 one (id 3: under min_object_size, 0.02 of the
#: image), a crowd (id 4)
ANNOTATIONS = (
    _box(1, 2, 2, 10, 10),
    _box(2, 18, 16, 10, 10, category=2),
    _box(3, 14, 2, 3, 3),
    _box(4, 2, 18, 12, 12, crowd=1),
)


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 60, (32, 32, 3), np.uint8)
    for a in ANNOTATIONS:
        x, y, w, h = a["bbox"]
        rgb[y : y + h, x : x + w] = (200, 40 * a["id"], 30)
    path = tmp_path / "scene.png"
    Image.fromarray(rgb).save(path)
    return str(path)


def _job(path, relations=None) -> ImageJob:
    return ImageJob(path, 1, (32, 32), ANNOTATIONS, (1, 2), relations=relations)


def test_annotated_relations_are_the_targets_exactly(image):
    """Every triplet between kept objects, in the order given, as (position, position,
    predicate); no other pair is a relation target."""
    relations = ((2, 1, 4), (1, 2, 0), (1, 2, 3))  # two predicates of one pair: both kept
    notes: list[str] = []
    entry = build_entry(_job(image, relations), REGIONS, ObjectConfig(), notes=notes)
    assert entry["obj_label"].tolist() == [0, 1]  # objects 1 and 2; 3 too small, 4 a crowd
    assert entry["rel_index"].tolist() == [[1, 0, 0], [0, 1, 1]]
    assert entry["rel_label"].tolist() == [4, 0, 3]
    assert notes == []


def test_a_relation_naming_an_object_that_is_not_kept_is_dropped_and_noted(image):
    """Too small (3), a crowd (4), left out by max_objects, or no such annotation (99): the
    relation is dropped, and noted once each for the cache to count."""
    relations = ((1, 3, 0), (4, 2, 1), (1, 2, 2), (2, 99, 0))
    notes: list[str] = []
    entry = build_entry(_job(image, relations), REGIONS, ObjectConfig(), notes=notes)
    assert entry["rel_index"].tolist() == [[0], [1]] and entry["rel_label"].tolist() == [2]
    assert notes == [RELATION_DROPPED] * 3
    notes.clear()
    one = build_entry(_job(image, relations), REGIONS, ObjectConfig(max_objects=1), notes=notes)
    assert one["obj_label"].numel() == 1 and one["rel_label"].numel() == 0
    assert notes == [RELATION_DROPPED] * 4


def test_annotated_but_none_is_no_relation_and_none_is_sg2ims_rule(image):
    """``relations=()``: the image has no annotated relation, so no relation target (not
    sg2im's); ``relations=None``: sg2im's rule on every ordered pair, as before."""
    empty = build_entry(_job(image, ()), REGIONS, ObjectConfig())
    assert tuple(empty["rel_index"].shape) == (2, 0) and empty["rel_label"].numel() == 0
    geometric = build_entry(_job(image), REGIONS, ObjectConfig())
    boxes = geometric["obj_box"].numpy()
    index, label = pairwise_relations(boxes, (boxes[:, :2] + boxes[:, 2:]) / 2)
    assert geometric["rel_index"].tolist() == index.tolist() == [[0, 1], [1, 0]]
    assert geometric["rel_label"].tolist() == label.tolist()
    for key in ("image", "segments", "x", "edge_index", "obj_box", "obj_mask", "y"):
        assert empty[key].equal(geometric[key]), key  # relations change nothing else


def test_dropped_relations_are_counted_in_the_log_and_strict_allows_them(image, tmp_path, caplog):
    """What the object settings leave out is counted each run, never an error under
    ``data.strict``."""
    jobs = [_job(image, ((1, 3, 0), (4, 2, 1), (1, 2, 2)))]
    for _ in range(2):  # built, then loaded: counted both times
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            kept, skipped = build_cache(
                jobs, tmp_path / "cache", REGIONS, ObjectConfig(), desc="rels", strict=True
            )
        assert len(kept) == 1 and not skipped
        assert f"rels: 1 of 1 images built with a note: 2 x {RELATION_DROPPED}" in caplog.text
    entry = load_entry(tmp_path / "cache" / kept[0][1][:2] / f"{kept[0][1]}.gvc")
    assert entry["rel_label"].tolist() == [2]


#: keys of these jobs computed by the code before jobs could carry relations (cache version
#: 7): a job without relations keeps its key, so existing caches stay valid
OLD_KEYS = {
    "coco": "1e705bc8aa1af3b53bcbb99dae199a4d5581f295",
    "folder": "b62e7f165c6d67dd3e37fa2e2f77e08d0c840b45",
}
_ANN = {
    "id": 7,
    "category_id": 2,
    "bbox": [1.0, 2.0, 10.0, 12.0],
    "iscrowd": 0,
    "segmentation": [[1, 2, 11, 2, 11, 14, 1, 14]],
}


def test_the_cache_key_of_a_job_without_relations_is_unchanged():
    coco = ImageJob("/nonexistent/graphvision/a.png", 3, (32, 24), (_ANN,), (1, 2, 5))
    assert coco.key(RegionConfig(), ObjectConfig()) == OLD_KEYS["coco"]
    folder = ImageJob("/nonexistent/graphvision/b.png", 4, label=1)
    settings = RegionConfig(size=(64, 64), n_segments=50), ObjectConfig(max_objects=3)
    assert folder.key(*settings) == OLD_KEYS["folder"]
    # annotated relations enter the key: none annotated, or other relations, another entry
    keys = {
        ImageJob(coco.path, 3, (32, 24), (_ANN,), (1, 2, 5), relations=r).key(
            RegionConfig(), ObjectConfig()
        )
        for r in [None, (), ((7, 7, 0),), ((7, 7, 1),)]
    }
    assert len(keys) == 4
