"""The synthetic scenes as an image folder: :class:`SyntheticFolderReader` and its DataModule
(``conf/data/synthetic_folder.yaml``)."""

from __future__ import annotations

from graphvision.data import synthetic
from graphvision.data.datamodule import ReaderDataModule
from graphvision.data.datasets.folder import ImageFolderReader
from graphvision.data.synthetic import class_folder, generate_once, generated_root, write_folder


class SyntheticFolderReader(ImageFolderReader):
    """An image-folder task built from the synthetic scenes: one object per image on a
    textured background, its category (``"red circle"``, ...) as the class. Written on first
    use (:meth:`prepare`) to
    ``data_dir/synthetic_folder/<settings digest>/{train,val}/<class>/*.png``.

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
    ) -> None:
        self.counts = {"train": int(per_class_train), "val": int(per_class_val)}
        self.size, self.seed = int(image_size), int(seed)
        root = generated_root(data_dir, "synthetic_folder", [self.counts, self.size, self.seed])
        super().__init__(str(root))

    def prepare(self) -> None:
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


class SyntheticFolderDataModule(ReaderDataModule):
    """The synthetic image folder (:class:`SyntheticFolderReader`, whose arguments it
    takes), generated on first use; :class:`RegionGraphDataModule`'s arguments besides."""

    reader_class = SyntheticFolderReader

    def generate(self) -> None:
        """Writes the folder unless a complete copy is already there
        (:meth:`SyntheticFolderReader.prepare`)."""
        self.reader.prepare()
