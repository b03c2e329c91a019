"""Datasets, cache and batching: synthetic scenes, corrupt entries, unreadable images."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch_geometric.data import Batch

from graphvision.data import CocoDataModule, ImageFolderDataModule, SyntheticDataModule, obj_regions
from graphvision.data.cache import entry_path
from graphvision.data.coco import DataError
from graphvision.data.synthetic import category_names, render_scene, write_split
from tests.conftest import make_tiny_coco


def test_synthetic_vocabulary_and_object_counts():
    assert category_names() == [
        f"{c} {s}" for c in ("red", "green", "blue") for s in ("circle", "square", "triangle")
    ]
    for i in range(20):
        img, objects = render_scene(np.random.default_rng([0, 0, i]))
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
        assert 2 <= len(objects) <= 6
        assert all(o["visible"].sum() > 0 for o in objects)


def test_synthetic_is_deterministic(tmp_path):
    a = write_split(tmp_path / "a", "train", 4, seed=3, split_index=0)
    b = write_split(tmp_path / "b", "train", 4, seed=3, split_index=0)
    assert a.read_text() == b.read_text()
    for name in ("000000.png", "000003.png"):
        assert (tmp_path / "a/train" / name).read_bytes() == (
            tmp_path / "b/train" / name
        ).read_bytes()
    c = write_split(tmp_path / "c", "train", 4, seed=4, split_index=0)
    assert c.read_text() != a.read_text()


def test_synthetic_writes_polygons_and_rle(tmp_path):
    write_split(tmp_path, "train", 30, seed=0, split_index=0)
    anns = json.loads((tmp_path / "annotations/instances_train.json").read_text())["annotations"]
    kinds = {type(a["segmentation"]).__name__ for a in anns}
    assert kinds == {"list", "dict"}  # unoccluded polygons, occluded visible-part RLEs


@pytest.fixture(scope="module")
def tiny_synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    dm = SyntheticDataModule(
        data_dir=str(root),
        cache_dir=str(root / "cache"),
        num_train=12,
        num_val=6,
        batch_size=4,
        prepare_workers=2,
        in_memory=False,
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_batches_follow_the_data_contract(tiny_synthetic):
    dm = tiny_synthetic
    graphs = [dm.datasets["train"][i] for i in range(3)]
    batch = Batch.from_data_list(graphs)
    assert batch.image.shape == (3, 3, 128, 128) and batch.image.dtype == torch.float32
    assert 0 <= float(batch.image.min()) and float(batch.image.max()) <= 1
    assert batch.segments.shape == (3, 128, 128)
    # segments, memberships and relations are offset per graph
    for i, g in enumerate(graphs):
        assert torch.equal(batch.segments[i], g.segments + batch.ptr[i])
    n0, m0 = graphs[0].num_nodes, graphs[0].num_objects
    k0 = graphs[0].obj_region_index.size(1)
    second = batch.obj_region_index[:, k0 : k0 + graphs[1].obj_region_index.size(1)]
    assert torch.equal(second, graphs[1].obj_region_index + torch.tensor([[m0], [n0]]))
    r0 = graphs[0].rel_index.size(1)
    assert torch.equal(
        batch.rel_index[:, r0 : r0 + graphs[1].rel_index.size(1)], graphs[1].rel_index + m0
    )
    dense = obj_regions(batch).to_dense()
    assert dense.shape == (batch.obj_label.numel(), batch.num_nodes)
    assert float(dense.max()) <= 1.0 and (dense.sum(1) > 0).all()
    assert batch.y.shape == (3, len(dm.info["categories"]))


def test_cached_equals_fresh(tiny_synthetic):
    from graphvision.data.cache import load_entry
    from graphvision.data.pipeline import build_entry

    ds = tiny_synthetic.datasets["val"]
    cached = load_entry(entry_path(ds.cache_dir, ds.keys[0]))
    fresh = build_entry(ds.jobs[0], ds.regions, ds.objects)
    assert cached.keys() == fresh.keys()
    for k in fresh:
        assert torch.equal(cached[k], fresh[k]), k


def test_truncated_cache_entry_is_rebuilt(tiny_synthetic, caplog):
    ds = tiny_synthetic.datasets["val"]
    path = entry_path(ds.cache_dir, ds.keys[1])
    good = ds[1]
    path.write_bytes(path.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        again = ds[1]
    assert "corrupt cache entry" in caplog.text
    assert torch.equal(again.x, good.x) and torch.equal(again.segments, good.segments)
    assert ds[1].num_nodes == good.num_nodes  # and the rebuilt entry is on disk again
    assert not list(ds.cache_dir.rglob("*.tmp"))


def test_unreadable_images_are_skipped_counted_and_logged(tmp_path, caplog, monkeypatch):
    rng = np.random.default_rng(0)
    good = rng.integers(0, 255, (32, 32, 3), np.uint8)
    Image.fromarray(good).save(tmp_path / "full.jpg")
    truncated = (tmp_path / "full.jpg").read_bytes()[:200]
    root = make_tiny_coco(
        tmp_path / "coco",
        {
            "a.jpg": good,
            "empty.jpg": b"",
            "cut.jpg": truncated,
            "b.jpg": np.zeros((32, 32, 3), np.uint8),
        },
    )
    dm = CocoDataModule(
        root=str(root), cache_dir=str(tmp_path / "cache"), prepare_workers=1, batch_size=4
    )
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
        dm.setup("fit")
    assert "val: skipped 2 of 4 images" in caplog.text
    assert "empty.jpg" in caplog.text and "cut.jpg" in caplog.text
    assert len(dm.datasets["val"]) == 2
    # remembered: a second look skips them again (and counts them) without decoding them
    from graphvision.data import cache, pipeline

    calls = []
    monkeypatch.setattr(
        pipeline, "decode_image", lambda *a, **k: calls.append(a) or (good, good.shape[1::-1])
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        kept, skipped = cache.build_cache(
            dm.split_jobs("val"), dm.cache_dir, dm.regions, dm.objects, desc="again"
        )
    assert not calls and len(kept) == 2
    assert [Path(p).name for p, _ in skipped] == ["empty.jpg", "cut.jpg"]
    assert skipped[0][1] == "the file is empty (0 bytes)"
    assert "again: skipped 2 of 4 images" in caplog.text and "empty.jpg" not in caplog.text
    batch = next(iter(dm.val_dataloader()))
    assert batch.num_graphs == 2
    # image 2 (b.jpg, all black) has no objects and one region: still a valid graph
    flat = dm.datasets["val"][1]
    assert flat.num_objects == 0 and flat.rel_index.shape == (2, 0) and flat.num_nodes >= 1


def test_missing_root_fails_with_layout(tmp_path):
    dm = CocoDataModule(root=str(tmp_path / "nowhere"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(
        FileNotFoundError,
        match=r"(?s)nowhere does not exist.*expected COCO 2017 layout.*instances_train2017.json",
    ):
        dm.info  # noqa: B018


def test_wrong_layout_fails_with_layout(tmp_path):
    (tmp_path / "coco" / "images").mkdir(parents=True)
    dm = CocoDataModule(root=str(tmp_path / "coco"), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match=r"annotations/instances_val2017.json"):
        dm.prepare_data()


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda t: t[:-5], r"instances_val2017.json: malformed JSON at line 1"),
        (
            lambda t: t.replace('"image_id": 1', '"image_id": 99'),
            r"instances_val2017.json: annotation id 1 names image_id 99",
        ),
        (
            lambda t: t.replace('"category_id": 1', '"category_id": 7'),
            r"instances_val2017.json: annotation id 1 names category_id 7",
        ),
    ],
)
def test_bad_annotations_name_file_and_id(tmp_path, mutate, message):
    root = make_tiny_coco(tmp_path / "coco", {"a.png": np.zeros((32, 32, 3), np.uint8)})
    ann = root / "annotations" / "instances_val2017.json"
    ann.write_text(mutate(ann.read_text()))
    dm = CocoDataModule(root=str(root), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(ValueError, match=message):
        dm.prepare_data()


def test_image_folder_errors(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"(?s)missing folder .*train/.*expected image-folder layout"
    ):
        ImageFolderDataModule(root=str(tmp_path)).info  # noqa: B018
    (tmp_path / "train" / "cat").mkdir(parents=True)
    (tmp_path / "val" / "dog").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "train" / "cat" / "1.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "val" / "dog" / "1.png")
    with pytest.raises(ValueError, match=r"\['dog'\] do not exist in the training split"):
        ImageFolderDataModule(root=str(tmp_path), cache_dir=str(tmp_path / "c")).prepare_data()


def test_altered_cache_entry_fails_its_checksum(tiny_synthetic):
    from graphvision.data.cache import load_entry

    ds = tiny_synthetic.datasets["val"]
    path = entry_path(ds.cache_dir, ds.keys[2])
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt cache entry .*checksum"):
        load_entry(path)
    assert torch.isfinite(ds[2].x).all()  # rebuilt on access
    load_entry(path)  # and now valid again


def test_synthetic_folder_builds_one_class_per_category(tmp_path):
    from graphvision.data import SyntheticFolderDataModule

    dm = SyntheticFolderDataModule(
        data_dir=str(tmp_path),
        cache_dir=str(tmp_path / "cache"),
        per_class_train=2,
        per_class_val=1,
        image_size=48,
        prepare_workers=1,
    )
    dm.prepare_data()
    dm.setup("fit")
    from graphvision.data.folder import folder_classes

    assert (
        dm.info["classes"]
        == folder_classes(dm.root)
        == sorted(n.replace(" ", "_") for n in category_names())
    )
    assert len(dm.datasets["train"]) == 18 and len(dm.datasets["val"]) == 9
    labels = sorted(int(dm.datasets["val"][i].label) for i in range(9))
    assert labels == list(range(9))


def test_config_values_are_checked_where_they_enter(tmp_path):
    """Bad sizes and counts in the data config are refused with the key named."""
    from graphvision.data import SyntheticDataModule

    for key, value, message in [
        ("batch_size", 0, "data.batch_size=0: must be an integer >= 1"),
        ("num_workers", -1, "data.num_workers=-1: must be an integer >= 0"),
        ("prepare_workers", 0, "data.prepare_workers=0: must be an integer >= 1"),
        ("limit_images", -3, "data.limit_images=-3: must be an integer >= 1, or null"),
        ("limit_images", 0, "data.limit_images=0: must be an integer >= 1, or null"),
    ]:
        with pytest.raises(ValueError, match=re.escape(message)):
            SyntheticDataModule(data_dir=str(tmp_path), **{key: value})


def test_a_split_without_usable_images_says_why(tmp_path):
    """Every image of a split unreadable: the error names the split, how many images were
    tried and the counted reasons, at pre-processing time."""
    from graphvision.data import ImageFolderDataModule

    for split in ("train", "val"):
        (tmp_path / split / "cat").mkdir(parents=True)
    for i in range(3):
        (tmp_path / "train" / "cat" / f"{i}.png").write_bytes(b"")
    (tmp_path / "val" / "cat" / "ok.png").write_bytes(b"not an image")
    dm = ImageFolderDataModule(
        root=str(tmp_path), cache_dir=str(tmp_path / "cache"), prepare_workers=1
    )
    with pytest.raises(
        DataError, match=r"none of the 3 train images is usable \(3 x the file is empty"
    ):
        dm.prepare_data()


def test_image_folders_follow_torchvision_conventions(tmp_path):
    """Oracle: torchvision's ImageFolder on the same tree gives the same (path, class) list,
    nested sub-folders included (hidden folders left out by graphvision only); an empty
    class folder is an error naming it."""
    from torchvision.datasets import ImageFolder

    from graphvision.data.folder import folder_classes, folder_images

    img = Image.fromarray(np.zeros((8, 8, 3), np.uint8))
    for rel in [
        "cat/a.png",
        "cat/more/b.png",
        "cat/more/deeper/c.jpg",
        "dog/d.png",
        "dog/.hidden/e.png",
    ]:
        (tmp_path / "train" / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(tmp_path / "train" / rel)
    classes = folder_classes(tmp_path, "train")
    ours = [(str(p), c) for p, c in folder_images(tmp_path, "train", classes)]
    reference = ImageFolder(str(tmp_path / "train"))
    assert classes == reference.classes
    # the same, except that graphvision leaves out hidden folders (.ipynb_checkpoints, ...)
    visible = [(p, c) for p, c in reference.samples if "/." not in p]
    assert sorted(ours) == sorted(visible) and len(ours) == 4 and len(reference.samples) == 5
    (tmp_path / "train" / "emu").mkdir()
    with pytest.raises(
        FileNotFoundError,
        match=r"emu/: the class folder holds no images.*'emu' would have no examples",
    ):
        folder_images(tmp_path, "train", folder_classes(tmp_path, "train"))


def test_image_folder_per_class_takes_the_first_images_of_every_class(tmp_path):
    """``data.per_class``: at most n images of each class per split, the first by path, in
    class order; a split left out keeps all; a bad count is refused naming the key."""
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "folder", per_class=4)
    whole = ImageFolderDataModule(root=str(root), cache_dir=str(tmp_path / "c"))
    dm = ImageFolderDataModule(
        root=str(root), cache_dir=str(tmp_path / "c"), per_class={"train": 2, "val": None}
    )
    classes = len(whole.info["classes"])
    jobs = dm.jobs("train")
    assert len(jobs) == 2 * classes
    expected = []
    for c in range(classes):
        expected += [j.path for j in whole.jobs("train") if j.label == c][:2]
    assert [j.path for j in jobs] == expected
    ids = {j.path: j.image_id for j in whole.jobs("train")}
    assert [j.image_id for j in jobs] == [ids[j.path] for j in jobs]  # the whole split's ids
    assert [j.path for j in dm.jobs("val")] == [j.path for j in whole.jobs("val")]
    with pytest.raises(ValueError, match="data.per_class.train"):
        ImageFolderDataModule(root=str(root), per_class={"train": 0})
    with pytest.raises(ValueError, match="data.per_class.test"):
        ImageFolderDataModule(root=str(root), per_class={"test": 3})
