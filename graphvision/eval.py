"""Evaluate: ``python -m graphvision.eval ckpt_path=PATH [mode=...] [data=... data.root=...]``.

Rebuilds the model from the checkpoint (its hyper-parameters hold every stage config)
and, unless ``data=`` is given, the data it was trained on; validates in the evaluation
modes asked for (``mode=``: those the task offers, :attr:`~graphvision.tasks.Task.modes`;
default all); writes ``metrics.json`` (the names training logs, plus each mode's) into the
run folder and the task's breakdowns (:meth:`~graphvision.tasks.Task.write_breakdowns`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig, OmegaConf

from graphvision.checkpoint import load_module
from graphvision.utils import (
    CONFIG_DIR,
    build_datamodule,
    metrics_table,
    rank_zero_logging,
    reports_usage_errors,
    scalar_metrics,
    write_metrics,
)

log = logging.getLogger(__name__)


def evaluation_data_config(given, saved: dict | None):
    """The data config to evaluate on: ``given`` (``data=...`` on the command line) when it
    is a whole one; loader settings alone (``trainer=gpu``'s, ``data.num_workers=...``) put
    over the checkpoint's ``saved`` config; None when there is nothing to build."""
    if given is not None and "_target_" not in given:
        return OmegaConf.merge(saved, given) if saved else None
    return given or saved


def evaluate(cfg: DictConfig) -> dict[str, float]:
    L.seed_everything(cfg.seed, workers=True)
    model = load_module(cfg.ckpt_path)
    data_cfg = evaluation_data_config(cfg.get("data"), model.hparams.get("data_config"))
    if not data_cfg:
        raise ValueError(
            f"{cfg.ckpt_path} does not record its data config: pass data=... on the command line"
        )
    task = model.net.task
    modes = task.configure_eval(
        cfg.get("mode"), **{k: cfg.get(k) for k in task.eval_options if k in cfg}
    )
    datamodule = build_datamodule(data_cfg, task)
    if datamodule.info != model.hparams.info:
        raise ValueError(
            f"the data ({vocabulary(datamodule.info)}) does not match what {cfg.ckpt_path} "
            f"predicts ({vocabulary(model.hparams.info)})"
        )
    if task.needs_training_split():
        log.info("%s records nothing of its training split: reading it", cfg.ckpt_path)
        datamodule.prepare_data()
        datamodule.setup("fit")
        task.fit_start(datamodule)
    model.detect = task.detects(modes)
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[])
    trainer.validate(model, datamodule=datamodule, verbose=False)
    metrics = {
        k: v
        for k, v in scalar_metrics(trainer.callback_metrics).items()
        if task.metric_mode(k) in (None, *modes)
    }
    write_metrics(metrics, cfg.paths.output_dir)
    model.to(trainer.strategy.root_device)  # Lightning hands the model back on the CPU
    task.write_breakdowns(
        model.net, datamodule.val_dataloader(), Path(cfg.paths.output_dir), modes or None
    )
    return metrics


def vocabulary(info: dict) -> str:
    """How many names of each kind a DataModule's ``info`` holds, for messages."""
    return ", ".join(f"{len(v)} {k}" for k, v in info.items() if isinstance(v, list))


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
@reports_usage_errors
def main(cfg: DictConfig) -> None:
    rank_zero_logging()
    metrics = evaluate(cfg)
    print(f"\nvalidation metrics ({Path(cfg.paths.output_dir) / 'metrics.json'}):")
    print(metrics_table(metrics))


if __name__ == "__main__":
    main()
