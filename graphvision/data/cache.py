"""Pre-processing jobs, run once over a worker pool, cached on disk one file per image.

A cache entry is one file holding a dict of tensors in a small raw format (a JSON header
naming each tensor's dtype, shape and offset, a CRC-32 of the payload, then the bytes):
no pickle, and loading is one read plus zero-copy views, several times faster than
``torch.load``. It is written to a temporary file and renamed into place, so a killed run
leaves no half entry; an entry that is truncated, altered or unreadable fails its checks
on load and is logged and rebuilt. An image that cannot be read gets a ``.skip`` file
instead, holding the reason, so that it is skipped (and counted) without being decoded
again until the file changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import struct
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from graphvision.data.coco import ObjectConfig, object_targets
from graphvision.data.contract import RegionGraph
from graphvision.data.images import UnreadableImageError, load_rgb
from graphvision.regions import RegionConfig, image_to_regions

log = logging.getLogger(__name__)

CACHE_VERSION = 3


@dataclass(frozen=True)
class ImageJob:
    """Everything needed to build one image's cache entry, and nothing else."""

    path: str
    image_id: int
    expected_size: tuple[int, int] | None = None  # (width, height) from the annotation file
    annotations: tuple = ()  # COCO annotations of this image (objects task)
    category_ids: tuple = ()  # COCO category ids, in contiguous-index order
    label: int | None = None  # image-folder class

    def key(self, regions: RegionConfig, objects: ObjectConfig) -> str:
        st = os.stat(self.path) if os.path.exists(self.path) else None
        blob = json.dumps(
            {
                "v": CACHE_VERSION,
                "path": os.path.abspath(self.path),
                "file": [st.st_size, st.st_mtime_ns] if st else None,
                "job": asdict(self),
                "regions": regions.as_dict(),
                "objects": asdict(objects),
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha1(blob.encode()).hexdigest()


def build_entry(
    job: ImageJob, regions: RegionConfig, objects: ObjectConfig, rgb: np.ndarray | None = None
) -> dict:
    """Decodes (unless ``rgb``, the decoded image, is given), resizes and segments one
    image; builds its graph and targets.

    Raises:
        UnreadableImageError: the image cannot be decoded.
    """
    if rgb is None:
        rgb = load_rgb(job.path, job.expected_size)
    graph = image_to_regions(rgb, regions)
    out = {
        "image": torch.from_numpy(np.ascontiguousarray(graph["image"].transpose(2, 0, 1))),
        "segments": torch.from_numpy(graph["segments"].astype(np.int32)),
        "x": torch.from_numpy(graph["x"]),
        "pos": torch.from_numpy(graph["pos"]),
        "edge_index": torch.from_numpy(graph["edge_index"]),
        "edge_attr": torch.from_numpy(graph["edge_attr"]),
        "image_id": torch.tensor([job.image_id]),
    }
    if job.category_ids:
        width, height = job.expected_size or (rgb.shape[1], rgb.shape[0])
        index = {cid: i for i, cid in enumerate(job.category_ids)}
        targets = object_targets(
            list(job.annotations), width, height, index, graph["segments"], objects
        )
        out.update({k: torch.from_numpy(v) for k, v in targets.items()})
    if job.label is not None:
        out["label"] = torch.tensor([job.label])
    return out


def entry_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / key[:2] / f"{key}.gvc"


def skip_path(cache_dir: Path, key: str) -> Path:
    """Where the reason an image could not be read is kept, beside its would-be entry."""
    return entry_path(cache_dir, key).with_suffix(".skip")


def write_atomic(data: bytes, path: Path) -> None:
    """Writes a temporary file in the same folder, then ``os.replace``: never a half file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


MAGIC = b"GVC1"
REQUIRED_KEYS = ("image", "segments", "x", "pos", "edge_index", "edge_attr")
_DTYPES = {
    str(d).removeprefix("torch."): d
    for d in (
        torch.uint8,
        torch.int16,
        torch.int32,
        torch.int64,
        torch.float32,
        torch.float64,
        torch.bool,
    )
}


def encode_entry(entry: dict) -> bytes:
    """``MAGIC | header length (u32) | JSON header | payload``; the header lists every
    tensor's dtype, shape, offset and size and the payload's CRC-32."""
    fields, chunks, offset = {}, [], 0
    for name, value in entry.items():
        data = value.contiguous().numpy().tobytes()
        fields[name] = [
            str(value.dtype).removeprefix("torch."),
            list(value.shape),
            offset,
            len(data),
        ]
        chunks.append(data)
        offset += len(data)
    payload = b"".join(chunks)
    header = json.dumps(
        {"fields": fields, "size": len(payload), "crc32": zlib.crc32(payload)}
    ).encode()
    return MAGIC + struct.pack("<I", len(header)) + header + payload


def save_entry(entry: dict, path: Path) -> None:
    """Writes an entry atomically (:func:`write_atomic`)."""
    write_atomic(encode_entry(entry), path)


def load_entry(path: Path) -> dict:
    """Loads a cache entry; raises ``ValueError`` naming the file if it is corrupt
    (``FileNotFoundError`` if it is missing)."""
    with open(path, "rb") as f:
        raw = bytearray(f.read())
    try:
        if raw[:4] != MAGIC:
            raise ValueError("not a graphvision cache file")
        (hlen,) = struct.unpack_from("<I", raw, 4)
        header = json.loads(bytes(raw[8 : 8 + hlen]))
        start = 8 + hlen
        if len(raw) - start != header["size"]:
            raise ValueError(
                f"payload is {len(raw) - start} bytes, expected {header['size']} (truncated?)"
            )
        if zlib.crc32(memoryview(raw)[start:]) != header["crc32"]:
            raise ValueError("payload checksum mismatch")
        entry = {}
        for name, (dtype, shape, offset, size) in header["fields"].items():
            dt = _DTYPES[dtype]
            count = size // dt.itemsize
            flat = (
                torch.frombuffer(raw, dtype=dt, count=count, offset=start + offset)
                if count
                else torch.empty(0, dtype=dt)
            )
            entry[name] = flat.view(shape)
    except (
        ValueError,
        KeyError,
        struct.error,
        json.JSONDecodeError,
        UnicodeDecodeError,
        RuntimeError,
    ) as err:
        raise ValueError(f"corrupt cache entry {path}: {err}") from err
    if any(k not in entry for k in REQUIRED_KEYS):
        raise ValueError(f"corrupt cache entry {path}: missing fields")
    return entry


def to_graph(entry: dict) -> RegionGraph:
    """A cache entry as the data contract's :class:`RegionGraph` (image as float in [0, 1])."""
    fields = dict(entry)
    fields["image"] = entry["image"].float().div_(255.0)
    fields["segments"] = entry["segments"].long()
    return RegionGraph(**fields)


def _build_one(args) -> tuple[str, str | None]:
    job, key, cache_dir, regions, objects = args
    try:
        save_entry(build_entry(job, regions, objects), entry_path(cache_dir, key))
        return key, None
    except UnreadableImageError as err:
        write_atomic(err.reason.encode(), skip_path(cache_dir, key))
        return key, err.reason


def _init_worker() -> None:
    torch.set_num_threads(1)


def _run_jobs(todo: list, workers: int, desc: str) -> dict[str, str]:
    """Builds ``todo`` over ``workers`` processes with a progress bar; returns the reason of
    every image that could not be read, by key."""
    failed: dict[str, str] = {}
    bar = tqdm(total=len(todo), desc=desc, unit="img", disable=None)
    if workers <= 1:
        results, pool = map(_build_one, todo), None
    else:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        pool = ctx.Pool(workers, initializer=_init_worker)
        results = pool.imap_unordered(_build_one, todo, chunksize=4)
    try:
        for key, reason in results:
            if reason is not None:
                failed[key] = reason
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return failed


def build_cache(
    jobs: list[ImageJob],
    cache_dir: str | Path,
    regions: RegionConfig,
    objects: ObjectConfig,
    workers: int = 1,
    desc: str = "regions",
) -> tuple[list[tuple[ImageJob, str]], list[tuple[str, str]]]:
    """Builds the missing cache entries of ``jobs`` over ``workers`` processes. Calling it
    again builds nothing: entries are loaded later, images that could not be read are
    remembered (``.skip`` files) until their file changes.

    Returns:
        ``(job, key)`` of every usable entry, in job order, and ``(path, reason)`` of every
        image skipped because it could not be read (each newly found one is logged with
        its reason; their count always is).
    """
    cache_dir = Path(cache_dir)
    keys = [job.key(regions, objects) for job in jobs]
    reasons: dict[str, str] = {}
    todo = []
    for job, key in zip(jobs, keys):
        if entry_path(cache_dir, key).is_file():
            continue
        skip = skip_path(cache_dir, key)
        if skip.is_file():
            reasons[key] = skip.read_text()
        else:
            todo.append((job, key, cache_dir, regions, objects))
    if todo:
        log.info(
            "%s: building %d of %d entries with %d worker(s) in %s",
            desc,
            len(todo),
            len(jobs),
            workers,
            cache_dir,
        )
        new = _run_jobs(todo, workers, desc)
        for job, key in zip(jobs, keys):
            if key in new:
                log.warning("skipped unreadable image %s: %s", job.path, new[key])
        reasons.update(new)
    skipped = [(job.path, reasons[key]) for job, key in zip(jobs, keys) if key in reasons]
    if skipped:
        log.warning(
            "%s: skipped %d of %d images that could not be read (the reasons are kept in "
            "their .skip files under %s)",
            desc,
            len(skipped),
            len(jobs),
            cache_dir,
        )
    return [(job, key) for job, key in zip(jobs, keys) if key not in reasons], skipped
