"""LightningDataModules: COCO, synthetic scenes (COCO-format) and image folders.

``prepare_data`` decodes, segments and caches every image once (worker pool, progress
bar); ``setup`` takes the entries :func:`~graphvision.data.cache.build_cache` reports
(building nothing more when ``prepare_data`` ran); ``__getitem__`` only loads them.
``info`` is the vocabulary a task reads: ``categories``, ``predicates``, ``classes``
(and ``unseen``, for zero-shot evaluation).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import Dataset, Sampler
from torch_geometric.loader import DataLoader

from graphvision.data import synthetic
from graphvision.data.augment import AugmentConfig, augment_entry
from graphvision.data.cache import (
    ImageJob,
    build_cache,
    build_entry,
    entry_path,
    load_entry,
    save_entry,
    to_graph,
)
from graphvision.data.coco import (
    CocoIndex,
    DataError,
    ObjectConfig,
    check_coco_root,
    counted,
    read_coco,
)
from graphvision.data.contract import RegionGraph
from graphvision.data.folder import folder_classes, folder_images
from graphvision.data.relations import RELATIONS
from graphvision.data.synthetic import class_folder, generate_once, write_folder, write_split
from graphvision.regions import RegionConfig

log = logging.getLogger(__name__)

_ANN_FIELDS = ("id", "category_id", "bbox", "iscrowd", "segmentation")


class RegionGraphDataset(Dataset):
    """Cache entries as :class:`RegionGraph` s; a corrupt entry is rebuilt on load.

    With ``augment``, item ``epoch * len(self) + i`` (what :class:`EpochSampler` yields) is
    entry ``i`` under the transform drawn for ``(augment.seed, epoch, i)``
    (:mod:`graphvision.data.augment`); item ``i < len(self)`` is epoch 0's.
    """

    def __init__(
        self,
        jobs,
        keys,
        cache_dir,
        regions: RegionConfig,
        objects: ObjectConfig,
        in_memory: bool = False,
        augment: AugmentConfig | None = None,
    ) -> None:
        self.jobs, self.keys, self.cache_dir = list(jobs), list(keys), Path(cache_dir)
        self.regions, self.objects, self.augment = regions, objects, augment
        self._memory: dict[int, dict] | None = {} if in_memory else None

    def __len__(self) -> int:
        return len(self.keys)

    def __iter__(self):
        """Epoch 0's items (``__getitem__`` takes every index, so without this a ``for``
        loop over the dataset would not end)."""
        return (self[i] for i in range(len(self)))

    def _entry(self, i: int) -> dict:
        path = entry_path(self.cache_dir, self.keys[i])
        try:
            return load_entry(path)
        except (ValueError, FileNotFoundError) as err:
            log.warning("%s; rebuilding it from %s", err, self.jobs[i].path)
            entry = build_entry(self.jobs[i], self.regions, self.objects)
            save_entry(entry, path)
            return entry

    def __getitem__(self, i: int) -> RegionGraph:
        epoch, i = divmod(int(i), len(self))
        if self._memory is None:
            entry = self._entry(i)
        else:
            if i not in self._memory:
                self._memory[i] = self._entry(i)
            entry = self._memory[i]
        if self.augment is not None:
            entry = augment_entry(entry, self.augment, self.objects, epoch, i, self.regions)
        return to_graph(entry)


class EpochSampler(Sampler[int]):
    """A new random order every epoch, each index told its epoch: yields ``epoch * n + i``
    (:class:`RegionGraphDataset` reads both). Lightning sets the epoch (``set_epoch``, also
    after resuming); without it, each pass over the sampler is the next epoch."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = torch.randperm(
            self.n, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        ).tolist()
        base, self.epoch = self.epoch * self.n, self.epoch + 1
        return iter([base + i for i in order])


