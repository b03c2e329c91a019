"""Objects found in the region graph (SGDet) and the field's scene-graph metrics, on
hand-made inputs with values computed by hand, and against independent implementations
(scipy's connected components, pycocotools' COCOeval)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from graphvision.nn.grouping import (
    all_pairs,
    box_memberships,
    connected_components,
    group_regions,
    rank_within,
    region_instances,
    same_instance_targets,
)
from graphvision.tasks.detection_metrics import DetectionEval, coco_detection_metrics
from graphvision.tasks.metrics import SceneGraphRecall, SceneGraphs


def grid_graph(rows: int, cols: int) -> torch.Tensor:
    """4-adjacency of a ``rows x cols`` grid of regions (both directions), region ``r * cols + c``."""
    edges = []
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            if c + 1 < cols:
                edges += [(i, i + 1), (i + 1, i)]
            if r + 1 < rows:
                edges += [(i, i + cols), (i + cols, i)]
    return torch.tensor(edges).T


def test_connected_components_equal_scipy():
    """Oracle: on random sparse graphs the components are scipy's (same partition), each
    labelled by its smallest node."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components as scipy_components

    rng = np.random.default_rng(0)
    for n, e in [(1, 0), (10, 4), (200, 150), (500, 900)]:
        edges = rng.integers(0, n, size=(2, e))
        label = connected_components(torch.from_numpy(edges), n).numpy()
        _, ref = scipy_components(coo_matrix((np.ones(e), edges), shape=(n, n)), directed=False)
        # same partition: the pairs (ours, scipy's) are a bijection
        assert len(set(zip(label, ref))) == len(set(label)) == len(set(ref))
        assert all(label[i] == min(np.nonzero(label == label[i])[0]) for i in range(n))


def test_grouping_with_perfect_edge_scores_recovers_the_instances():
    """A 3x4 grid of regions with known instances (-1: background); perfect same-instance
    scores and foreground: the connected components are exactly the instances, including
    two touching instances of the same class, which the class baseline merges."""
    instances = torch.tensor([0, 0, 1, 1, 0, 0, 1, 2, -1, -1, 2, 2])
    classes = torch.tensor([5, 5, 3, 3, 5, 5, 3, 3, 9, 9, 3, 3])  # instances 1 and 2 both class 3
    edge_index = grid_graph(3, 4)
    src, dst = edge_index
    perfect = (instances[src] == instances[dst]) & (instances[src] >= 0)
    foreground = instances >= 0
    found, m = group_regions(perfect, foreground, edge_index)
    assert m == 3
    assert (found >= 0).tolist() == foreground.tolist()
    pairs = {(int(a), int(b)) for a, b in zip(found[foreground], instances[foreground])}
    assert len(pairs) == 3  # a bijection between found and true instances
    baseline, m_class = group_regions(classes[src] == classes[dst], foreground, edge_index)
    assert m_class == 2 and baseline[2] == baseline[11]  # instances 1 and 2 merged


def test_same_instance_targets_from_memberships():
    # regions 0, 1 mostly object 0; region 2 object 1; region 3 half-covered by nothing
    index = torch.tensor([[0, 0, 1, 1, 0], [0, 1, 2, 1, 3]])
    weight = torch.tensor([1.0, 0.7, 0.9, 0.3, 0.4])
    owner = region_instances(index, weight, 4)
    assert owner.tolist() == [0, 0, 1, -1]
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 2, 3, 3]])
    target, trained = same_instance_targets(edge_index, owner)
    assert target.tolist() == [1.0, 0.0, 0.0, 0.0]
    assert trained.tolist() == [True, True, True, True]
    target, trained = same_instance_targets(torch.tensor([[3], [3]]), owner)
    assert trained.tolist() == [False]


def test_rank_within_and_all_pairs():
    group = torch.tensor([1, 0, 1, 0, 1])
    score = torch.tensor([0.2, 0.9, 0.8, 0.1, 0.5])
    assert rank_within(group, score).tolist() == [2, 0, 0, 1, 1]
    assert all_pairs(torch.tensor([0, 0, 1])).tolist() == [[0, 1], [1, 0]]
    assert all_pairs(torch.zeros(0, dtype=torch.long)).shape == (2, 0)


