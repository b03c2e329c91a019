"""Image folders as a dataset: :class:`ImageFolderReader` and its DataModule
(``conf/data/image_folder.yaml``)."""

from __future__ import annotations

from pathlib import Path

from graphvision.data.datamodule import ReaderDataModule
from graphvision.data.folder import folder_classes, folder_images
from graphvision.data.pipeline import ImageJob
from graphvision.data.reader import Reader


class ImageFolderReader(Reader):
    """Single-label classification from ``root/{train,val}/<class>/*`` (any of
    :data:`~graphvision.data.images.IMAGE_SUFFIXES`); classes are the training split's
    folder names, sorted.

    Args:
        root: the folder holding ``train/`` and ``val/``.
        per_class: at most this many images of each class (the first, by path) per split,
            ``{"train": n, "val": n}`` (null or a missing split: all): a class-balanced
            subset, where ``limit_images`` takes the first images of the first classes.
    """

    def __init__(self, root: str = "data/folder", per_class: dict | None = None) -> None:
        self.root = Path(root)
        self.per_class = dict(per_class or {})
        for split, n in self.per_class.items():
            if split not in self.splits or not (n is None or (type(n) is int and n >= 1)):
                raise ValueError(
                    f"data.per_class.{split}={n!r}: give the splits {list(self.splits)} an "
                    "integer >= 1 each, or null for every image"
                )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r})"

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


class ImageFolderDataModule(ReaderDataModule):
    """An image folder (:class:`ImageFolderReader`, whose arguments ``root`` and
    ``per_class`` it takes); :class:`RegionGraphDataModule`'s arguments besides."""

    reader_class = ImageFolderReader
