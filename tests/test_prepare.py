"""COCO pre-processing: reduced-scale JPEG decoding keeps the region graphs of full-size
decoding (coco_tiny), the windowed object targets equal the whole-image ones, and under
DDP one process per node builds the cache while the other waits and loads it."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from graphvision.data.objects import box_coverage, mask_centre


def test_reduced_decoding_keeps_the_region_graphs_on_coco_tiny(coco_tiny, monkeypatch):
    """The cache's path (JPEG decoded at reduced scale, conf/data/coco.yaml's 3 SLIC
    iterations) against the path before it (full-size decoding, 4 iterations): mean region
    count within 5%, mean ASA (achievable segmentation accuracy against the instance
    masks) within 0.005, on all 80 val photos (what ``bench regions`` reports)."""
    from graphvision.bench.common import coco_region_settings
    from graphvision.bench.regions import decoding_comparison, load_benchmark_images

    monkeypatch.setenv("GRAPHVISION_COCO_TINY", str(coco_tiny))
    assert coco_region_settings()["max_num_iter"] == 3
    result = decoding_comparison(load_benchmark_images(None, None, 80))
    now, before = result["reduced_decoding"], result["full_size_4_iterations"]
    assert result["photos"] == 80
    assert result["decoded_at_reduced_scale"] >= 70  # nearly every photo is >= 320 px a side
    assert abs(now["regions"] / before["regions"] - 1) <= 0.05, (now, before)
    assert abs(now["asa"] - before["asa"]) <= 0.005
    assert now["asa"] > 0.9  # and the measure is a real one


def test_decode_image_reduces_jpeg_only_as_far_as_the_working_size(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "p.jpg", quality=95)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    from graphvision.data.images import decode_image, load_rgb

    for size, expected in (
        ((160, 160), (240, 320)),
        ((100, 100), (120, 160)),
        ((60, 50), (60, 80)),
        ((300, 300), (480, 640)),
    ):
        rgb, full = decode_image(tmp_path / "p.jpg", min_size=size)
        assert rgb.shape[:2] == expected and full == (640, 480)
    rgb, full = decode_image(tmp_path / "p.png", min_size=(160, 160))  # not a JPEG: full size
    assert rgb.shape[:2] == (480, 640) and full == (640, 480)
    assert np.array_equal(load_rgb(tmp_path / "p.png"), pixels)


@pytest.mark.parametrize(
    "shape,size",
    [
        ((480, 640), (160, 160)),
        ((375, 500), (160, 160)),
        ((140, 213), (160, 160)),
        ((333, 500), (224, 224)),
        ((427, 640), (128, 96)),
        ((97, 61), (160, 120)),
    ],
)
def test_box_coverage_equals_pil_box_resize_of_the_whole_mask(shape, size):
    """Oracle: PIL's BOX resampling of the whole mask (what object_targets computed
    before), on random blobs, with and without a remainder, down and up, square and not:
    the same fractions to float32 rounding (a last-bit difference where the sums run in
    another order) and the same pixels at the 0.5 threshold; and the centroid of the
    mask's pixels."""
    rng = np.random.default_rng(sum(shape) + sum(size))
    for _ in range(25):
        mask = np.zeros(shape, np.uint8)
        y0, x0 = rng.integers(0, shape[0] - 4), rng.integers(0, shape[1] - 4)
        mask[y0 : y0 + rng.integers(3, 200), x0 : x0 + rng.integers(3, 200)] = 1
        mask &= (rng.random(shape) < 0.8).astype(np.uint8)
        whole = np.asarray(
            Image.fromarray(mask.astype(np.float32)).resize(size[::-1], Image.BOX), np.float32
        )
        coverage, (wy, wx), (my, mx) = box_coverage(mask, size)
        expected = np.zeros(size, np.float32)
        expected[wy, wx] = coverage
        np.testing.assert_allclose(expected, whole, rtol=0, atol=2e-7)
        assert np.array_equal(expected >= 0.5, whole >= 0.5)
        ys, xs = np.nonzero(mask)
        centre = [(xs.mean() + 0.5) / shape[1], (ys.mean() + 0.5) / shape[0]]
        got = mask_centre(mask[my, mx], np.zeros(4), (my.start, mx.start), shape)
        np.testing.assert_allclose(got, centre, rtol=0, atol=1e-12)
    empty = box_coverage(np.zeros(shape, np.uint8), size)
    assert empty[0].size == 0