def test_box_memberships_take_the_regions_mostly_inside():
    segments = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 3, 3], [2, 2, 3, 3]])
    # the left half: regions 0 and 2 wholly inside; a box over three quarters of region 3
    boxes = torch.tensor([[0.0, 0.0, 0.5, 1.0], [0.5, 0.5, 1.0, 1.0], [0.76, 0.76, 1.0, 1.0]])
    index, weight = box_memberships(segments, boxes, 4)
    got = {(int(b), int(r)): float(w) for b, r, w in zip(*index, weight)}
    assert got == {
        (0, 0): 1.0,
        (0, 2): 1.0,
        (1, 3): 1.0,
        (2, 3): 0.25,
    }  # a tiny box: its best region


# -- triplet recall ---------------------------------------------------------------------------
def graphs(labels, pairs, boxes=None, scores=None, predicate_scores=None, predicates=None):
    labels = torch.tensor(labels)
    n = labels.numel()
    boxes = (
        torch.tensor(boxes, dtype=torch.float)
        if boxes is not None
        else torch.tensor([[0.1 * i, 0.0, 0.1 * i + 0.1, 0.1] for i in range(n)])
    )
    return SceneGraphs(
        labels,
        torch.tensor(scores, dtype=torch.float) if scores is not None else torch.ones(n),
        boxes,
        torch.zeros(n, dtype=torch.long),
        torch.tensor(pairs).reshape(2, -1),
        None if predicate_scores is None else torch.tensor(predicate_scores),
        None if predicates is None else torch.tensor(predicates),
    )


def test_graph_constraint_and_no_graph_constraint_differ():
    """One annotated triplet (0 -1-> 1); its pair's predicate scores are [0.6, 0.4]. With
    the graph constraint the pair offers only predicate 0: R@1 = R@2 = 0. Without it,
    (pair, 0) ranks first and (pair, 1) second: ngR@1 = 0, ngR@2 = 1."""
    truth = graphs([0, 1], [[0], [1]], predicates=[1])
    pred = graphs([0, 1], [[0], [1]], predicate_scores=[[0.6, 0.4]])
    metric = SceneGraphRecall(2, ks=(1, 2))
    metric.update(pred, truth)
    out = metric.compute()
    assert out["R@1"] == 0 and out["R@2"] == 0
    assert out["ngR@1"] == 0 and out["ngR@2"] == 1
    assert out["ng-mR@2"] == 1  # only predicate 1 is annotated


def test_sgdet_iou_rule_rejects_a_box_at_iou_045():
    """Right labels and predicate, the object box exact, the subject box at IoU 0.45 with
    the annotated one: not recalled; at IoU 0.55: recalled."""
    gt_boxes = [[0.0, 0.0, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]]
    truth = graphs([2, 3], [[0], [1]], boxes=gt_boxes, predicates=[0])
    for height, recalled in [(0.18, 0.0), (0.22, 1.0)]:  # IoU = 0.4 * h / 0.16
        boxes = [[0.0, 0.0, 0.4, height], [0.5, 0.5, 0.9, 0.9]]
        pred = graphs(
            [2, 3], [[0], [1]], boxes=boxes, scores=[0.9, 0.8], predicate_scores=[[0.7, 0.3]]
        )
        metric = SceneGraphRecall(2, ks=(20,), match="iou")
        metric.update(pred, truth)
        assert metric.compute()["R@20"].item() == recalled


def test_sgdet_matches_across_different_object_orders():
    """In sgdet the found objects need not be in the annotation's order: boxes decide."""
    truth = graphs(
        [2, 3], [[0], [1]], boxes=[[0, 0, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9]], predicates=[1]
    )
    pred = graphs(
        [3, 7, 2],
        [[2, 0], [0, 2]],
        boxes=[[0.5, 0.5, 0.9, 0.9], [0, 0, 1, 1], [0, 0, 0.4, 0.4]],
        scores=[0.9, 0.9, 0.9],
        predicate_scores=[[0.1, 0.9], [0.8, 0.2]],
    )
    metric = SceneGraphRecall(2, ks=(1,), match="iou")
    metric.update(pred, truth)
    assert metric.compute()["R@1"] == 1


