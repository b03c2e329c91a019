"""Checkpoints written before tasks were objects (graphvision 0.1.0 up to the change that
made them so): their layout, and its conversion to today's, so that they load as they are.

Then, ``info`` named the task (``info["task"]``: ``"relations"`` or ``"classification"``)
and its relation vocabulary ``relations``; the network held the heads itself; the heads'
settings (``shape_grid``, ``zero_shot``, ``text_encoder``, ``recall_k``) and every loss
weight (``loss_weights``, DeepSeek's ``balance`` among them) were the module's own.

Format 2 (tasks as objects, before objects were found in the region graph) has no grouping
head, no ``sgdet`` settings, no record of the training split's triplets and one recall K:
it loads with ``grouping=class`` (the grouping that needs no training), a ``grouping`` loss
weight of 0 and the new parts as a fresh module has them. Format 3 (before the backbone-alone
baseline) names no network and pools one backbone layer (``return_node``): it loads as
``net: graph``, the only one there was, with ``return_nodes`` holding that layer. Format 4
(before ``model.descriptors``) fed every descriptor column to the node encoder: it loads with
``descriptors: all``; its ``gated_gcn`` was PyG's ``ResGatedGraphConv``, whose weights do not
fit today's GatedGCN (a clear error says to train again).
"""

from __future__ import annotations

#: Version of the checkpoint layout that ``GraphVisionModule`` writes; a checkpoint without
#: one predates tasks as objects and is converted on load.
CHECKPOINT_FORMAT = 5

#: what a format-2 scene-graph task is given for the settings it did not have
SGDET_FOR_OLD_MODELS = {
    "every": 0,
    "grouping": "class",
    "edge_threshold": 0.5,
    "max_objects": 16,
    "min_area": 0.002,
}

#: the task names those checkpoints carry in ``info["task"]``, and the task each one is now
LEGACY_TASKS = {
    "relations": "graphvision.tasks.SceneGraphTask",
    "classification": "graphvision.tasks.ClassificationTask",
}
#: heads that the network held itself before tasks were objects, now the task's
_LEGACY_HEADS = ("scene_head", "region_head", "object_head", "relation_head", "class_head")
#: loss weights of the old ``model.loss_weights`` that belong to each task now
_LEGACY_TASK_LOSSES = {
    "graphvision.tasks.SceneGraphTask": ("scene", "objects", "relations", "regions"),
    "graphvision.tasks.ClassificationTask": ("classification",),
}


def upgrade_state_dict(state: dict) -> dict:
    """Parameter names of a checkpoint written before tasks were objects, renamed: the heads
    ``net.<head>`` are ``net.task.<head>``, the zero-shot ``seen`` buffer ``net.task.seen``."""
    renamed = {}
    for key, value in state.items():
        parts = key.split(".")
        if key == "seen":
            key = "net.task.seen"
        elif len(parts) > 1 and parts[0] == "net" and parts[1] in _LEGACY_HEADS:
            key = "net.task." + ".".join(parts[1:])
        renamed[key] = value
    return renamed


def upgrade_hyper_parameters(old: dict) -> dict:
    """The hyper-parameters of a checkpoint written before tasks were objects, as
    :class:`~graphvision.module.GraphVisionModule` takes them today."""
    info = dict(old["info"])
    name = info.pop("task", None)
    if name not in LEGACY_TASKS:
        raise ValueError(
            f"checkpoint names an unknown task {name!r} (known: {sorted(LEGACY_TASKS)}); "
            "retrain it with python -m graphvision.train"
        )
    info["predicates"] = info.pop("relations", [])
    target = LEGACY_TASKS[name]
    # what the old module filled in for weights its loss_weights left out
    weights = {
        "scene": 1.0,
        "objects": 1.0,
        "relations": 1.0,
        "regions": 1.0,
        "classification": 1.0,
        "balance": 0.01,
        **(old.get("loss_weights") or {}),
    }
    task = {
        "_target_": target,
        "loss_weights": {k: weights[k] for k in _LEGACY_TASK_LOSSES[target]},
    }
    if target == "graphvision.tasks.SceneGraphTask":
        task.update({k: old[k] for k in ("shape_grid", "zero_shot", "text_encoder", "recall_k")})
    sequence = dict(old["sequence"])
    if sequence["_target_"].endswith("DeepseekV3Sequence"):
        sequence["balance_weight"] = weights["balance"]
    return {
        "info": info,
        "task": task,
        "backbone": old["backbone"],
        "gnn": old["gnn"],
        "sequence": sequence,
        **{k: old[k] for k in ("dim", "dropout", "lr", "weight_decay", "warmup_fraction")},
        "data_config": old.get("data_config"),
    }


def add_grouping(hyper_parameters: dict) -> dict:
    """Format-2 hyper-parameters with what a scene-graph task takes today (see the module's
    docstring); other tasks are unchanged."""
    task = dict(hyper_parameters["task"])
    if task["_target_"] == "graphvision.tasks.SceneGraphTask":
        task.setdefault("sgdet", dict(SGDET_FOR_OLD_MODELS))
        task["loss_weights"] = {"grouping": 0.0, **task["loss_weights"]}
    return {**hyper_parameters, "task": task}


def fill_missing(state: dict, fresh: dict) -> dict:
    """``state`` completed with the entries of ``fresh`` (a new module's state dict) that it
    lacks: the parts an older format did not have."""
    return {**{k: v for k, v in fresh.items() if k not in state}, **state}


def refuse_unfit_weights(hyper_parameters: dict, fmt: int) -> None:
    """A clear error for an old checkpoint whose weights today's layers cannot take: a
    format-4 ``gated_gcn`` (PyG's ``ResGatedGraphConv``), by :func:`upgrade_checkpoint` and
    by a training run resuming from it alike."""
    if fmt < 5 and (hyper_parameters.get("gnn") or {}).get("layer") == "gated_gcn":
        raise ValueError(
            "this checkpoint's model/gnn=gated_gcn is PyG's ResGatedGraphConv, which "
            "graphvision replaced by GatedGCN with edge states (graphvision.nn.gnn."
            "GatedGCNConv); its weights do not fit it: train it again"
        )


def upgrade_checkpoint(checkpoint: dict) -> dict:
    """A checkpoint of an older format, in today's layout (a new dict; its state dict may
    still lack the parts the old format did not have: :func:`fill_missing`)."""
    fmt = checkpoint.get("graphvision_format", 1)
    hyper, state = checkpoint["hyper_parameters"], checkpoint["state_dict"]
    if fmt < 2:
        hyper, state = upgrade_hyper_parameters(hyper), upgrade_state_dict(state)
    if fmt < 3:
        hyper = add_grouping(hyper)
    if fmt < 4:  # before model=cnn_baseline (every network the graph one), one backbone depth
        backbone = {k: v for k, v in hyper["backbone"].items() if k != "return_node"}
        backbone["return_nodes"] = [hyper["backbone"].get("return_node", "layer2")]
        hyper = {**hyper, "net": "graph", "backbone": backbone}
    if fmt < 5:  # before model.descriptors (every descriptor column) and GatedGCN's edge state
        refuse_unfit_weights(hyper, fmt)
        hyper = {**hyper, "descriptors": "all"}
    return {
        **checkpoint,
        "hyper_parameters": hyper,
        "state_dict": state,
        "graphvision_format": CHECKPOINT_FORMAT,
    }
