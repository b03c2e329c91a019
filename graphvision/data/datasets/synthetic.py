"""The synthetic scenes as a dataset: :class:`SyntheticReader` and its DataModule
(``conf/data/synthetic.yaml``, the default)."""

from __future__ import annotations

from graphvision.data import synthetic
from graphvision.data.datamodule import ReaderDataModule
from graphvision.data.datasets.coco import CocoReader
from graphvision.data.reader import scene_graph_info
from graphvision.data.synthetic import generate_once, generated_root, write_split


class SyntheticReader(CocoReader):
    """Coloured shapes on textured backgrounds, generated on first use (:meth:`prepare`)
    into ``data_dir/synthetic/<settings digest>/`` in COCO format, then read as COCO.

    Args:
        data_dir: parent of the generated dataset (default ``data``).
        num_train, num_val: images per split (defaults 1600, 300).
        image_size: side of the square images (default 128).
        seed: generator seed (default 0).
        shapes, colours: category vocabulary (names ``"<colour> <shape>"``).
        min_objects, max_objects: objects per image (defaults 2, 6).
        unseen_categories, strict: :class:`CocoReader`'s.
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
        unseen_categories: list[str] | None = None,
        strict: bool = False,
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
        super().__init__(str(root), "train", "val", unseen_categories, strict)

    def prepare(self) -> None:
        """Writes the dataset unless a complete copy is already there."""

        def write() -> None:
            for split_index, split in enumerate(self.splits):
                write_split(
                    self.root, split, self.counts[split], self.seed, split_index, **self.scene
                )

        generate_once(self.root, write, {"counts": self.counts, "seed": self.seed})

    @property
    def info(self) -> dict:
        names = synthetic.category_names(self.scene["shapes"], self.scene["colours"])
        return scene_graph_info(names, self.predicates, self.unseen_categories)


class SyntheticDataModule(ReaderDataModule):
    """Embedded default: the synthetic scenes (:class:`SyntheticReader`, whose arguments
    it takes), generated on first use; :class:`RegionGraphDataModule`'s arguments besides
    (``strict`` is the reader's too), with ``batch_size=32`` and ``in_memory=True``."""

    reader_class = SyntheticReader
    defaults = {"batch_size": 32, "in_memory": True}

    def generate(self) -> None:
        """Writes the dataset unless a complete copy is already there
        (:meth:`SyntheticReader.prepare`)."""
        self.reader.prepare()
