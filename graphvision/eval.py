"""Evaluate: ``python -m graphvision.eval ckpt_path=PATH [data=... data.root=...]``.

Rebuilds the model from the checkpoint (its hyper-parameters hold every stage config)
and, unless ``data=`` is given, the data it was trained on; validates; writes
``metrics.json`` (the same names as training) into the run folder and the task's
breakdowns (for scene graphs ``per_category_ap.md`` and ``relation_confusion.png``).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

from graphvision.checkpoint import load_module
from graphvision.utils import (
    CONFIG_DIR,
    build_datamodule,
    metrics_table,
    rank_zero_logging,
    scalar_metrics,
    write_metrics,
)

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    L.seed_everything(cfg.seed, workers=True)
    model = load_module(cfg.ckpt_path)
    data_cfg = cfg.get("data") or model.hparams.get("data_config")
    if not data_cfg:
        raise ValueError(
            f"{cfg.ckpt_path} does not record its data config: pass data=... on the command line"
        )
    task = model.net.task
    datamodule = build_datamodule(data_cfg, task)
    if datamodule.info != model.hparams.info:
        raise ValueError(
            f"the data ({vocabulary(datamodule.info)}) does not match what {cfg.ckpt_path} "
            f"predicts ({vocabulary(model.hparams.info)})"
        )
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[])
    trainer.validate(model, datamodule=datamodule, verbose=False)
    metrics = scalar_metrics(trainer.callback_metrics)
    write_metrics(metrics, cfg.paths.output_dir)
    model.to(trainer.strategy.root_device)  # Lightning hands the model back on the CPU
    task.write_breakdowns(model.net, datamodule.val_dataloader(), Path(cfg.paths.output_dir))
    return metrics


def vocabulary(info: dict) -> str:
    """How many names of each kind a DataModule's ``info`` holds, for messages."""
    return ", ".join(f"{len(v)} {k}" for k, v in info.items() if isinstance(v, list))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    rank_zero_logging()
    metrics = evaluate(cfg)
    print(f"\nvalidation metrics ({Path(cfg.paths.output_dir) / 'metrics.json'}):")
    print(metrics_table(metrics))


if __name__ == "__main__":
    main()
