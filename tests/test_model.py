"""Model stages on tiny hand-made inputs: pooling, GNN layers, sequence, heads, metrics."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import pytest
import torch
import torchvision
from torch_geometric.utils import to_dense_batch
from torchvision.transforms._presets import ImageClassification

from graphvision.nn.features import RegionFeatures, load_backbone, pool_regions
from graphvision.nn.gnn import GCN, GINE, GPS, GatedGCN, GATv2, NoGNN, RegionGNN
from graphvision.nn.heads import object_geometry, pool_objects
from graphvision.nn.sequence import from_sequence, raster_order, sincos_2d, to_sequence
from graphvision.tasks.metrics import PresentLabelsAP, SceneGraphRecall, SceneGraphs
from tests.conftest import build_module

#: every GNN option, by its config name
GNNS = {"gcn": GCN, "gatv2": GATv2, "gine": GINE, "gated_gcn": GatedGCN, "gps": GPS, "none": NoGNN}


def test_pool_regions_exact_and_vanished_regions_finite():
    fmap = torch.arange(4.0).view(1, 1, 2, 2)  # cells [[0, 1], [2, 3]]
    segments = torch.zeros(1, 8, 8, dtype=torch.long)
    segments[0, :, 4:] = 1  # right half: cells 1 and 3
    segments[0, 0, 0] = 2  # a one-pixel region no cell centre falls in
    pos = torch.tensor([[0.25, 0.5], [0.75, 0.5], [0.0625, 0.0625]])
    out = pool_regions(fmap, segments, pos, torch.zeros(3, dtype=torch.long))
    assert out[0].item() == pytest.approx(1.0)  # mean of cells 0 and 2
    assert out[1].item() == pytest.approx(2.0)  # mean of cells 1 and 3
    assert torch.isfinite(out).all() and out[2].item() == pytest.approx(
        0.0
    )  # bilinear at the corner


def test_pool_regions_uses_each_graph_own_map():
    fmap = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    segments = torch.stack(
        [torch.zeros(4, 4, dtype=torch.long), torch.ones(4, 4, dtype=torch.long)]
    )
    out = pool_regions(fmap, segments, torch.full((2, 2), 0.5), torch.tensor([0, 1]))
    assert out.view(-1).tolist() == [0.0, 1.0]


@pytest.mark.parametrize("layer", GNNS)
def test_gnn_layers_shapes_and_edge_features(layer):
    torch.manual_seed(0)
    x = torch.randn(5, 16)
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]])
    edge_attr = torch.randn(6, 5)
    gnn = GNNS[layer](16, num_layers=2, heads=4)
    out = gnn(x, edge_index, edge_attr, torch.tensor([0, 0, 0, 1, 1]))
    assert out.shape == (5, 16) and torch.isfinite(out).all()
    layers = 0 if layer == "none" else 2
    assert repr(gnn) == f"{GNNS[layer].__name__}(channels=16, num_layers={layers})"
    assert gnn.uses_edges == (layer not in ("gcn", "none"))
    if gnn.uses_edges:  # edge features reach the output
        out2 = gnn(x, edge_index, edge_attr + 1.0, torch.tensor([0, 0, 0, 1, 1]))
        assert not torch.allclose(out, out2)


def test_gnn_none_is_the_identity():
    """``model/gnn=none``: the region features reach the sequence stage unchanged (same
    values, gradients passed through), with no parameters, whatever num_layers says."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from graphvision.utils import CONFIG_DIR

    cfg = OmegaConf.load(f"{CONFIG_DIR}/model/gnn/none.yaml")
    gnn = instantiate(cfg, channels=16, edge_dim=5)
    assert isinstance(gnn, NoGNN) and gnn.num_layers == 0
    assert sum(p.numel() for p in gnn.parameters()) == 0
    assert sum(p.numel() for p in NoGNN(16, num_layers=3).parameters()) == 0
    x = torch.randn(5, 16, requires_grad=True)
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]])
    out = gnn(x, edge_index, torch.randn(6, 5), torch.tensor([0, 0, 0, 1, 1]))
    assert torch.equal(out, x)
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_normalized_adjacency_exact():
    """Path 0 - 1 - 2 with self loops: degrees 2, 3, 2; entry (i, j) = 1 / sqrt(d_i d_j)."""
    from graphvision.nn.gnn import normalized_adjacency

    adj = normalized_adjacency(torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]]), 3).to_dense()
    d = torch.tensor([2.0, 3.0, 2.0])
    a_hat = torch.tensor([[1.0, 1, 0], [1, 1, 1], [0, 1, 1]])
    torch.testing.assert_close(adj, a_hat / (d[:, None] * d[None, :]).sqrt())


