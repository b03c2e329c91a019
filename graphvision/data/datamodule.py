"""The DataModule of every dataset: a reader's jobs -> the cache -> datasets -> PyG loaders.

``prepare_data`` has the reader put its dataset on disk if it is generated, then decodes,
segments and caches every image once (worker pool, progress bar); ``setup`` takes the
entries :func:`~graphvision.data.cache.build_cache` reports (building nothing more when
``prepare_data`` ran); ``__getitem__`` only loads them. ``info`` is the reader's vocabulary,
what a task reads: ``categories``, ``predicates``, ``classes`` (and ``unseen``, for zero-shot
evaluation). The DataModules of graphvision's datasets (:mod:`graphvision.data.datasets`)
are this one with their reader built from their config keys.
"""

from __future__ import annotations

import inspect
import logging
import os
from pathlib import Path

import lightning as L
import torch
from torch.utils.data import Dataset, Sampler
from torch_geometric.loader import DataLoader

from graphvision.data.augment import AugmentConfig, augment_entry
from graphvision.data.cache import build_cache, entry_path, load_entry, save_entry
from graphvision.data.coco import DataError, counted
from graphvision.data.contract import RegionGraph
from graphvision.data.objects import ObjectConfig
from graphvision.data.pipeline import ImageJob, build_entry, to_graph
from graphvision.data.reader import Reader
from graphvision.regions import RegionConfig

log = logging.getLogger(__name__)


class RegionGraphDataset(Dataset):
    """Cache entries as :class:`RegionGraph` s; a corrupt entry is rebuilt on load.

    With ``augment``, item ``epoch * len(self) + i`` (what :class:`EpochSampler` yields) is
    entry ``i`` under the transform drawn for ``(augment.seed, epoch, i)``
    (:mod:`graphvision.data.augment`; a job's annotated relations are kept as annotated);
    item ``i < len(self)`` is epoch 0's.
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
            annotated = self.jobs[i].relations is not None
            entry = augment_entry(
                entry, self.augment, self.objects, epoch, i, self.regions, annotated
            )
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
    """A reader's dataset as region graphs: its jobs per split -> cache -> datasets -> PyG
    loaders.

    Args:
        reader: the dataset (a :class:`~graphvision.data.reader.Reader`; in a config, one
            with a ``_target_``). The DataModules of graphvision's datasets build theirs.
        cache_dir: where entries go (default ``data/cache``).
        regions: :class:`~graphvision.regions.RegionConfig` fields (``conf/data/regions/``).
        objects: :class:`~graphvision.data.objects.ObjectConfig` fields
            (``conf/data/objects/``).
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
            annotation file's); default False: skip, count and log. A reader that reads
            annotations takes its own ``strict``.
        follow_batch: graph fields whose batch vector the loaders build (PyG's
            ``follow_batch``); the entry points pass the task's
            (:attr:`graphvision.tasks.Task.follow_batch`).
    """

    def __init__(
        self,
        reader: Reader | None = None,
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
        if reader is None or not callable(getattr(reader, "jobs", None)):
            raise ValueError(
                f"{type(self).__name__} needs a reader (a graphvision.data.Reader), got "
                f"{reader!r}: set data.reader._target_ to one"
            )
        self.reader = reader
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

    # -- the reader's ----------------------------------------------------------------------
    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(self.reader.splits)

    def jobs(self, split: str) -> list[ImageJob]:
        """Every image of ``split``, as a pre-processing job (the reader's)."""
        return self.reader.jobs(split)

    @property
    def info(self) -> dict:
        """The reader's vocabulary (:attr:`graphvision.data.reader.Reader.info`)."""
        return self.reader.info

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
        self.reader.prepare()
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


class ReaderDataModule(RegionGraphDataModule):
    """A :class:`RegionGraphDataModule` whose reader it builds from its own arguments, as a
    config gives them: the arguments :attr:`reader_class` takes go to the reader (``strict``
    to both), the rest to :class:`RegionGraphDataModule`, with :attr:`defaults` under them.
    A dataset's DataModule is then two class attributes (:mod:`graphvision.data.datasets`);
    its signature (``help()``, ``inspect.signature``) lists both sets of arguments.
    """

    #: the reader built from the arguments it names
    reader_class: type[Reader]
    #: this dataset's defaults for :class:`RegionGraphDataModule`'s arguments
    defaults: dict = {}

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        if "reader_class" not in cls.__dict__:
            return
        own = inspect.signature(RegionGraphDataModule).parameters
        params = [p for p in inspect.signature(cls.reader_class).parameters.values()]
        params += [
            p.replace(default=cls.defaults.get(name, p.default))
            for name, p in own.items()
            if name != "reader" and name not in {q.name for q in params}
        ]
        cls.__signature__ = inspect.Signature(
            [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]
        )

    def __init__(self, **kwargs) -> None:
        takes = inspect.signature(self.reader_class).parameters
        reader_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in takes and k != "strict"}
        if "strict" in takes:
            reader_kwargs["strict"] = kwargs.get("strict", False)
        super().__init__(self.reader_class(**reader_kwargs), **{**self.defaults, **kwargs})

    @property
    def root(self) -> Path:
        """The reader's dataset folder."""
        return self.reader.root
