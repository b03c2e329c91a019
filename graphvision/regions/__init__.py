"""Stage 1: image -> superpixel regions -> region graph (pure functions, NumPy)."""

from graphvision.regions.graph import (
    EDGE_FEATURES,
    NODE_FEATURES,
    edge_geometry,
    region_adjacency,
    region_boxes,
    region_descriptors,
    region_graph,
    relabel_consecutive,
)
from graphvision.regions.quality import (
    achievable_segmentation_accuracy,
    boundary_recall,
    instance_label_map,
)
from graphvision.regions.superpixels import (
    RegionConfig,
    grid_labels,
    image_to_regions,
    resize_image,
    slic_superpixels,
)

__all__ = [
    "EDGE_FEATURES",
    "NODE_FEATURES",
    "RegionConfig",
    "achievable_segmentation_accuracy",
    "boundary_recall",
    "instance_label_map",
    "grid_labels",
    "edge_geometry",
    "image_to_regions",
    "region_adjacency",
    "region_boxes",
    "region_descriptors",
    "region_graph",
    "relabel_consecutive",
    "resize_image",
    "slic_superpixels",
]