def test_gcn_equals_pyg_gcnconv_on_edge_index():
    """Oracle: the gcn stack (normalised once, sparse products) equals the same blocks run
    with PyG's GCNConv normalising and propagating over edge_index, forward and backward,
    on a directed graph with an isolated node."""
    from torch_geometric.nn import GCNConv

    torch.manual_seed(0)
    gnn = GCN(8, num_layers=2)
    refs = []
    for conv in gnn.convs:
        ref = GCNConv(8, 8)  # normalize=True: PyG's own path over edge_index
        ref.load_state_dict(conv.state_dict())
        refs.append(ref)
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 0], [1, 0, 2, 1, 0, 3]])  # node 4 isolated
    x = torch.randn(5, 8, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    out = gnn(x, edge_index, torch.zeros(6, 5), torch.zeros(5, dtype=torch.long))
    h = x_ref
    for ref, norm in zip(refs, gnn.norms):
        h = h + gnn.act(ref(norm(h), edge_index))
    torch.testing.assert_close(out, h)
    out.square().sum().backward()
    h.square().sum().backward()
    torch.testing.assert_close(x.grad, x_ref.grad)
    torch.testing.assert_close(gnn.convs[0].lin.weight.grad, refs[0].lin.weight.grad)


def test_gcn_runs_under_bf16_autocast():
    """Sparse products have no bfloat16 kernels: under autocast (trainer=gpu's bf16-mixed)
    the gcn stack still runs, in float32 throughout (its norms too, whatever the input's
    dtype), and matches the float32 forward."""
    torch.manual_seed(0)
    gnn = GCN(8)
    x = torch.randn(5, 8)
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4], [1, 0, 2, 1, 4, 3]])
    args = (edge_index, torch.zeros(6, 5), torch.zeros(5, dtype=torch.long))
    seen = []  # CUDA's layer_norm, unlike the CPU's, refuses an input of another dtype
    for norm in gnn.norms:
        norm.register_forward_pre_hook(lambda m, inp: seen.append((inp[0].dtype, m.weight.dtype)))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gnn(x, *args)
        # as in the model: the node encoder, run by autocast, hands it bfloat16 features
        out_half = gnn(x.bfloat16(), *args)
    assert seen and all(a == b == torch.float32 for a, b in seen), seen
    torch.testing.assert_close(out, gnn(x, *args), rtol=2e-2, atol=2e-2)
    torch.testing.assert_close(out_half, gnn(x, *args), rtol=5e-2, atol=5e-2)


def test_whole_model_trains_a_step_under_bf16_autocast(degenerate_batch):
    """trainer=gpu's bf16-mixed, on the CPU: forward and backward of the default model."""
    batch, info = degenerate_batch
    module = build_module(info, ["model.dim=32"])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = module.losses(module(batch), batch)
    module.weighted_loss(losses).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert module.net.node_encoder[0].weight.grad.abs().sum() > 0


