"""Getting COCO 2017 into the layout ``data.root`` expects.

    python -m graphvision.data.download coco --root data/coco [--splits val]

Fetches the official archives (annotations, ``val2017``, and ``train2017`` unless
``--splits val``) with a progress bar into ``ROOT/downloads/``, resumes an interrupted
download where it stopped (HTTP range requests), checks each archive's size and MD5, and
extracts it through a temporary folder, so that a failure at any point leaves no
half-written archive or folder: running the command again carries on.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import logging
import os
import shutil
import sys
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

COCO_URL = "http://images.cocodataset.org"


@dataclass(frozen=True)
class Archive:
    """One downloadable archive: where it is (relative to a base URL), its size and MD5, and
    the top-level folder it extracts to."""

    path: str  # e.g. "zips/val2017.zip"
    size: int  # bytes
    md5: str
    folder: str  # what it extracts to, under the root

    @property
    def name(self) -> str:
        return Path(self.path).name


#: COCO 2017's official archives (sizes and MD5s as the COCO site serves them)
COCO_ARCHIVES = {
    "annotations": Archive(
        "annotations/annotations_trainval2017.zip",
        252_907_541,
        "f4bbac642086de4f52a3fdda2de5fa2c",
        "annotations",
    ),
    "val": Archive("zips/val2017.zip", 815_585_330, "442b8da7639aecaf257c1dceb8ba8c80", "val2017"),
    "train": Archive(
        "zips/train2017.zip", 19_336_861_798, "cced6f7f71b7629ddf16f17bbcfab6b2", "train2017"
    ),
}


class DownloadError(OSError):
    """A download or extraction that did not complete; the message says what to do."""


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, size: int, md5: str, timeout: float = 60.0) -> Path:
    """Downloads ``url`` to ``dest`` unless a verified copy is there: into ``dest.part``
    first, resumed from its length when the server honours range requests, then checked
    (size, MD5) and renamed into place.

    Raises:
        DownloadError: no network or an interrupted transfer (the ``.part`` file is kept,
            so that the next call resumes), or a checksum mismatch (the file is removed).
    """
    dest = Path(dest)
    if dest.is_file() and dest.stat().st_size == size:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    offset = part.stat().st_size if part.is_file() else 0
    if offset > size:
        part.unlink()
        offset = 0
    if offset < size:
        _transfer(url, part, offset, size, timeout, dest)
    if part.stat().st_size != size:
        raise DownloadError(
            f"{url}: got {part.stat().st_size} of {size} bytes (kept in {part}); run the same "
            "command again to resume"
        )
    got = md5sum(part)
    if got != md5:
        part.unlink()
        raise DownloadError(
            f"{url}: MD5 {got} is not the expected {md5}; the file was removed, run the same "
            f"command again to fetch it afresh (or put a good copy at {dest})"
        )
    os.replace(part, dest)
    return dest


def _transfer(url: str, part: Path, offset: int, size: int, timeout: float, dest: Path) -> None:
    request = urllib.request.Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(
            f"cannot download {url} ({getattr(err, 'reason', err)}). Without a network, fetch "
            f"it on a machine with one and put it at {dest}, then run the same command again"
        ) from err
    with response:
        if offset and response.status != 206:  # the server ignored the range: start again
            offset = 0
        bar = tqdm(
            total=size, initial=offset, unit="B", unit_scale=True, desc=dest.name, disable=None
        )
        try:
            with open(part, "ab" if offset else "wb") as f:
                while block := response.read(1 << 20):
                    f.write(block)
                    bar.update(len(block))
        except (OSError, http.client.HTTPException) as err:  # IncompleteRead, a reset, ...
            raise DownloadError(
                f"{url}: the transfer broke off after {part.stat().st_size} of {size} bytes "
                f"({type(err).__name__}); kept in {part}: run the same command again to resume"
            ) from err
        finally:
            bar.close()


def extract(archive: Path, root: Path, folder: str) -> Path:
    """Extracts ``archive`` into ``root`` through a temporary folder beside it, then moves
    ``folder`` (its top-level folder) into place: no half-extracted ``root/folder``.

    Raises:
        DownloadError: a corrupt archive, a member outside ``folder``, or no ``folder``.
    """
    tmp = root / f".{archive.name}.extracting"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                parts = Path(member).parts
                if Path(member).is_absolute() or ".." in parts or not parts or parts[0] != folder:
                    raise DownloadError(
                        f"{archive}: member {member!r} is not under {folder}/; not extracted"
                    )
            zf.extractall(tmp)
        if not (tmp / folder).is_dir():
            raise DownloadError(f"{archive}: holds no {folder}/ folder; not extracted")
        target = root / folder
        if target.exists():  # a folder from an earlier run: the archive's contents added
            for item in (tmp / folder).iterdir():
                os.replace(item, target / item.name)
        else:
            os.replace(tmp / folder, target)
    except zipfile.BadZipFile as err:
        raise DownloadError(
            f"{archive} is not a valid zip archive ({err}); delete it and run "
            "the same command again"
        ) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def download_coco(
    root: str | Path,
    splits: tuple[str, ...] = ("train", "val"),
    base_url: str = COCO_URL,
    archives: dict[str, Archive] | None = None,
    keep_archives: bool = False,
) -> Path:
    """Fetches and extracts COCO 2017's annotations and the images of ``splits`` into
    ``root`` (the layout :func:`~graphvision.data.coco.check_coco_root` checks). Archives
    already extracted (``root/downloads/<archive>.done``) are skipped.

    Returns:
        ``root``.
    """
    root = Path(root)
    archives = archives or COCO_ARCHIVES
    unknown = [s for s in splits if s not in ("train", "val")]
    if unknown:
        raise ValueError(f"--splits {unknown}: choose from train, val")
    downloads = root / "downloads"
    for key in ("annotations", *[s for s in ("val", "train") if s in splits]):
        archive = archives[key]
        done = downloads / f"{archive.name}.done"
        if done.is_file() and (root / archive.folder).is_dir():
            log.info("%s: already in %s", archive.name, root / archive.folder)
            continue
        url = f"{base_url.rstrip('/')}/{archive.path}"
        log.info("%s: %s (%.1f MB)", archive.name, url, archive.size / 1e6)
        path = fetch(url, downloads / archive.name, archive.size, archive.md5)
        log.info("%s: extracting to %s", archive.name, root / archive.folder)
        extract(path, root, archive.folder)
        done.write_text(archive.md5)
        if not keep_archives:
            path.unlink()
    return root


def parser() -> argparse.ArgumentParser:
    """The command line: ``coco --root ROOT [--splits train val] [--base-url URL]``."""
    parser = argparse.ArgumentParser(prog="python -m graphvision.data.download")
    sub = parser.add_subparsers(dest="dataset", required=True)
    coco = sub.add_parser("coco", help="COCO 2017: annotations and images")
    coco.add_argument("--root", default="data/coco", help="where to put it (data.root)")
    coco.add_argument(
        "--splits",
        nargs="+",
        default=["train", "val"],
        choices=["train", "val"],
        help="image splits (default: train val; val alone is 0.8 GB)",
    )
    coco.add_argument("--base-url", default=COCO_URL, help="a mirror of images.cocodataset.org")
    coco.add_argument("--keep-archives", action="store_true", help="keep the zip files")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        root = download_coco(
            args.root, tuple(args.splits), args.base_url, keep_archives=args.keep_archives
        )
    except DownloadError as err:
        log.error("Error: %s", err)
        return 1
    log.info(
        "COCO 2017 is in %s: python -m graphvision.train experiment=coco_relations data.root=%s",
        root,
        root,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
