"""The reader seam: a dataset whose relations are annotated (a hand-made COCO-style file with
relation entries) added through a reader alone, and trained a step through the real config;
a reader written from scratch; graphvision's DataModules are their reader."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from graphvision.data import (
    CocoDataModule,
    CocoReader,
    ImageJob,
    Reader,
    RegionGraphDataModule,
    SyntheticDataModule,
)
from graphvision.data.pipeline import RELATION_DROPPED
from graphvision.utils import build_datamodule
from tests.conftest import compose_cfg


class RelationsReader(CocoReader):
    """A COCO-style dataset with annotated relations, as in the scene-graph files of Visual
    Genome's COCO-format releases: ``rel_categories`` (``id``, ``name``) and
    ``rel_annotations`` (``image_id``, ``subject_id``, ``predicate_id``, ``object_id``, the
    ends annotation ids) beside COCO's keys. Everything else is COCO's reader."""

    def _file(self, split: str) -> dict:
        return json.loads(self.annotation_file(split).read_text())

    @property
    def predicates(self) -> list[str]:
        return [c["name"] for c in sorted(self._file("train")["rel_categories"], key=_id)]

    def relations(self, split: str) -> dict[int, list[tuple[int, int, int]]]:
        raw = self._file(split)
        index = {c["id"]: i for i, c in enumerate(sorted(raw["rel_categories"], key=_id))}
        out: dict[int, list[tuple[int, int, int]]] = {}
        for r in raw["rel_annotations"]:
            triplet = (r["subject_id"], r["object_id"], index[r["predicate_id"]])
            out.setdefault(r["image_id"], []).append(triplet)
        return out


def _id(entry: dict) -> int:
    return entry["id"]


#: the file's predicates, by id (not in id order): the vocabulary is ["holds", "on", "near"]
REL_CATEGORIES = [{"id": 5, "name": "on"}, {"id": 2, "name": "holds"}, {"id": 9, "name": "near"}]
#: per image: its objects (annotation id -> category id, box x, y, w, h in a 32x32 image) and
#: the hand-written relations (subject id, predicate name, object id); object 23 is under
#: min_object_size (3x3 of 32x32), so its relation is dropped and counted; image 3 has none
IMAGES = {
    1: {
        "objects": {11: (1, [2, 2, 10, 10]), 12: (2, [18, 2, 11, 9]), 13: (1, [6, 18, 12, 11])},
        "relations": [(11, "holds", 12), (13, "near", 11), (12, "on", 13)],
    },
    2: {
        "objects": {21: (2, [3, 4, 12, 12]), 22: (1, [17, 16, 12, 12]), 23: (2, [26, 2, 3, 3])},
        "relations": [(22, "near", 21), (21, "on", 23)],
    },
    3: {"objects": {31: (1, [4, 4, 20, 20]), 32: (2, [20, 20, 10, 10])}, "relations": []},
}
#: the val batch of all three images (in image id order, objects in annotation order): the
#: hand-written triplets over the kept objects, offset by the objects of the images before
REL_INDEX = [[0, 2, 1, 4], [1, 0, 2, 3]]
REL_LABEL = [0, 2, 1, 2]  # holds, near, on, near


def write_relations_dataset(root: Path) -> Path:
    """COCO's layout (``annotations/instances_{train,val}2017.json``, ``{train,val}2017/``)
    holding :data:`IMAGES` in both splits, with ``rel_categories`` and ``rel_annotations``."""
    predicate_id = {c["name"]: c["id"] for c in REL_CATEGORIES}
    images, annotations, relations = [], [], []
    rng = np.random.default_rng(0)
    pictures = {}
    for image_id, spec in IMAGES.items():
        rgb = rng.integers(0, 50, (32, 32, 3), np.uint8)
        for ann_id, (category, (x, y, w, h)) in spec["objects"].items():
            rgb[y : y + h, x : x + w] = (220, 60 * category, 7 * (ann_id % 10) + 20)
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": category,
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": 0,
                    "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                }
            )
        for subject, predicate, obj in spec["relations"]:
            relations.append(
                {
                    "image_id": image_id,
                    "subject_id": subject,
                    "predicate_id": predicate_id[predicate],
                    "object_id": obj,
                }
            )
        name = f"{image_id:03d}.png"
        images.append({"id": image_id, "file_name": name, "width": 32, "height": 32})
        pictures[name] = rgb
    content = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "table"}],
        "rel_categories": REL_CATEGORIES,
        "rel_annotations": relations,
    }
    (root / "annotations").mkdir(parents=True)
    for split in ("train2017", "val2017"):
        (root / split).mkdir()
        for name, rgb in pictures.items():
            Image.fromarray(rgb).save(root / split / name)
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(content))
    return root


def _overrides(root: Path) -> list[str]:
    """The real config, its data node pointed at the reader on the command line: the
    generic DataModule, COCO's own keys removed, the shared region, object and loader groups
    kept."""
    return [
        "data=coco",
        "data/augment=none",
        "data._target_=graphvision.data.RegionGraphDataModule",
        "~data.root",
        "~data.train_split",
        "~data.val_split",
        "~data.unseen_categories",
        "+data.reader._target_=tests.test_readers.RelationsReader",
        f"+data.reader.root={root}",
        "data.regions.size=[32,32]",
        "data.regions.n_segments=16",
        "data.batch_size=3",
        "data.prepare_workers=1",
        "model.dim=32",
        "model.sequence.depth=1",
        "model.gnn.num_layers=1",
        "debug=fdr",
    ]


def test_a_dataset_with_annotated_relations_needs_a_reader_alone(tmp_path, caplog):
    """Acceptance (issue 24): the hand-made dataset through :class:`RelationsReader` and the
    real config: its predicates are the vocabulary, the batch's relation targets are the
    hand-written triplets exactly (the one naming a dropped object counted in the log), and
    a training step runs, with the pipeline, the cache and the task unchanged."""
    from hydra.utils import get_class

    from graphvision.train import portable_data_config, train

    root = write_relations_dataset(tmp_path / "vg_style")
    cfg = compose_cfg(overrides=_overrides(root), tmp=tmp_path)
    task = get_class(cfg.model.task._target_)
    dm = build_datamodule(cfg.data, task)
    assert type(dm.reader) is RelationsReader
    # what a checkpoint keeps of the data config, and eval rebuilds the DataModule from
    again = build_datamodule(portable_data_config(cfg.data), task)
    assert type(again.reader) is RelationsReader and again.info == dm.info
    assert dm.info == {
        "categories": ["cup", "table"],
        "predicates": ["holds", "on", "near"],
        "classes": [],
    }
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
        dm.setup("fit")
    for split in ("train", "val"):
        assert (
            f"RegionGraphDataModule {split}: 1 of 3 images built with a note: "
            f"1 x {RELATION_DROPPED}"
        ) in caplog.text
    batch = next(iter(dm.val_dataloader()))
    assert batch.num_graphs == 3 and batch.obj_label.tolist() == [0, 1, 0, 1, 0, 0, 1]
    assert batch.rel_index.tolist() == REL_INDEX
    assert batch.rel_label.tolist() == REL_LABEL
    metrics = train(cfg)
    assert np.isfinite(metrics["val/loss"]) and 0.0 <= metrics["val/rel_acc"] <= 1.0


class ListReader(Reader):
    """A reader from scratch: a list of image files, each its own class."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = list(paths)

    def jobs(self, split: str) -> list[ImageJob]:
        return [ImageJob(p, i, label=i) for i, p in enumerate(self.paths)]

    @property
    def info(self) -> dict:
        return {"categories": [], "predicates": [], "classes": [Path(p).stem for p in self.paths]}


