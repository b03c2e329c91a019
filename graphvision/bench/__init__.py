"""Benchmarks: ``python -m graphvision.bench {regions,prepare,train} --out FILE.json``.

One module per benchmark (:mod:`~graphvision.bench.regions`,
:mod:`~graphvision.bench.prepare`, :mod:`~graphvision.bench.train`), each with
``add_arguments``, ``run(args) -> dict`` and ``summary(result) -> str``; the command line is
:mod:`graphvision.bench.cli`. Every number is measured in the same run as the baseline it
is compared with, on this machine, and printed as a ratio; nothing here asserts a speed.
coco_tiny (or any COCO-layout root) comes from ``$GRAPHVISION_COCO_TINY`` or the command's
``--root`` / ``--images --annotations``.
"""

from graphvision.bench.cli import main

__all__ = ["main"]
