"""Bad input and faults: a corpus of defective annotations and images built at run time, each
with its exact outcome (a counted skip with its reason in the log, or, with
``data.strict=true``, an error naming the file and id); cache entries altered in their
header; runs sharing a cache; a pre-processing run killed with SIGKILL; user errors on the
command line without a traceback."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from graphvision.data import CocoDataModule, SyntheticDataModule
from graphvision.data.cache import (
    encode_entry,
    entry_path,
    load_entry,
    note_path,
    skip_path,
)
from graphvision.data.coco import DataError
from tests.conftest import ROOT, SQUARE, make_tiny_coco

GOOD = SQUARE
SECOND = {
    **GOOD,
    "id": 2,
    "category_id": 2,
    "bbox": [4, 4, 10, 10],
    "segmentation": [[4, 4, 14, 4, 14, 14, 4, 14]],
}
DELETE = object()

#: (what changes in annotation 2 of a 32x32 image, the reason it is dropped)
BAD_ANNOTATIONS = [
    ({"segmentation": [[4, 4]]}, "polygon with fewer than 3 points"),
    ({"segmentation": [[4, 4, 20, 20]]}, "polygon with fewer than 3 points"),  # pycocotools: a box
    ({"segmentation": [[4, 4, 20, 4, 20]]}, "polygon with an odd number of coordinates"),
    ({"segmentation": [["4", 4, 20, 4, 20, 20]]}, "polygon that is not a list of numbers"),
    ({"segmentation": 7}, "segmentation that is neither polygons nor an RLE"),
    (
        {"segmentation": {"size": [16, 16], "counts": [256]}},
        "RLE whose size differs from the image's height/width",
    ),
    (
        {"segmentation": {"size": [32, 32], "counts": [10, 5]}},
        "RLE whose counts do not add up to height x width",
    ),
    ({"segmentation": {"counts": "PPYo0"}}, "RLE without a size [height, width]"),
    ({"bbox": [4, 4, 10]}, "bbox that is not a list of 4 numbers"),
    ({"bbox": "4 4 10 10"}, "bbox that is not a list of 4 numbers"),
    ({"bbox": [4, 4, None, 10]}, "bbox that is not a list of 4 numbers"),
    ({"bbox": [4, 4, float("nan"), 10]}, "bbox that is not a list of 4 numbers"),
    ({"bbox": DELETE}, "bbox that is not a list of 4 numbers"),
    ({"bbox": [4, 4, 0, 10]}, "bbox with zero or negative width/height"),
    ({"bbox": [4, 4, 10, -3]}, "bbox with zero or negative width/height"),
    ({"bbox": [40, 4, 10, 10]}, "bbox outside the image"),
    ({"bbox": [-20, 4, 10, 10]}, "bbox outside the image"),
    ({"iscrowd": 2}, "iscrowd that is not 0 or 1"),
    ({"id": 1}, "duplicate annotation id"),
]


def _image(seed: int = 0, size=(32, 32)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), np.uint8)


def _with(change: dict) -> dict:
    ann = {**SECOND, **change}
    return {k: v for k, v in ann.items() if v is not DELETE}


def _module(root: Path, tmp_path: Path, **kwargs) -> CocoDataModule:
    kwargs = {"prepare_workers": 2, "batch_size": 2, **kwargs}
    return CocoDataModule(root=str(root), cache_dir=str(tmp_path / "cache"), **kwargs)


@pytest.mark.parametrize(
    "change, reason",
    BAD_ANNOTATIONS,
    ids=[f"{i}-{r[:20]}" for i, (_, r) in enumerate(BAD_ANNOTATIONS)],
)
def test_a_bad_annotation_is_dropped_counted_or_refused(tmp_path, caplog, change, reason):
    """Dropped with its reason counted in one log line per file, the image kept with its
    sound annotation (through the pre-processing pool); ``strict=True``: an error naming the
    file, the annotation id and the reason."""
    root = make_tiny_coco(tmp_path / "coco", {"a.png": _image()}, [GOOD, _with(change)])
    dm = _module(root, tmp_path)
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
        dm.setup("fit")
    assert f"instances_val2017.json: 1 of 2 annotations dropped: 1 x {reason}" in caplog.text
    assert dict(dm.index("val").dropped) == {reason: 1}
    assert dm.datasets["val"][0].obj_label.tolist() == [0]  # GOOD alone, category 1
    with pytest.raises(
        DataError,
        match=re.escape(
            f"instances_train2017.json: annotation id {change.get('id', 2)} (image id 1): {reason}. "
            "data.strict=true makes this an error"
        ),
    ):
        _module(root, tmp_path, strict=True).prepare_data()


def test_a_box_past_the_edge_is_clipped_and_counted(tmp_path, caplog):
    """A box overhanging the image by 18 pixels is clipped (and counted); one overhanging by
    half a pixel, COCO's rounding, is left alone."""
    anns = [{**GOOD, "bbox": [2, 2, 20.5, 30.5]}, _with({"bbox": [20, 16, 30, 30]})]
    root = make_tiny_coco(tmp_path / "coco", {"a.png": _image()}, anns)
    dm = _module(root, tmp_path)
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
        dm.setup("fit")
    assert (
        "instances_val2017.json: 1 of 2 annotations repaired: 1 x bbox past the image's edge "
        "(clipped)" in caplog.text
    )
    boxes = dm.datasets["val"][0].obj_box
    torch.testing.assert_close(boxes[0], torch.tensor([2, 2, 22.5, 32.5]) / 32)
    torch.testing.assert_close(boxes[1], torch.tensor([20 / 32, 16 / 32, 1.0, 1.0]))
    with pytest.raises(DataError, match=r"annotation id 2 \(image id 1\): bbox past the"):
        _module(root, tmp_path, strict=True).prepare_data()


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode()}


