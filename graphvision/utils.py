"""What the entry points share: the config location, rank zero, building the DataModule a
task needs, metric files and tables, and reading a multirun folder's finished jobs."""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

import hydra
import yaml
from hydra.errors import CompactHydraException


def _config_dir() -> Path:
    """``graphvision/conf`` of an installed package (``conf/`` shipped as package data), else
    the checkout's ``conf/`` beside the package (an editable install)."""
    here = Path(__file__).resolve().parent
    installed = here / "conf"
    return installed if (installed / "train.yaml").is_file() else here.parent / "conf"


#: The project's Hydra configs, wherever graphvision is installed.
CONFIG_DIR = str(_config_dir())


class UsageError(CompactHydraException):
    """Something the user can fix (a bad file, path or value), raised from a ValueError,
    OSError or Lightning misconfiguration whose message names it: Hydra prints the message
    alone, without a traceback (``HYDRA_FULL_ERROR=1`` shows the whole chain)."""


def _usage_errors() -> tuple[type[Exception], ...]:
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    # ValueError covers graphvision's DataError and UnreadableImageError; OSError a missing
    # file, a folder that cannot be written, a full disk
    return ValueError, OSError, MisconfigurationException


def reports_usage_errors(main: Callable) -> Callable:
    """Wraps an entry point's task function: a ValueError, OSError or Lightning
    misconfiguration becomes a :class:`UsageError`, so that the console shows
    ``Error: <message>`` and no traceback."""

    @functools.wraps(main)
    def wrapped(cfg):
        try:
            return main(cfg)
        except _usage_errors() as err:
            raise UsageError(f"Error: {err}") from err

    return wrapped


def is_rank_zero() -> bool:
    """Whether this process is rank zero (always, outside distributed runs); Lightning's own
    notion, set from the launcher's environment and by the strategy."""
    from lightning.pytorch.utilities import rank_zero_only

    return rank_zero_only.rank == 0


def rank_zero_logging() -> None:
    """Under DDP, silences INFO logs on every process but rank zero."""
    if not is_rank_zero():
        logging.getLogger("graphvision").setLevel(logging.WARNING)


def build_datamodule(data_cfg, task):
    """The DataModule of ``data_cfg`` (a Hydra config), its loaders batching what ``task``
    (a :class:`~graphvision.tasks.Task` class or instance) lists in ``follow_batch``."""
    return hydra.utils.instantiate(data_cfg, follow_batch=list(task.follow_batch))


def scalar_metrics(metrics: dict, prefix: str = "val/") -> dict[str, float]:
    """``{name: float}`` of the logged metrics whose name starts with ``prefix``."""
    return {k: float(v) for k, v in sorted(metrics.items()) if k.startswith(prefix)}


def write_metrics(metrics: dict[str, float], out_dir: str | Path) -> Path:
    """Writes ``metrics.json`` into ``out_dir`` (NaN written as null)."""
    path = Path(out_dir) / "metrics.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: (None if math.isnan(v) else v) for k, v in metrics.items()}
    path.write_text(json.dumps(clean, indent=2) + "\n")
    return path


def read_runs(root: str | Path) -> list[dict]:
    """Every finished job under ``root``: overrides, metrics and summary."""
    runs = []
    for metrics_file in sorted(Path(root).glob("**/metrics.json")):
        job = metrics_file.parent
        overrides_file = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else []
        summary_file = job / "summary.json"
        runs.append(
            {
                "dir": job,
                "overrides": [str(o) for o in overrides or []],
                "metrics": json.loads(metrics_file.read_text()),
                "summary": json.loads(summary_file.read_text()) if summary_file.is_file() else {},
            }
        )
    if not runs:
        raise FileNotFoundError(
            f"{root}: no job folder with a metrics.json (is this a multirun folder?)"
        )
    return runs


def metrics_table(metrics: dict[str, float]) -> str:
    """A two-column text table of metric names and values."""
    width = max((len(k) for k in metrics), default=6)
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{k:<{width}}  {v:.4f}" for k, v in metrics.items()]
    return "\n".join(lines)
