"""The task interface: what the network predicts from the sequence stage, and how it is
trained, measured and reported.

A task is an ``nn.Module`` holding its heads. The network (:class:`~graphvision.nn.net.
GraphVisionNet`) calls it on the sequence stage's output; the LightningModule asks it for its
losses and, once per stage (``val``, ``test``), for a fresh set of metrics; the DataModules
batch the fields it lists in :attr:`Task.follow_batch`; ``predict`` and ``eval`` ask it for an
image's prediction record and for the breakdowns it writes. A task is chosen by its config
(``model/task=...``, a ``_target_`` and its arguments), so adding one is a new module here and
a config under ``conf/model/task/``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchmetrics import Metric

from graphvision.data.cache import ImageJob


class Task(nn.Module):
    """Base class of every task.

    Args:
        info: the vocabulary from the DataModule: ``categories``, ``predicates`` and
            ``classes`` (lists of names; a task reads what it needs and checks it is there),
            optionally ``unseen`` (categories left out of training targets).
        dim: token width of the sequence stage.
        dropout: dropout in the heads.
        loss_weights: weight of each loss :meth:`losses` returns, by name; exactly the names
            of :attr:`loss_names`.
    """

    #: graph fields whose batch vector the loader must build (PyG's ``follow_batch``)
    follow_batch: tuple[str, ...] = ()
    #: names of the losses :meth:`losses` can return
    loss_names: tuple[str, ...] = ()
    #: metric names shown in the progress bar
    progress_bar: tuple[str, ...] = ()
    #: evaluation modes the task knows (scene graphs: ``predcls``, ``sgcls``, ``sgdet``)
    modes: tuple[str, ...] = ()
    #: validate with detection (``forward(..., detect=True)``) every n epochs; 0: never
    detect_every: int = 0

    def __init__(
        self, info: dict, dim: int, dropout: float, loss_weights: dict[str, float]
    ) -> None:
        super().__init__()
        if set(loss_weights) != set(self.loss_names):
            raise ValueError(
                f"{type(self).__name__}: loss_weights must name exactly {sorted(self.loss_names)}, "
                f"got {sorted(loss_weights)}"
            )
        self.info, self.dim = info, dim
        self.loss_weights = {k: float(v) for k, v in loss_weights.items()}

    def require(self, key: str, hint: str) -> list[str]:
        """``info[key]``, or a clear error saying which data this task needs."""
        names = list(self.info.get(key) or [])
        if not names:
            raise ValueError(f"{type(self).__name__} needs data with {key}, got none: {hint}")
        return names

    def fit_start(self, datamodule) -> None:
        """Called when training starts, with the DataModule (set up): what the task records
        about the training split (default: nothing)."""

    # -- the forward pass -----------------------------------------------------------------
    def forward(self, cls: torch.Tensor, tokens: torch.Tensor, batch) -> dict[str, torch.Tensor]:
        """Logits of every head, by name, from ``cls [B, d]`` and ``tokens [N, d]``. A task
        with :attr:`detect_every` also takes ``detect: bool`` (find objects as well)."""
        raise NotImplementedError

    def attribution_logits(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The image-level logits ``[B, K]`` that an attribution explains."""
        raise NotImplementedError

    # -- training ---------------------------------------------------------------------------
    def losses(self, out: dict[str, torch.Tensor], batch) -> dict[str, torch.Tensor]:
        """Unweighted losses by name (a subset of :attr:`loss_names`: a loss with no target in
        the batch is left out)."""
        raise NotImplementedError

    # -- metrics ----------------------------------------------------------------------------
    def make_metrics(self) -> nn.ModuleDict:
        """A fresh set of metrics for one stage (``val`` or ``test``)."""
        raise NotImplementedError

    def update_metrics(
        self, metrics: nn.ModuleDict, out: dict[str, torch.Tensor], batch
    ) -> dict[str, Metric]:
        """Updates ``metrics`` with one batch; returns the metric objects to log for it, by
        name (Lightning computes and resets them at the end of the epoch)."""
        raise NotImplementedError

    def epoch_metrics(self, metrics: nn.ModuleDict) -> dict[str, torch.Tensor]:
        """Values computed once at the end of an epoch from ``metrics`` (which are reset)."""
        return {}

    # -- using a trained model --------------------------------------------------------------
    def image_job(self, path: str, annotation=None, category_ids: tuple = ()) -> ImageJob:
        """The pre-processing job of one image to predict on, with its COCO annotation record
        (``annotation``, a :class:`~graphvision.data.coco.CocoImage`) if there is one."""
        return ImageJob(str(path), 0)

    def prediction_record(self, out: dict[str, torch.Tensor], graph, options: dict) -> dict:
        """The JSON-ready prediction of one image (a batch of one graph). ``options``:
        ``conf/predict.yaml``'s settings (``top_k``, ``threshold``, ...) and ``size``, the
        photo's own (width, height)."""
        raise NotImplementedError

    def prediction_title(self, record: dict) -> str:
        """A one-line summary of a prediction record, for its picture."""
        return ""

    def prediction_panels(self, record: dict, graph, image) -> list[Callable]:
        """Drawings beside the region graph in a prediction's picture, each ``f(ax)``, over
        ``image`` (the photo at its own size)."""
        return []

    def draw_prediction(self, record: dict, graph, out: dict, path: Path, photo=None) -> None:
        """The prediction's PNG: the region graph coloured by the CLS token's attention (last
        layer), titled by :meth:`prediction_title`, then :meth:`prediction_panels`; over
        ``photo`` (``[H, W, 3]`` uint8, the image at its own size and aspect ratio) when
        given, else over the working copy."""
        from graphvision.viz import draw_region_graph, file_figure, upsample_labels

        image, segments = graph.image, graph.segments
        if photo is not None:
            image, segments = photo, upsample_labels(graph.segments, photo.shape[:2])
        h, w = segments.shape
        panels = self.prediction_panels(record, graph, image)
        height = 5.5 * min(max(h / w, 0.5), 2.0)
        fig, axes = file_figure(1, 1 + len(panels), figsize=(6 * (1 + len(panels)), height))
        draw_region_graph(
            image,
            segments,
            graph.pos,
            graph.edge_index,
            values=out["attention"][-1],
            ax=axes[0, 0],
            cmap="magma",
            label="CLS attention (last layer)",
        )
        axes[0, 0].set_title(self.prediction_title(record), fontsize=8)
        for ax, draw in zip(axes[0, 1:], panels):
            draw(ax)
        fig.tight_layout()
        fig.savefig(path, dpi=100)

    def write_breakdowns(self, net: nn.Module, loader, out_dir: Path, modes=None) -> list[Path]:
        """Files ``eval`` writes beside ``metrics.json`` (default: none), for the evaluation
        ``modes`` asked for (None: all of :attr:`modes`)."""
        return []

    def describe(self) -> str:
        """One line for the log: what this task predicts."""
        return type(self).__name__
