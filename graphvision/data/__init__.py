"""Stage: datasets (COCO, synthetic scenes, image folders), caching and the DataModules."""

from graphvision.data.contract import RegionGraph, obj_regions
from graphvision.data.datamodule import (
    CocoDataModule,
    ImageFolderDataModule,
    RegionGraphDataModule,
    SyntheticDataModule,
    SyntheticFolderDataModule,
)
from graphvision.data.relations import RELATIONS

__all__ = [
    "RELATIONS",
    "CocoDataModule",
    "ImageFolderDataModule",
    "RegionGraph",
    "RegionGraphDataModule",
    "SyntheticDataModule",
    "SyntheticFolderDataModule",
    "obj_regions",
]
