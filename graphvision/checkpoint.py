"""Loading trained models: the one checkpoint loader of the entry points (``eval``,
``predict``, :class:`~graphvision.predictor.Predictor`) and of notebooks."""

from __future__ import annotations

import logging
import pickle
from pathlib import Path

import torch

from graphvision.module import GraphVisionModule, check_format

log = logging.getLogger(__name__)


def load_module(
    ckpt_path: str | Path, map_location: str | torch.device = "cpu"
) -> GraphVisionModule:
    """A trained module from a checkpoint written by ``graphvision.train`` (of this checkpoint format,
    :data:`~graphvision.module.CHECKPOINT_FORMAT`), on ``map_location``; a clear error if the
    file is missing."""
    path = Path(ckpt_path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ckpt_path={path} does not exist; pass a .ckpt written by graphvision.train "
            "(RUN_DIR/checkpoints/last.ckpt or epoch_*.ckpt)"
        )
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, ValueError, OSError, pickle.UnpicklingError) as err:
        raise ValueError(
            f"{path} is not a graphvision checkpoint ({type(err).__name__}: "
            f"{str(err).split('. ')[0].splitlines()[0] if str(err) else 'unreadable'}); pass a "
            ".ckpt written by graphvision.train (RUN_DIR/checkpoints/last.ckpt or epoch_*.ckpt)"
        ) from None
    if (
        not isinstance(checkpoint, dict)
        or "hyper_parameters" not in checkpoint
        or "state_dict" not in checkpoint
    ):
        raise ValueError(
            f"{path} is not a graphvision checkpoint (no hyper-parameters or weights); pass a .ckpt written by graphvision.train"
        )
    check_format(checkpoint, path)
    module = GraphVisionModule(**checkpoint["hyper_parameters"])
    module.load_state_dict(checkpoint["state_dict"])
    return module.to(map_location)
