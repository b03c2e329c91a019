"""The cache of pre-processed images: one file per image, built once over a worker pool.

Each entry is what :func:`~graphvision.data.pipeline.build_entry` makes of one
:class:`~graphvision.data.pipeline.ImageJob`, under the job's key
(:meth:`~graphvision.data.pipeline.ImageJob.key`).

A cache entry is one file holding a dict of tensors in a small raw format (a CRC-32 of
everything after it, a JSON header naming each tensor's dtype, shape and offset, then the
bytes): no pickle, and loading is one read plus zero-copy views, several times faster than
``torch.load``. It is written to a temporary file and renamed into place, so a killed run
leaves no half entry (and the next build removes the killed run's temporary files); an
entry that is truncated or altered anywhere, header included, fails its checksum on load
and is logged and rebuilt. An image that cannot be read gets a ``.skip`` file instead,
holding the reason, so that it is skipped (and counted) without being decoded again until
the file changes.

Runs sharing a cache directory coordinate through one lock file per split (``filelock``):
while one process builds a split's entries, another asking for the same entries waits for
it, then finds them built; the lock is the operating system's, so a killed holder frees it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import socket
import struct
import time
import zlib
from pathlib import Path

import torch
from filelock import FileLock, Timeout
from tqdm.auto import tqdm

from graphvision.data.coco import DataError, counted
from graphvision.data.images import UnreadableImageError
from graphvision.data.objects import ObjectConfig
from graphvision.data.pipeline import SETTINGS_NOTES, ImageJob, build_entry
from graphvision.regions import RegionConfig

log = logging.getLogger(__name__)


def entry_path(cache_dir: Path, key: str) -> Path:
    return Path(cache_dir) / key[:2] / f"{key}.gvc"


def skip_path(cache_dir: Path, key: str) -> Path:
    """Where the reason an image could not be read is kept, beside its would-be entry."""
    return entry_path(cache_dir, key).with_suffix(".skip")


_HOST = socket.gethostname()


def write_atomic(data: bytes, path: Path) -> None:
    """Writes a temporary file in the same folder (named after this host and process, so
    that :func:`remove_stale_files` knows whose it is), then ``os.replace``: never a half
    file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def remove_stale_files(cache_dir: Path) -> int:
    """Removes the temporary files that processes of this host killed while writing an entry
    left behind (their process is gone); returns how many."""
    removed = 0
    for tmp in Path(cache_dir).glob("*/.*.tmp"):
        rest, _, pid = tmp.name.removesuffix(".tmp").rpartition(".")
        if rest.endswith(f".{_HOST}") and pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


MAGIC = b"GVC2"
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
    """``MAGIC | CRC-32 (u32) | header length (u32) | JSON header | payload``: the header
    lists every tensor's dtype, shape, offset and size; the CRC-32 covers every byte after
    it, header included."""
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
    header = json.dumps({"fields": fields, "size": len(payload)}).encode()
    body = struct.pack("<I", len(header)) + header
    return MAGIC + struct.pack("<I", zlib.crc32(payload, zlib.crc32(body))) + body + payload


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
            raise ValueError("not a graphvision cache file (or one of an older version)")
        crc, hlen = struct.unpack_from("<II", raw, 4)
        if zlib.crc32(memoryview(raw)[8:]) != crc:
            raise ValueError(f"checksum mismatch ({len(raw)} bytes: truncated or altered)")
        header = json.loads(bytes(raw[12 : 12 + hlen]))
        start = 12 + hlen
        if len(raw) - start != header["size"]:
            raise ValueError(f"payload is {len(raw) - start} bytes, expected {header['size']}")
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


def note_path(cache_dir: Path, key: str) -> Path:
    """Where what was noticed while building an entry (:func:`build_entry`'s ``notes``) is
    kept, beside the entry, so that every run counts it again."""
    return entry_path(cache_dir, key).with_suffix(".note")


def _build_one(args) -> tuple[str, str | None, list[str]]:
    """Builds and writes one entry; returns ``(key, why it was skipped or None, notes)``.
    An unreadable image is remembered (``.skip``); any other failure is reported with the
    file and image id and not remembered, so that the next run tries again."""
    job, key, cache_dir, regions, objects = args
    notes: list[str] = []
    try:
        entry = build_entry(job, regions, objects, notes=notes)
    except UnreadableImageError as err:
        write_atomic(err.reason.encode(), skip_path(cache_dir, key))
        return key, err.reason, []
    except Exception as err:  # noqa: BLE001 - reported with the file, never lost
        log.debug("pre-processing %s failed", job.path, exc_info=True)
        return key, f"{FAILED}: {type(err).__name__}: {err}", []
    if notes:
        write_atomic("\n".join(notes).encode(), note_path(cache_dir, key))
    save_entry(entry, entry_path(cache_dir, key))
    return key, None, notes


FAILED = "pre-processing failed"


def _init_worker() -> None:
    """One thread per worker process, for torch and for NumPy's BLAS (a worker per core is
    the parallelism; BLAS threads on top of it crowd the cores)."""
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # not installed: BLAS keeps its default
        return
    threadpool_limits(1)


