"""Using a trained model: attention, attributions, predict, eval breakdowns, sweeps, report,
the notebook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import COCO_TINY, ROOT, TINY_SYNTHETIC, run_module

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


#: one epoch on a few scenes, for the sweep tests
TINY_SWEEP = [*TINY_SYNTHETIC, "trainer.max_epochs=1", "data.num_train=16", "data.num_val=8"]


def _torch_layer(layer, dim: int, heads: int, hidden: int) -> torch.nn.TransformerEncoderLayer:
    """PyTorch's own pre-norm encoder layer carrying the weights of our ``EncoderLayer``."""
    ref = torch.nn.TransformerEncoderLayer(
        dim, heads, hidden, 0.0, activation="gelu", batch_first=True, norm_first=True
    )
    with torch.no_grad():
        ref.self_attn.in_proj_weight.copy_(layer.attn.qkv.weight)
        ref.self_attn.in_proj_bias.copy_(layer.attn.qkv.bias)
        ref.self_attn.out_proj.load_state_dict(layer.attn.proj.state_dict())
        ref.norm1.load_state_dict(layer.norm1.state_dict())
        ref.norm2.load_state_dict(layer.norm2.state_dict())
        ref.linear1.load_state_dict(layer.mlp[0].state_dict())
        ref.linear2.load_state_dict(layer.mlp[3].state_dict())
    return ref


