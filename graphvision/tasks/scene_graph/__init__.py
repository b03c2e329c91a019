"""Scene graphs: the task (:mod:`.task`: heads, losses, metrics, finding objects), its typed
prediction (:mod:`.prediction`), the pictures of one (:mod:`.pictures`) and the breakdowns
``eval`` writes (:mod:`.reports`)."""

from graphvision.tasks.scene_graph.task import SceneGraphTask

__all__ = ["SceneGraphTask"]
