"""The network: regions -> CNN features -> GNN -> sequence -> heads, as one ``nn.Module``.

Each stage is built from its config (a dict with Hydra's ``_target_``), so a checkpoint's
hyper-parameters rebuild the same network. The LightningModule (``module.py``) owns
losses, metrics and optimisers; this file owns only the forward pass.
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from torch import nn

from graphvision.heads import (
    ClassHead,
    ObjectHead,
    RegionHead,
    RelationHead,
    SceneHead,
    ZeroShotHead,
)
from graphvision.regions import EDGE_FEATURES, NODE_FEATURES


def obj_batch(batch) -> torch.Tensor:
    """Image index of every object ``[M]`` (``follow_batch``'s vector, or built for one graph)."""
    if "obj_label_batch" in batch:
        return batch.obj_label_batch
    return batch.obj_label.new_zeros(batch.obj_label.numel())


class GraphVisionNet(nn.Module):
    """Args:
    info: what to predict: ``{"task", "categories", "relations", "classes"}``.
    backbone, gnn, sequence: stage configs (``_target_`` + arguments); the widths are
        filled in here.
    dim: token width throughout (default 128).
    dropout: in the heads (default 0.0).
    shape_grid: side of the object region-mask grid fed to the object head (default 8; 0: off).
    """

    def __init__(
        self,
        info: dict,
        backbone: dict,
        gnn: dict,
        sequence: dict,
        dim: int = 128,
        dropout: float = 0.0,
        shape_grid: int = 8,
        zero_shot: bool = False,
        text_encoder: str | None = None,
    ) -> None:
        super().__init__()
        self.task = info["task"]
        self.features = instantiate(backbone)
        self.node_encoder = nn.Sequential(
            nn.Linear(self.features.out_channels + len(NODE_FEATURES), dim),
            nn.GELU(),
            nn.Linear(dim, dim),
        )
        self.gnn = instantiate(gnn, channels=dim, edge_dim=len(EDGE_FEATURES))
        self.sequence = instantiate(sequence, dim=dim)
        if self.task == "relations":
            self.scene_head = SceneHead(dim, len(info["categories"]))
            self.region_head = RegionHead(dim, len(info["categories"]))
            self.object_head = ObjectHead(dim, len(info["categories"]), dropout, shape_grid)
            self.relation_head = RelationHead(dim, len(info["relations"]), dropout)
            if zero_shot:  # scene and object logits against the category names' text embeddings
                from graphvision.text import encode_texts

                text = encode_texts(info["categories"], text_encoder)
                self.scene_head = ZeroShotHead(dim, text)
                self.object_head.classify = nn.Sequential(nn.GELU(), ZeroShotHead(dim, text))
        elif self.task == "classification":
            self.class_head = ClassHead(dim, len(info["classes"]))
        else:
            raise ValueError(f"unknown task {self.task!r}: use 'relations' or 'classification'")

    def node_inputs(self, batch) -> torch.Tensor:
        """Region embeddings before any context ``[N, dim]``: CNN features + descriptors."""
        feats = self.features(batch.image, batch.segments, batch.pos, batch.batch)  # (N, C)
        return self.node_encoder(torch.cat([feats, batch.x], dim=1))  # (N, d)

    def forward(self, batch, return_attention: bool = False, nodes: torch.Tensor | None = None):
        """Logits of every head. ``return_attention`` adds ``attention [layers, N]``, the CLS
        token's attention to each region; ``nodes`` replaces :meth:`node_inputs` (for
        attributions)."""
        h = self.node_inputs(batch) if nodes is None else nodes
        h = self.gnn(h, batch.edge_index, batch.edge_attr, batch.batch)  # (N, d)
        cls, tokens, *attention = self.sequence(h, batch.pos, batch.batch, return_attention)
        out = {"attention": attention[0]} if return_attention else {}
        if self.task == "classification":
            out["class_logits"] = self.class_head(cls)
            return out
        out["scene_logits"] = self.scene_head(cls)
        out["region_logits"] = self.region_head(tokens)
        num_objects = int(batch.obj_label.numel())
        emb, geom, out["object_logits"] = self.object_head(
            tokens,
            batch.x,
            batch.segments,
            batch.obj_region_index,
            batch.obj_region_weight,
            obj_batch(batch),
            num_objects,
        )
        out["relation_logits"] = self.relation_head(emb, geom, batch.rel_index)
        return out

    def region_attribution(self, batch, category: int) -> torch.Tensor:
        """Gradient x input attribution ``[N]`` of each region to the scene (or image-class)
        logit of ``category``, summed over the images of the batch."""
        nodes = self.node_inputs(batch).detach().requires_grad_(True)
        out = self(batch, nodes=nodes)
        logits = out["scene_logits"] if self.task == "relations" else out["class_logits"]
        (grad,) = torch.autograd.grad(logits[:, category].sum(), nodes)
        return (grad * nodes).sum(dim=1).detach()  # (N,)