def empty_split_message(name: str, split: str, tried: int, skipped: list[tuple[str, str]]) -> str:
    """Why ``split`` has no usable image: how many were tried and the counted reasons."""
    if tried == 0:
        return f"{name}: the {split} split has no images (check the data root and its layout)"
    reasons = counted(reason.split(":")[0] for _, reason in skipped)
    return (
        f"{name}: none of the {tried} {split} images is usable ({reasons or 'no reason recorded'}); "
        "the reasons are logged above and kept in the cache's .skip files"
    )


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def auto_workers(cores: int, processes: int = 1) -> int:
    """``data.num_workers=auto``: the cores of a node shared among its ``processes`` (DDP:
    one per device), less one each for the process itself; at least 1, at most 16."""
    return max(1, min(16, cores // max(processes, 1) - 1))


class RegionGraphDataModule(L.LightningDataModule):
    """Shared machinery: jobs per split -> cache -> datasets -> PyG loaders.

    Args:
        cache_dir: where entries go (default ``data/cache``).
        regions: :class:`~graphvision.regions.RegionConfig` fields.
        objects: :class:`~graphvision.data.coco.ObjectConfig` fields.
        batch_size: graphs per batch (default 32).
        num_workers: DataLoader workers (default 0), or ``"auto"``: one per core this
            process may use, less one for the process itself, shared among the processes of
            a node under DDP, at least 1 and at most 16 (:func:`auto_workers`).
        pin_memory: the loaders return batches in page-locked memory, so that copying them
            to a GPU can overlap the step (default False; ``trainer=gpu`` sets it).
        persistent_workers: keep the loader workers alive between epochs (default True; it
            matters only with workers).
        prepare_workers: processes that build the cache (default 2).
        in_memory: keep loaded entries in memory after the first epoch (default True).
        limit_images: use only the first ``n`` images of each split (default None: all).
        augment: :class:`~graphvision.data.augment.AugmentConfig` fields
            (``conf/data/augment/``), applied to the training split; None or
            ``enabled: false``: none (default None).
        strict: make every counted skip an error naming the file (an unreadable image, an
            annotation that is dropped or repaired, an image whose size differs from its
            annotation file's); default False: skip, count and log.
        follow_batch: graph fields whose batch vector the loaders build (PyG's
            ``follow_batch``); the entry points pass the task's
            (:attr:`graphvision.tasks.Task.follow_batch`).
    """

    splits = ("train", "val")

    def __init__(
        self,
        cache_dir: str = "data/cache",
        regions: dict | None = None,
        objects: dict | None = None,
        batch_size: int = 32,
        num_workers: int | str = 0,
        pin_memory: bool = False,
        persistent_workers: bool = True,
        prepare_workers: int = 2,
        in_memory: bool = True,
        limit_images: int | None = None,
        augment: dict | None = None,
        strict: bool = False,
        follow_batch: list[str] | None = None,
    ) -> None:
        super().__init__()
        checked = [("data.batch_size", batch_size, 1), ("data.prepare_workers", prepare_workers, 1)]
        if num_workers != "auto":
            checked.append(("data.num_workers", num_workers, 0))
        for key, value, least in checked:
            if not isinstance(value, int) or value < least:
                raise ValueError(
                    f"{key}={value!r}: must be an integer >= {least}"
                    + (', or "auto"' if key == "data.num_workers" else "")
                )
        if limit_images is not None and (not isinstance(limit_images, int) or limit_images < 1):
            raise ValueError(
                f"data.limit_images={limit_images!r}: must be an integer >= 1, or null for every image"
            )
        self.cache_dir = Path(cache_dir)
        self.regions = RegionConfig(**(regions or {}))
        self.objects = ObjectConfig(**(objects or {}))
        self.batch_size, self._num_workers = batch_size, num_workers
        self.pin_memory, self.persistent_workers = bool(pin_memory), bool(persistent_workers)
        self.prepare_workers, self.in_memory, self.limit_images = (
            prepare_workers,
            in_memory,
            limit_images,
        )
        self.strict = bool(strict)
        augment = dict(augment or {})
        enabled = augment.pop("enabled", bool(augment))
        self.augment = AugmentConfig(**augment) if enabled else None
        self.follow_batch = list(follow_batch or [])
        self.datasets: dict[str, RegionGraphDataset] = {}
        #: images pre-processed by this DataModule and the seconds it took (cache hits: 0)
        self.build_stats: dict = {"images": 0, "seconds": 0.0}

    @property
    def num_workers(self) -> int:
        """Loader workers: ``data.num_workers``, with ``"auto"`` resolved for this machine
        and the trainer's processes per node."""
        if self._num_workers != "auto":
            return self._num_workers
        processes = getattr(self.trainer, "num_devices", 1) if self.trainer is not None else 1
        return auto_workers(available_cores(), processes)

    # -- to implement -------------------------------------------------------------------
    def jobs(self, split: str) -> list[ImageJob]:
        """Every image of ``split``, as a pre-processing job."""
        raise NotImplementedError

    @property
    def info(self) -> dict:
        """``{"categories", "predicates", "classes"}`` (lists of names, empty where the data
        has none; plus ``"unseen"`` with zero-shot categories): what a task can predict."""
        raise NotImplementedError

    # -- Lightning hooks ----------------------------------------------------------------
    def split_jobs(self, split: str) -> list[ImageJob]:
        """The jobs of ``split`` this DataModule uses (the first ``limit_images``)."""
        jobs = self.jobs(split)
        return jobs[: self.limit_images] if self.limit_images else jobs

    def _cache(self, split: str) -> list[tuple[ImageJob, str]]:
        jobs = self.split_jobs(split)
        kept, skipped = build_cache(
            jobs,
            self.cache_dir,
            self.regions,
            self.objects,
            workers=self.prepare_workers,
            desc=f"{type(self).__name__} {split}",
            strict=self.strict,
            stats=self.build_stats,
        )
        if not kept:
            raise DataError(empty_split_message(type(self).__name__, split, len(jobs), skipped))
        return kept

    def prepare_data(self) -> None:
        for split in self.splits:
            self._cache(split)

    def setup(self, stage: str | None = None) -> None:
        for split in self.splits:
            if split in self.datasets:
                continue
            kept = self._cache(split)  # after prepare_data: nothing left to build
            self.datasets[split] = RegionGraphDataset(
                [job for job, _ in kept],
                [key for _, key in kept],
                self.cache_dir,
                self.regions,
                self.objects,
                in_memory=self.in_memory,
                augment=self.augment if split == "train" else None,
            )

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        dataset = self.datasets[split]
        sampler = None
        if shuffle and dataset.augment is not None:  # an order and an epoch for every item
            sampler, shuffle = EpochSampler(len(dataset), dataset.augment.seed), False
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            follow_batch=self.follow_batch or None,
        )

    def regions_per_image(self, split: str = "val", limit: int = 500) -> float:
        """Mean number of regions (the sequence stage's tokens) per image of ``split``,
        over up to ``limit`` of its images spread evenly (after :meth:`setup`)."""
        dataset = self.datasets[split]
        n, m = len(dataset), min(len(dataset), limit)
        picked = sorted({round(k * (n - 1) / max(m - 1, 1)) for k in range(m)})
        return sum(dataset[i].num_nodes for i in picked) / len(picked)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)