def test_zero_shot_recall_counts_only_unseen_triplets():
    """Two annotated triplets: (0, p0, 1) occurs in training, (1, p1, 0) does not. Only the
    unseen one is recalled: R@K = 0.5, zR@K = 1. mR@K = (0 + 1) / 2."""
    seen = torch.zeros(2, 2, 2, dtype=torch.bool)
    seen[0, 0, 1] = True
    truth = graphs([0, 1], [[0, 1], [1, 0]], predicates=[0, 1])
    pred = graphs([0, 1], [[0, 1], [1, 0]], predicate_scores=[[0.2, 0.8], [0.1, 0.9]])
    metric = SceneGraphRecall(2, ks=(20,))
    metric.update(pred, truth, seen)
    out = metric.compute()
    assert out["R@20"] == 0.5 and out["zR@20"] == 1.0 and out["mR@20"] == 0.5
    no_seen = SceneGraphRecall(2, ks=(20,))
    no_seen.update(pred, truth)
    assert "zR@20" not in no_seen.compute()


def test_recall_is_a_mean_over_images_and_mean_recall_over_predicates():
    """Image 0: 2 triplets, the predicate-0 one recalled, the predicate-1 one not; image 1:
    1 triplet (predicate 0), recalled -> R = (1/2 + 1) / 2. Per-predicate recall averages
    over the images holding the predicate: predicate 0 -> (1 + 1) / 2, predicate 1 -> 0."""
    truth = SceneGraphs(
        torch.tensor([0, 1, 0, 1]),
        torch.ones(4),
        torch.rand(4, 4),
        torch.tensor([0, 0, 1, 1]),
        torch.tensor([[0, 1, 2], [1, 0, 3]]),
        predicates=torch.tensor([0, 1, 0]),
    )
    pred = SceneGraphs(
        torch.tensor([0, 1, 0, 1]),
        torch.ones(4),
        truth.boxes,
        truth.batch,
        truth.pairs,
        torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.8, 0.2]]),
    )
    metric = SceneGraphRecall(2, ks=(50,))
    metric.update(pred, truth)
    out = metric.compute()
    assert out["R@50"].item() == pytest.approx(0.75)
    # predicate 0: image 0 1/1, image 1 1/1 -> 1; predicate 1: image 0 0/1 -> 0
    assert out["mR@50"].item() == pytest.approx(0.5)


