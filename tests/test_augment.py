"""Augmentation from the cache: oracles on a hand-made scene (flip twice = identity; relations
after a flip; a crop and a quarter turn equal the object and relation builders run from
scratch on the transformed annotations), determinism per (seed, epoch, index), and the loaders."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from graphvision.data.augment import AugmentConfig, Transform, augment_entry, transform_entry
from graphvision.data.objects import ObjectConfig, object_targets
from graphvision.data.pipeline import ImageJob, build_entry
from graphvision.data.relations import LEFT_OF, RIGHT_OF
from graphvision.regions import RegionConfig

OBJECTS = ObjectConfig()
#: three boxes (x, y, w, h) in a 64x64 scene, categories 1, 2, 3; no segmentation: the box
#: is the mask, so that masks are exact at any whole-pixel crop
BOXES = {1: [4, 20, 16, 16], 2: [40, 22, 16, 12], 3: [24, 44, 12, 16]}
FIELDS = (
    "image",
    "segments",
    "x",
    "pos",
    "edge_index",
    "edge_attr",
    "y",
    "obj_label",
    "obj_box",
    "obj_region_index",
    "obj_region_weight",
    "obj_mask",
    "rel_index",
    "rel_label",
)


def _annotations(boxes: dict) -> tuple:
    return tuple(
        {"id": c, "category_id": c, "bbox": list(map(float, b)), "iscrowd": 0}
        for c, b in boxes.items()
    )


def _assert_same_targets(augmented: dict, fresh: dict) -> None:
    """The augmentation's targets equal those the builders computed from scratch."""
    for key in ("y", "obj_label", "obj_region_index", "obj_mask", "rel_index", "rel_label"):
        assert torch.equal(augmented[key], torch.from_numpy(fresh[key]).to(augmented[key].dtype)), (
            key
        )
    for key in ("obj_box", "obj_region_weight"):
        torch.testing.assert_close(augmented[key], torch.from_numpy(fresh[key]))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """The cache entry of a textured 64x64 scene with the three boxes painted on it."""
    rng = np.random.default_rng(0)
    image = rng.integers(60, 120, (64, 64, 3), np.uint8)
    for c, (x, y, w, h) in BOXES.items():
        image[y : y + h, x : x + w] = np.eye(3, dtype=np.uint8)[c - 1] * 200 + 30
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    Image.fromarray(image).save(path)
    job = ImageJob(str(path), 1, (64, 64), _annotations(BOXES), (1, 2, 3))
    return build_entry(job, RegionConfig(size=(64, 64), n_segments=30), OBJECTS)


def test_flip_twice_is_the_identity_and_the_identity_keeps_the_cache(scene):
    once = transform_entry(scene, Transform(), OBJECTS)
    twice = transform_entry(
        transform_entry(scene, Transform(flip=True), OBJECTS), Transform(flip=True), OBJECTS
    )
    for key in FIELDS:
        assert torch.equal(once[key], twice[key]), key
    for key in (
        "image",
        "segments",
        "x",
        "pos",
        "edge_index",
        "edge_attr",
        "y",
        "obj_label",
        "obj_mask",
        "rel_index",
        "rel_label",
    ):
        assert torch.equal(once[key], scene[key]), key
    torch.testing.assert_close(once["obj_box"], scene["obj_box"])


def test_a_flip_swaps_left_and_right_and_keeps_the_rest(scene):
    plain = transform_entry(scene, Transform(), OBJECTS)
    flipped = transform_entry(scene, Transform(flip=True), OBJECTS)
    assert torch.equal(plain["rel_index"], flipped["rel_index"])
    swap = {LEFT_OF: RIGHT_OF, RIGHT_OF: LEFT_OF}
    expected = [swap.get(r, r) for r in plain["rel_label"].tolist()]
    assert flipped["rel_label"].tolist() == expected
    assert {LEFT_OF, RIGHT_OF} <= set(plain["rel_label"].tolist())  # the test tests something
    assert len(set(plain["rel_label"].tolist()) - {LEFT_OF, RIGHT_OF}) >= 1
    box = plain["obj_box"][0]
    torch.testing.assert_close(
        flipped["obj_box"][0], torch.stack([1 - box[2], box[1], 1 - box[0], box[3]])
    )


