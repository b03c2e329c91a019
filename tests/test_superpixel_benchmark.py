"""The superpixel-graph benchmark (``experiment=cifar10_superpixels``): regions described by
their descriptors alone (``model/backbone=none``, ``model.descriptors``), the benchmarks'
k-nearest-neighbour graph (``data.regions.edges=knn``), parameter counts."""

from __future__ import annotations

import logging
import math

import hydra
import numpy as np
import pytest
import torch
from torch_geometric.data import Batch

from graphvision.data.augment import Transform, transform_entry
from graphvision.data.objects import ObjectConfig
from graphvision.regions import (
    BENCHMARK_DESCRIPTORS,
    NODE_FEATURES,
    RegionConfig,
    descriptor_columns,
    knn_edges,
    region_adjacency,
    region_graph,
)
from tests.conftest import compose_cfg, compose_cifar10_handful, make_image_folder


def brute_force_knn(pos, colour, k: int) -> set[tuple[int, int]]:
    """The documented rule, written out with loops: sigma_i is the mean of i's k smallest
    distances to the others (per kind: centroids, and mean colours unless ``colour`` is
    None), similarity exp(-(d/sigma_i)^2 - ...) averaged with j's view, and i sends an edge
    to each of its k most similar (ties: the lower id)."""
    n = len(pos)
    k = min(k, n - 1)
    kinds = [pos] if colour is None else [pos, colour]

    def dist(a, b):
        return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))

    def sigmas(points):
        return [
            sum(sorted(dist(points[i], points[j]) for j in range(n) if j != i)[:k]) / k + 1e-8
            for i in range(n)
        ]

    scale = [sigmas(points) for points in kinds]

    def one_way(i, j):
        return math.exp(-sum((dist(p[i], p[j]) / s[i]) ** 2 for p, s in zip(kinds, scale)))

    edges = set()
    for i in range(n):
        sim = [(-(one_way(i, j) + one_way(j, i)) / 2, j) for j in range(n) if j != i]
        edges |= {(i, j) for _, j in sorted(sim)[:k]}
    return edges


def as_pairs(edge_index: np.ndarray) -> set[tuple[int, int]]:
    return {(int(s), int(t)) for s, t in edge_index.T}


POS = np.array(
    [[0.1, 0.1], [0.2, 0.15], [0.9, 0.1], [0.5, 0.5], [0.55, 0.45], [0.1, 0.9], [0.8, 0.85]]
)
COLOUR = np.array(
    [
        [1, 0, 0],
        [0, 0, 1],
        [1, 0.1, 0],
        [0.5, 0.5, 0.5],
        [0.9, 0.9, 0.9],
        [0, 1, 0],
        [0, 0.9, 0.1],
    ]
)


@pytest.mark.parametrize("with_colour", [False, True], ids=["position", "position+colour"])
def test_knn_edges_equal_a_brute_force_computation(with_colour):
    """Seven hand-placed regions (colours that disagree with positions), every k: the edges
    are the brute force's, sorted, each region sending exactly min(k, 6)."""
    colour = COLOUR if with_colour else None
    for k in (1, 2, 3, 6, 8):
        got = knn_edges(POS, colour, k)
        assert got.dtype == np.int64 and got.shape == (2, 7 * min(k, 6))
        expected = brute_force_knn(POS.tolist(), None if colour is None else colour.tolist(), k)
        assert as_pairs(got) == expected, k
        assert list(map(tuple, got.T)) == sorted(map(tuple, got.T))
        assert np.bincount(got[0], minlength=7).tolist() == [min(k, 6)] * 7
    # colour changes the graph: region 1 (blue) is nearest 0 in position, not in colour
    assert as_pairs(knn_edges(POS, None, 1)) != as_pairs(knn_edges(POS, COLOUR, 1))


def test_knn_ties_go_to_the_lower_region_id():
    """A centre and four corners: the centre's four neighbours are equally similar, so with
    k=2 it sends to corners 1 and 2, the lowest ids."""
    pos = np.array([[0.5, 0.5], [0.25, 0.25], [0.75, 0.25], [0.25, 0.75], [0.75, 0.75]])
    edges = as_pairs(knn_edges(pos, None, 2))
    assert {t for s, t in edges if s == 0} == {1, 2}
    assert edges == brute_force_knn(pos.tolist(), None, 2)


