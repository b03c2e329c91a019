"""The notebook (``experiments/region_graphs.ipynb``) runs and draws."""

from __future__ import annotations

import pytest

from tests.conftest import COCO_TINY, ROOT, is_png


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
    # the docs show three, drawn by the notebook under these names
    docs = (ROOT / "README.md").read_text() + (ROOT / "graphvision" / "README.md").read_text()
    for name in ("region_graphs_skimage.png", "prediction_attention.png", "sgdet_photos.png"):
        assert (
            f"experiments/figures/{name}" in docs
            and (ROOT / "experiments/figures" / name).is_file()
        )
    for name in (
        "region_graphs_skimage.png",
        "prediction_attention.png",
        "predictions.png",
        "scene_graph.png",
        "sgdet_photos.png",
    ):
        assert is_png(tmp_path / name), name
    if COCO_TINY.is_dir():
        assert is_png(tmp_path / "coco_region_graph.png")
