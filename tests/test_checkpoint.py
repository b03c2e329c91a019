"""Loading checkpoints: one format, and clear errors for anything else."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from tests.conftest import ROOT


@pytest.mark.slow
@pytest.mark.parametrize("written", [5, None])
def test_a_checkpoint_of_another_format_is_refused(trained, tmp_path, written):
    """One checkpoint format: an older one (or one naming none) is refused, by the loader
    and when resuming training, with a message naming the file, its format and what to do."""
    from graphvision.checkpoint import load_module
    from graphvision.module import CHECKPOINT_FORMAT

    checkpoint = torch.load(trained / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["graphvision_format"] == CHECKPOINT_FORMAT == 6
    old = {k: v for k, v in checkpoint.items() if k != "graphvision_format"}
    if written is not None:
        old["graphvision_format"] = written
    path = tmp_path / "old.ckpt"
    torch.save(old, path)
    found = "no checkpoint format" if written is None else f"checkpoint format {written}"
    message = f"{path} has {found}; .* reads format 6 only: train the model again"
    with pytest.raises(ValueError, match=message):
        load_module(path)
    module = load_module(trained / "run" / "checkpoints" / "last.ckpt")
    with pytest.raises(ValueError, match=f"ckpt_path has {found}"):
        module.on_load_checkpoint(old)


def test_a_file_that_is_not_a_checkpoint_is_a_clear_error(tmp_path):
    """eval (and predict, through the same loader) on a zero-byte file, a text file or a
    tensor file: a clear error naming the file and what a checkpoint is, not the unpickler's."""
    from graphvision.checkpoint import load_module

    (tmp_path / "empty.ckpt").write_bytes(b"")
    (tmp_path / "notes.ckpt").write_text("not a checkpoint\n")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "tensor.ckpt")
    for name in ("empty.ckpt", "notes.ckpt", "tensor.ckpt"):
        with pytest.raises(
            ValueError, match=rf"{name} is not a graphvision checkpoint.*graphvision.train"
        ):
            load_module(tmp_path / name)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "graphvision.eval",
            f"ckpt_path={tmp_path / 'empty.ckpt'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode != 0 and "empty.ckpt is not a graphvision checkpoint" in proc.stderr