def test_annotated_relations_stay_as_annotated_and_leave_with_their_objects(scene):
    """With annotated relations a flip changes no predicate (they are data, not geometry);
    a crop that takes object 2 away takes its relations with it."""
    entry = dict(scene)
    entry["rel_index"] = torch.tensor([[0, 1, 2], [1, 2, 0]])
    entry["rel_label"] = torch.tensor([4, 0, 3])
    flipped = transform_entry(entry, Transform(flip=True), OBJECTS, annotated=True)
    assert flipped["rel_index"].tolist() == [[0, 1, 2], [1, 2, 0]]
    assert flipped["rel_label"].tolist() == [4, 0, 3]
    crop = transform_entry(
        entry, Transform(scale=0.5, centre=(24 / 64, 32 / 64)), OBJECTS, annotated=True
    )  # object 2 (box x 40..56) leaves: objects 0 and 2 become 0 and 1
    assert crop["obj_label"].tolist() == [0, 2]
    assert crop["rel_index"].tolist() == [[1], [0]] and crop["rel_label"].tolist() == [3]


def test_a_crop_equals_the_builders_on_the_cropped_annotations(scene):
    """Half the side, centred at (24, 32) px: the window x 8..40, y 16..48, doubled. Box 2
    (x 40..56) leaves the image, and its category the scene labels; box 3 is cut to its top
    quarter. The object, membership and relation builders of pre-processing, run from
    scratch on the cropped and doubled boxes over the augmented label map, give the same
    targets."""
    crop = transform_entry(scene, Transform(scale=0.5, centre=(24 / 64, 32 / 64)), OBJECTS)
    cropped = {}
    for c, (x, y, w, h) in BOXES.items():
        x0, y0 = max((x - 8) * 2, 0), max((y - 16) * 2, 0)
        x1, y1 = min((x + w - 8) * 2, 64), min((y + h - 16) * 2, 64)
        if x1 > x0 and y1 > y0:
            cropped[c] = [x0, y0, x1 - x0, y1 - y0]
    assert sorted(cropped) == [1, 3]
    fresh = object_targets(
        list(_annotations(cropped)), 64, 64, {1: 0, 2: 1, 3: 2}, crop["segments"].numpy(), OBJECTS
    )
    _assert_same_targets(crop, fresh)
    assert crop["y"].tolist() == [[1.0, 0.0, 1.0]]


def test_a_quarter_turn_equals_the_builders_on_the_turned_annotations(scene):
    """A rotation of 90 degrees about the centre moves every pixel centre onto a pixel
    centre: the source point (x, y) lands at (y, 64 - x), so box (x, y, w, h) becomes
    (y, 64 - x - w, h, w). The builders run from scratch on the turned boxes over the
    augmented label map give the augmentation's targets, relations included (what was
    left of another is now below it)."""
    import math

    turned = transform_entry(scene, Transform(angle=math.pi / 2), OBJECTS)
    boxes = {c: [y, 64 - x - w, h, w] for c, (x, y, w, h) in BOXES.items()}
    fresh = object_targets(
        list(_annotations(boxes)), 64, 64, {1: 0, 2: 1, 3: 2}, turned["segments"].numpy(), OBJECTS
    )
    _assert_same_targets(turned, fresh)
    # the label map turned the same way, pixel for pixel (its regions numbered one to one)
    pairs = set(
        zip(
            np.rot90(scene["segments"].numpy()).ravel().tolist(),
            turned["segments"].numpy().ravel().tolist(),
        )
    )
    assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    assert len(pairs) == int(scene["segments"].max()) + 1


def test_draws_repeat_per_seed_epoch_and_index(scene):
    cfg = AugmentConfig(seed=3)
    a = augment_entry(scene, cfg, OBJECTS, epoch=2, index=5)
    b = augment_entry(scene, cfg, OBJECTS, epoch=2, index=5)
    c = augment_entry(scene, cfg, OBJECTS, epoch=3, index=5)
    assert all(torch.equal(a[k], b[k]) for k in FIELDS)
    assert not torch.equal(a["image"], c["image"])
    # every target stays consistent: memberships point at existing regions and objects
    for out in (a, c):
        n, m = out["x"].shape[0], out["obj_label"].numel()
        assert (
            int(out["obj_region_index"][1].max()) < n and int(out["obj_region_index"][0].max()) < m
        )
        assert out["rel_index"].shape[1] == m * (m - 1)


