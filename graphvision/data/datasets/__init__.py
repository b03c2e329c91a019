"""graphvision's datasets, one file each: its reader and its DataModule (the reader built from
the keys of its ``conf/data/`` config)."""

from graphvision.data.datasets.coco import CocoDataModule, CocoReader
from graphvision.data.datasets.folder import ImageFolderDataModule, ImageFolderReader
from graphvision.data.datasets.synthetic import SyntheticDataModule, SyntheticReader
from graphvision.data.datasets.synthetic_folder import (
    SyntheticFolderDataModule,
    SyntheticFolderReader,
)

__all__ = [
    "CocoDataModule",
    "CocoReader",
    "ImageFolderDataModule",
    "ImageFolderReader",
    "SyntheticDataModule",
    "SyntheticFolderDataModule",
    "SyntheticFolderReader",
    "SyntheticReader",
]