def test_a_reader_from_scratch_is_served_by_the_datamodule(tmp_path):
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"img{i}.png"))
        Image.fromarray(np.full((16, 16, 3), 80 * i + 40, np.uint8)).save(paths[-1])
    dm = RegionGraphDataModule(
        ListReader(paths),
        cache_dir=str(tmp_path / "cache"),
        regions={"size": [16, 16], "n_segments": 4},
        batch_size=2,
        prepare_workers=1,
    )
    dm.prepare_data()
    dm.setup("fit")
    assert dm.info["classes"] == ["img0", "img1"] and dm.splits == ("train", "val")
    batch = next(iter(dm.val_dataloader()))
    assert batch.label.tolist() == [0, 1] and batch.image_id.tolist() == [0, 1]


def test_a_datamodule_without_a_reader_says_what_to_set():
    with pytest.raises(ValueError, match=r"needs a reader .* data.reader._target_"):
        RegionGraphDataModule()


def test_graphvisions_datamodules_are_their_reader(tmp_path):
    """``CocoDataModule`` is the generic DataModule over :class:`CocoReader`: the same jobs,
    keys and vocabulary; the synthetic scenes are COCO's reader over generated files, with
    sg2im's relations (``relations=None``) and predicates."""
    synthetic = SyntheticDataModule(
        data_dir=str(tmp_path / "data"), num_train=2, num_val=2, image_size=32
    )
    synthetic.generate()
    coco = CocoDataModule(root=str(synthetic.root), train_split="train", val_split="val")
    generic = RegionGraphDataModule(CocoReader(synthetic.root, "train", "val"))
    for split in ("train", "val"):
        jobs = coco.split_jobs(split)
        assert jobs == generic.split_jobs(split) == synthetic.split_jobs(split)
        assert all(job.relations is None for job in jobs)
    assert coco.info == generic.info == synthetic.info
    assert coco.info["predicates"] == [
        "left of",
        "right of",
        "above",
        "below",
        "inside",
        "surrounding",
    ]
