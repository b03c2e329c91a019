"""graphvision installed as a wheel works outside the checkout: the configs ship inside the
package and every path defaults to the working directory."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, TINY_SYNTHETIC


def test_every_subpackage_is_listed_in_pyproject():
    """``pyproject.toml`` lists its packages by hand (to map ``conf/`` into the package): the
    list is every folder of ``graphvision/`` with an ``__init__.py``, plus every folder of the
    configs (listed too, so that setuptools ships their files without warning about them)."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    on_disk = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for p in (ROOT / "graphvision").rglob("__init__.py")
    }
    configs = {
        ".".join(("graphvision", *d.relative_to(ROOT).parts))
        for d in [ROOT / "conf", *(ROOT / "conf").rglob("*")]
        if d.is_dir() and d.name != "__pycache__"
    }
    assert listed == on_disk | configs


def _venv_with_wheel(tmp: Path) -> Path:
    """A fresh virtual environment holding graphvision's wheel (built here, without build
    isolation: no download); its dependencies are this environment's, reached by a ``.pth``
    line (so that nothing is downloaded), which processes none of this environment's own
    ``.pth`` files (the editable install's finder among them)."""
    wheels, source = tmp / "wheels", tmp / "source"
    source.mkdir()  # the wheel is built from a copy, so the checkout gets no build/ folder
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for name in ("graphvision", "conf"):
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(wheels),
            str(source),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    env_dir = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "zz_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    wheel = next(wheels.glob("graphvision-*.whl"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--target",
            purelib,
            str(wheel),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return python


@pytest.mark.slow
def test_a_wheel_trains_evaluates_and_predicts_outside_the_checkout(tmp_path):
    python = _venv_with_wheel(tmp_path)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    def run(*args: str) -> str:
        proc = subprocess.run(
            [python, *args], cwd=work, env=env, capture_output=True, text=True, timeout=900
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
        return proc.stdout

    where = run(
        "-c",
        "import graphvision, graphvision.utils as u; print(graphvision.__file__, u.CONFIG_DIR)",
    )
    package, config_dir = where.split()
    assert not Path(package).is_relative_to(ROOT), package
    assert Path(config_dir) == Path(package).parent / "conf"
    run("-m", "graphvision.train", *TINY_SYNTHETIC, "trainer.max_epochs=1", "hydra.run.dir=run")
    ckpt = work / "run" / "checkpoints" / "last.ckpt"
    assert ckpt.is_file() and (work / "data" / "synthetic").is_dir()  # data under the cwd
    run("-m", "graphvision.eval", f"ckpt_path={ckpt}", "hydra.run.dir=eval")
    metrics = json.loads((work / "eval" / "metrics.json").read_text())
    assert {"val/scene_map", "val/rel_R@50", "val/sgdet_R@50"} <= set(metrics)
    photo = next((work / "data" / "synthetic").rglob("val/*.png"))
    run("-m", "graphvision.predict", f"ckpt_path={ckpt}", f"image={photo}", "out_dir=predicted")
    record = json.loads((work / "predicted" / f"{photo.stem}.json").read_text())
    assert record["mode"] == "sgdet" and (work / "predicted" / f"{photo.stem}.png").is_file()
