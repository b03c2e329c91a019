"""The backbone alone, as a baseline anyone can run (``model=cnn_baseline``).

What a user would otherwise pick: the torchvision backbone, its last feature map averaged
over the whole image for the image-level heads (scene labels, image classes), and over each
region, then each object (its region memberships, the task's own pooling), for the object
and relation heads. No region descriptors, no graph, no sequence stage; the same task, heads,
losses, metrics and entry points as :class:`~graphvision.nn.net.GraphVisionNet` (both are
:class:`~graphvision.nn.net.Net` s).
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from torch import nn
from torch_geometric.utils import scatter

from graphvision.nn.features import cell_regions, pool_regions
from graphvision.nn.net import Net
from graphvision.nn.sequence import SequenceOutput
from graphvision.tasks import Task


class BackboneNet(Net):
    """Args:
    info: the DataModule's vocabulary, read by the task.
    task: the task config (``conf/model/task/``), built with ``info``, ``dim``, ``dropout``.
    backbone: the backbone config (``conf/model/backbone/``); ``model=cnn_baseline`` pools its
        last stage (``return_nodes: [layer4]`` for ResNets; with several, the last).
    dim: width of the image and region vectors the heads read.
    dropout: in the heads.
    gnn, sequence: must be None (the module hands every network every stage config;
        ``model=cnn_baseline`` sets these null).
    descriptors: unused (the backbone alone reads no region descriptors).

    The image vector is the global average pool of the feature map, computed as the mean of
    the region features weighted by each region's share of the feature map's cells (equal to
    it, since every cell belongs to one region): so region attributions reach it.
    """

    def __init__(
        self,
        info: dict,
        task: dict,
        backbone: dict,
        dim: int,
        dropout: float,
        gnn: dict | None = None,
        sequence: dict | None = None,
        descriptors: str | list[str] = "all",
    ) -> None:
        super().__init__()
        if backbone.get("_target_") == "graphvision.nn.features.NoBackbone":
            raise ValueError(
                "model=cnn_baseline is the backbone alone: it needs a backbone, not "
                "model/backbone=none"
            )
        if gnn is not None or sequence is not None:
            raise ValueError(
                "model=cnn_baseline is the backbone alone: model.gnn and model.sequence must be "
                "null (it has no region graph or sequence stage)"
            )
        self.features = instantiate(backbone)
        width = self.features.channels[-1]  # the last return node's map
        self.project = nn.Sequential(nn.Linear(width, dim), nn.LayerNorm(dim))
        self.task: Task = instantiate(task, info=info, dim=dim, dropout=dropout)

    def node_inputs(self, batch) -> torch.Tensor:
        """Region features ``[N, C]``: the feature map averaged over each region."""
        fmap = self.features.feature_map(batch.image)  # (B, C, h, w)
        return pool_regions(fmap, batch.segments, batch.pos, batch.batch)

    def encode(self, batch, return_attention: bool = False, nodes: torch.Tensor | None = None):
        """``cls`` = the projected global average pool, ``tokens`` = the projected region
        features; ``attention [1, N]`` = each region's share of the pooled cells."""
        fmap = self.features.feature_map(batch.image)  # (B, C, h, w)
        if nodes is None:
            nodes = pool_regions(fmap, batch.segments, batch.pos, batch.batch)  # (N, C)
        n, (b, _, h, w) = nodes.size(0), fmap.shape
        share = torch.bincount(cell_regions(batch.segments, h, w), minlength=n).to(nodes.dtype)
        share = share / (h * w)  # (N,): sums to 1 per image
        image = scatter(share[:, None] * nodes, batch.batch, dim=0, dim_size=b, reduce="sum")
        attention = share[None] if return_attention else None  # (1, N)
        return SequenceOutput(self.project(image), self.project(nodes), attention)