def test_an_image_whose_size_differs_from_its_annotation_file(tmp_path, caplog):
    """The JSON says 32x32, the file is 48 wide and 40 high: the file's size wins (boxes
    normalised by it), the RLE drawn for 32x32 is dropped, and both are counted on every run;
    ``strict=True`` names the file and the image id."""
    square = np.zeros((32, 32), bool)
    square[8:16, 8:16] = True
    anns = [GOOD, _with({"segmentation": _rle(square), "bbox": [8, 8, 8, 8]})]
    root = make_tiny_coco(tmp_path / "coco", {"a.png": _image(size=(40, 48))}, anns)
    dm = _module(root, tmp_path)
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
        dm.setup("fit")
    expected = (
        "CocoDataModule val: 1 of 1 images built with a note: 1 x image size differs from the "
        "annotation file's width/height (the file's size was used), 1 x RLE mask sized for "
        "the annotation file's width/height, not the image's (dropped)"
    )
    assert expected in caplog.text
    graph = dm.datasets["val"][0]
    assert graph.obj_label.tolist() == [0]
    torch.testing.assert_close(graph.obj_box[0], torch.tensor([2 / 48, 2 / 40, 22 / 48, 22 / 40]))
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # built already: counted again from its note
        _module(root, tmp_path).prepare_data()
    assert expected in caplog.text
    with pytest.raises(
        DataError,
        match=re.escape(f"{root / 'train2017' / 'a.png'} (image id 1): image size differs"),
    ):
        _module(root, tmp_path, strict=True).prepare_data()


def test_image_defects_are_counted_skips_or_strict_errors(tmp_path, caplog):
    """One of each image defect handled: skipped with its reason and counted; under
    ``strict=True`` the first names its file and image id."""
    good = _image()
    from PIL import Image

    Image.fromarray(good).save(tmp_path / "full.jpg")
    images = {
        "a.png": good,
        "empty.png": b"",
        "cut.jpg": (tmp_path / "full.jpg").read_bytes()[:200],
        "text.png": b"not an image at all",
    }
    root = make_tiny_coco(tmp_path / "coco", images)
    listed = json.loads((root / "annotations/instances_val2017.json").read_text())
    listed["images"].append({"id": 9, "file_name": "gone.png", "width": 32, "height": 32})
    for split in ("train2017", "val2017"):
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(listed))
    dm = _module(root, tmp_path)
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
    assert re.search(
        r"val: skipped 4 of 5 images: 1 x the file is empty \(0 bytes\), 1 x OSError, "
        r"1 x UnidentifiedImageError, 1 x no such file",
        caplog.text,
    ), caplog.text
    with pytest.raises(
        DataError,
        match=re.escape(
            f"{root / 'train2017' / 'empty.png'} (image id 2): the file is empty (0 bytes). "
            "data.strict=true makes this an error"
        ),
    ):
        _module(root, tmp_path, strict=True).prepare_data()