# -- detection: COCOeval ------------------------------------------------------------------------
def masks_of(boxes, size=(20, 30)):
    out = torch.zeros(len(boxes), *size, dtype=torch.bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        out[i, y0:y1, x0:x1] = True
    return out


def test_cocoeval_of_the_ground_truth_itself_is_one():
    """Oracle: pycocotools' COCOeval, fed the annotated instances as detections, gives AP 1."""
    gt = masks_of([(0, 0, 10, 10), (12, 2, 25, 18), (3, 11, 9, 19)])
    labels = torch.tensor([0, 2, 2])
    image_batch = torch.tensor([0, 0, 1])
    metric = DetectionEval(num_categories=3)
    image_ids = torch.tensor([7, 9])
    metric.update(
        image_ids, gt, labels, torch.tensor([0.9, 0.8, 0.7]), image_batch, gt, labels, image_batch
    )
    out = metric.compute()
    for name in ("segm_AP", "segm_AP50", "bbox_AP", "bbox_AP50", "segm_AR100", "obj_recall50"):
        assert out[name].item() == pytest.approx(1.0), name


def test_cocoeval_penalises_wrong_labels_and_bad_masks():
    gt = masks_of([(0, 0, 10, 10), (12, 2, 25, 18)])
    labels = torch.tensor([0, 1])
    batch = torch.tensor([0, 0])
    # the second detection covers a third of its object (IoU 1/3) and the first is mislabelled
    dt = masks_of([(0, 0, 10, 10), (12, 2, 25, 7)])
    metric = DetectionEval(num_categories=2)
    metric.update(
        torch.tensor([1]), dt, torch.tensor([1, 1]), torch.ones(2), batch, gt, labels, batch
    )
    out = metric.compute()
    assert out["segm_AP50"].item() == 0.0
    # class-agnostic: the first detection matches object 0 -> recall at IoU 0.5 is 1/2
    assert out["obj_recall50"].item() == pytest.approx(0.5)


def test_cocoeval_with_no_detections_is_zero():
    gt = masks_of([(0, 0, 10, 10)])
    metric = DetectionEval(num_categories=1)
    none = torch.zeros(0, dtype=torch.long)
    metric.update(
        torch.tensor([3]),
        gt[:0],
        none,
        torch.zeros(0),
        none,
        gt,
        torch.tensor([0]),
        torch.tensor([0]),
    )
    assert metric.compute()["segm_AP"].item() == 0.0
    assert (
        coco_detection_metrics([], [], 1)["segm_AP"] != coco_detection_metrics([], [], 1)["segm_AP"]
    )  # NaN


def test_a_prediction_record_with_nothing_found(degenerate_batch):
    """sgdet finding no object (here: every instance below min_area) writes empty object
    and relation lists, not an error."""
    from torch_geometric.data import Batch

    from tests.conftest import build_module

    batch, info = degenerate_batch
    module = build_module(info, ["model.dim=32"]).eval()
    task = module.net.task
    task.min_area = 2.0  # larger than any image
    graph = batch.get_example(0)
    one = Batch.from_data_list([graph], follow_batch=list(task.follow_batch))
    with torch.no_grad():
        out = module.net(one, return_attention=True, detect=True)
    assert out["det_label"].numel() == 0 and (out["det_region_instance"] == -1).all()
    options = {
        "top_k": 3,
        "threshold": 0.5,
        "top_objects": 16,
        "object_threshold": 0.0,
        "top_relations": 20,
        "relation_threshold": 0.0,
        "size": (64, 48),
    }
    prediction = task.prediction(out, graph, options)
    assert prediction.mode == "sgdet" and prediction.objects == [] == prediction.relations
    record = prediction.to_json()
    assert record["mode"] == "sgdet" and record["objects"] == [] and record["relations"] == []
    assert len(record["region_details"]) == graph.num_nodes
    assert graph.num_objects  # the annotated objects, whose labels the options do not give
    with pytest.raises(ValueError, match=r"mode=predcls needs objects with their categories"):
        task.prediction(out, graph, options, mode="predcls")
    with pytest.raises(
        ValueError, match=r"mode=sgfoo: choose among \['sgdet', 'sgcls', 'predcls'\]"
    ):
        task.prediction(out, graph, options, mode="sgfoo")


def test_grouping_head_scores_each_pair_once_and_symmetrically():
    """The grouping head's logit of an edge equals the direct computation on that edge,
    and both directions of a pair get the same logit."""
    from graphvision.nn.heads import GroupingHead

    torch.manual_seed(0)
    head = GroupingHead(8, 5).eval()
    tokens = torch.randn(5, 8)
    edge_index = torch.tensor([[0, 1, 1, 2, 3, 4, 2], [1, 0, 2, 1, 4, 3, 4]])
    attr = torch.randn(7, 5)
    attr[1], attr[3], attr[5] = (
        attr[0] * torch.tensor([-1, -1, 1, 1, 1.0]),
        attr[2] * torch.tensor([-1, -1, 1, 1, 1.0]),
        attr[4] * torch.tensor([-1, -1, 1, 1, 1.0]),
    )  # reversed: dx, dy flip
    with torch.no_grad():
        out = head(tokens, edge_index, attr)
        h = head.norm(tokens)
        a, b = h[edge_index[0]], h[edge_index[1]]
        direct = head.classify(torch.cat([a + b, (a - b).abs(), attr.abs()], 1)).squeeze(1)
    torch.testing.assert_close(out, direct)
    assert out[0] == out[1] and out[2] == out[3] and out[4] == out[5]