def test_every_gnn_config_names_its_class():
    """Each ``conf/model/gnn/*.yaml`` builds its class (no layer name dispatched)."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from graphvision.utils import CONFIG_DIR

    for name, cls in GNNS.items():
        cfg = OmegaConf.load(f"{CONFIG_DIR}/model/gnn/{name}.yaml")
        assert "layer" not in cfg
        gnn = instantiate(cfg, channels=16, edge_dim=5)
        assert type(gnn) is cls and isinstance(gnn, RegionGNN), name


def test_raster_order_and_round_trip():
    pos = torch.tensor([[0.9, 0.1], [0.1, 0.1], [0.5, 0.9], [0.2, 0.5], [0.1, 0.2]])
    batch = torch.tensor([0, 0, 0, 1, 1])
    perm = raster_order(pos, batch, rows=4)
    # graph 0: row 0 holds nodes 1 (x=.1) and 0 (x=.9); row 3 holds node 2. graph 1: node 4 (row 0), node 3 (row 2)
    assert perm.tolist() == [1, 0, 2, 4, 3]
    h = torch.randn(5, 8)
    tokens, mask, slot = to_sequence(h, pos, batch, rows=4)
    assert tokens.shape == (2, 3, 8) and mask.tolist() == [[True, True, True], [True, True, False]]
    assert torch.equal(tokens[0, 0], h[1])
    assert slot.tolist() == [1, 0, 2, 4, 3]  # flat places in the [2 * 3] padded layout
    assert torch.equal(from_sequence(tokens, slot), h)
    # the layout is PyG's to_dense_batch of the raster-ordered nodes
    dense, dense_mask = to_dense_batch(h[perm], batch[perm])
    assert torch.equal(tokens, dense) and torch.equal(mask, dense_mask)


def test_sincos_2d_distinguishes_positions():
    enc = sincos_2d(torch.tensor([[0.1, 0.2], [0.2, 0.1], [0.1, 0.2]]), 32)
    assert enc.shape == (3, 32)
    assert torch.equal(enc[0], enc[2]) and not torch.allclose(enc[0], enc[1])


def test_pool_objects_and_geometry_exact():
    tokens = torch.tensor([[1.0], [3.0], [10.0]])
    index = torch.tensor([[0, 0, 1], [0, 1, 2]])
    weight = torch.tensor([1.0, 0.5, 1.0])
    assert pool_objects(tokens, index, weight, 2).view(-1).tolist() == pytest.approx(
        [(1 + 1.5) / 1.5, 10.0]
    )
    x = torch.zeros(3, 13)
    x[:, 6:8] = torch.tensor([[0.25, 0.25], [0.75, 0.25], [0.5, 0.75]])  # centroids
    x[:, 8] = torch.tensor([0.25, 0.25, 0.5])  # area fractions
    x[:, 9:13] = torch.tensor([[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0.5, 1, 1]])
    geom = object_geometry(x, index, weight, 2)
    # object 0: area 0.25 + 0.125; centroid weighted by area; box = union of both (weight >= 0.5)
    assert geom[0, :2].tolist() == pytest.approx([(0.25 * 0.25 + 0.75 * 0.125) / 0.375, 0.25])
    assert geom[0, 2:6].tolist() == pytest.approx([0, 0, 1, 0.5])
    assert geom[0, 6].item() == pytest.approx(0.375) and geom[0, 7].item() == pytest.approx(0.75)
    assert geom[1, 2:].tolist() == pytest.approx([0, 0.5, 1, 1, 0.5, 1.0])


def test_relation_recall_exact():
    """Two images; image 0 has 3 GT pairs, image 1 has 1. K=2, objects all correct."""
    obj_label = torch.tensor([0, 1, 2, 0, 1])
    obj_batch = torch.tensor([0, 0, 0, 1, 1])
    boxes = torch.rand(5, 2).repeat(1, 2) + torch.tensor([0, 0, 0.1, 0.1])
    rel_index = torch.tensor([[0, 1, 2, 3], [1, 2, 0, 4]])
    rel_label = torch.tensor([0, 1, 0, 2])
    rel_logits = torch.full((4, 3), 0.0)
    rel_logits[0, 0] = 5.0  # correct, most confident
    rel_logits[1, 2] = 4.0  # wrong predicate
    rel_logits[2, 0] = 1.0  # correct but third in its image: outside K=2
    rel_logits[3, 2] = 3.0  # correct
    ones = torch.ones(5)
    pred = SceneGraphs(obj_label, ones, boxes, obj_batch, rel_index, rel_logits.softmax(-1))
    truth = SceneGraphs(obj_label, ones, boxes, obj_batch, rel_index, predicates=rel_label)
    metric = SceneGraphRecall(num_predicates=3, ks=(2,))
    metric.update(pred, truth)
    out = metric.compute()
    assert out["R@2"].item() == pytest.approx((1 / 3 + 1) / 2)
    # predicate 0: image 0 recalls 1 of 2; predicate 1: 0 of 1; predicate 2: image 1, 1 of 1
    assert out["mR@2"].item() == pytest.approx((0.5 + 0 + 1) / 3)


def test_scene_map_averages_the_categories_that_have_a_positive():
    """4 images, 3 categories, fed in two batches. Category 0: ranked +,-,+,- (AP (1 + 2/3) / 2);
    category 1: its only positive third (AP 1/3); category 2: no positive (no AP)."""
    scores = torch.tensor([[0.9, 0.2, 0.5], [0.8, 0.6, 0.1], [0.3, 0.4, 0.7], [0.1, 0.7, 0.2]])
    target = torch.tensor([[1, 0, 0], [0, 0, 0], [1, 1, 0], [0, 0, 0]])
    ap = {0: 5 / 6, 1: 1 / 3}
    mean, per_category = PresentLabelsAP(3), PresentLabelsAP(3, reduce=False)
    for metric in (mean, per_category):
        metric.update(scores[:2], target[:2])
        metric.update(scores[2:], target[2:])
    assert mean.compute().item() == pytest.approx((ap[0] + ap[1]) / 2)
    got = per_category.compute()
    assert got[:2].tolist() == pytest.approx([ap[0], ap[1]]) and got[2].isnan()
    # torchmetrics' own macro average scores the category without a positive as 0
    from torchmetrics.functional.classification import multilabel_average_precision

    with pytest.warns(UserWarning, match="No positive samples"):
        plain = multilabel_average_precision(scores, target, num_labels=3, average="macro")
    assert plain.item() == pytest.approx((ap[0] + ap[1]) / 3)


def _fake_download(source: Path, calls: list | None = None):
    """A stand-in for torch.hub's download function that copies ``source`` (no network)."""

    def download(url, dst, hash_prefix=None, progress=True):
        if calls is not None:
            calls.append(url)
        shutil.copyfile(source, dst)

    return download


