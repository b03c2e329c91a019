"""The benchmark entry points run and write the JSON their issue specifies (tiny sizes)."""

from __future__ import annotations

import json

import pytest

from graphvision import bench
from graphvision.bench import knn_edges


def test_knn_edges_exact():
    import torch

    pos = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]])
    edges = knn_edges(pos, k=1)
    # each node's nearest other node, as (neighbour -> node)
    assert edges.tolist() == [[1, 0, 1, 2], [0, 1, 2, 3]]


@pytest.mark.slow
def test_bench_regions_json(tmp_path, coco_tiny):
    out = tmp_path / "regions.json"
    bench.main(["regions", "--out", str(out), "--limit", "2", "--n-segments", "50", "100"])
    result = json.loads(out.read_text())
    assert set(result["n_segments"]) == {"50", "100"}
    for row in result["n_segments"].values():
        for method in ("graphvision", "pyg_toslic_knn", "skimage_slic_rag"):
            assert row[method]["ms"] > 0
            assert 0 < row[method]["asa"] <= 1 and 0 <= row[method]["boundary_recall"] <= 1
        assert row["speedup_vs_pyg_toslic_knn"] > 0


@pytest.mark.slow
def test_bench_prepare_json(tmp_path, coco_tiny):
    out = tmp_path / "prepare.json"
    result = bench.main(["prepare", "--out", str(out), "--root", str(coco_tiny), "--limit", "6"])
    assert result["build_1_workers"]["images"] == 12 and result["load_from_cache"]["images"] == 12
    assert (
        result["ratio_2_vs_1_workers"] > 0
        and json.loads(out.read_text())["ratio_cache_vs_build_1_worker"] > 0
    )


@pytest.mark.slow
def test_bench_train_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "train.json"
    result = bench.main(
        [
            "train",
            "--out",
            str(out),
            "--batch-size",
            "4",
            "--repeats",
            "1",
            "--regions",
            "50",
            "100",
            "--override",
            "model/gnn=gatv2",
        ]
    )
    assert (
        result["default"]["full_over_backbone_time"] > 0
    )  # a ratio, not judged here: timings are not tests
    assert result["model"] == {"gnn": "gatv2", "sequence": "TransformerSequence"}
    assert len(result["scaling"]) == 2 and isinstance(result["growth_exponent"], float)
