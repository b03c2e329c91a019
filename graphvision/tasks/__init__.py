"""What the network predicts: one :class:`Task` per kind of output (``model/task=...``)."""

from graphvision.tasks.base import Task
from graphvision.tasks.classification import ClassificationTask
from graphvision.tasks.scene_graph import SceneGraphTask

__all__ = ["ClassificationTask", "SceneGraphTask", "Task"]
