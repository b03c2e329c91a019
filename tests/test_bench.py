"""The benchmark entry points run and write the JSON their issue specifies (tiny sizes);
what is checked is the structure and the arithmetic of the results, never a speed."""

from __future__ import annotations

import json

import pytest

from graphvision import bench
from graphvision.bench.regions import METHODS, knn_edges


def test_knn_edges_exact():
    import torch

    pos = torch.tensor([[0.0, 0.0], [1.0, 0.0], [3.0, 0.0], [7.0, 0.0]])
    edges = knn_edges(pos, k=1)
    # each node's nearest other node, as (neighbour -> node)
    assert edges.tolist() == [[1, 0, 1, 2], [0, 1, 2, 3]]


def test_coco_root_comes_from_the_environment_or_the_command(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHVISION_COCO_TINY", raising=False)
    with pytest.raises(SystemExit, match=r"pass --root ROOT .*or set GRAPHVISION_COCO_TINY"):
        bench.main(["prepare", "--out", str(tmp_path / "p.json")])
    with pytest.raises(SystemExit, match=r"not a COCO-layout root"):
        bench.main(["prepare", "--out", str(tmp_path / "p.json"), "--root", str(tmp_path)])


@pytest.mark.slow
def test_bench_regions_json(tmp_path, coco_tiny, monkeypatch):
    monkeypatch.setenv("GRAPHVISION_COCO_TINY", str(coco_tiny))
    out = tmp_path / "regions.json"
    bench.main(["regions", "--out", str(out), "--limit", "2", "--n-segments", "50", "100"])
    result = json.loads(out.read_text())
    assert result["images"] == 2 and set(result["n_segments"]) == {"50", "100"}
    for row in result["n_segments"].values():
        for method in METHODS:
            assert row[method]["ms"] > 0 and row[method]["regions"] >= 2
            assert 0 < row[method]["asa"] <= 1 and 0 <= row[method]["boundary_recall"] <= 1
        gv, pyg, sk = (row[m]["ms"] for m in METHODS)
        assert row["speedup_vs_pyg_toslic_knn"] == round(pyg / gv, 1)
        assert row["speedup_vs_skimage_slic_rag"] == round(sk / gv, 1)
        asa = row["graphvision"]["asa"] - row["pyg_toslic_knn"]["asa"]
        assert row["asa_minus_pyg"] == pytest.approx(asa, abs=1e-4)


@pytest.mark.slow
def test_bench_prepare_json(tmp_path, coco_tiny):
    out = tmp_path / "prepare.json"
    result = bench.main(["prepare", "--out", str(out), "--root", str(coco_tiny), "--limit", "6",
                         "--size", "96", "96", "--n-segments", "36", "--backend", "grid"])  # fmt: skip
    assert json.loads(out.read_text()) == result
    assert result["regions"]["size"] == [96, 96] and result["regions"]["compactness"] == 10.0
    assert result["regions_per_image"] == 36.0  # a 6x6 grid on every image
    for workers in (1, 2):
        build = result[f"build_{workers}_workers"]
        assert build["images"] == 12  # 6 per split
        # seconds are rounded to 0.01 s, images/s computed before rounding
        assert 12 / build["images_per_s"] == pytest.approx(build["seconds"], abs=0.0051)
    assert result["load_from_cache"]["images"] == 12
    b1 = result["build_1_workers"]["images_per_s"]
    assert result["ratio_2_vs_1_workers"] == round(
        result["build_2_workers"]["images_per_s"] / b1, 2
    )
    assert result["ratio_cache_vs_build_1_worker"] == round(
        result["load_from_cache"]["images_per_s"] / b1, 1
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
            "2",
            "--regions",
            "50",
            "100",
            "--override",
            "model/gnn=gatv2",
        ]
    )
    assert result["model"] == {"gnn": "gatv2", "sequence": "TransformerSequence"}
    d = result["default"]
    bb, full = d["backbone_step_images_per_s"], d["full_step_images_per_s"]  # rounded to 0.1
    assert (
        (bb - 0.05) / (full + 0.05) <= d["full_over_backbone_time"] <= (bb + 0.05) / (full - 0.05)
    )
    low, high = d["pair_ratio_min_max"]
    assert low <= high and d["regions_per_image"] > 10
    scaling = result["scaling"]
    assert [s["n_segments"] for s in scaling] == [50, 100]
    assert scaling[0]["regions_per_image"] < scaling[1]["regions_per_image"]
    import numpy as np

    x = np.log([s["regions_per_image"] for s in scaling])
    y = np.log([s["ms_per_image"] for s in scaling])
    assert result["growth_exponent"] == pytest.approx((y[1] - y[0]) / (x[1] - x[0]), abs=2e-3)


@pytest.mark.slow
def test_bench_loader_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "loader.json"
    result = bench.main(["loader", "--out", str(out), "--images", "8", "--batch-size", "4",
                         "--workers", "0", "2", "--epochs", "1", "--repeats", "1"])  # fmt: skip
    assert json.loads(out.read_text()) == result and result["augment"] is True
    assert set(result["loader_images_per_s"]) == {"0", "2"}
    for workers, rate in result["loader_images_per_s"].items():
        assert rate > 0
        ratio = result["loader_over_step"][workers]
        assert ratio == pytest.approx(rate / result["step_images_per_s"], rel=0.02, abs=0.01)