def test_the_training_loader_augments_and_repeats_validation_does_not(tmp_path):
    from graphvision.data import SyntheticDataModule

    def module(augment):
        dm = SyntheticDataModule(
            data_dir=str(tmp_path),
            cache_dir=str(tmp_path / "cache"),
            num_train=8,
            num_val=4,
            batch_size=4,
            prepare_workers=1,
            augment=augment,
        )
        dm.prepare_data()
        dm.setup("fit")
        return dm

    plain = module({"enabled": False})
    augmented = module({"enabled": True, "seed": 1})
    assert plain.datasets["train"].augment is None
    first = [b.image for b in augmented.train_dataloader()]
    again = [b.image for b in module({"enabled": True, "seed": 1}).train_dataloader()]
    assert all(torch.equal(x, y) for x, y in zip(first, again))  # runs repeat
    loader = augmented.train_dataloader()
    epoch_0 = torch.cat([b.image for b in loader])
    epoch_1 = torch.cat([b.image for b in loader])  # the sampler's next epoch
    assert not torch.equal(epoch_0, epoch_1)
    raw = torch.cat([b.image for b in plain.val_dataloader()])
    assert torch.equal(torch.cat([b.image for b in augmented.val_dataloader()]), raw)


def _per_object_reference(entry: dict, t: Transform, objects: ObjectConfig) -> dict:
    """transform_objects as one loop per object and per pair, with the scalar rules
    (region_memberships, mask_centre, relation): the oracle of the vectorised version."""
    from graphvision.data.augment import _sample
    from graphvision.data.objects import mask_centre, region_memberships, unpack_masks
    from graphvision.data.relations import relation

    segments = transform_entry(entry, t, objects)["segments"].numpy().astype(np.int64)
    h, w = segments.shape
    masks = unpack_masks(entry["obj_mask"].numpy(), h, w).astype(np.float32)
    coverage = _sample(torch.from_numpy(masks), t, "bilinear").numpy().astype(np.float64)
    boxes = entry["obj_box"].numpy().astype(np.float64)
    corners = np.stack([boxes[:, [0, 1]], boxes[:, [2, 1]], boxes[:, [0, 3]], boxes[:, [2, 3]]], 1)
    moved = t.to_output(corners.reshape(-1, 2)).reshape(-1, 4, 2)
    new_boxes = np.clip(np.concatenate([moved.min(1), moved.max(1)], 1), 0.0, 1.0)
    visible = (new_boxes[:, 2] - new_boxes[:, 0]) * (new_boxes[:, 3] - new_boxes[:, 1])
    keep = [
        m
        for m in range(len(boxes))
        if visible[m] > objects.min_object_size and (coverage[m] >= 0.5).any()
    ]
    flat = segments.ravel()
    area = np.bincount(flat).astype(np.float64)
    out = {"obj_region_index": [[], []], "obj_region_weight": [], "obj_mask": [], "centres": []}
    for new, m in enumerate(keep):
        inside = coverage[m] >= 0.5
        regions, weights = region_memberships(
            flat, inside.astype(np.float64), area, objects.min_membership
        )
        out["obj_region_index"][0] += [new] * len(regions)
        out["obj_region_index"][1] += regions.tolist()
        out["obj_region_weight"] += weights.astype(np.float32).tolist()
        out["obj_mask"].append(np.packbits(inside.ravel()))
        out["centres"].append(mask_centre(inside, new_boxes[m]))
    kept = new_boxes[keep].astype(np.float32)
    pairs = [(i, j) for i in range(len(keep)) for j in range(len(keep)) if i != j]
    out["rel_index"] = np.array(pairs, dtype=np.int64).reshape(-1, 2).T
    out["rel_label"] = [
        relation(kept[i], kept[j], out["centres"][i], out["centres"][j]) for i, j in pairs
    ]
    return out


