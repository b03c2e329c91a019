"""The LightningModule: losses, metrics and optimisers around :class:`GraphVisionNet`."""

from __future__ import annotations

import math

import lightning as L
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torchmetrics.classification import MulticlassAccuracy, MultilabelAveragePrecision

from graphvision.heads import region_targets
from graphvision.metrics import RelationRecall
from graphvision.model import GraphVisionNet


def _plain(cfg):
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else cfg


class GraphVisionModule(L.LightningModule):
    """Args:
    info: ``{"task", "categories", "relations", "classes"}`` from the DataModule.
    backbone, gnn, sequence: stage configs (``_target_`` + arguments), see ``conf/model/``.
    dim: token width throughout (default 128).
    dropout: in the heads (default 0.0).
    shape_grid: object region-mask grid side for the object head (default 8; 0: off).
    loss_weights: ``scene``, ``objects``, ``relations``, ``regions`` (the auxiliary
        per-region class), ``classification`` (default 1 each).
    lr, weight_decay: AdamW (defaults 1e-3, 0.05; no decay on biases and norms).
    warmup_fraction: linear warm-up share of all steps before the cosine decay (default 0.05).
    recall_k: K of ``val/rel_R@K`` and ``val/rel_mR@K`` (default 50).
    zero_shot, text_encoder: score scene and object categories by their names' text
        embeddings (see :class:`~graphvision.model.GraphVisionNet`); with ``info["unseen"]``
        (``data.unseen_categories``) those categories are left out of every loss and
        reported apart (``val/scene_map_seen``, ``val/scene_map_unseen``,
        ``val/object_acc_unseen``).
    data_config: the DataModule config the model was trained with, kept in checkpoints
        so that ``graphvision.eval`` can rebuild the data (default None).
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
        loss_weights: dict | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        recall_k: int = 50,
        data_config: dict | None = None,
    ) -> None:
        super().__init__()
        # plain containers, so checkpoints load with torch.load(weights_only=True)
        info, backbone, gnn, sequence, loss_weights, data_config = (
            _plain(info),
            _plain(backbone),
            _plain(gnn),
            _plain(sequence),
            _plain(loss_weights),
            _plain(data_config),
        )
        self.save_hyperparameters()
        self.net = GraphVisionNet(
            info, backbone, gnn, sequence, dim, dropout, shape_grid, zero_shot, text_encoder
        )
        self.task = info["task"]
        self.loss_weights = {
            "scene": 1.0,
            "objects": 1.0,
            "relations": 1.0,
            "regions": 1.0,
            "classification": 1.0,
            "balance": 0.01,
            **(loss_weights or {}),
        }
        if self.task == "relations":
            c, p = len(info["categories"]), len(info["relations"])
            self.val_scene_map = MultilabelAveragePrecision(num_labels=c, average="macro")
            self.val_object_acc = MulticlassAccuracy(num_classes=c, average="micro")
            self.val_region_acc = MulticlassAccuracy(num_classes=c + 1, average="micro")
            self.val_rel_acc = MulticlassAccuracy(num_classes=p, average="micro")
            self.val_rel_recall = RelationRecall(num_predicates=p, k=recall_k)
            unseen = set(info.get("unseen") or [])
            self.register_buffer(
                "seen", torch.tensor([name not in unseen for name in info["categories"]])
            )
            if unseen:  # zero-shot evaluation: seen and unseen categories reported apart
                self.val_scene_ap = MultilabelAveragePrecision(num_labels=c, average=None)
                self.val_object_acc_unseen = MulticlassAccuracy(num_classes=c, average="micro")
                self.val_object_acc_seen = MulticlassAccuracy(num_classes=c, average="micro")
        else:
            self.val_acc = MulticlassAccuracy(num_classes=len(info["classes"]), average="micro")

    def forward(self, batch) -> dict[str, torch.Tensor]:
        return self.net(batch)

    def losses(self, out: dict, batch) -> dict[str, torch.Tensor]:
        extra = {}
        balance = getattr(self.net.sequence, "aux_loss", None)  # MoE sequence stages
        if balance is not None:
            extra["balance"] = balance
        if self.task == "classification":
            return {"classification": F.cross_entropy(out["class_logits"], batch.label), **extra}
        # categories in data.unseen_categories are no training target: the losses see only
        # the seen ones (their objects, their regions, their scene columns)
        seen = self.seen
        losses = {
            "scene": F.binary_cross_entropy_with_logits(
                out["scene_logits"][:, seen], batch.y[:, seen]
            )
        }
        region_target = self.region_target(out, batch)
        region_unseen = (region_target < seen.numel()) & ~seen[
            region_target.clamp(max=seen.numel() - 1)
        ]
        losses["regions"] = F.cross_entropy(
            out["region_logits"], region_target.masked_fill(region_unseen, -100)
        )
        keep = seen[batch.obj_label]
        if keep.any():
            remap = torch.cumsum(seen.long(), 0) - 1  # category index -> index among the seen
            losses["objects"] = F.cross_entropy(
                out["object_logits"][keep][:, seen], remap[batch.obj_label[keep]]
            )
        if batch.rel_label.numel():
            losses["relations"] = F.cross_entropy(out["relation_logits"], batch.rel_label)
        return {**losses, **extra}

    def region_target(self, out: dict, batch) -> torch.Tensor:
        return region_targets(
            batch.obj_region_index,
            batch.obj_region_weight,
            batch.obj_label,
            batch.num_nodes,
            background=out["region_logits"].size(1) - 1,
        )

    def _step(self, batch, stage: str):
        out = self(batch)
        losses = self.losses(out, batch)
        loss = sum(self.loss_weights[k] * v for k, v in losses.items())
        bs = batch.num_graphs
        self.log(
            f"{stage}/loss",
            loss,
            batch_size=bs,
            prog_bar=True,
            on_epoch=True,
            on_step=stage == "train",
        )
        for name, value in losses.items():
            self.log(f"{stage}/loss_{name}", value, batch_size=bs, on_epoch=True, on_step=False)
        load = getattr(self.net.sequence, "expert_load", None)
        if load is not None:  # each expert's share of the routed tokens; 1/E each when balanced
            for i, share in enumerate(load):
                self.log(
                    f"{stage}/expert_{i}_load", share, batch_size=bs, on_epoch=True, on_step=False
                )
            self.log(
                f"{stage}/expert_load_max",
                load.max() * load.numel(),
                batch_size=bs,
                on_epoch=True,
                on_step=False,
            )
        return out, loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")[1]

    def validation_step(self, batch, batch_idx: int) -> None:
        out, _ = self._step(batch, "val")
        bs = batch.num_graphs
        if self.task == "classification":
            self.val_acc(out["class_logits"], batch.label)
            self.log("val/acc", self.val_acc, batch_size=bs, prog_bar=True)
            return
        self.val_scene_map(out["scene_logits"], batch.y.long())
        if hasattr(self, "val_scene_ap"):
            self.val_scene_ap.update(out["scene_logits"], batch.y.long())
            unseen = ~self.seen[batch.obj_label]
            if unseen.any():
                self.val_object_acc_unseen(out["object_logits"][unseen], batch.obj_label[unseen])
                self.log("val/object_acc_unseen", self.val_object_acc_unseen, batch_size=bs)
            if (~unseen).any():
                self.val_object_acc_seen(out["object_logits"][~unseen], batch.obj_label[~unseen])
                self.log("val/object_acc_seen", self.val_object_acc_seen, batch_size=bs)
        self.log("val/scene_map", self.val_scene_map, batch_size=bs, prog_bar=True)
        self.val_region_acc(out["region_logits"], self.region_target(out, batch))
        self.log("val/region_acc", self.val_region_acc, batch_size=bs)
        if batch.obj_label.numel():
            self.val_object_acc(out["object_logits"], batch.obj_label)
            self.log("val/object_acc", self.val_object_acc, batch_size=bs, prog_bar=True)
        if batch.rel_label.numel():
            self.val_rel_acc(out["relation_logits"], batch.rel_label)
            self.log("val/rel_acc", self.val_rel_acc, batch_size=bs, prog_bar=True)
            self.val_rel_recall.update(
                out["relation_logits"],
                out["object_logits"],
                batch.rel_index,
                batch.rel_label,
                batch.obj_label,
                batch.rel_label_batch,
            )

    def on_validation_epoch_end(self) -> None:
        if hasattr(self, "val_scene_ap"):
            ap = self.val_scene_ap.compute()  # (C,)
            self.log("val/scene_map_seen", ap[self.seen].nanmean())
            self.log("val/scene_map_unseen", ap[~self.seen].nanmean())
            self.val_scene_ap.reset()
        if self.task == "relations":
            for name, value in self.val_rel_recall.compute().items():
                self.log(f"val/rel_{name}", value)
            self.val_rel_recall.reset()

    def make_optimizer(self, fused: bool = False) -> torch.optim.AdamW:
        """AdamW over the trainable parameters, without weight decay on biases and norms.
        ``fused``: PyTorch's single-kernel step (several times faster per step on CPU)."""
        decay = [p for p in self.parameters() if p.requires_grad and p.ndim >= 2]
        no_decay = [p for p in self.parameters() if p.requires_grad and p.ndim < 2]
        return torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.hparams.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.hparams.lr,
            fused=fused,
        )

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
