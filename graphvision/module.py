"""The LightningModule: the training loop, logging and optimiser around
:class:`GraphVisionNet`. What is predicted, its losses and its metrics belong to the task
(``graphvision/tasks/``); extra losses and statistics of a sequence stage to that stage."""

from __future__ import annotations

import math
from importlib.metadata import version
from pathlib import Path

import lightning as L
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from graphvision.nn.net import Net

__version__ = version("graphvision")

STAGES = ("val", "test")

#: Version of the checkpoint layout :class:`GraphVisionModule` writes. Checkpoints of other
#: versions are refused (:func:`check_format`): graphvision has no released checkpoints to
#: convert, so a model trained before a layout change is trained again.
CHECKPOINT_FORMAT = 6


def check_format(checkpoint: dict, path: str | Path | None = None) -> None:
    """Raises a clear error unless ``checkpoint`` has this version's layout.

    Raises:
        ValueError: naming the file, its format and how to train the model again.
    """
    found = checkpoint.get("graphvision_format")
    if found == CHECKPOINT_FORMAT:
        return
    written = f"checkpoint format {found}" if found is not None else "no checkpoint format"
    raise ValueError(
        f"{path or 'the checkpoint'} has {written}; this graphvision ({__version__}) reads "
        f"format {CHECKPOINT_FORMAT} only: train the model again with this version "
        "(python -m graphvision.train ..., the same overrides as before)"
    )


def _plain(cfg):
    return (
        OmegaConf.to_container(cfg, resolve=True)
        if isinstance(cfg, (DictConfig, ListConfig))
        else cfg
    )


