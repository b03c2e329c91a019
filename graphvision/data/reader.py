"""The reader: what a dataset on disk is to graphvision, and all a new dataset writes.

A reader turns a dataset into, per split, the :class:`~graphvision.data.pipeline.ImageJob`
of each image (the file, its annotations, their category ids, its class, its annotated
relations), and its vocabulary ``info``. Everything after that is the same for every
dataset: :func:`~graphvision.data.pipeline.build_entry` makes the region graph and targets
of a job, :mod:`graphvision.data.cache` keeps them, and
:class:`~graphvision.data.datamodule.RegionGraphDataModule` serves them to a task. The
readers of graphvision's datasets are in :mod:`graphvision.data.datasets`.

A new dataset is a reader, given to the generic DataModule::

    data:
      _target_: graphvision.data.RegionGraphDataModule
      reader:
        _target_: my_package.MyReader
        root: /path/to/it
      regions: {...}   # data/regions, data/loader: as for every dataset
"""

from __future__ import annotations

from graphvision.data.pipeline import ImageJob


class Reader:
    """A dataset as pre-processing jobs per split and its vocabulary.

    Subclasses implement :meth:`jobs` and :attr:`info`; a dataset written on first use
    (generated) also :meth:`prepare`. A reader reads: it writes nothing but in
    :meth:`prepare`, and may read its files lazily, when first asked.
    """

    #: the splits the DataModule serves: ``train`` (shuffled, augmented) and ``val``
    splits: tuple[str, ...] = ("train", "val")

    def prepare(self) -> None:
        """Puts the dataset on disk if it is made rather than read (the DataModule's
        ``prepare_data``, once per node, before any :meth:`jobs`); by default nothing."""

    def jobs(self, split: str) -> list[ImageJob]:
        """Every image of ``split``, as a pre-processing job, in a fixed order.

        A job's ``relations`` are the image's annotated relations, ``(subject annotation
        id, object annotation id, predicate index into info["predicates"])``, and then the
        relation targets (an empty tuple: the image has none); None: every ordered pair of
        its objects gets sg2im's geometric relation (``info["predicates"]`` then is
        :data:`~graphvision.data.relations.RELATIONS`).
        """
        raise NotImplementedError

    @property
    def info(self) -> dict:
        """``{"categories", "predicates", "classes"}`` (lists of names, empty where the data
        has none; plus ``"unseen"`` with zero-shot categories): what a task can predict.
        ``categories`` are in the order of the jobs' ``category_ids``, ``classes`` in the
        order of their ``label``."""
        raise NotImplementedError


def scene_graph_info(
    categories: list[str], predicates: list[str], unseen: list[str] | None = None
) -> dict:
    """``info`` of a scene-graph dataset: its ``categories`` and ``predicates``, no classes,
    and ``unseen`` (categories left out of every training target, for zero-shot evaluation)
    when there are some.

    Raises:
        ValueError: ``unseen`` names a category that is not among ``categories``.
    """
    info = {"categories": list(categories), "predicates": list(predicates), "classes": []}
    if unseen:
        unknown = [c for c in unseen if c not in categories]
        if unknown:
            raise ValueError(
                f"data.unseen_categories names unknown categories {unknown}; known: {categories}"
            )
        info["unseen"] = list(unseen)
    return info
