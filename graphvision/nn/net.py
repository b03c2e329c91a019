"""The network: regions -> CNN features -> GNN -> sequence -> task heads, as one ``nn.Module``
(:class:`GraphVisionNet`; the baseline without regions' context is
:class:`~graphvision.nn.baseline.BackboneNet`, ``model=cnn_baseline``).

Each stage, and the task, is built from its config (a dict with Hydra's ``_target_``), so a
checkpoint's hyper-parameters rebuild the same network. The LightningModule (``module.py``)
owns the optimiser and the logging; this file owns only the forward pass.
"""

from __future__ import annotations

import torch
from hydra.utils import instantiate
from torch import nn

from graphvision.nn.sequence import SequenceStage
from graphvision.regions import EDGE_FEATURES, descriptor_columns
from graphvision.tasks import Task


class Net(nn.Module):
    """What the networks share (:class:`GraphVisionNet`, and the baseline
    :class:`~graphvision.nn.baseline.BackboneNet`): the forward pass through :meth:`encode` into
    the task, region attributions, and the extra losses and statistics the LightningModule
    asks for (none here). A network has ``features`` (the backbone), ``task`` (the heads),
    :meth:`node_inputs` and :meth:`encode`."""

    task: Task

    def node_inputs(self, batch) -> torch.Tensor:
        """Region inputs of :meth:`encode`, the ones attributions are taken of."""
        raise NotImplementedError

    def encode(self, batch, return_attention: bool = False, nodes: torch.Tensor | None = None):
        """The :class:`~graphvision.nn.sequence.SequenceOutput` the task reads."""
        raise NotImplementedError

    @property
    def loss_weights(self) -> dict[str, float]:
        """Weights of :meth:`extra_losses` in the training loss."""
        return {}

    def extra_losses(self) -> dict[str, torch.Tensor]:
        """Losses of the network beyond the task's (of the last forward pass)."""
        return {}

    def statistics(self) -> dict[str, torch.Tensor]:
        """Scalars worth logging about the last forward pass."""
        return {}

    def forward(
        self,
        batch,
        return_attention: bool = False,
        nodes: torch.Tensor | None = None,
        detect: bool = False,
    ):
        """Logits of every head of the task. ``return_attention`` adds ``attention [layers,
        N]``, the CLS token's attention to each region; ``nodes`` replaces
        :meth:`node_inputs` (for attributions); ``detect`` asks the task to find what the batch
        does not give as well (scene graphs: objects, ``det_*``)."""
        seq = self.encode(batch, return_attention, nodes)
        out = self.task(seq.cls, seq.tokens, batch, detect=detect)
        if return_attention:
            out["attention"] = seq.attention
        return out

    def region_attribution(self, batch, category: int) -> torch.Tensor:
        """Gradient x input attribution ``[N]`` of each region to the image-level logit of
        ``category`` (a scene category or an image class), summed over the batch's images."""
        nodes = self.node_inputs(batch).detach().requires_grad_(True)
        logits = self.task.attribution_logits(self(batch, nodes=nodes))  # (B, K)
        (grad,) = torch.autograd.grad(logits[:, category].sum(), nodes)
        return (grad * nodes).sum(dim=1).detach()  # (N,)


class GraphVisionNet(Net):
    """Args:
    info: the DataModule's vocabulary (``categories``, ``predicates``, ``classes``, optionally
        ``unseen``), read by the task.
    task: the task config (``conf/model/task/``): a :class:`~graphvision.tasks.Task` built
        with ``info``, ``dim`` and ``dropout``; it holds the heads.
    backbone, gnn, sequence: stage configs (``_target_`` + arguments, ``conf/model/``); the
        widths are filled in here. ``model/backbone=none``
        (:class:`~graphvision.nn.features.NoBackbone`): no CNN, the regions are their
        descriptors alone.
    dim: token width throughout.
    dropout: in the heads.
    descriptors: the region descriptor columns (:data:`~graphvision.regions.NODE_FEATURES`)
        beside the CNN features in each region's input: ``"all"`` (default) or a list of
        column names (the superpixel benchmarks' colour and position:
        :data:`~graphvision.regions.BENCHMARK_DESCRIPTORS`).
    """

    def __init__(
        self,
        info: dict,
        task: dict,
        backbone: dict,
        gnn: dict,
        sequence: dict,
        dim: int,
        dropout: float,
        descriptors: str | list[str] = "all",
    ) -> None:
        super().__init__()
        self.features = instantiate(backbone)
        columns = descriptor_columns(descriptors)
        width = self.features.out_channels + len(columns)
        if width == 0:
            raise ValueError(
                "model/backbone=none with model.descriptors=[] leaves the regions no features: "
                "name descriptor columns (or all), or choose a backbone"
            )
        self.register_buffer("columns", torch.tensor(columns, dtype=torch.long), persistent=False)
        self.node_encoder = nn.Sequential(
            nn.Linear(width, dim),
            nn.GELU(),
            nn.Linear(dim, dim),
        )
        self.gnn = instantiate(gnn, channels=dim, edge_dim=len(EDGE_FEATURES))
        self.sequence: SequenceStage = instantiate(sequence, dim=dim)
        self.task: Task = instantiate(task, info=info, dim=dim, dropout=dropout)

    def region_inputs(self, batch) -> torch.Tensor:
        """What each region is before the node encoder ``[N, C + D]``: its CNN features (none
        with ``model/backbone=none``), then its chosen descriptor columns."""
        feats = self.features(batch.image, batch.segments, batch.pos, batch.batch)  # (N, C)
        return torch.cat([feats, batch.x.index_select(1, self.columns)], dim=1)  # (N, C + D)

    def node_inputs(self, batch) -> torch.Tensor:
        """Region embeddings before any context ``[N, dim]``: the encoded
        :meth:`region_inputs`."""
        return self.node_encoder(self.region_inputs(batch))  # (N, d)

    def encode(self, batch, return_attention: bool = False, nodes: torch.Tensor | None = None):
        """The sequence stage's output (:class:`~graphvision.nn.sequence.SequenceOutput`) that the
        task reads: CNN features, GNN and sequence stage."""
        h = self.node_inputs(batch) if nodes is None else nodes
        h = self.gnn(h, batch.edge_index, batch.edge_attr, batch.batch)  # (N, d)
        return self.sequence(h, batch.pos, batch.batch, return_attention)

    @property
    def loss_weights(self) -> dict[str, float]:
        return self.sequence.loss_weights

    def extra_losses(self) -> dict[str, torch.Tensor]:
        return self.sequence.extra_losses()

    def statistics(self) -> dict[str, torch.Tensor]:
        return self.sequence.statistics()
