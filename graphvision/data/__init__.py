"""Stage: datasets (COCO, synthetic scenes, image folders), pre-processing, the cache and the
DataModule. A dataset is a :class:`Reader`; :class:`RegionGraphDataModule` serves any."""

from graphvision.data.contract import RegionGraph, obj_regions
from graphvision.data.datamodule import ReaderDataModule, RegionGraphDataModule
from graphvision.data.datasets import (
    CocoDataModule,
    CocoReader,
    ImageFolderDataModule,
    ImageFolderReader,
    SyntheticDataModule,
    SyntheticFolderDataModule,
    SyntheticFolderReader,
    SyntheticReader,
)
from graphvision.data.pipeline import ImageJob
from graphvision.data.reader import Reader
from graphvision.data.relations import RELATIONS

__all__ = [
    "RELATIONS",
    "CocoDataModule",
    "CocoReader",
    "ImageFolderDataModule",
    "ImageFolderReader",
    "ImageJob",
    "Reader",
    "RegionGraph",
    "ReaderDataModule",
    "RegionGraphDataModule",
    "SyntheticDataModule",
    "SyntheticFolderDataModule",
    "SyntheticFolderReader",
    "SyntheticReader",
    "obj_regions",
]