def test_vectorised_object_targets_equal_the_per_object_loop(scene, coco_tiny, tmp_path):
    """Every augmented object target of the hand-made scene and of 12 coco_tiny photos
    (8 draws each) equals the per-object loop's, bit for bit."""
    from graphvision.data import CocoDataModule
    from graphvision.data.augment import sample_transform

    dm = CocoDataModule(
        root=str(coco_tiny),
        cache_dir=str(tmp_path / "cache"),
        limit_images=12,
        prepare_workers=1,
        regions={"size": [96, 96], "n_segments": 60},
    )
    dm.prepare_data()
    dm.setup("fit")
    entries = [scene] + [dm.datasets["val"]._entry(i) for i in range(12)]
    cfg = AugmentConfig()
    checked = relations = 0
    for index, entry in enumerate(entries):
        for epoch in range(8):
            t = sample_transform(np.random.default_rng([7, epoch, index]), cfg)
            got = transform_entry(entry, t, OBJECTS)
            ref = _per_object_reference(entry, t, OBJECTS)
            assert got["obj_region_index"].tolist() == ref["obj_region_index"]
            assert got["obj_region_weight"].tolist() == ref["obj_region_weight"]
            expected_masks = (
                np.stack(ref["obj_mask"])
                if ref["obj_mask"]
                else np.zeros((0, got["obj_mask"].shape[1]), np.uint8)
            )
            assert np.array_equal(got["obj_mask"].numpy(), expected_masks)
            assert np.array_equal(got["rel_index"].numpy(), ref["rel_index"])
            assert got["rel_label"].tolist() == ref["rel_label"]
            checked += 1
            relations += len(ref["rel_label"])
    assert checked == 13 * 8 and relations > 200  # the test saw many objects and pairs


def test_pairwise_relations_equal_the_scalar_rule_on_random_and_boundary_layouts():
    from graphvision.data.relations import pairwise_relations, relation

    rng = np.random.default_rng(0)
    for m in range(0, 9):
        for _ in range(20):
            x0, y0 = rng.random((2, m)) * 0.8
            boxes = np.stack([x0, y0, x0 + rng.random(m) * 0.3, y0 + rng.random(m) * 0.3], 1)
            boxes = boxes.astype(np.float32).reshape(-1, 4)
            # centres on a coarse grid: exact diagonals (angles of +-pi/4, +-3pi/4) occur
            centres = rng.integers(0, 4, (m, 2)).astype(np.float64) / 4
            index, labels = pairwise_relations(boxes, centres)
            pairs = [(i, j) for i in range(m) for j in range(m) if i != j]
            assert index.T.tolist() == [list(p) for p in pairs]
            assert labels.tolist() == [
                relation(boxes[i], boxes[j], centres[i], centres[j]) for i, j in pairs
            ]


def test_a_padded_crop_shifts_the_image_by_whole_pixels_with_black_past_the_edge(scene):
    """CIFAR's padded crop (``pad``): a shift by 8 px right and 4 px down is the image moved
    by exactly those pixels, black where it comes from past the edge; the label map moves
    alike and its border takes the regions beside it (every pixel keeps a region); the
    objects follow the shift."""
    t = Transform(centre=(0.5 - 8 / 64, 0.5 - 4 / 64))  # the source square starts at (-8, -4)
    moved = transform_entry(scene, t, OBJECTS)
    image = scene["image"]
    assert torch.equal(moved["image"][:, 4:, 8:], image[:, :-4, :-8])
    assert int(moved["image"][:, :4].max()) == 0 and int(moved["image"][:, :, :8].max()) == 0
    regions = int(moved["segments"].max()) + 1
    assert moved["x"].shape[0] == regions and int(moved["segments"].min()) == 0
    boxes = {c: [x + 8, y + 4, w, h] for c, (x, y, w, h) in BOXES.items()}
    clipped = {c: [x, y, min(w, 64 - x), min(h, 64 - y)] for c, (x, y, w, h) in boxes.items()}
    fresh = object_targets(
        list(_annotations(clipped)), 64, 64, {1: 0, 2: 1, 3: 2}, moved["segments"].numpy(), OBJECTS
    )
    _assert_same_targets(moved, fresh)


def test_pad_draws_crops_past_the_edges_within_the_pad():
    """``sample_transform`` with ``pad``: centres reach at most ``pad`` past the no-padding
    range, and do reach past it."""
    from graphvision.data.augment import sample_transform

    cfg = AugmentConfig(flip=0.5, min_scale=1.0, rotate=0.0, colour=0.0, pad=0.125)
    rng = np.random.default_rng(0)
    centres = np.array([sample_transform(rng, cfg).centre for _ in range(400)])
    assert centres.min() >= 0.5 - 0.125 and centres.max() <= 0.5 + 0.125
    assert centres.min() < 0.5 - 0.1 and centres.max() > 0.5 + 0.1
    none = AugmentConfig(flip=0.0, min_scale=1.0, rotate=0.0, colour=0.0)
    assert {sample_transform(rng, none).centre for _ in range(20)} == {(0.5, 0.5)}