def test_decode_image_turns_the_full_size_by_the_exif_tag(tmp_path):
    """A 1283x1281 JPEG stored sideways (EXIF orientation 6) decodes at reduced scale to a
    square 161x161: its full size is still the turned one, by the tag; with an annotation
    size equal to the stored pixels, the stored pixels and size are kept."""
    from graphvision.data.images import decode_image

    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (1281, 1283, 3), np.uint8))
    exif = img.getexif()
    exif[0x0112] = 6
    img.save(tmp_path / "t.jpg", exif=exif.tobytes(), quality=90)
    rgb, full = decode_image(tmp_path / "t.jpg", min_size=(160, 160))
    assert rgb.shape[:2] == (161, 161) and full == (1281, 1283)
    rgb, full = decode_image(tmp_path / "t.jpg", (1283, 1281), min_size=(160, 160))
    assert full == (1283, 1281)
    assert decode_image(tmp_path / "t.jpg")[0].shape[:2] == (1283, 1281)  # upright, full size


DDP_SCRIPT = '''
import json, os, sys, time
from pathlib import Path

import lightning as L
import torch

from graphvision.data import CocoDataModule

out, root = Path(sys.argv[1]), sys.argv[2]


class Recorded(CocoDataModule):
    """CocoDataModule writing what each hook did, per process."""

    def _record(self, hook, started):
        rank = self.trainer.global_rank
        event = {"hook": hook, "start": started, "end": time.time(), "pid": os.getpid(),
                 "built": self.build_stats["images"],
                 "sizes": {k: len(v) for k, v in self.datasets.items()}}
        with open(out / f"rank{rank}.jsonl", "a") as f:
            f.write(json.dumps(event) + "\\n")

    def prepare_data(self):
        started = time.time()
        super().prepare_data()
        self._record("prepare_data", started)

    def setup(self, stage=None):
        started = time.time()
        super().setup(stage)
        self._record("setup", started)


class Touch(L.LightningModule):
    """Reads every batch and nothing more: the test is about the data."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w * batch.x.mean()).sum()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


dm = Recorded(root=root, cache_dir=str(out / "cache"), limit_images=6, batch_size=2,
              prepare_workers=1)
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", max_steps=2, logger=False,
                    enable_checkpointing=False, enable_progress_bar=False, limit_val_batches=0)
trainer.fit(Touch(), datamodule=dm)
'''


@pytest.mark.slow
def test_ddp_prepares_once_per_node_the_other_process_waits_and_loads(tmp_path, coco_tiny):
    """Two CPU processes under Lightning DDP (gloo): ``prepare_data`` runs in local rank 0
    only and builds all 12 entries (6 train, 6 val); rank 1 never pre-processes, starts
    ``setup`` after rank 0's ``prepare_data`` has finished (Lightning's barrier) and loads
    the same 6 + 6 entries from the cache."""
    import json
    import subprocess
    import sys

    script = tmp_path / "ddp_prepare.py"
    script.write_text(DDP_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path), str(coco_tiny)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    events = {
        rank: [
            json.loads(line) for line in (tmp_path / f"rank{rank}.jsonl").read_text().splitlines()
        ]
        for rank in (0, 1)
    }
    hooks = {rank: [e["hook"] for e in evs] for rank, evs in events.items()}
    assert hooks == {0: ["prepare_data", "setup"], 1: ["setup"]}
    (prepared, setup0), (setup1,) = events[0], events[1]
    assert prepared["pid"] != setup1["pid"]
    assert prepared["built"] == 12 and setup0["built"] == 12  # nothing more built in setup
    assert setup1["built"] == 0  # the other process built nothing ...
    assert setup1["start"] >= prepared["end"]  # ... waited for the builder ...
    assert setup1["sizes"] == setup0["sizes"] == {"train": 6, "val": 6}  # ... and loaded all
    assert len(list((tmp_path / "cache").rglob("*.gvc"))) == 12


def test_label_maps_are_stored_in_int16_and_loaded_as_int64(tmp_path):
    from graphvision.data.cache import load_entry, save_entry
    from graphvision.data.pipeline import compact_labels, to_graph

    small = np.arange(12).reshape(3, 4)
    assert compact_labels(small).dtype == np.int16
    assert compact_labels(np.full((2, 2), 40_000)).dtype == np.int32  # more regions than int16
    import torch

    entry = {
        "image": torch.zeros(3, 3, 4, dtype=torch.uint8),
        "segments": torch.from_numpy(compact_labels(small)),
        "x": torch.zeros(12, 13),
        "pos": torch.zeros(12, 2),
        "edge_index": torch.zeros(2, 0, dtype=torch.long),
        "edge_attr": torch.zeros(0, 5),
    }
    save_entry(entry, tmp_path / "e.gvc")
    loaded = load_entry(tmp_path / "e.gvc")
    assert loaded["segments"].dtype == torch.int16
    graph = to_graph(loaded)
    assert graph.segments.dtype == torch.int64 and graph.segments.tolist() == small.tolist()
