"""Stage 1: image -> superpixel regions -> region graph (pure functions, NumPy)."""

from graphvision.regions.graph import (
    BENCHMARK_DESCRIPTORS,
    EDGE_FEATURES,
    EDGES,
    NODE_FEATURES,
    descriptor_columns,
    edge_geometry,
    knn_edges,
    region_adjacency,
    region_boxes,
    region_descriptors,
    region_graph,
    relabel_consecutive,
    shared_boundary,
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
    "BENCHMARK_DESCRIPTORS",
    "EDGE_FEATURES",
    "EDGES",
    "NODE_FEATURES",
    "RegionConfig",
    "achievable_segmentation_accuracy",
    "boundary_recall",
    "instance_label_map",
    "grid_labels",
    "descriptor_columns",
    "edge_geometry",
    "knn_edges",
    "image_to_regions",
    "region_adjacency",
    "region_boxes",
    "region_descriptors",
    "region_graph",
    "relabel_consecutive",
    "shared_boundary",
    "resize_image",
    "slic_superpixels",
]
