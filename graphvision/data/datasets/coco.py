"""COCO instance files as a dataset: :class:`CocoReader` and its DataModule
(``conf/data/coco.yaml``)."""

from __future__ import annotations

from pathlib import Path

from graphvision.data.coco import CocoIndex, check_coco_root, read_coco
from graphvision.data.datamodule import ReaderDataModule
from graphvision.data.pipeline import ImageJob
from graphvision.data.reader import Reader, scene_graph_info
from graphvision.data.relations import RELATIONS

#: the annotation fields a job carries (what the targets read; ``id`` names relation ends)
ANNOTATION_FIELDS = ("id", "category_id", "bbox", "iscrowd", "segmentation")


class CocoReader(Reader):
    """COCO instance files under ``root``: scene labels, objects and relations.

    Scene labels are every category annotated in an image; objects and, without annotated
    relations, sg2im's geometric relation of every pair of them follow sg2im
    (:mod:`graphvision.data.objects`). A COCO-style dataset that annotates its relations is
    this reader with its own :meth:`relations` and :attr:`predicates`.

    Args:
        root: holds ``annotations/instances_{train,val}.json`` and ``{train,val}/``.
        train_split, val_split: folder / annotation names (default ``train2017``, ``val2017``).
        unseen_categories: category names left out of every training target, for zero-shot
            evaluation (default none).
        strict: make a dropped or repaired annotation a
            :class:`~graphvision.data.coco.DataError` (default False: counted and logged).
    """

    def __init__(
        self,
        root: str = "data/coco",
        train_split: str = "train2017",
        val_split: str = "val2017",
        unseen_categories: list[str] | None = None,
        strict: bool = False,
    ) -> None:
        self.root = Path(root)
        self.split_names = {"train": train_split, "val": val_split}
        self.unseen_categories = list(unseen_categories or [])
        self.strict = bool(strict)
        self._index: dict[str, CocoIndex] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r})"

    def annotation_file(self, split: str) -> Path:
        """``root/annotations/instances_<split name>.json``."""
        return self.root / "annotations" / f"instances_{self.split_names[split]}.json"

    def index(self, split: str) -> CocoIndex:
        """``split``'s annotation file, read and checked once (:func:`read_coco`)."""
        if split not in self._index:
            check_coco_root(self.root, tuple(self.split_names.values()))
            self._index[split] = read_coco(
                self.annotation_file(split), self.root / self.split_names[split], self.strict
            )
        return self._index[split]

    def relations(self, split: str) -> dict[int, list[tuple[int, int, int]]] | None:
        """The annotated relations of ``split``'s images, by image id: ``(subject annotation
        id, object annotation id, predicate index into`` :attr:`predicates` ``)``; an image
        missing from it has none. None (the default: COCO's files annotate none): every
        ordered pair of objects gets sg2im's geometric relation."""
        return None

    @property
    def predicates(self) -> list[str]:
        """The predicates the relations are indices into: sg2im's
        :data:`~graphvision.data.relations.RELATIONS` unless :meth:`relations` says
        otherwise."""
        return list(RELATIONS)

    def jobs(self, split: str) -> list[ImageJob]:
        index = self.index(split)
        cat_ids = tuple(c["id"] for c in index.categories)
        relations = self.relations(split)
        if relations is not None:
            self._check_predicates(relations, split)
        return [
            ImageJob(
                path=str(img.file),
                image_id=img.id,
                expected_size=(img.width, img.height),
                annotations=tuple(
                    {k: a[k] for k in ANNOTATION_FIELDS if k in a} for a in img.annotations
                ),
                category_ids=cat_ids,
                relations=None
                if relations is None
                else tuple(tuple(int(v) for v in r) for r in relations.get(img.id, ())),
            )
            for img in index.images
        ]

    def _check_predicates(self, relations: dict, split: str) -> None:
        count = len(self.predicates)
        for image_id, triplets in relations.items():
            for s, o, p in triplets:
                if not 0 <= int(p) < count:
                    raise ValueError(
                        f"{self.annotation_file(split)}: image id {image_id}: relation "
                        f"({s}, {o}, {p}) has predicate index {p}, not one of the "
                        f"{count} predicates {self.predicates}"
                    )

    def category_names(self) -> list[str]:
        """The categories, in id order; the same in both splits."""
        names = self.index("train").category_names
        if self.index("val").category_names != names:
            raise ValueError(
                f"{self.root}: train and val annotation files list different categories"
            )
        return names

    @property
    def info(self) -> dict:
        return scene_graph_info(self.category_names(), self.predicates, self.unseen_categories)


class CocoDataModule(ReaderDataModule):
    """COCO 2017 as distributed, under ``root`` (:class:`CocoReader`, whose arguments it
    takes); :class:`RegionGraphDataModule`'s arguments besides (``strict`` is the reader's
    too), with ``batch_size=16`` and ``in_memory=False`` (COCO's images are many and large).
    """

    reader_class = CocoReader
    defaults = {"batch_size": 16, "in_memory": False}

    def index(self, split: str) -> CocoIndex:
        """The reader's :meth:`CocoReader.index`."""
        return self.reader.index(split)
