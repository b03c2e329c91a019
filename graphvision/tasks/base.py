"""The task interface: what the network predicts from the sequence stage, and how it is
trained, measured and reported.

A task is an ``nn.Module`` holding its heads. The network (:class:`~graphvision.nn.net.
GraphVisionNet`) calls it on the sequence stage's output; the LightningModule asks it for its
losses and, once per stage (``val``, ``test``), for a fresh set of metrics; the DataModules
batch the fields it lists in :attr:`Task.follow_batch`; ``eval`` asks it which modes and options it
offers, which metrics belong to which mode, and for the breakdowns it writes;
:class:`~graphvision.predictor.Predictor` for an image's typed prediction. A task is chosen by its config
(``model/task=...``, a ``_target_`` and its arguments), so adding one is a new module here and
a config under ``conf/model/task/``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torchmetrics import Metric


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
    #: evaluation modes the task offers (``eval mode=...``); the first is no default, all are
    modes: tuple[str, ...] = ()
    #: settings of ``conf/eval.yaml`` the task reads in :meth:`configure_eval`
    eval_options: tuple[str, ...] = ()
    #: whether a prediction may be given the objects as boxes (``predict boxes=...``)
    takes_boxes: bool = False
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
    def forward(
        self, cls: torch.Tensor, tokens: torch.Tensor, batch, detect: bool = False
    ) -> dict[str, torch.Tensor]:
        """Logits of every head, by name, from ``cls [B, d]`` and ``tokens [N, d]``;
        ``detect``: find what the batch does not give as well (a task that cannot ignores
        it)."""
        raise NotImplementedError

    def wants_detection(self, batch, mode: str | None = None) -> bool:
        """Whether predicting on ``batch`` (one image) in ``mode`` (one of :attr:`modes`, or
        None: what the inputs give) means finding what it does not give (scene graphs: the
        objects, when no annotation or box gives them, or in ``sgdet``)."""
        return False

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

    # -- evaluation modes -----------------------------------------------------------------
    def configure_eval(self, modes=None, **options) -> tuple[str, ...]:
        """Checks the evaluation ``modes`` asked for (a name, a list, or None: all of
        :attr:`modes`) and applies ``options`` (the :attr:`eval_options` of
        ``conf/eval.yaml``; None leaves a setting as trained); returns the modes.

        Raises:
            ValueError: an unknown mode, or an option the task does not read.
        """
        unknown = sorted(set(options) - set(self.eval_options))
        if unknown:
            raise ValueError(f"{type(self).__name__} reads no eval option {unknown}")
        if not self.modes:
            return ()
        asked = [modes] if isinstance(modes, str) else list(modes or self.modes)
        if not asked or any(m not in self.modes for m in asked):
            raise ValueError(f"mode={asked}: choose among {list(self.modes)}")
        return tuple(asked)

    def detects(self, modes: tuple[str, ...]) -> bool:
        """Whether evaluating ``modes`` needs :meth:`forward` with ``detect=True``."""
        return False

    def metric_mode(self, name: str) -> str | None:
        """The mode a metric (``val/<name>``) belongs to, or None if it belongs to every mode."""
        return None

    def needs_training_split(self) -> bool:
        """Whether the task lacks what :meth:`fit_start` records (a checkpoint saved before
        training started): ``eval`` then reads the training split first."""
        return False

    # -- using a trained model --------------------------------------------------------------
    def prediction(self, out: dict[str, torch.Tensor], graph, options: dict, mode=None):
        """The typed prediction of one image (a batch of one graph, ``out`` its outputs with
        ``attention``): a dataclass with ``to_json()``, ``title()`` and ``panels(image)``
        (drawings beside the region graph, each ``f(ax)``). ``options``:
        ``conf/predict.yaml``'s settings (``top_k``, ``threshold``, ...), ``size`` (the
        photo's own width and height), ``annotated`` and ``labels_given``; ``mode``: one of
        :attr:`modes` (None: what the inputs give)."""
        raise NotImplementedError

    def write_breakdowns(self, net: nn.Module, loader, out_dir: Path, modes=None) -> list[Path]:
        """Files ``eval`` writes beside ``metrics.json`` (default: none), for the evaluation
        ``modes`` asked for (None: all of :attr:`modes`)."""
        return []

    def describe(self) -> str:
        """One line for the log: what this task predicts."""
        return type(self).__name__
