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
    decoding = json.loads(out.read_text())["decoding"]
    assert decoding["photos"] == 2 and decoding["decoded_at_reduced_scale"] <= 2
    for path in ("reduced_decoding", "full_size_4_iterations"):
        assert decoding[path]["regions"] > 10 and 0 < decoding[path]["asa"] <= 1


@pytest.mark.slow
def test_bench_prepare_json(tmp_path, coco_tiny):
    out = tmp_path / "prepare.json"
    result = bench.main(
        [
            "prepare",
            "--out",
            str(out),
            "--root",
            str(coco_tiny),
            "--limit",
            "6",
            "--size",
            "96",
            "96",
            "--n-segments",
            "36",
            "--backend",
            "grid",
            "--workers",
            "2",
            "1",
            "--stage-images",
            "3",
        ]
    )
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
    assert result["workers"] == [1, 2] and result["build_2_workers"]["cpu_ms_per_image"] > 0
    stages = result["stage_ms_per_image"]
    parts = ("decode_reduced", "resize", "regions", "targets", "cache_key", "write")
    assert stages["total_reduced"] == pytest.approx(sum(stages[k] for k in parts), abs=0.03)
    assert stages["decode_full_size"] > 0
    # a 96x96 grid entry: the image (27.6 kB) and its masks and graph, well under 1 MB
    assert 27 < result["disk_mb_per_1000_images"] < 1000
    coco = result["coco_train2017"]
    assert coco["hours_1_worker"] == pytest.approx(118_287 / b1 / 3600, rel=0.01, abs=0.01)
    assert coco["disk_gb"] == pytest.approx(
        result["disk_mb_per_1000_images"] * 118.287 / 1024, abs=0.06
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
    assert result["model"] == {"gnn": "GATv2", "sequence": "TransformerSequence"}
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
    assert (result["device"], result["precision"], result["compile"]) == ("cpu", "32", False)
    assert d["full_step_peak_memory_mb"] is None  # measured on CUDA only


@pytest.mark.slow
def test_bench_train_bf16_and_compiled_backbone(tmp_path, monkeypatch):
    """--precision bf16-mixed runs the forward under bf16 autocast (the backbone's feature
    maps come out in bf16), --compile compiles the CNN trunk; both on this CPU, at the COCO
    working resolution, without scaling rows."""
    monkeypatch.chdir(tmp_path)
    import torch

    from graphvision.bench import train as bench_train

    seen = []
    original = bench_train.backbone_step_of

    def spy(module, batch, device="cpu", precision="32"):
        with bench_train.precision_context(device, precision)():
            seen.append(module.net.features.feature_maps(batch.image[:1])[0].dtype)
        seen.append(type(module.net.features.body).__name__)
        return original(module, batch, device, precision)

    monkeypatch.setattr(bench_train, "backbone_step_of", spy)
    result = bench.main(
        [
            "train",
            "--out",
            str(tmp_path / "t.json"),
            "--batch-size",
            "2",
            "--repeats",
            "1",
            "--regions",
            "--precision",
            "bf16-mixed",
            "--compile",
            "--override",
            "data.regions.size=[160,160]",
        ]
    )
    assert (result["precision"], result["compile"], result["image_size"]) == (
        "bf16-mixed",
        True,
        [160, 160],
    )
    assert seen == [torch.bfloat16, "OptimizedModule"]
    assert result["scaling"] == [] and "growth_exponent" not in result
    assert result["default"]["full_step_images_per_s"] > 0


def test_bench_cuda_without_a_gpu_is_a_clear_error(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for command in ("train", "loader"):
        with pytest.raises(SystemExit, match="--device cuda: torch sees no CUDA device"):
            bench.main([command, "--out", str(tmp_path / "x.json"), "--device", "cuda"])
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_bench_loader_json(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "loader.json"
    result = bench.main(
        [
            "loader",
            "--out",
            str(out),
            "--images",
            "8",
            "--batch-size",
            "4",
            "--workers",
            "0",
            "2",
            "4",
            "--epochs",
            "1",
            "--repeats",
            "1",
            "--pin-memory",
            "--no-persistent-workers",
        ]
    )
    assert json.loads(out.read_text()) == result and result["augment"] is True
    assert result["pin_memory"] is True and result["persistent_workers"] is False
    assert set(result["loader_images_per_s"]) == {"0", "2", "4"}
    for workers, rate in result["loader_images_per_s"].items():
        assert rate > 0
        ratio = result["loader_over_step"][workers]
        assert ratio == pytest.approx(rate / result["step_images_per_s"], rel=0.02, abs=0.01)


@pytest.mark.slow
def test_bench_profile_json(tmp_path, monkeypatch):
    """The labelled ranges of a step all appear; the top operations are the most expensive
    by self time, in order, and their fractions are of the whole profiled time."""
    monkeypatch.chdir(tmp_path)
    from graphvision.bench.profile import RANGES

    result = bench.main(
        [
            "profile",
            "--out",
            str(tmp_path / "p.json"),
            "--batch-size",
            "4",
            "--images",
            "8",
            "--steps",
            "1",
            "--top",
            "4",
        ]
    )
    assert json.loads((tmp_path / "p.json").read_text()) == result
    assert set(result["ranges_fraction"]) == set(RANGES)
    top = result["top"]
    assert len(top) == 4 and [t["self_ms_per_step"] for t in top] == sorted(
        (t["self_ms_per_step"] for t in top), reverse=True
    )
    assert 0 < sum(t["fraction"] for t in top) <= 1.001
    for t in top:
        assert t["fraction"] == pytest.approx(
            t["self_ms_per_step"] / result["ms_per_step"], abs=2e-3
        )
    # the step's parts: forward, backward and the loader's items take most of it
    parts = result["ranges_fraction"]
    assert 0.5 < parts["dataset items"] + parts["forward + losses"] + parts["backward"] <= 1.001


def test_token_cost_arithmetic_exact():
    """The growth exponent of exact power laws; the activations autograd saves, counted by
    hand (exp keeps its float32 result; a linear layer keeps its input, not its weight)."""
    import torch

    from graphvision.bench.tokens import fit_exponent, saved_activation_bytes

    tokens = [64, 128, 256, 512, 1024]
    assert fit_exponent(tokens, [3.0 * t**2 for t in tokens]) == pytest.approx(2.0)
    # the largest half (3 points) only: a fixed cost at small counts is left out
    assert fit_exponent(tokens, [50.0, 50.0, 256, 512, 1024]) == pytest.approx(1.0)
    assert fit_exponent([64, 128], [1.0, 2.0]) is None
    x = torch.randn(100, requires_grad=True)
    assert saved_activation_bytes(lambda: torch.exp(x).sum().backward(), []) == 400
    layer = torch.nn.Linear(10, 10)
    inputs = torch.randn(5, 10)
    step = lambda: layer(inputs).sum().backward()  # noqa: E731
    assert saved_activation_bytes(step, list(layer.parameters())) == 5 * 10 * 4


def test_grid_tokens_to_reach_a_superpixel_score(tmp_path):
    """The ablation's table from hand-written runs: grid 64 tokens 0.10 and 256 tokens 0.20
    reach superpixels' 0.15 at 128 tokens (halfway in log tokens); what no grid row reaches
    is None; the backbone alone is not a token count."""
    import yaml

    from graphvision.bench.tokens import ablation_table

    runs = [  # backend, n_segments, seed, scene_map, regions per image
        ("grid", 64, 0, 0.09, 64.0),
        ("grid", 64, 1, 0.11, 64.0),
        ("grid", 256, 0, 0.20, 256.0),
        ("grid", 256, 1, 0.20, 256.0),
        ("skimage", 64, 0, 0.15, 58.0),
        ("skimage", 64, 1, 0.15, 60.0),
        ("skimage", 256, 0, 0.30, 230.0),
    ]
    for i, (backend, n, seed, value, regions) in enumerate(runs):
        job = tmp_path / str(i)
        (job / ".hydra").mkdir(parents=True)
        overrides = [
            f"data.regions.backend={backend}",
            f"data.regions.n_segments={n}",
            f"seed={seed}",
        ]
        (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        (job / "metrics.json").write_text(json.dumps({"val/scene_map": value}))
        (job / "summary.json").write_text(json.dumps({"regions_per_image": regions}))
    baseline = tmp_path / "7"
    (baseline / ".hydra").mkdir(parents=True)
    (baseline / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump(["model=cnn_baseline", "data.regions.n_segments=64"])
    )
    (baseline / "metrics.json").write_text(json.dumps({"val/scene_map": 0.5}))
    table = ablation_table(str(tmp_path), "val/scene_map")
    assert [(r["n_segments"], r["regions"], r["mean"], r["runs"]) for r in table["grid"]] == [
        (64, 64.0, 0.1, 2),
        (256, 256.0, 0.2, 2),
    ]
    assert table["grid"][0]["std"] == pytest.approx(0.0141, abs=1e-4)
    first, second = table["skimage"]
    assert first["regions"] == 59.0 and first["grid_tokens_for_same"] == pytest.approx(128.0)
    assert second["grid_tokens_for_same"] is None  # 0.30: above every grid row


@pytest.mark.slow
def test_bench_tokens_json(tmp_path):
    out = tmp_path / "tokens.json"
    result = bench.main(
        [
            "tokens",
            "--out",
            str(out),
            "--tokens",
            "16",
            "32",
            "64",
            "--repeats",
            "1",
            "--stages",
            "none",
            "transformer",
            "pretrained_lm",
        ]
    )
    assert json.loads(out.read_text()) == result
    transformer = result["stages"]["transformer"]
    memory = [transformer["tokens"][t]["memory_mb"] for t in ("16", "32", "64")]
    assert 0 < memory[0] < memory[1] < memory[2]
    assert transformer["time_exponent"] is not None and transformer["memory_exponent"] > 0
    assert result["stages"]["none"]["parameters"] < transformer["parameters"]
    from graphvision.bench.tokens import build_stage, token_limit

    # MiniLM's 512 learned positions, one of them the CLS token's
    assert token_limit(build_stage("pretrained_lm", 128)) == 511
    assert token_limit(build_stage("transformer", 128)) is None


def test_bench_prepare_of_an_image_folder(tmp_path):
    """``--folder``: an image folder's pre-processing at conf/experiment/cifar10.yaml's
    regions (or those given), ``--limit`` images of each class per split, and the whole
    folder's extrapolation from the 1-worker rate."""
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "folder", per_class=4)
    out = tmp_path / "prepare.json"
    result = bench.main(
        [
            "prepare",
            "--out",
            str(out),
            "--folder",
            str(root),
            "--limit",
            "1",
            "--n-segments",
            "16",
            "--backend",
            "grid",
            "--workers",
            "1",
            "--stage-images",
            "2",
        ]
    )
    assert result["regions"]["size"] == [32, 32] and result["regions"]["n_segments"] == 16
    classes = len(list((root / "train").iterdir()))
    assert result["build_1_workers"]["images"] == 2 * classes  # one of each class per split
    assert result["regions_per_image"] == 16.0
    whole = result["whole_folder"]
    assert whole["images"] == len(list(root.glob("*/*/*.png")))
    b1 = result["build_1_workers"]["images_per_s"]
    assert whole["minutes_1_worker"] == round(whole["images"] / b1 / 60, 1)
    assert "targets" not in result["stage_ms_per_image"]


def test_bench_train_against_the_cnn_alone_on_an_image_folder(tmp_path, monkeypatch):
    """``--baseline cnn_baseline`` with ``experiment=cifar10`` on an image folder: the full
    step of the pipeline against the whole training step of model=cnn_baseline on the same
    batch (the first images of the folder)."""
    from graphvision.bench import train as bench_train
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "folder", per_class=4)
    built = []
    original = bench_train.full_step_of

    def spy(module, batch, device="cpu", precision="32"):
        built.append((type(module.net).__name__, batch.num_graphs))
        return original(module, batch, device, precision)

    monkeypatch.setattr(bench_train, "full_step_of", spy)
    result = bench.main(
        [
            "train",
            "--out",
            str(tmp_path / "t.json"),
            "--batch-size",
            "4",
            "--repeats",
            "1",
            "--regions",
            "--baseline",
            "cnn_baseline",
            "--override",
            "experiment=cifar10",
            "--override",
            f"data.root={root}",
            "--override",
            "model.dim=32",
        ]
    )
    assert built == [("GraphVisionNet", 4), ("BackboneNet", 4)]
    assert result["baseline"] == "cnn_baseline" and result["image_size"] == [32, 32]
    d = result["default"]
    assert d["full_over_backbone_time"] > 0 and d["backbone_step_images_per_s"] > 0


def test_bench_superpixels_against_pyg(tmp_path):
    """``superpixels``: the experiment's pre-processing against PyG's ToSLIC + 8-NN on the
    same photos, and each benchmark model's step against PyG's GatedGCN on the same batch;
    the parameter counts are the models' own, the extrapolation follows from the rate."""
    from tests.conftest import make_image_folder

    root = make_image_folder(tmp_path / "folder", per_class=4)
    result = bench.main(
        [
            "superpixels",
            "--out",
            str(tmp_path / "s.json"),
            "--folder",
            str(root),
            "--limit",
            "3",
            "--batch-size",
            "4",
            "--repeats",
            "1",
            "--models",
            "gated_gcn",
            "transformer",
        ]
    )
    assert result["regions"]["edges"] == "knn" and result["regions"]["size"] == [32, 32]
    p = result["preprocessing"]
    assert p["photos"] == 3 and p["folder_photos"] == len(list(root.glob("*/*/*.png")))
    expected = p["folder_photos"] / p["graphvision_photos_per_s"] / 60  # from the rounded rate
    assert p["folder_minutes_one_worker"] == pytest.approx(expected, abs=0.06)
    rows = result["training"]
    assert set(rows) == {"gated_gcn", "transformer"}
    assert 90_000 <= rows["gated_gcn"]["parameters"] <= 110_000 and rows["gated_gcn"]["width"] == 68
    assert all(r["graphs_per_s"] > 0 and r["pyg_gated_gcn_graphs_per_s"] > 0 for r in rows.values())
    assert json.loads((tmp_path / "s.json").read_text())["training"] == rows


@pytest.mark.slow
def test_bench_predict_json(trained, coco_tiny, tmp_path):
    """``bench predict`` times each part of predict on photos with the model loaded once;
    checked: the structure and the arithmetic, never a speed."""
    from graphvision import bench

    out = tmp_path / "predict.json"
    result = bench.main(
        [
            "predict",
            "--out",
            str(out),
            "--ckpt",
            str(trained / "run/checkpoints/last.ckpt"),
            "--images",
            str(coco_tiny / "val2017"),
            "--limit",
            "3",
        ]
    )
    assert json.loads(out.read_text()) == result
    assert result["images"] == 3 and result["working_size"] == [128, 128]
    parts = result["ms_per_image"]
    assert set(parts) == {"decode", "regions", "network", "grouping", "record", "total"}
    assert all(parts[k]["mean_ms"] > 0 for k in ("decode", "regions", "network", "total"))
    assert (
        sum(parts[k]["mean_ms"] for k in parts if k != "total") <= parts["total"]["mean_ms"] + 0.1
    )
    ratio = parts["grouping"]["mean_ms"] / parts["network"]["mean_ms"]
    assert result["grouping_over_network"] == pytest.approx(ratio, abs=2e-3)