def test_a_failure_inside_the_pool_names_the_file_and_is_retried(tmp_path, caplog, monkeypatch):
    """An unexpected exception while building one image (inside the worker pool) skips that
    image with the file, its id and the error in the log; it is not remembered, so that the
    next run tries again."""
    from graphvision.data import pipeline as cache  # where build_entry finds object_targets

    real = cache.object_targets

    def failing(annotations, *args, **kwargs):
        if annotations:
            raise TypeError("boom")
        return real(annotations, *args, **kwargs)

    monkeypatch.setattr(cache, "object_targets", failing)  # forked workers inherit it
    root = make_tiny_coco(tmp_path / "coco", {"a.png": _image(), "b.png": _image(1)})
    dm = _module(root, tmp_path)
    with caplog.at_level(logging.WARNING):
        dm.prepare_data()
        dm.setup("fit")
    assert re.search(
        r"skipped image \S+val2017/a.png \(image id 1\): pre-processing failed: TypeError: boom",
        caplog.text,
    )
    assert "val: skipped 1 of 2 images: 1 x pre-processing failed" in caplog.text
    assert len(dm.datasets["val"]) == 1
    monkeypatch.setattr(cache, "object_targets", real)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        again = _module(root, tmp_path)
        again.prepare_data()
        again.setup("fit")
    assert "building 1 of 2 entries" in caplog.text and len(again.datasets["val"]) == 2


def test_a_changed_header_byte_fails_the_checksum(tmp_path):
    """The checksum covers the header: pointing one tensor at another's bytes (the payload
    untouched, so that a payload-only checksum would pass) is detected on load."""
    entry = {
        "image": torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8),
        "segments": torch.zeros(8, 8, dtype=torch.int32),
        "x": torch.randn(4, 6),
        "pos": torch.rand(4, 2),
        "edge_index": torch.tensor([[0, 1], [1, 0]]),
        "edge_attr": torch.randn(2, 3),
    }
    raw = encode_entry(entry)
    path = tmp_path / "e.gvc"
    path.write_bytes(raw)
    assert torch.equal(load_entry(path)["pos"], entry["pos"])
    (hlen,) = np.frombuffer(raw[8:12], "<u4")
    header = json.loads(raw[12 : 12 + hlen])
    payload = raw[12 + hlen :]
    header["fields"]["pos"][2] = header["fields"]["x"][2]  # pos now reads x's first bytes
    new = json.dumps(header).encode()
    path.write_bytes(raw[:8] + np.uint32(len(new)).tobytes() + new + payload)
    with pytest.raises(ValueError, match=r"corrupt cache entry .*e.gvc: checksum mismatch"):
        load_entry(path)


PREPARE = """
import logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
from graphvision.data import SyntheticDataModule
SyntheticDataModule(data_dir=sys.argv[1], cache_dir=sys.argv[2], num_train=int(sys.argv[3]),
                    num_val=4, prepare_workers=1).prepare_data()
"""


def _prepare_in_background(tmp_path: Path, num_train: int) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            PREPARE,
            str(tmp_path / "data"),
            str(tmp_path / "cache"),
            str(num_train),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait_for(condition, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"never saw {what}: {proc.communicate()[1][-3000:]}")
        time.sleep(0.01)


@pytest.mark.slow
def test_runs_sharing_a_cache_wait_for_each_other(tmp_path, caplog):
    """A second run started while the first is still generating and pre-processing the same
    data waits for it, then finds every image built: nothing regenerated, nothing built
    twice, nothing left out."""
    second = SyntheticDataModule(
        data_dir=str(tmp_path / "data"),
        cache_dir=str(tmp_path / "cache"),
        num_train=60,
        num_val=4,
        prepare_workers=1,
    )
    first = _prepare_in_background(tmp_path, 60)
    _wait_for(lambda: (second.root / "train").is_dir(), first, "the first run writing images")
    with caplog.at_level(logging.INFO):
        second.prepare_data()
        second.setup("fit")
    _, first_log = first.communicate(timeout=300)
    assert first.returncode == 0, first_log[-3000:]
    assert "waiting for it" in caplog.text, caplog.text
    assert "skipped" not in caplog.text + first_log
    assert len(second.datasets["train"]) == 60 and len(second.datasets["val"]) == 4
    assert len(list((tmp_path / "cache").rglob("*.gvc"))) == 64  # the images' keys unchanged
    built = re.findall(r"building (\d+) of \d+ entries", caplog.text + first_log)
    assert sum(int(n) for n in built) == 64  # every entry built by one run only


