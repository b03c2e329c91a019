"""Evaluate: ``python -m graphvision.eval ckpt_path=PATH [data=... data.root=...]``.

Rebuilds the model from the checkpoint (its hyper-parameters hold every stage config)
and, unless ``data=`` is given, the data it was trained on; validates; writes
``metrics.json`` into the run folder.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
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
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    rank_zero_logging()
    metrics = evaluate(cfg)
    print(f"\nvalidation metrics ({Path(cfg.paths.output_dir) / 'metrics.json'}):")
    print(metrics_table(metrics))


if __name__ == "__main__":
    main()
