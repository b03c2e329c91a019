"""Evaluate: ``python -m graphvision.eval ckpt_path=PATH [data=... data.root=...]``.

Rebuilds the model from the checkpoint (its hyper-parameters hold every stage config)
and, unless ``data=`` is given, the data it was trained on; validates; writes
``metrics.json`` (the same names as training) into the run folder and, for scene graphs,
``per_category_ap.md`` and ``relation_confusion.png``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig

from graphvision.module import GraphVisionModule
from graphvision.utils import (
    CONFIG_DIR,
    metrics_table,
    rank_zero_logging,
    scalar_metrics,
    write_metrics,
)

log = logging.getLogger(__name__)


def load_module(ckpt_path: str | Path) -> GraphVisionModule:
    """A trained module from a checkpoint file, on the CPU; a clear error if missing."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ckpt_path={path} does not exist; pass a .ckpt written by graphvision.train "
            "(RUN_DIR/checkpoints/last.ckpt or epoch_*.ckpt)"
        )
    return GraphVisionModule.load_from_checkpoint(path, map_location="cpu")


def evaluate(cfg: DictConfig) -> dict[str, float]:
    L.seed_everything(cfg.seed, workers=True)
    model = load_module(cfg.ckpt_path)
    data_cfg = cfg.get("data") or model.hparams.get("data_config")
    if not data_cfg:
        raise ValueError(
            f"{cfg.ckpt_path} does not record its data config: pass data=... on the command line"
        )
    datamodule = hydra.utils.instantiate(data_cfg)
    if datamodule.info != model.hparams.info:
        raise ValueError(
            f"the data ({datamodule.info['task']}, {len(datamodule.info['categories'])} categories, "
            f"{len(datamodule.info['classes'])} classes) does not match what {cfg.ckpt_path} predicts"
        )
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[])
    trainer.validate(model, datamodule=datamodule, verbose=False)
    metrics = scalar_metrics(trainer.callback_metrics)
    write_metrics(metrics, cfg.paths.output_dir)
    if model.task == "relations":
        write_breakdowns(model, datamodule.val_dataloader(), Path(cfg.paths.output_dir))
    return metrics


@torch.no_grad()
def collect(model: GraphVisionModule, loader) -> dict[str, torch.Tensor]:
    """Scene probabilities and targets, relation predictions and labels over a loader."""
    model.eval()
    parts: dict[str, list] = {"scene_prob": [], "y": [], "rel_pred": [], "rel_label": []}
    for batch in loader:
        out = model(batch)
        parts["scene_prob"].append(out["scene_logits"].sigmoid())
        parts["y"].append(batch.y.long())
        parts["rel_pred"].append(out["relation_logits"].argmax(-1))
        parts["rel_label"].append(batch.rel_label)
    return {k: torch.cat(v) for k, v in parts.items()}


def write_breakdowns(model: GraphVisionModule, loader, out_dir: Path) -> tuple[Path, Path]:
    """``per_category_ap.md`` (AP of every category, best first, with its positives) and
    ``relation_confusion.png`` (rows: true relation, columns: predicted; row-normalised)."""
    from torchmetrics.functional.classification import (
        multiclass_confusion_matrix,
        multilabel_average_precision,
    )

    info = model.hparams.info
    got = collect(model, loader)
    ap = multilabel_average_precision(
        got["scene_prob"], got["y"], num_labels=len(info["categories"]), average=None
    )
    positives = got["y"].sum(0)
    rows = sorted(zip(info["categories"], ap.tolist(), positives.tolist()), key=lambda r: -r[1])
    table = ["| category | AP | positives |", "| --- | ---: | ---: |"]
    table += [f"| {name} | {value:.4f} | {int(n)} |" for name, value, n in rows]
    ap_path = out_dir / "per_category_ap.md"
    ap_path.write_text("\n".join(table) + "\n")
    confusion = multiclass_confusion_matrix(
        got["rel_pred"], got["rel_label"], num_classes=len(info["relations"])
    )
    cm_path = out_dir / "relation_confusion.png"
    plot_confusion(confusion, info["relations"], cm_path)
    log.info("wrote %s and %s", ap_path, cm_path)
    return ap_path, cm_path


def plot_confusion(confusion: torch.Tensor, names: list[str], path: Path) -> None:
    from graphvision.viz import file_figure

    counts = confusion.double()
    rates = counts / counts.sum(1, keepdim=True).clamp_min(1)
    fig, axes = file_figure(figsize=(5.5, 5))
    ax = axes[0, 0]
    im = ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                int(counts[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true relation")
    ax.set_title("relation confusion (validation)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    rank_zero_logging()
    metrics = evaluate(cfg)
    print(f"\nvalidation metrics ({Path(cfg.paths.output_dir) / 'metrics.json'}):")
    print(metrics_table(metrics))


if __name__ == "__main__":
    main()