@pytest.mark.slow
def test_killed_pre_processing_leaves_no_half_entry_and_rebuilds_only_the_rest(tmp_path, caplog):
    """SIGKILL to a pre-processing run (its whole process group) part-way: every entry on disk
    loads; the next run removes the killed run's temporary files (not a live process's) and
    builds only the missing entries."""
    dm = SyntheticDataModule(
        data_dir=str(tmp_path / "data"),
        cache_dir=str(tmp_path / "cache"),
        num_train=80,
        num_val=4,
        prepare_workers=1,
    )
    dm.generate()
    proc = _prepare_in_background(tmp_path, 80)
    cache_dir = tmp_path / "cache"
    _wait_for(lambda: len(list(cache_dir.rglob("*.gvc"))) >= 5, proc, "five entries")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = list(cache_dir.rglob("*.gvc"))
    assert 5 <= len(done) < 80, "killed too late to test anything"
    for path in done:
        load_entry(path)  # raises on a half entry
    import socket

    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid names no process now
    host = socket.gethostname()
    stale = done[0].with_name(f".{done[0].name}.{host}.{dead.pid}.tmp")
    live = done[0].with_name(f".{done[0].name}.{host}.{os.getpid()}.tmp")
    stale.write_bytes(b"half")
    live.write_bytes(b"being written")
    with caplog.at_level(logging.INFO):
        dm.prepare_data()
        dm.setup("fit")
    assert f"train: building {80 - len(done)} of 80 entries" in caplog.text
    assert re.search(r"removed [1-9]\d* temporary file\(s\) of killed runs", caplog.text)
    assert not stale.exists() and live.exists()
    assert len(dm.datasets["train"]) == 80 and len(dm.datasets["val"]) == 4


def test_skip_and_note_files_sit_beside_the_entry(tmp_path):
    assert skip_path(tmp_path, "abcdef").name == "abcdef.skip"
    assert note_path(tmp_path, "abcdef").parent == entry_path(tmp_path, "abcdef").parent


def test_usage_errors_reach_the_console_without_a_traceback(tmp_path):
    """The entry points' wrapper: ValueError (graphvision's DataError among them) and OSError
    become Hydra's compact errors, printed as ``Error: <message>``; a bug (here a KeyError)
    keeps its traceback. A bad config value, refused in a DataModule's ``__init__``, reaches
    Hydra as its own compact error, naming the key."""
    import hydra
    from hydra.errors import CompactHydraException

    from tests.conftest import compose_cfg

    cfg = compose_cfg(overrides=["data.batch_size=0"], tmp=tmp_path)
    with pytest.raises(CompactHydraException, match=r"data.batch_size=0: must be an integer"):
        hydra.utils.instantiate(cfg.data)

    from graphvision.utils import reports_usage_errors

    def raising(error):
        @reports_usage_errors
        def main(cfg):
            raise error

        return main

    for error in (DataError("a.json: annotation id 2"), FileNotFoundError("no such file x")):
        with pytest.raises(CompactHydraException, match=re.escape(f"Error: {error}")):
            raising(error)(None)
    with pytest.raises(KeyError):
        raising(KeyError("bug"))(None)


@pytest.mark.slow
def test_bad_data_on_the_command_line_is_one_message(tmp_path):
    """``train`` on data with a degenerate polygon under ``data.strict=true``: exit status 1,
    the message names the file, the annotation and the reason, no Python traceback."""
    root = make_tiny_coco(
        tmp_path / "coco", {"a.png": _image()}, [GOOD, _with({"segmentation": [[4, 4]]})]
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "graphvision.train",
            "experiment=coco_relations",
            f"data.root={root}",
            "data.strict=true",
            f"paths.data_dir={tmp_path / 'data'}",
            f"hydra.run.dir={tmp_path / 'run'}",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert re.search(
        r"Error: \S+instances_train2017.json: annotation id 2 \(image id 1\): polygon with fewer "
        r"than 3 points",
        proc.stderr,
    ), proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