class CocoDataModule(RegionGraphDataModule):
    """COCO 2017 as distributed, under ``root``: scene labels, objects and relations.

    Args:
        root: holds ``annotations/instances_{train,val}2017.json`` and ``{train,val}2017/``.
        train_split, val_split: folder / annotation names (default ``train2017``, ``val2017``).
        unseen_categories: category names left out of every training target, for zero-shot
            evaluation (default none).
        batch_size, in_memory: as in :class:`RegionGraphDataModule` (defaults 16 and False:
            COCO's images are many and large).
    """

    def __init__(
        self,
        root: str = "data/coco",
        train_split: str = "train2017",
        val_split: str = "val2017",
        unseen_categories: list[str] | None = None,
        batch_size: int = 16,
        in_memory: bool = False,
        **kwargs,
    ) -> None:
        super().__init__(batch_size=batch_size, in_memory=in_memory, **kwargs)
        self.root = Path(root)
        self.split_names = {"train": train_split, "val": val_split}
        self.unseen_categories = list(unseen_categories or [])
        self._index: dict[str, CocoIndex] = {}

    def index(self, split: str) -> CocoIndex:
        if split not in self._index:
            check_coco_root(self.root, tuple(self.split_names.values()))
            name = self.split_names[split]
            self._index[split] = read_coco(
                self.root / "annotations" / f"instances_{name}.json",
                self.root / name,
                strict=self.strict,
            )
        return self._index[split]

    def jobs(self, split: str) -> list[ImageJob]:
        index = self.index(split)
        cat_ids = tuple(c["id"] for c in index.categories)
        return [
            ImageJob(
                path=str(img.file),
                image_id=img.id,
                expected_size=(img.width, img.height),
                annotations=tuple(
                    {k: a[k] for k in _ANN_FIELDS if k in a} for a in img.annotations
                ),
                category_ids=cat_ids,
            )
            for img in index.images
        ]

    @property
    def info(self) -> dict:
        names = self.index("train").category_names
        if self.index("val").category_names != names:
            raise ValueError(
                f"{self.root}: train and val annotation files list different categories"
            )
        return self.scene_graph_info(names)

    def scene_graph_info(self, names: list[str]) -> dict:
        """``info`` for scene graphs over the categories ``names`` and sg2im's predicates."""
        info = {"categories": names, "predicates": list(RELATIONS), "classes": []}
        if self.unseen_categories:
            unknown = [c for c in self.unseen_categories if c not in names]
            if unknown:
                raise ValueError(
                    f"data.unseen_categories names unknown categories {unknown}; known: {names}"
                )
            info["unseen"] = list(self.unseen_categories)
        return info