def test_knn_small_graphs_and_a_bad_k():
    assert knn_edges(np.zeros((1, 2)), None, 8).shape == (2, 0)
    assert as_pairs(knn_edges(np.array([[0.0, 0.0], [1.0, 1.0]]), None, 8)) == {(0, 1), (1, 0)}
    with pytest.raises(ValueError, match="k >= 1"):
        knn_edges(np.zeros((3, 2)), None, 0)


def test_knn_region_graph_is_directed_and_keeps_the_edge_features():
    """A 4x8 map of four vertical strips 0 | 1 | 2 | 3 (centroids a quarter apart), k=1:
    each region sends to its nearest, a tie going to the lower id, so 1 -> 0 and 2 -> 1
    (not 1 -> 2): a directed graph. The touching pairs keep adjacency's boundary lengths;
    with k=3 regions 0 and 3, which do not touch, are joined with boundary 0."""
    labels = np.repeat(np.repeat(np.arange(4), 2)[None], 4, axis=0)
    image = np.zeros((4, 8, 3), dtype=np.uint8)
    g = region_graph(image, labels, edges="knn", k=1)
    assert list(map(tuple, g["edge_index"].T)) == [(0, 1), (1, 0), (2, 1), (3, 2)]
    np.testing.assert_allclose(g["edge_attr"][:, 3] * math.sqrt(32), [4, 4, 4, 4], atol=1e-5)
    g3 = region_graph(image, labels, edges="knn", k=3)
    far = [i for i, (s, t) in enumerate(g3["edge_index"].T) if {s, t} == {0, 3}]
    assert len(far) == 2 and (g3["edge_attr"][far, 3] == 0).all()
    adjacency = region_graph(image, labels)
    adj_index, adj_boundary = region_adjacency(labels)
    assert (adjacency["edge_index"] == adj_index).all() and set(adj_boundary.tolist()) == {4}
    np.testing.assert_array_equal(g["x"], adjacency["x"])
    with pytest.raises(ValueError, match="choose one of"):
        region_graph(image, labels, edges="delaunay")


def test_region_config_graph_fields_and_cache_keys():
    """The adjacency graph keeps the cache key it always had; knn (and its k) get their own."""
    plain = RegionConfig().as_dict()
    assert "edges" not in plain and "k" not in plain
    assert RegionConfig(edges="knn").as_dict()["edges"] == "knn"
    assert RegionConfig(edges="knn", k=4).as_dict() != RegionConfig(edges="knn").as_dict()
    assert (
        RegionConfig(edges="knn", knn_colour=True).as_dict() != RegionConfig(edges="knn").as_dict()
    )
    with pytest.raises(ValueError, match="regions.edges='radius'"):
        RegionConfig(edges="radius")
    with pytest.raises(ValueError, match="regions.k=0"):
        RegionConfig(edges="knn", k=0)


def test_augmentation_rebuilds_the_knn_graph(tmp_path):
    """A training-time transform rebuilds the graph the data config names: knn stays knn."""
    from graphvision.data.pipeline import ImageJob, build_entry

    folder = make_image_folder(tmp_path / "folder", per_class=1)
    path = next(folder.glob("train/*/*"))
    cfg = RegionConfig(size=(32, 32), n_segments=20, edges="knn", k=3)
    entry = build_entry(ImageJob(str(path), 0, label=0), cfg, ObjectConfig())
    n = entry["x"].shape[0]
    assert np.bincount(entry["edge_index"][0].numpy(), minlength=n).tolist() == [3] * n
    flipped = transform_entry(entry, Transform(flip=True), ObjectConfig(), cfg)
    m = flipped["x"].shape[0]
    assert np.bincount(flipped["edge_index"][0].numpy(), minlength=m).tolist() == [3] * m


def test_descriptor_columns():
    assert descriptor_columns("all") == list(range(len(NODE_FEATURES)))
    assert descriptor_columns(BENCHMARK_DESCRIPTORS) == [0, 1, 2, 6, 7]
    assert descriptor_columns(["cy", "mean_r"]) == [7, 0]
    with pytest.raises(ValueError, match=r"unknown \['hue'\]"):
        descriptor_columns(["mean_r", "hue"])
    with pytest.raises(ValueError, match="named twice"):
        descriptor_columns(["cx", "cx"])
    with pytest.raises(ValueError, match="give all"):
        descriptor_columns("some")


