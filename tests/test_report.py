"""Sweeps and ``graphvision.report``: a multirun's table, curves and plots; an Optuna sweep."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from tests.conftest import TINY_SYNTHETIC, is_png, run_module

#: one epoch on a few scenes, for the sweep tests
TINY_SWEEP = [*TINY_SYNTHETIC, "trainer.max_epochs=1", "data.num_train=16", "data.num_val=8"]


@pytest.mark.slow
def test_multirun_and_report(tmp_path):
    sweep = tmp_path / "sweep"
    run_module(
        "graphvision.train",
        "-m",
        "model/gnn=gcn,gine",
        "seed=1,2",
        *TINY_SWEEP,
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert sorted(p.name for p in sweep.iterdir() if (p / "metrics.json").is_file()) == [
        "0",
        "1",
        "2",
        "3",
    ]
    # the first job pre-processed the images, the others found them in the shared cache
    summaries = [json.loads((sweep / i / "summary.json").read_text()) for i in "0123"]
    assert summaries[0]["images_prepared"] > 0 and summaries[0]["prepare_seconds"] > 0
    assert [s["images_prepared"] for s in summaries[1:]] == [0, 0, 0]
    proc = run_module("graphvision.report", str(sweep), cwd=tmp_path)
    assert "report.md" in proc.stdout
    gcn_row = next(
        line
        for line in (sweep / "report.md").read_text().splitlines()
        if line.startswith("| `model/gnn=gcn`")
    )
    built = 1000.0 * summaries[0]["prepare_seconds"] / summaries[0]["images_prepared"]
    assert f"| {built:.1f} |" in gcn_row  # prepare ms/img, from the job that built
    # the learning curve: epoch 1's val/scene_map, mean of the two gcn jobs' CSV logs
    first = []
    for job in "01":
        with (sweep / job / "csv" / "metrics.csv").open() as f:
            first += [
                float(r["val/scene_map"])
                for r in csv.DictReader(f)
                if r["val/scene_map"] and r["epoch"] == "0"
            ]
    assert len(first) == 2
    curve_rows = (sweep / "report.md").read_text().split("## Learning curve")[1].splitlines()
    assert f"| `model/gnn=gcn` | {sum(first) / 2:.4f} |" in curve_rows
    assert is_png(sweep / "curves.png")
    table = (sweep / "report.md").read_text().split("## Learning curve")[0]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == 2
    assert all(" ± " in row for row in rows)  # two seeds per configuration
    assert {"`model/gnn=gcn`", "`model/gnn=gine`"} == {
        row.split(" | ")[0].strip("| ") for row in rows
    }
    assert is_png(sweep / "report.png")
    # the same runs in two folders (as SEEDS=1 and SEEDS=2 run at different times): one
    # report over both holds the same rows
    for folder, jobs in (("first", "02"), ("second", "13")):  # seed 1 | seed 2 of each
        for job in jobs:
            shutil.copytree(sweep / job, tmp_path / folder / job)
    run_module(
        "graphvision.report", str(tmp_path / "first"), str(tmp_path / "second"), cwd=tmp_path
    )
    pooled = (tmp_path / "first" / "report.md").read_text().split("## Learning curve")[0]
    assert [line for line in pooled.splitlines() if line.startswith("| `")] == rows
    assert "4 runs, 2 configurations" in pooled


@pytest.mark.slow
def test_optuna_sweep_and_report(tmp_path):
    sweep = tmp_path / "optuna"
    run_module(
        "graphvision.train",
        "hparams_search=optuna",
        "hydra.sweeper.n_trials=3",
        "hydra.sweeper.sampler.n_startup_trials=2",
        *TINY_SWEEP,
        f"paths.data_dir={tmp_path / 'data'}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert (sweep / "optimization_results.yaml").is_file()
    proc = run_module("graphvision.report", str(sweep), "--metric", "val/scene_map", cwd=tmp_path)
    assert "Optuna trials (3)" in proc.stdout
    trial_rows = [
        line for line in proc.stdout.splitlines() if line.startswith("| ") and "model.lr=" in line
    ]
    assert len(trial_rows) >= 3
