"""Train: ``python -m graphvision.train [experiment=...] [group=option] [key=value]``.

Wires the Hydra config together (data, model, callbacks, loggers, trainer), fits,
re-validates the best checkpoint, writes ``metrics.json`` (final validation metrics) and
``summary.json`` (fit time, epochs, pre-processing time, parameter counts) into the run folder and returns
``optimized_metric`` for sweepers.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import hydra
import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from graphvision.utils import (
    CONFIG_DIR,
    build_datamodule,
    is_rank_zero,
    metrics_table,
    rank_zero_logging,
    reports_usage_errors,
    scalar_metrics,
    write_metrics,
)

log = logging.getLogger(__name__)


def instantiate_all(cfg: DictConfig, group: str) -> list:
    """Instantiates every entry of a dict-of-configs group (callbacks, logger)."""
    section = cfg.get(group) or {}
    return [hydra.utils.instantiate(c) for c in section.values() if c and "_target_" in c]


#: loader settings of the machine that trained, which a checkpoint does not carry elsewhere
MACHINE_LOADER_KEYS = ("num_workers", "pin_memory", "persistent_workers")


def portable_data_config(data_cfg: DictConfig) -> dict:
    """The data config with its folders made absolute, to be stored in checkpoints, less the
    loader settings of the training machine (``trainer=gpu``'s ``num_workers: auto``,
    ``pin_memory``): wherever the checkpoint is evaluated gets its DataModule's defaults,
    or what that command sets."""
    out = OmegaConf.to_container(data_cfg, resolve=True)
    for key in ("root", "data_dir", "cache_dir"):
        if out.get(key):
            out[key] = str(Path(out[key]).resolve())
    for key in MACHINE_LOADER_KEYS:
        out.pop(key, None)
    return out


def log_run_config(cfg: DictConfig, loggers: list) -> None:
    """Gives every logger what names this run beside the model's own hyper-parameters
    (which Lightning logs itself): ``task_name``, ``tags``, ``seed``, ``ckpt_path`` and the
    data, trainer and callbacks configs."""
    run = OmegaConf.to_container(cfg, resolve=True)
    hparams = {
        "task_name": run.get("task_name"),
        "tags": list(run.get("tags") or []),
        "seed": run.get("seed"),
        "ckpt_path": run.get("ckpt_path"),
        **{k: run.get(k) for k in ("data", "trainer", "callbacks")},
    }
    for logger in loggers:
        logger.log_hyperparams(hparams)


def trainer_config(trainer_cfg: DictConfig) -> DictConfig:
    """The trainer config as given, except ``sync_batchnorm``, which PyTorch supports on GPUs
    only: on a CPU run (``accelerator=cpu``, or ``auto`` without CUDA) it is turned off,
    with a log line, so that ``trainer=ddp trainer.accelerator=cpu`` trains."""
    if not trainer_cfg.get("sync_batchnorm"):
        return trainer_cfg
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return trainer_cfg
    log.info("trainer.sync_batchnorm=true needs GPUs; this run is on the CPU: turned off")
    cfg = trainer_cfg.copy()
    with open_dict(cfg):
        cfg.sync_batchnorm = False
    return cfg


def parameter_counts(module: torch.nn.Module) -> dict:
    """``parameters`` and ``trainable_parameters`` of ``module``, and ``stages``: the
    parameters of each of its direct children (the network's ``features``, ``gnn``, ...)."""
    return {
        "parameters": sum(p.numel() for p in module.parameters()),
        "trainable_parameters": sum(p.numel() for p in module.parameters() if p.requires_grad),
        "stages": {
            name: sum(p.numel() for p in child.parameters())
            for name, child in module.named_children()
        },
    }


def describe_parameters(counts: dict) -> str:
    """One log line of :func:`parameter_counts`: ``105,298 (105,298 trainable; features 0,
    ...)``."""
    stages = ", ".join(f"{k} {v:,}" for k, v in counts["stages"].items())
    return f"{counts['parameters']:,} ({counts['trainable_parameters']:,} trainable; {stages})"


def train(cfg: DictConfig) -> dict[str, float]:
    """Fits the configured model and returns the final validation metrics."""
    epochs = cfg.trainer.get("max_epochs")
    if epochs is not None and (not isinstance(epochs, int) or (epochs < 1 and epochs != -1)):
        raise ValueError(
            f"trainer.max_epochs={epochs!r}: must be an integer >= 1 (or -1: until stopped)"
        )
    L.seed_everything(cfg.seed, workers=True)
    task = hydra.utils.get_class(cfg.model.task._target_)
    datamodule = build_datamodule(cfg.data, task)
    info = datamodule.info  # fails here, before training, on a bad data.root
    model = hydra.utils.instantiate(
        cfg.model, info=info, data_config=portable_data_config(cfg.data)
    )
    log.info("task: %s", model.net.task.describe())
    log.info("parameters: %s", describe_parameters(parameter_counts(model.net)))
    loggers = instantiate_all(cfg, "logger")
    log_run_config(cfg, loggers)
    trainer = hydra.utils.instantiate(
        trainer_config(cfg.trainer),
        callbacks=instantiate_all(cfg, "callbacks"),
        logger=loggers or False,
    )
    started = time.perf_counter()
    trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    fit_seconds = time.perf_counter() - started
    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:
        log.info("validating the best checkpoint %s", best)
        trainer.validate(model, datamodule=datamodule, ckpt_path=best, verbose=False)
    metrics = scalar_metrics(trainer.callback_metrics)
    if not trainer.is_global_zero:  # under DDP only rank zero writes the run's files
        return metrics
    write_metrics(metrics, cfg.paths.output_dir)
    built = getattr(datamodule, "build_stats", None) or {"images": 0, "seconds": 0.0}
    summary = {
        "fit_seconds": round(fit_seconds, 2),
        "epochs": trainer.current_epoch,
        # pre-processing (building missing cache entries) happens inside fit: not an epoch's
        "seconds_per_epoch": round(
            (fit_seconds - built["seconds"]) / max(trainer.current_epoch, 1), 2
        ),
        "images_prepared": built["images"],
        "prepare_seconds": round(built["seconds"], 2),
        "regions_per_image": (
            round(datamodule.regions_per_image("val"), 2)
            if hasattr(datamodule, "regions_per_image")
            else None
        ),
        **{k: v for k, v in parameter_counts(model).items() if k != "stages"},
    }
    (Path(cfg.paths.output_dir) / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return metrics


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
@reports_usage_errors
def main(cfg: DictConfig) -> float | None:
    rank_zero_logging()
    log.debug("config:\n%s", OmegaConf.to_yaml(cfg))
    metrics = train(cfg)
    if is_rank_zero():
        print(f"\nvalidation metrics ({Path(cfg.paths.output_dir) / 'metrics.json'}):")
        print(metrics_table(metrics))
    return metrics.get(cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