def test_encoder_layer_equals_torch_transformer_layer():
    """Oracle: our SDPA encoder layer computes nn.TransformerEncoderLayer(norm_first=True)
    with the same weights, on padded sequences, forward and backward."""
    from graphvision.sequence import EncoderLayer

    torch.manual_seed(0)
    layer = EncoderLayer(16, heads=4, hidden=32)
    ref = _torch_layer(layer, 16, 4, 32)
    keep = torch.tensor([[True] * 6, [True] * 4 + [False] * 2, [True] * 2 + [False] * 4])
    x = torch.randn(3, 6, 16, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = layer(x, keep)
    expected = ref(x_ref, src_key_padding_mask=~keep)
    torch.testing.assert_close(out[keep], expected[keep], rtol=1e-5, atol=1e-5)
    out[keep].square().sum().backward()
    expected[keep].square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(
        layer.attn.qkv.weight.grad, ref.self_attn.in_proj_weight.grad, rtol=1e-4, atol=1e-5
    )


def test_cls_attention_comes_from_the_encoder_itself():
    """Oracle: the CLS attention the sequence stage returns equals nn.MultiheadAttention's
    weights for the same projections on the same pre-normed sequence; the outputs are those
    of the plain forward; and it is a distribution over CLS + regions."""
    from graphvision.sequence import TransformerSequence, raster_order, sincos_2d, to_sequence

    torch.manual_seed(0)
    seq = TransformerSequence(16, depth=1, heads=2).eval()
    h, pos = torch.randn(7, 16), torch.rand(7, 2)
    batch = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    with torch.no_grad():
        cls, tokens, attention = seq(h, pos, batch, return_attention=True)
        cls2, tokens2, none = seq(h, pos, batch)
        assert none is None
        torch.testing.assert_close(cls, cls2)
        torch.testing.assert_close(tokens, tokens2)
        assert attention.shape == (1, 7)
        # independently: PyTorch's attention on layer 0's pre-normed sequence, CLS row
        x = h + seq.pos_proj(sincos_2d(pos, 16))
        dense, mask, _ = to_sequence(x, pos, batch, seq.rows)
        perm = raster_order(pos, batch, seq.rows)
        s = torch.cat([seq.cls.expand(2, -1, -1), dense], 1)
        pad = torch.cat([mask.new_zeros(2, 1), ~mask], 1)
        layer = seq.layers[0]
        mha = _torch_layer(layer, 16, 2, 32).self_attn.eval()
        s = layer.norm1(s)
        _, w = mha(s, s, s, key_padding_mask=pad, need_weights=True, average_attn_weights=True)
    expected = torch.empty(7)
    expected[perm] = w[:, 0, 1:][mask]
    torch.testing.assert_close(attention[0], expected)
    totals = torch.zeros(2).index_add_(0, batch, attention[0])
    assert (totals <= 1 + 1e-6).all() and (attention >= 0).all()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained for one epoch through the real entry point."""
    tmp = tmp_path_factory.mktemp("trained")
    run_module(
        "graphvision.train",
        *TINY_SYNTHETIC,
        "trainer.max_epochs=1",
        f"paths.data_dir={tmp / 'data'}",
        f"hydra.run.dir={tmp / 'run'}",
        cwd=tmp,
    )
    return tmp


def test_region_attribution_is_finite_and_per_region(trained):
    from torch_geometric.data import Batch

    from graphvision.checkpoint import load_module
    from graphvision.data.cache import load_entry, to_graph

    module = load_module(trained / "run" / "checkpoints" / "last.ckpt").eval()
    entry = load_entry(next((trained / "data" / "cache").rglob("*.gvc")))
    graph = to_graph(entry)
    batch = Batch.from_data_list([graph], follow_batch=list(module.net.task.follow_batch))
    attribution = module.net.region_attribution(batch, category=0)
    assert attribution.shape == (graph.num_nodes,) and torch.isfinite(attribution).all()
    assert attribution.abs().sum() > 0


def test_predict_on_a_folder_of_three_images(trained, tmp_path):
    from graphvision.data.synthetic import render_scene

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        img, _ = render_scene(np.random.default_rng([99, i]))
        Image.fromarray(img).save(folder / f"scene{i}.png")
    out = tmp_path / "pred"
    run_module(
        "graphvision.predict",
        f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
        f"image={folder}",
        f"out_dir={out}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        cwd=ROOT,
    )
    for i in range(3):
        record = json.loads((out / f"scene{i}.json").read_text())
        assert _is_png(out / f"scene{i}.png")
        assert {"image", "size", "regions", "edges", "scene", "scene_all", "region_details"} <= set(
            record
        )
        assert len(record["scene_all"]) == 9
        assert all(0.0 <= d["probability"] <= 1.0 for d in record["scene_all"])
        assert len(record["region_details"]) == record["regions"] > 1
        for region in record["region_details"]:
            assert 0.0 <= region["attention"] <= 1.0 and len(region["top_classes"]) == 3
            assert all(0.0 <= c["probability"] <= 1.0 for c in region["top_classes"])


def test_predict_with_annotations_adds_objects_and_relations(trained, tmp_path):
    root = next((trained / "data" / "synthetic").iterdir())
    image = root / "val" / "000000.png"
    out = tmp_path / "pred"
    run_module(
        "graphvision.predict",
        f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
        f"image={image}",
        f"annotations={root / 'annotations/instances_val.json'}",
        f"out_dir={out}",
        f"hydra.run.dir={tmp_path / 'hydra'}",
        cwd=ROOT,
    )
    record = json.loads((out / "000000.json").read_text())
    m = len(record["objects"])
    assert m >= 2 and len(record["relations"]) == m * (m - 1)
    assert all(0.0 <= r["probability"] <= 1.0 for r in record["relations"])
    assert _is_png(out / "000000.png")


def test_predict_errors(trained, tmp_path):
    for args, message in [
        (
            [f"ckpt_path={tmp_path / 'missing.ckpt'}", f"image={tmp_path}"],
            "missing.ckpt does not exist",
        ),
        (
            [
                f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
                f"image={tmp_path / 'nope.png'}",
            ],
            "nope.png does not exist",
        ),
    ]:
        proc = subprocess.run(
            [sys.executable, "-m", "graphvision.predict", *args, f"hydra.run.dir={tmp_path}"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert proc.returncode != 0 and message in proc.stderr
    (tmp_path / "broken.png").write_bytes(b"not a png")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "graphvision.predict",
            f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
            f"image={tmp_path / 'broken.png'}",
            f"hydra.run.dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert (
        proc.returncode != 0 and "cannot read image" in proc.stderr and "broken.png" in proc.stderr
    )


def test_eval_writes_breakdowns(trained, tmp_path):
    run_module(
        "graphvision.eval",
        f"ckpt_path={trained / 'run/checkpoints/last.ckpt'}",
        f"hydra.run.dir={tmp_path}",
        cwd=ROOT,
    )
    table = (tmp_path / "per_category_ap.md").read_text().splitlines()
    assert table[0] == "| category | AP | positives |" and len(table) == 2 + 9
    assert _is_png(tmp_path / "relation_confusion.png")
    assert json.loads((tmp_path / "metrics.json").read_text()).keys() >= {
        "val/scene_map",
        "val/rel_acc",
    }


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
    proc = run_module("graphvision.report", str(sweep), cwd=tmp_path)
    assert "report.md" in proc.stdout
    rows = [
        line for line in (sweep / "report.md").read_text().splitlines() if line.startswith("| `")
    ]
    assert len(rows) == 2
    assert all(" ± " in row for row in rows)  # two seeds per configuration
    assert {"`model/gnn=gcn`", "`model/gnn=gine`"} == {
        row.split(" | ")[0].strip("| ") for row in rows
    }
    assert _is_png(sweep / "report.png")


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


@pytest.mark.slow
def test_notebook_runs_and_draws(tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "experiments" / "region_graphs.ipynb", as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code")  # stripped in git
    monkeypatch.setenv("GRAPHVISION_NB_OUT", str(tmp_path))
    monkeypatch.setenv("GRAPHVISION_NB_FAST", "1")
    if COCO_TINY.is_dir():
        monkeypatch.setenv("GRAPHVISION_COCO_TINY", str(COCO_TINY))
    NotebookClient(
        nb,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "experiments")}},
    ).execute()
    # the README shows the first two, drawn by the notebook under these names
    readme = (ROOT / "README.md").read_text()
    for name in ("region_graphs_skimage.png", "prediction_attention.png"):
        assert (
            f"experiments/figures/{name}" in readme
            and (ROOT / "experiments/figures" / name).is_file()
        )
    for name in (
        "region_graphs_skimage.png",
        "prediction_attention.png",
        "predictions.png",
        "scene_graph.png",
    ):
        assert _is_png(tmp_path / name), name
    if COCO_TINY.is_dir():
        assert _is_png(tmp_path / "coco_region_graph.png")


def test_to_networkx_exact():
    from torch_geometric.data import Data

    from graphvision.viz import scene_graph_networkx, to_networkx

    x = torch.arange(3 * 13, dtype=torch.float).view(3, 13)
    data = Data(
        x=x,
        pos=torch.tensor([[0.1, 0.2], [0.5, 0.5], [0.9, 0.8]]),
        edge_index=torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]),
        edge_attr=torch.arange(20.0).view(4, 5),
    )
    g = to_networkx(data)
    assert sorted(g.edges()) == [(0, 1), (1, 2)] and g.number_of_nodes() == 3
    assert g.nodes[2]["pos"] == pytest.approx([0.9, 0.8]) and g.nodes[1]["mean_r"] == 13.0
    assert (
        g.edges[1, 2]["edge_attr"] == [10.0, 11.0, 12.0, 13.0, 14.0]
        and g.edges[1, 2]["colour_diff"] == 14.0
    )
    sg = scene_graph_networkx(["cat", "mat"], torch.tensor([[0, 1], [1, 0]]), ["above", "below"])
    assert sg.nodes[0]["label"] == "cat" and sorted(
        d["relation"] for _, _, d in sg.edges(data=True)
    ) == ["above", "below"]


def _as_written_before_tasks(checkpoint: dict) -> dict:
    """A checkpoint as graphvision wrote it before tasks were objects, rebuilt by hand from
    that layout: the task named in ``info``, predicates called ``relations``, the heads'
    settings and all loss weights on the module, the heads and ``seen`` on the network."""
    h = checkpoint["hyper_parameters"]
    info = h["info"]
    old_hparams = {
        "info": {
            "task": "relations",
            "categories": info["categories"],
            "relations": info["predicates"],
            "classes": [],
        },
        "backbone": h["backbone"],
        "gnn": {**h["gnn"], "heads": 4},
        "sequence": h["sequence"],
        "dim": h["dim"],
        "dropout": h["dropout"],
        "shape_grid": h["task"]["shape_grid"],
        "zero_shot": False,
        "text_encoder": None,
        "loss_weights": {
            "scene": 1.0,
            "objects": 1.0,
            "relations": 1.0,
            "regions": 1.0,
            "classification": 1.0,
            "balance": 0.01,
        },
        "lr": h["lr"],
        "weight_decay": h["weight_decay"],
        "warmup_fraction": h["warmup_fraction"],
        "recall_k": h["task"]["recall_k"],
        "data_config": h["data_config"],
    }
    state = {}
    for key, value in checkpoint["state_dict"].items():
        key = "seen" if key == "net.task.seen" else key.replace("net.task.", "net.", 1)
        state[key] = value
    old = {**checkpoint, "hyper_parameters": old_hparams, "state_dict": state}
    del old["graphvision_format"]
    return old


def test_checkpoints_from_before_tasks_load_evaluate_and_resume(trained, tmp_path):
    from torch_geometric.data import Batch

    from graphvision.checkpoint import load_module
    from graphvision.data.cache import load_entry, to_graph

    new_path = trained / "run" / "checkpoints" / "last.ckpt"
    old_path = tmp_path / "old.ckpt"
    checkpoint = torch.load(new_path, weights_only=True)
    assert checkpoint["graphvision_format"] == 2
    torch.save(_as_written_before_tasks(checkpoint), old_path)
    old, new = load_module(old_path).eval(), load_module(new_path).eval()
    assert old.hparams.task == new.hparams.task and old.hparams.info == new.hparams.info
    graph = to_graph(load_entry(next((trained / "data" / "cache").rglob("*.gvc"))))
    batch = Batch.from_data_list([graph], follow_batch=list(new.net.task.follow_batch))
    with torch.no_grad():
        for key, value in new(batch).items():
            assert torch.equal(old(batch)[key], value), key
    metrics = {}
    for name, path in (("old", old_path), ("new", new_path)):
        run_module(
            "graphvision.eval", f"ckpt_path={path}", f"hydra.run.dir={tmp_path / name}", cwd=ROOT
        )
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())
    assert metrics["old"] == metrics["new"]
    run_module(
        "graphvision.train",
        *TINY_SYNTHETIC,
        "trainer.max_epochs=2",
        f"ckpt_path={old_path}",
        f"paths.data_dir={trained / 'data'}",
        f"hydra.run.dir={tmp_path / 'resumed'}",
        cwd=tmp_path,
    )
    resumed = torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=True)
    assert resumed["epoch"] == 1 and resumed["graphvision_format"] == 2
