"""The per-image data contract: one :class:`RegionGraph` (a PyG ``Data``) per image.

Fields: ``image [3, H, W]`` float in ``[0, 1]``, ``segments [H, W]``,
``pos [N, 2]``, ``x [N, F]``, ``edge_index [2, E]``, ``edge_attr [E, D]``, ``y [1, C]``,
``obj_label [M]``, ``obj_box [M, 4]``, ``obj_mask [M, ceil(H * W / 8)]`` (each object's mask
at the working resolution, bit-packed: :func:`graphvision.data.objects.unpack_masks`),
``rel_index [2, R]``, ``rel_label [R]``, ``image_id [1]``;
image folders carry ``label [1]`` instead of the object fields.

``obj_regions`` (the sparse ``[M, N]`` membership matrix) is stored as its COO parts,
``obj_region_index [2, K]`` (object, region) and ``obj_region_weight [K]``, so that PyG's
batching can offset both rows; :func:`obj_regions` rebuilds the sparse matrix.
"""

from __future__ import annotations

import torch
from torch_geometric.data import Data


class RegionGraph(Data):
    """A region graph whose per-image tensors batch correctly:

    ``image`` and ``segments`` are stacked (``segments`` offset by the node count),
    ``rel_index`` is offset by the object count, ``obj_region_index`` by
    ``[[objects], [nodes]]``.
    """

    @property
    def num_objects(self) -> int:
        label = self.get("obj_label") if "obj_label" in self else None
        return 0 if label is None else int(label.numel())

    def __inc__(self, key: str, value, *args, **kwargs):
        if key == "segments":
            return self.num_nodes
        if key == "rel_index":
            return self.num_objects
        if key == "obj_region_index":
            return torch.tensor([[self.num_objects], [self.num_nodes]])
        return super().__inc__(key, value, *args, **kwargs)

    def __cat_dim__(self, key: str, value, *args, **kwargs):
        if key in ("image", "segments"):
            return None
        return super().__cat_dim__(key, value, *args, **kwargs)


def obj_regions(data: Data) -> torch.Tensor:
    """The sparse ``[M, N]`` object-region membership matrix of a graph or batch."""
    num_obj = int(data.obj_label.numel())
    return torch.sparse_coo_tensor(
        data.obj_region_index,
        data.obj_region_weight,
        (num_obj, data.num_nodes),
        check_invariants=True,
    ).coalesce()