def test_backbone_weights_offline_are_a_clear_error_or_a_fallback(tmp_path, monkeypatch):
    def offline(url, *args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    where = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    with pytest.raises(
        FileNotFoundError,
        match=re.escape(
            "cannot get pretrained weights ResNet18_Weights.IMAGENET1K_V1 (URLError: <urlopen "
            "error no network>). Without a network, download "
            f"https://download.pytorch.org/models/resnet18-f37072fd.pth on a machine with one "
            f"and put it at {where}"
        ),
    ):
        load_backbone("resnet18", "DEFAULT")
    model, _, _ = load_backbone("resnet18", "IMAGENET1K_V1", weights_fallback="random")
    assert model.fc.out_features == 1000
    with pytest.raises(ValueError, match=re.escape("choose from ['DEFAULT', 'IMAGENET1K_V1']")):
        load_backbone("resnet18", "imagenet please")
    with pytest.raises(ValueError, match="neither a file nor weights of resnet18"):
        load_backbone("resnet18", "ResNet50_Weights.IMAGENET1K_V1")


def test_backbone_weights_download_once_to_the_hub_cache(tmp_path, monkeypatch):
    """``weights=DEFAULT`` downloads (torchvision's function, replaced by a copy of a local
    file) into ``$TORCH_HOME/hub/checkpoints`` once; later loads read it there; the input
    normalisation is the weights' own."""
    torch.manual_seed(1)
    source, _, _ = load_backbone("resnet18")
    torch.save(source.state_dict(), tmp_path / "w.pt")
    loaded, _, _ = load_backbone("resnet18", str(tmp_path / "w.pt"))  # a local file
    assert torch.equal(loaded.conv1.weight, source.conv1.weight)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    calls = []
    monkeypatch.setattr(torch.hub, "download_url_to_file", _fake_download(tmp_path / "w.pt", calls))
    spec = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    monkeypatch.setattr(
        spec.value,
        "transforms",
        functools.partial(
            ImageClassification, crop_size=224, mean=(0.5, 0.4, 0.3), std=(0.2, 0.2, 0.2)
        ),
    )
    features = RegionFeatures(weights="DEFAULT")
    assert calls == [spec.url]
    assert (tmp_path / "home/hub/checkpoints/resnet18-f37072fd.pth").is_file()
    assert torch.equal(features.body.conv1.weight, source.conv1.weight)
    assert features.mean.flatten().tolist() == pytest.approx([0.5, 0.4, 0.3])
    again, _, _ = load_backbone("resnet18", "ResNet18_Weights.IMAGENET1K_V1")
    assert calls == [spec.url] and torch.equal(again.conv1.weight, source.conv1.weight)


CHILD = """
import os, shutil, sys, time
import torch.hub
from graphvision.nn.features import load_backbone

def slow(url, dst, hash_prefix=None, progress=True):  # a slow download, copying a local file
    with open(sys.argv[2], "a") as f:
        f.write(url + "\\n")
    time.sleep(1.0)
    shutil.copyfile(sys.argv[1], dst + ".tmp")
    os.replace(dst + ".tmp", dst)

torch.hub.download_url_to_file = slow
model, _, _ = load_backbone("resnet18", "DEFAULT")
print(float(model.conv1.weight.sum()))
"""


def test_processes_of_one_machine_download_once(tmp_path):
    """Two processes asking for the same weights at once (as DDP's ranks do): one downloads
    (a slow copy here), the other waits for it and reads the file."""
    torch.manual_seed(2)
    source, _, _ = load_backbone("resnet18")
    torch.save(source.state_dict(), tmp_path / "w.pt")
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "home")}
    log_file = tmp_path / "downloads.txt"
    children = [
        subprocess.Popen(
            [sys.executable, "-c", CHILD, str(tmp_path / "w.pt"), str(log_file)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [child.communicate(timeout=300) for child in children]
    assert all(child.returncode == 0 for child in children), outputs
    assert log_file.read_text().count("\n") == 1
    expected = float(source.conv1.weight.sum())
    assert [float(out.strip().splitlines()[-1]) for out, _ in outputs] == [
        pytest.approx(expected)
    ] * 2


def test_frozen_backbone_stays_frozen():
    f = RegionFeatures(trainable=False)
    f.train()
    assert not f.body.training and not any(p.requires_grad for p in f.parameters())


def test_region_targets_exact():
    from graphvision.nn.heads import region_targets

    index = torch.tensor([[0, 0, 1, 1], [0, 1, 1, 2]])
    weight = torch.tensor([0.9, 0.4, 0.55, 0.3])
    target = region_targets(index, weight, torch.tensor([4, 7]), num_regions=4, background=9)
    # region 0: object 0 (0.9); region 1: object 1 wins with 0.55; region 2: 0.3 < 0.5; region 3: none
    assert target.tolist() == [4, 7, 9, 9]


def test_object_masks_and_shape_exact():
    from graphvision.nn.heads import object_masks, object_shape

    segments = torch.tensor([[[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]]])
    index = torch.tensor([[0, 0, 0], [0, 1, 2]])
    weight = torch.tensor([1.0, 1.0, 1.0])  # an L of three quadrants
    masks = object_masks(segments, index, weight, torch.tensor([0]), 1, int(segments.max()) + 1)
    assert masks[0].tolist() == [[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]
    geom = torch.tensor([[0.5, 0.5, 0.0, 0.0, 1.0, 1.0, 0.75, 0.75]])
    shape = object_shape(masks, geom, grid=2)  # quadrants, row-major
    assert shape.view(-1).tolist() == pytest.approx([1.0, 1.0, 1.0, 0.0])


def test_degenerate_images_through_the_whole_model(degenerate_batch):
    """An 8x8 image, a one-region (flat) image and an image without objects: finite outputs
    (objects found in the region graph too) and a finite loss."""
    batch, info = degenerate_batch
    module = build_module(info, ["model/gnn=gatv2", "model.dim=32"])
    out = module.net(batch, detect=True)
    assert "det_label" in out
    assert all(torch.isfinite(v.float()).all() for v in out.values())
    assert out["det_region_instance"].shape == (batch.num_nodes,)
    assert int(out["det_region_instance"].max()) < out["det_label"].numel()
    losses = module.losses(out, batch)
    assert set(losses) == {"scene", "regions", "objects", "relations", "grouping"}
    assert all(torch.isfinite(v) for v in losses.values())


def test_bilinear_at_equals_grid_sample():
    """Oracle: the gather-based interpolation equals torch's grid_sample (align_corners=False)."""
    import torch.nn.functional as F

    from graphvision.nn.features import bilinear_at

    torch.manual_seed(0)
    fmap = torch.randn(2, 5, 4, 6)
    pos = torch.rand(30, 2)
    batch = torch.randint(0, 2, (30,))
    cells = fmap.permute(0, 2, 3, 1).reshape(-1, 5)
    mine = bilinear_at(cells, pos, batch, 4, 6)
    grid = (pos * 2 - 1).view(-1, 1, 1, 2)
    theirs = F.grid_sample(fmap[batch], grid, align_corners=False, padding_mode="border").view(
        30, 5
    )
    torch.testing.assert_close(mine, theirs)


@pytest.mark.parametrize("size, n_segments", [((448, 448), 800), ((96, 160), 120), ((160, 96), 60)])
def test_heads_at_any_working_resolution(tmp_path, size, n_segments):
    """The object-mask grid and every index from region geometry hold at large, non-square
    working resolutions and with objects touching every border of the image: the forward
    pass (objects found in the region graph too) is finite and the masks cover the regions."""
    import skimage.data
    from PIL import Image
    from torch_geometric.data import Batch

    from graphvision.data.objects import ObjectConfig
    from graphvision.data.pipeline import ImageJob, build_entry, to_graph
    from graphvision.regions import RegionConfig
    from graphvision.tasks.scene_graph.detection import instance_masks

    photo = skimage.data.astronaut()  # 512x512
    Image.fromarray(photo).save(tmp_path / "photo.png")
    w, h = 512, 512
    corners = [
        [0, 0, 200, 150],
        [w - 180, 0, 180, 220],
        [0, h - 160, 240, 160],
        [w - 200, h - 200, 200, 200],
    ]
    anns = tuple(
        {"id": i + 1, "category_id": 1 + i % 2, "bbox": b, "iscrowd": 0}
        for i, b in enumerate(corners)
    )
    job = ImageJob(str(tmp_path / "photo.png"), 7, (w, h), anns, (1, 2))
    regions = RegionConfig(size=size, n_segments=n_segments)
    graph = to_graph(build_entry(job, regions, ObjectConfig()))
    assert graph.num_objects == 4 and tuple(graph.segments.shape) == size
    info = {
        "categories": ["a", "b"],
        "predicates": ["left of", "above", "right of", "below", "inside", "surrounding"],
        "classes": [],
    }
    module = build_module(info, ["model.dim=32"]).eval()
    batch = Batch.from_data_list([graph, graph], follow_batch=list(module.net.task.follow_batch))
    with torch.no_grad():
        out = module.net(batch, detect=True)
    assert all(torch.isfinite(v.float()).all() for v in out.values())
    assert out["object_logits"].shape == (8, 2) and out["relation_logits"].shape == (24, 6)
    masks = instance_masks(out["det_region_instance"], batch.segments, out["det_batch"])
    assert masks.shape == (out["det_label"].numel(), *size)
    assert torch.isfinite(module.losses(out, batch)["grouping"])


def test_cnn_baseline_is_the_backbone_alone(degenerate_batch):
    """``model=cnn_baseline``: the image vector is the projected global average pool of the
    last feature map (an oracle: torch's own mean over it), the region tokens are the
    projected region means; it trains a step, and its scene logits depend on the image."""
    from graphvision.nn.baseline import BackboneNet

    batch, info = degenerate_batch
    module = build_module(info, ["model=cnn_baseline", "model.dim=32"])
    net = module.net
    assert isinstance(net, BackboneNet) and net.features.return_nodes == ["layer4"]
    assert module.hparams.gnn is None and module.hparams.sequence is None
    assert not hasattr(net, "gnn") and not hasattr(net, "node_encoder")
    net.eval()
    seq = net.encode(batch, return_attention=True)
    fmap = net.features.feature_map(batch.image)
    torch.testing.assert_close(seq.cls, net.project(fmap.mean(dim=(2, 3))))
    pooled = pool_regions(fmap, batch.segments, batch.pos, batch.batch)
    torch.testing.assert_close(seq.tokens, net.project(pooled))
    per_image = torch.zeros(2).index_add_(0, batch.batch, seq.attention[0])
    torch.testing.assert_close(per_image, torch.ones(2))  # each image's cells, shared out
    module.train()
    losses = module.losses(module(batch), batch)
    module.weighted_loss(losses).backward()
    assert set(losses) == set(module.net.task.losses(module(batch), batch))
    last = [p for n, p in net.features.body.named_parameters() if n.startswith("layer4")]
    assert last and all(p.grad is not None for p in last)
    net.eval()
    other = batch.clone()
    other.image = torch.flip(batch.image, dims=[0])  # the two images swapped
    scene, swapped = net(batch)["scene_logits"], net(other)["scene_logits"]
    assert not torch.allclose(scene, swapped)


def test_several_backbone_depths_are_pooled_each_at_its_stride(degenerate_batch):
    """``return_nodes=[layer2, layer3, layer4]``: the region feature is the concatenation of
    each depth's map pooled over the regions; the maps are resnet18's own, computed here by
    hand from its layers (an oracle independent of torchvision's feature extractor)."""
    batch, _ = degenerate_batch
    torch.manual_seed(0)
    features = RegionFeatures(return_nodes=["layer2", "layer3", "layer4"]).eval()
    assert features.channels == [128, 256, 512] and features.out_channels == 896
    model = torchvision.models.resnet18()
    model.load_state_dict(features.body.state_dict(), strict=False)
    model.eval()
    with torch.no_grad():
        x = (batch.image - features.mean) / features.std
        x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        l2 = model.layer2(model.layer1(x))
        l3 = model.layer3(l2)
        l4 = model.layer4(l3)
        expected = torch.cat(
            [pool_regions(m, batch.segments, batch.pos, batch.batch) for m in (l2, l3, l4)], 1
        )
        got = features(batch.image, batch.segments, batch.pos, batch.batch)
    assert [m.shape[-1] for m in (l2, l3, l4)] == [4, 2, 1]  # 32 px at strides 8, 16, 32
    torch.testing.assert_close(got, expected)