def _run_jobs(todo: list, workers: int, desc: str) -> dict[str, str]:
    """Builds ``todo`` over ``workers`` processes with a progress bar; returns why each
    image that was not built was skipped, by key."""
    failed: dict[str, str] = {}
    bar = tqdm(total=len(todo), desc=desc, unit="img", disable=None)
    if workers <= 1:
        results, pool = map(_build_one, todo), None
    else:
        ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
        pool = ctx.Pool(workers, initializer=_init_worker)
        results = pool.imap_unordered(_build_one, todo, chunksize=4)
    try:
        for key, reason, _ in results:
            if reason is not None:
                failed[key] = reason
            bar.update()
    finally:
        bar.close()
        if pool is not None:
            pool.close()
            pool.join()
    return failed


def split_lock(cache_dir: Path, keys: list[str]) -> FileLock:
    """The lock of one set of entries (a split): a file under ``cache_dir/locks`` named
    after the entries' keys, so that runs asking for the same entries share it."""
    digest = hashlib.sha1("".join(sorted(keys)).encode()).hexdigest()[:16]
    (cache_dir / "locks").mkdir(parents=True, exist_ok=True)
    return FileLock(cache_dir / "locks" / f"{digest}.lock")


def build_cache(
    jobs: list[ImageJob],
    cache_dir: str | Path,
    regions: RegionConfig,
    objects: ObjectConfig,
    workers: int = 1,
    desc: str = "regions",
    strict: bool = False,
    stats: dict | None = None,
) -> tuple[list[tuple[ImageJob, str]], list[tuple[str, str]]]:
    """Builds the missing cache entries of ``jobs`` over ``workers`` processes. Calling it
    again builds nothing: entries are loaded later, images that could not be read are
    remembered (``.skip`` files) until their file changes. Another process building the
    same entries is waited for (:func:`split_lock`).

    Every skipped image is logged with its reason and counted, and so is every image built
    with a note (an image whose size differs from its annotation file's, an annotated
    relation naming an object that is not kept: :func:`build_entry`); with ``strict`` either
    is a :class:`DataError` naming the file, but for what the object settings left out
    (:data:`~graphvision.data.pipeline.SETTINGS_NOTES`), which is counted alone.

    ``stats``, when given, gains the images built here (``"images"``) and the seconds they
    took (``"seconds"``), waiting for another process excluded.

    Returns:
        ``(job, key)`` of every usable entry, in job order, and ``(path, reason)`` of every
        image skipped.
    """
    cache_dir = Path(cache_dir)
    keys = [job.key(regions, objects) for job in jobs]
    lock = split_lock(cache_dir, keys)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        log.info(
            "%s: another process is building these entries (%s); waiting for it",
            desc,
            lock.lock_file,
        )
        lock.acquire()
    try:
        started = time.perf_counter()
        reasons, built = _build_missing(jobs, keys, cache_dir, regions, objects, workers, desc)
        seconds = time.perf_counter() - started
    finally:
        lock.release()
    if built:
        log.info(
            "%s: built %d entries in %.1f s (%.1f ms per image, %d worker(s))",
            desc,
            built,
            seconds,
            1000.0 * seconds / built,
            workers,
        )
    if stats is not None:
        stats["images"] = stats.get("images", 0) + built
        stats["seconds"] = stats.get("seconds", 0.0) + (seconds if built else 0.0)
    skipped = [(job.path, reasons[key]) for job, key in zip(jobs, keys) if key in reasons]
    notes = {
        job.path: note_path(cache_dir, key).read_text().splitlines()
        for job, key in zip(jobs, keys)
        if key not in reasons and note_path(cache_dir, key).is_file()
    }
    wrong = {p: [n for n in ns if n not in SETTINGS_NOTES] for p, ns in notes.items()}
    wrong = {p: ns for p, ns in wrong.items() if ns}  # what data.strict refuses
    if strict and (skipped or wrong):
        path, reason = skipped[0] if skipped else next((p, n[0]) for p, n in wrong.items())
        image_id = next(j.image_id for j in jobs if j.path == path)
        more = len(skipped) + len(wrong) - 1
        raise DataError(
            f"{path} (image id {image_id}): {reason}. data.strict=true makes this an error: "
            "fix or remove the file, or set data.strict=false to go on with a count"
            + (f" ({more} more such image(s))" if more else "")
        )
    if skipped:
        log.warning(
            "%s: skipped %d of %d images: %s (the reasons of unreadable images are kept "
            "in their .skip files under %s)",
            desc,
            len(skipped),
            len(jobs),
            counted(reason.split(":")[0] for _, reason in skipped),
            cache_dir,
        )
    if notes:
        log.warning(
            "%s: %d of %d images built with a note: %s",
            desc,
            len(notes),
            len(jobs),
            counted(n for ns in notes.values() for n in ns),
        )
    return [(job, key) for job, key in zip(jobs, keys) if key not in reasons], skipped


def _build_missing(
    jobs, keys, cache_dir, regions, objects, workers, desc
) -> tuple[dict[str, str], int]:
    """Builds the entries of ``jobs`` not yet there (under the split's lock); returns why
    each image without an entry was skipped, by key, and how many images were tried."""
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
    if not todo:
        return reasons, 0
    removed = remove_stale_files(cache_dir)
    if removed:
        log.info("%s: removed %d temporary file(s) of killed runs", desc, removed)
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
            log.warning("skipped image %s (image id %d): %s", job.path, job.image_id, new[key])
    reasons.update(new)
    return reasons, len(todo)
