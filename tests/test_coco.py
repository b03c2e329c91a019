"""COCO reading: masks against pycocotools on coco_tiny, object selection, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from graphvision.data.coco import read_coco
from graphvision.data.objects import ObjectConfig, ann_to_mask, object_targets, select_objects


@pytest.mark.parametrize("split", ["train2017", "val2017"])
def test_masks_equal_pycocotools_annToMask(coco_tiny, split):
    """Oracle: every polygon and RLE mask equals pycocotools' COCO.annToMask."""
    from pycocotools.coco import COCO

    ann_file = coco_tiny / "annotations" / f"instances_{split}.json"
    coco = COCO(str(ann_file))
    index = read_coco(ann_file, coco_tiny / split)
    kinds = {"polygon": 0, "rle": 0}
    for img in index.images:
        for ann in img.annotations:
            mine = ann_to_mask(ann["segmentation"], img.height, img.width)
            np.testing.assert_array_equal(mine, coco.annToMask(coco.anns[ann["id"]]))
            kinds["polygon" if isinstance(ann["segmentation"], list) else "rle"] += 1
    assert kinds["polygon"] > 500 and kinds["rle"] >= 6


def test_read_coco_indexes_tiny(coco_tiny):
    index = read_coco(coco_tiny / "annotations" / "instances_val2017.json", coco_tiny / "val2017")
    assert len(index.images) == 80 and len(index.categories) == 80
    assert sum(len(i.annotations) for i in index.images) == 815
    assert index.category_names[0] == "person"


def _ann(i, bbox, cat=1, crowd=0):
    return {
        "id": i,
        "image_id": 1,
        "category_id": cat,
        "bbox": bbox,
        "iscrowd": crowd,
        "segmentation": [
            [
                bbox[0],
                bbox[1],
                bbox[0] + bbox[2],
                bbox[1],
                bbox[0] + bbox[2],
                bbox[1] + bbox[3],
                bbox[0],
                bbox[1] + bbox[3],
            ]
        ],
    }


def test_select_objects_follows_sg2im():
    cfg = ObjectConfig(min_object_size=0.02, max_objects=2)
    anns = [
        _ann(1, [0, 0, 10, 10]),  # 100 / 10000 = 0.01: too small
        _ann(2, [0, 0, 20, 10]),  # exactly 0.02: sg2im keeps only "> min_object_size"
        _ann(3, [0, 0, 30, 30], crowd=1),  # crowd: excluded
        _ann(4, [0, 0, 30, 30]),
        _ann(5, [50, 50, 40, 40]),
        _ann(6, [10, 60, 25, 25]),
    ]
    kept = select_objects(anns, 100, 100, cfg)
    assert [a["id"] for a in kept] == [4, 5]  # the two largest, in annotation order


def test_object_targets_scene_memberships_relations():
    anns = [
        _ann(1, [0, 0, 40, 40], cat=1),
        _ann(2, [60, 60, 40, 40], cat=3),
        _ann(3, [0, 0, 4, 4], cat=2),
    ]
    segments = np.repeat(
        np.repeat(np.arange(4).reshape(2, 2), 5, 0), 5, 1
    )  # 4 regions of 5x5 on 10x10
    t = object_targets(anns, 100, 100, {1: 0, 2: 1, 3: 2}, segments, ObjectConfig())
    np.testing.assert_array_equal(t["y"], [[1, 1, 1]])  # scene labels include small objects
    np.testing.assert_array_equal(t["obj_label"], [0, 2])  # the 0.0016-area object is no object
    # object 0 covers 40x40 of the 50x50 top-left region: 0.64 of region 0 only
    pairs = {
        (int(o), int(r)): float(w)
        for (o, r), w in zip(t["obj_region_index"].T, t["obj_region_weight"])
    }
    assert pairs == pytest.approx({(0, 0): 0.64, (1, 3): 0.64})
    assert t["rel_index"].T.tolist() == [[0, 1], [1, 0]]
    # centre 0 is up-left of centre 1: theta = -3pi/4 exactly -> "left of"; back: pi/4 -> "below"
    assert t["rel_label"].tolist() == [0, 3]