@pytest.mark.parametrize(
    "descriptors", [list(BENCHMARK_DESCRIPTORS), "all", ["area", "std_g"]], ids=str
)
def test_no_backbone_has_no_cnn_and_its_node_features_are_the_chosen_columns(
    tmp_path, degenerate_batch, descriptors
):
    """``model/backbone=none``: no parameter or convolution outside the graph, sequence and
    task stages, and what each region is before the node encoder is exactly its chosen
    descriptor columns."""
    cfg = compose_cfg(
        overrides=["model/backbone=none", f"model.descriptors={descriptors}".replace("'", "")],
        tmp=tmp_path,
    )
    batch, info = degenerate_batch
    module = hydra.utils.instantiate(cfg.model, info=info)
    net = module.net
    assert sum(p.numel() for p in net.features.parameters()) == 0
    assert not any(isinstance(m, torch.nn.Conv2d) for m in net.modules())
    columns = descriptor_columns(descriptors)
    inputs = net.region_inputs(batch)
    assert inputs.shape == (batch.num_nodes, len(columns))
    assert torch.equal(inputs, batch.x[:, columns])
    assert net.node_encoder[0].in_features == len(columns)
    out = module(batch)
    assert all(torch.isfinite(v).all() for v in out.values() if isinstance(v, torch.Tensor))
    # the optimiser has no backbone group, and every parameter is in one group
    groups = module.make_optimizer().param_groups
    assert {g["name"] for g in groups} == {"rest", "rest_no_decay"}
    assert sum(len(g["params"]) for g in groups) == len(list(module.parameters()))


def test_no_backbone_refuses_what_needs_a_cnn(tmp_path):
    cfg = compose_cfg(overrides=["model=cnn_baseline", "model/backbone=none"], tmp=tmp_path)
    with pytest.raises(Exception, match="needs a backbone"):  # Hydra wraps the ValueError
        hydra.utils.instantiate(cfg.model, info={"categories": ["a"], "predicates": ["p"]})
    cfg = compose_cfg(overrides=["model/backbone=none", "model.descriptors=[]"], tmp=tmp_path)
    with pytest.raises(Exception, match="no features"):
        hydra.utils.instantiate(cfg.model, info={"categories": ["a"], "predicates": ["p"]})


def test_cifar10_superpixels_composes_trains_a_step_and_logs_its_parameter_count(
    tmp_path, cifar10, caplog
):
    """Two photos of each class, one step: the protocol's knn graph and descriptors reach the
    network, and the logged parameter count is the network's ``sum(p.numel())``."""
    from graphvision.train import parameter_counts, train

    cfg = compose_cifar10_handful("cifar10_superpixels", cifar10, tmp_path)
    assert cfg.data.regions.edges == "knn" and cfg.data.regions.k == 8
    assert list(cfg.model.descriptors) == list(BENCHMARK_DESCRIPTORS)
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    batch = Batch.from_data_list([dm.datasets["train"][i] for i in range(4)])
    degree = torch.bincount(batch.edge_index[0], minlength=batch.num_nodes)
    assert (degree == 8).all()  # every region sends to its 8 nearest
    module = hydra.utils.instantiate(cfg.model, info=dm.info)
    total = sum(p.numel() for p in module.net.parameters())
    counts = parameter_counts(module.net)
    assert counts["parameters"] == total and counts["stages"]["features"] == 0
    assert sum(counts["stages"].values()) == total
    assert 80_000 <= total <= 120_000  # the protocol's ~100k
    with caplog.at_level(logging.INFO, logger="graphvision.train"):
        metrics = train(cfg)
    assert f"parameters: {total:,} ({total:,} trainable; features 0" in caplog.text
    assert 0.0 <= metrics["val/acc"] <= 1.0


def test_gated_gcn_equals_its_equations_written_with_loops():
    """GatedGCN on a hand-made graph (edges 0->1, 2->1, 1->0; node 2 receives nothing):
    every node and edge output against the equations, node by node."""
    from graphvision.nn.gnn import GatedGCNConv

    torch.manual_seed(0)
    conv = GatedGCNConv(4)
    x, edge_index = torch.randn(3, 4), torch.tensor([[0, 2, 1], [1, 1, 0]])
    e = torch.randn(3, 4)
    h, e_new = conv(x, edge_index, e)
    a, b, d, ee = conv.nodes(x).chunk(4, dim=1)
    c = conv.edges(e)
    for k, (j, i) in enumerate(edge_index.T.tolist()):
        torch.testing.assert_close(e_new[k], d[i] + ee[j] + c[k])
    for i in range(3):
        incoming = [k for k, t in enumerate(edge_index[1].tolist()) if t == i]
        num = sum((torch.sigmoid(e_new[k]) * b[edge_index[0, k]] for k in incoming), torch.zeros(4))
        den = sum((torch.sigmoid(e_new[k]) for k in incoming), torch.zeros(4))
        torch.testing.assert_close(h[i], a[i] + num / (den + 1e-6))
    torch.testing.assert_close(h[2], a[2])  # no neighbour: its own projection alone