def settings_digest(settings) -> str:
    """Ten hex digits naming a generated dataset's folder after the settings that made it
    (SHA-1 of their sorted JSON; tuples count as lists)."""
    blob = json.dumps(settings, sort_keys=True, default=list)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


def generated_root(data_dir: str, kind: str, settings) -> Path:
    """Where a generated dataset lives: ``data_dir/<kind>/<settings digest>``."""
    return Path(data_dir) / kind / settings_digest(settings)


class GeneratedData:
    """Mixin of the DataModules whose dataset is generated on first use: ``prepare_data``
    writes it (:meth:`generate`, once), then caches it."""

    def generate(self) -> None:
        raise NotImplementedError

    def prepare_data(self) -> None:
        self.generate()
        super().prepare_data()


class SyntheticDataModule(GeneratedData, CocoDataModule):
    """Embedded default: coloured shapes on textured backgrounds, generated on first use
    into ``data_dir/synthetic/<settings digest>/`` in COCO format, then read as COCO.

    Args:
        data_dir: parent of the generated dataset (default ``data``).
        num_train, num_val: images per split (defaults 1600, 300).
        image_size: side of the square images (default 128).
        seed: generator seed (default 0).
        shapes, colours: category vocabulary (names ``"<colour> <shape>"``).
        min_objects, max_objects: objects per image (defaults 2, 6).
        batch_size, in_memory: as in :class:`RegionGraphDataModule` (defaults 32 and True).
    """

    def __init__(
        self,
        data_dir: str = "data",
        num_train: int = 1600,
        num_val: int = 300,
        image_size: int = 128,
        seed: int = 0,
        shapes: list[str] | None = None,
        colours: dict[str, list[int]] | None = None,
        min_objects: int = 2,
        max_objects: int = 6,
        batch_size: int = 32,
        in_memory: bool = True,
        **kwargs,
    ) -> None:
        self.scene = {
            "size": int(image_size),
            "shapes": tuple(shapes or synthetic.DEFAULT_SHAPES),
            "colours": {k: tuple(v) for k, v in (colours or synthetic.DEFAULT_COLOURS).items()},
            "min_objects": int(min_objects),
            "max_objects": int(max_objects),
        }
        self.counts = {"train": int(num_train), "val": int(num_val)}
        self.seed = int(seed)
        root = generated_root(
            data_dir, "synthetic", {"scene": self.scene, "counts": self.counts, "seed": self.seed}
        )
        super().__init__(
            root=str(root),
            train_split="train",
            val_split="val",
            batch_size=batch_size,
            in_memory=in_memory,
            **kwargs,
        )

    def generate(self) -> None:
        """Writes the dataset unless a complete copy is already there."""

        def write() -> None:
            for split_index, split in enumerate(self.splits):
                write_split(
                    self.root, split, self.counts[split], self.seed, split_index, **self.scene
                )

        generate_once(self.root, write, {"counts": self.counts, "seed": self.seed})

    @property
    def info(self) -> dict:
        return self.scene_graph_info(
            synthetic.category_names(self.scene["shapes"], self.scene["colours"])
        )


