"""Checkpoints written before tasks were objects (graphvision 0.1.0 up to the change that
made them so): their layout, and its conversion to today's, so that they load as they are.

Then, ``info`` named the task (``info["task"]``: ``"relations"`` or ``"classification"``)
and its relation vocabulary ``relations``; the network held the heads itself; the heads'
settings (``shape_grid``, ``zero_shot``, ``text_encoder``, ``recall_k``) and every loss
weight (``loss_weights``, DeepSeek's ``balance`` among them) were the module's own.
"""

from __future__ import annotations

#: Version of the checkpoint layout that ``GraphVisionModule`` writes; a checkpoint without
#: one predates tasks as objects and is converted on load.
CHECKPOINT_FORMAT = 2

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
    weights = {"scene": 1.0, "objects": 1.0, "relations": 1.0, "regions": 1.0,
               "classification": 1.0, "balance": 0.01, **(old.get("loss_weights") or {})}  # fmt: skip
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


def upgrade_checkpoint(checkpoint: dict) -> dict:
    """A checkpoint written before tasks were objects, in today's layout (a new dict)."""
    return {
        **checkpoint,
        "hyper_parameters": upgrade_hyper_parameters(checkpoint["hyper_parameters"]),
        "state_dict": upgrade_state_dict(checkpoint["state_dict"]),
        "graphvision_format": CHECKPOINT_FORMAT,
    }
