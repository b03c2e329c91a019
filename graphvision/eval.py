"""Evaluate: ``python -m graphvision.eval ckpt_path=PATH [mode=...] [data=... data.root=...]``.

Rebuilds the model from the checkpoint (its hyper-parameters hold every stage config)
and, unless ``data=`` is given, the data it was trained on; validates in the evaluation
modes asked for (scene graphs: ``predcls``, ``sgcls``, ``sgdet``; default all three);
writes ``metrics.json`` (the names training logs, plus each mode's) into the run folder and
the task's breakdowns (for scene graphs ``per_category_ap.md``, ``relation_confusion.png``
and ``predicate_recall.md``).
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
    modes = evaluation_modes(cfg.get("mode"), task)
    if cfg.get("grouping"):
        from graphvision.nn.grouping import GROUPINGS

        if cfg.grouping not in GROUPINGS:
            raise ValueError(f"grouping={cfg.grouping}: choose among {list(GROUPINGS)}")
        task.grouping = cfg.grouping
    datamodule = build_datamodule(data_cfg, task)
    if datamodule.info != model.hparams.info:
        raise ValueError(
            f"the data ({vocabulary(datamodule.info)}) does not match what {cfg.ckpt_path} "
            f"predicts ({vocabulary(model.hparams.info)})"
        )
    triplets = getattr(task, "train_triplets", None)  # for zero-shot recall
    if triplets is not None and not bool(triplets.any()):
        log.info(
            "%s does not record its training triplets: reading the training split", cfg.ckpt_path
        )
        datamodule.prepare_data()
        datamodule.setup("fit")
        task.fit_start(datamodule)
    model.detect = "sgdet" in modes
    trainer = hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=[])
    trainer.validate(model, datamodule=datamodule, verbose=False)
    metrics = {
        k: v
        for k, v in scalar_metrics(trainer.callback_metrics).items()
        if not other_mode(k, modes, task)
    }
    write_metrics(metrics, cfg.paths.output_dir)
    model.to(trainer.strategy.root_device)  # Lightning hands the model back on the CPU
    task.write_breakdowns(
        model.net, datamodule.val_dataloader(), Path(cfg.paths.output_dir), modes or None
    )
    return metrics


def evaluation_modes(mode, task) -> tuple[str, ...]:
    """The modes asked for (a name or a list), checked against those the task knows."""
    if not task.modes:
        return ()
    asked = [mode] if isinstance(mode, str) else list(mode or task.modes)
    unknown = [m for m in asked if m not in task.modes]
    if unknown or not asked:
        raise ValueError(f"mode={asked}: choose among {list(task.modes)}")
    return tuple(asked)


def other_mode(name: str, modes: tuple[str, ...], task) -> bool:
    """Whether a metric belongs to a mode not asked for (``predcls_*``, ``sgdet_*``, and the
    ``sgcls`` triplet recalls ``rel_*R@K``)."""
    if not modes:
        return False
    metric = name.split("/", 1)[-1]
    owner = next((m for m in ("predcls", "sgdet") if metric.startswith(f"{m}_")), None)
    if owner is None and metric.startswith("rel_") and "R@" in metric:
        owner = "sgcls"
    return owner is not None and owner not in modes


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