class ImageFolderDataModule(RegionGraphDataModule):
    """Single-label classification from ``root/{train,val}/<class>/*`` (any of
    :data:`~graphvision.data.images.IMAGE_SUFFIXES`).

    Args:
        root: the folder holding ``train/`` and ``val/``.
        per_class: at most this many images of each class (the first, by path) per split,
            ``{"train": n, "val": n}`` (null or a missing split: all): a class-balanced
            subset, where ``limit_images`` takes the first images of the first classes.
    """

    def __init__(self, root: str = "data/folder", per_class: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.root = Path(root)
        self.per_class = dict(per_class or {})
        for split, n in self.per_class.items():
            if split not in self.splits or not (n is None or (type(n) is int and n >= 1)):
                raise ValueError(
                    f"data.per_class.{split}={n!r}: give the splits {list(self.splits)} an "
                    "integer >= 1 each, or null for every image"
                )

    def jobs(self, split: str) -> list[ImageJob]:
        classes = folder_classes(self.root, "train")
        jobs = [
            ImageJob(path=str(p), image_id=i, label=c)
            for i, (p, c) in enumerate(folder_images(self.root, split, classes))
        ]  # ids over the whole split: a subset's cache entries are the whole split's
        limit = self.per_class.get(split)
        if limit is None:
            return jobs
        taken = [0] * len(classes)
        kept = []
        for job in jobs:
            if taken[job.label] < limit:
                taken[job.label] += 1
                kept.append(job)
        return kept

    @property
    def info(self) -> dict:
        return {"categories": [], "predicates": [], "classes": folder_classes(self.root, "train")}


class SyntheticFolderDataModule(GeneratedData, ImageFolderDataModule):
    """An image-folder task built from the synthetic scenes: one object per image on a
    textured background, its category (``"red circle"``, ...) as the class. Written on first
    use to ``data_dir/synthetic_folder/<settings digest>/{train,val}/<class>/*.png``.

    Args:
        data_dir: parent of the generated folder (default ``data``).
        per_class_train, per_class_val: images per class (defaults 40, 10).
        image_size: side of the square images (default 128).
        seed: generator seed (default 0).
    """

    def __init__(
        self,
        data_dir: str = "data",
        per_class_train: int = 40,
        per_class_val: int = 10,
        image_size: int = 128,
        seed: int = 0,
        **kwargs,
    ) -> None:
        self.counts = {"train": int(per_class_train), "val": int(per_class_val)}
        self.size, self.seed = int(image_size), int(seed)
        root = generated_root(data_dir, "synthetic_folder", [self.counts, self.size, self.seed])
        super().__init__(root=str(root), **kwargs)

    def generate(self) -> None:
        """Writes the folder unless a complete copy is already there."""

        def write() -> None:
            for split_index, split in enumerate(self.splits):
                write_folder(
                    self.root, split, self.counts[split], self.seed, split_index, self.size
                )

        generate_once(self.root, write, self.counts)

    @property
    def info(self) -> dict:
        # the order folder_classes() gives the label indices: sorted folder names
        classes = sorted(class_folder(n) for n in synthetic.category_names())
        return {"categories": [], "predicates": [], "classes": classes}