def test_directed_knn_graphs_draw_count_and_export_every_pair():
    """A k-nearest graph joins some pairs one way only: the drawing, predict's edge count and
    the networkx export keep each joined pair once (the strips of the directed-graph test:
    pairs 0-1, 1-2, 2-3, where 1-2 and 2-3 are one-way)."""
    from torch_geometric.data import Data

    from graphvision.predictor import region_pairs
    from graphvision.viz import one_per_pair, to_networkx

    labels = np.repeat(np.repeat(np.arange(4), 2)[None], 4, axis=0)
    g = region_graph(np.zeros((4, 8, 3), dtype=np.uint8), labels, edges="knn", k=1)
    src, dst = g["edge_index"]
    assert one_per_pair(src, dst).tolist() == [True, False, True, True]
    assert region_pairs(torch.from_numpy(g["edge_index"])) == 3
    data = Data(
        x=torch.from_numpy(g["x"]),
        pos=torch.from_numpy(g["pos"]),
        edge_index=torch.from_numpy(g["edge_index"]),
        edge_attr=torch.from_numpy(g["edge_attr"]),
    )
    assert sorted(to_networkx(data).edges()) == [(0, 1), (1, 2), (2, 3)]
    adjacency = torch.from_numpy(region_adjacency(labels)[0])
    assert region_pairs(adjacency) == 3  # both ways: each pair once


def test_region_gnn_carries_gated_gcns_edge_state_from_block_to_block():
    """Two GatedGCN blocks: the second reads the edge state the first left (the encoded
    edge features plus the first block's activated edge output), each block pre-norm
    residual on nodes and edges alike; written out by hand against GatedGCN."""
    from torch.nn.functional import gelu

    from graphvision.nn.gnn import GatedGCN

    torch.manual_seed(0)
    gnn = GatedGCN(channels=8, edge_dim=5, num_layers=2).eval()
    x, edge_index = torch.randn(4, 8), torch.tensor([[0, 1, 2, 3, 1], [1, 0, 1, 2, 3]])
    edge_attr = torch.randn(5, 5)
    h, e = x, gnn.edge_encoder(edge_attr)
    assert e.shape == (5, 8)  # the edge state has the nodes' width
    for conv, norm, edge_norm in zip(gnn.convs, gnn.norms, gnn.edge_norms):
        dh, de = conv(norm(h), edge_index, edge_norm(e))
        h, e = h + gelu(dh), e + gelu(de)
    torch.testing.assert_close(gnn(x, edge_index, edge_attr, torch.zeros(4, dtype=torch.long)), h)


def test_the_datamodule_augments_with_the_configured_knn_graph(tmp_path):
    """Training items of a knn data config, augmented (flips): every region still sends to
    exactly k regions, and the validation items (not augmented) come from the cache as
    built."""
    folder = make_image_folder(tmp_path / "folder", per_class=2)
    cfg = compose_cfg(
        overrides=[
            "experiment=folder_classification",
            f"data.root={folder}",
            "data/augment=flip",
            "data.augment.flip=1.0",
            "data.regions.edges=knn",
            "data.regions.k=3",
            "data.regions.n_segments=20",
            "data.prepare_workers=1",
        ],
        tmp=tmp_path,
    )
    dm = hydra.utils.instantiate(cfg.data)
    dm.prepare_data()
    dm.setup("fit")
    train, val = dm.datasets["train"], dm.datasets["val"]
    assert train.augment is not None and train.augment.flip == 1.0
    for ds in (train, val):
        for i in range(len(ds)):
            g = ds[i]
            assert (
                torch.bincount(g.edge_index[0], minlength=g.num_nodes).tolist() == [3] * g.num_nodes
            )
    flipped, plain = (
        train[0],
        val.__class__(  # the same entry without augmentation
            train.jobs, train.keys, train.cache_dir, train.regions, train.objects
        )[0],
    )
    assert not torch.equal(flipped.pos, plain.pos)  # the flip moved the centroids ...
    assert torch.bincount(plain.edge_index[0]).tolist() == [3] * plain.num_nodes  # ... both knn