class GraphVisionModule(L.LightningModule):
    """Every argument comes from ``conf/model/`` (``model/default.yaml`` and its groups).

    Args:
        info: the DataModule's vocabulary (``categories``, ``predicates``, ``classes``,
            optionally ``unseen``).
        task: the task config (``model/task=...``): heads, losses (with their weights) and
            metrics.
        net: the network's config, a ``_target_``: :class:`~graphvision.nn.net.GraphVisionNet`
            (regions, GNN, sequence stage) or :class:`~graphvision.nn.baseline.BackboneNet`
            (the backbone alone, ``model=cnn_baseline``; ``gnn`` and ``sequence`` are then
            null); built with every other stage config.
        backbone, gnn, sequence: stage configs (``_target_`` + arguments).
        dim: token width throughout.
        dropout: in the heads.
        descriptors: the region descriptor columns in each region's input (``graph``
            networks): ``all`` (default) or a list of names
            (:class:`~graphvision.nn.net.GraphVisionNet`).
        lr, weight_decay: AdamW (no decay on biases and norms).
        warmup_fraction: linear warm-up share of all steps before the cosine decay.
        data_config: the DataModule config the model was trained with, kept in checkpoints
            so that ``graphvision.eval`` can rebuild the data (default None).

    The training loss is the weighted sum of the task's losses (weights in
    ``model.task.loss_weights``) and the sequence stage's extra losses (DeepSeek-V3's
    expert balance, ``model.sequence.balance_weight``); each is logged as
    ``<stage>/loss_<name>`` and the sum as ``<stage>/loss``.
    """

    def __init__(
        self,
        info: dict,
        task: dict,
        net: dict,
        backbone: dict,
        gnn: dict | None,
        sequence: dict | None,
        dim: int,
        dropout: float,
        lr: float,
        weight_decay: float,
        warmup_fraction: float,
        descriptors: str | list[str],
        data_config: dict | None = None,
    ) -> None:
        super().__init__()
        # plain containers, so checkpoints load with torch.load(weights_only=True)
        info, net, task, backbone, gnn, sequence, data_config, descriptors = (
            _plain(info),
            _plain(net),
            _plain(task),
            _plain(backbone),
            _plain(gnn),
            _plain(sequence),
            _plain(data_config),
            _plain(descriptors),
        )
        self.save_hyperparameters()
        # the class its _target_ names, called with plain containers (Hydra's instantiate would
        # turn them into DictConfigs and build the stage configs itself)
        net_cls, net_args = (
            get_class(net["_target_"]),
            {k: v for k, v in net.items() if k != "_target_"},
        )
        self.net: Net = net_cls(
            **net_args,
            info=info,
            task=task,
            backbone=backbone,
            gnn=gnn,
            sequence=sequence,
            dim=dim,
            dropout=dropout,
            descriptors=descriptors,
        )
        self.metrics = nn.ModuleDict({stage: self.net.task.make_metrics() for stage in STAGES})
        #: find objects while validating (the task's detection): None follows ``task.detect_every`` during
        #: training and always outside it (``trainer.validate``); True/False forces it
        self.detect: bool | None = None

    def detect_now(self) -> bool:
        """Whether this validation or test epoch also finds objects (the task's detection): outside
        training always, in training every ``task.detect_every`` epochs and at the last one,
        never in the sanity check (unless :attr:`detect` says otherwise)."""
        if self.detect is not None:
            return self.detect
        every = self.net.task.detect_every
        trainer = self._trainer
        if not every or (trainer is not None and trainer.sanity_checking):
            return False
        if trainer is None or trainer.state.fn != "fit":
            return True
        epoch = self.current_epoch + 1
        return epoch % every == 0 or (
            trainer.max_epochs is not None and epoch >= trainer.max_epochs
        )

    def on_fit_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None:
            self.net.task.fit_start(datamodule)

    @property
    def loss_weights(self) -> dict[str, float]:
        return {**self.net.task.loss_weights, **self.net.loss_weights}

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.net(batch)

    def losses(self, out: dict, batch) -> dict[str, torch.Tensor]:
        """Every unweighted loss of a forward, by name: the task's and the network's (the
        sequence stage's)."""
        return {**self.net.task.losses(out, batch), **self.net.extra_losses()}

    def weighted_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The training loss: ``losses`` weighted by :attr:`loss_weights` and summed."""
        weights = self.loss_weights
        return sum(weights[k] * v for k, v in losses.items())

    def _step(self, batch, stage: str):
        out = self.net(batch, detect=stage != "train" and self.detect_now())
        losses = self.losses(out, batch)
        loss = self.weighted_loss(losses)
        bs = batch.num_graphs
        sync = stage != "train"  # validation and test averages are over every rank's batches
        self.log(
            f"{stage}/loss",
            loss,
            batch_size=bs,
            prog_bar=True,
            on_epoch=True,
            on_step=stage == "train",
            sync_dist=sync,
        )
        for name, value in losses.items():
            self.log(
                f"{stage}/loss_{name}",
                value,
                batch_size=bs,
                on_epoch=True,
                on_step=False,
                sync_dist=sync,
            )
        for name, value in self.net.statistics().items():
            self.log(
                f"{stage}/{name}",
                value,
                batch_size=bs,
                on_epoch=True,
                on_step=False,
                sync_dist=sync,
            )
        return out, loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[1]

    def _evaluation_step(self, batch, stage: str) -> None:
        out, _ = self._step(batch, stage)
        task = self.net.task
        for name, metric in task.update_metrics(self.metrics[stage], out, batch).items():
            self.log(
                f"{stage}/{name}",
                metric,
                batch_size=batch.num_graphs,
                prog_bar=name in task.progress_bar,
            )

    def _evaluation_epoch_end(self, stage: str) -> None:
        for name, value in self.net.task.epoch_metrics(self.metrics[stage]).items():
            self.log(f"{stage}/{name}", value)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluation_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._evaluation_epoch_end("val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluation_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._evaluation_epoch_end("test")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["graphvision_format"] = CHECKPOINT_FORMAT

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resuming training (``ckpt_path=``) from a checkpoint of another layout is refused
        with the message of :func:`check_format`."""
        check_format(checkpoint, "ckpt_path")

    def make_optimizer(self, fused: bool = False) -> torch.optim.AdamW:
        """AdamW over the trainable parameters, without weight decay on biases and norms; the
        backbone's in groups of their own at ``lr * model.backbone.lr_scale``. ``fused``:
        PyTorch's single-kernel step (several times faster per step on CPU)."""
        lr, decay = self.hparams.lr, self.hparams.weight_decay
        backbone = self.net.features
        scale = backbone.lr_scale  # a RegionFeatures, or NoBackbone (no parameters)
        inside = {id(p) for p in backbone.parameters()}
        groups = []
        for name, params, group_lr in (
            ("backbone", list(backbone.parameters()), lr * scale),
            ("rest", [p for p in self.parameters() if id(p) not in inside], lr),
        ):
            params = [p for p in params if p.requires_grad]
            for suffix, wd, kept in (
                ("", decay, [p for p in params if p.ndim >= 2]),
                ("_no_decay", 0.0, [p for p in params if p.ndim < 2]),
            ):
                if kept:
                    groups.append(
                        {"params": kept, "weight_decay": wd, "lr": group_lr, "name": name + suffix}
                    )
        return torch.optim.AdamW(groups, lr=lr, fused=fused)

    def configure_optimizers(self):
        # Lightning's mixed-precision plugins refuse to clip gradients of a fused optimizer
        opt = self.make_optimizer(fused="mixed" not in str(self.trainer.precision))
        total = max(int(self.trainer.estimated_stepping_batches), 1)
        warmup = int(self.hparams.warmup_fraction * total)

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (
                1 + math.cos(math.pi * min(1.0, (step - warmup) / max(total - warmup, 1)))
            )

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
