"""Getting COCO, offline: a local HTTP server on 127.0.0.1 serves small archives built by the
test, one of them broken off mid-file once, one corrupt."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from graphvision.data.coco import check_coco_root
from graphvision.data.download import Archive, DownloadError, download_coco, main


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buffer.getvalue()


class Server:
    """Serves ``files`` (URL path -> bytes) with range requests; a path in ``break_once`` is
    cut off half-way the first time it is asked for; every request is recorded."""

    def __init__(self, files: dict[str, bytes], break_once: set[str] = frozenset()):
        self.files, self.break_once, self.requests = files, set(break_once), []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # noqa: N802 - http.server's name
                data = server.files.get(self.path)
                server.requests.append((self.path, self.headers.get("Range")))
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0])
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                if self.path in server.break_once:
                    server.break_once.discard(self.path)
                    self.wfile.write(data[start : start + (len(data) - start) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(data[start:])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def _coco_archives(images: bytes | None = None) -> tuple[dict[str, bytes], dict[str, Archive]]:
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "thing"}]}
    annotations = _zip(
        {f"annotations/instances_{s}2017.json": json.dumps(coco).encode() for s in ("train", "val")}
    )
    val = _zip({"val2017/000000000001.jpg": b"\xff\xd8 a jpeg " * 5000})
    train = _zip({"train2017/000000000002.jpg": b"\xff\xd8 another " * 5000})
    served = {
        "/annotations/ann.zip": annotations,
        "/zips/val2017.zip": val,
        "/zips/train2017.zip": images if images is not None else train,
    }
    originals = {"annotations": annotations, "val": val, "train": train}
    folders = {"annotations": "annotations", "val": "val2017", "train": "train2017"}
    paths = {
        "annotations": "annotations/ann.zip",
        "val": "zips/val2017.zip",
        "train": "zips/train2017.zip",
    }
    archives = {
        k: Archive(paths[k], len(data), hashlib.md5(data).hexdigest(), folders[k])
        for k, data in originals.items()
    }
    return served, archives


def test_an_interrupted_download_resumes_and_extracts_into_the_coco_layout(tmp_path):
    served, archives = _coco_archives()
    server = Server(served, break_once={"/zips/val2017.zip"})
    try:
        with pytest.raises(
            DownloadError, match=r"(got|broke off after) \d+ of \d+ bytes .*to resume"
        ):
            download_coco(tmp_path / "coco", base_url=server.url, archives=archives)
        part = tmp_path / "coco/downloads/val2017.zip.part"
        assert 0 < part.stat().st_size < archives["val"].size
        assert not (tmp_path / "coco/val2017").exists()  # nothing half-extracted
        download_coco(tmp_path / "coco", base_url=server.url, archives=archives)
        resumed = [r for p, r in server.requests if p == "/zips/val2017.zip"]
        assert resumed[0] is None and resumed[1] == f"bytes={archives['val'].size // 2}-"
        check_coco_root(tmp_path / "coco")  # the layout data.root expects
        assert (tmp_path / "coco/val2017/000000000001.jpg").read_bytes().startswith(b"\xff\xd8")
        left = sorted(p.name for p in (tmp_path / "coco/downloads").iterdir())
        assert left == ["ann.zip.done", "train2017.zip.done", "val2017.zip.done"]  # no archive
        asked = len(server.requests)
        download_coco(tmp_path / "coco", base_url=server.url, archives=archives)
        assert len(server.requests) == asked  # all there: nothing fetched again
    finally:
        server.close()


def test_a_corrupt_archive_is_removed_and_nothing_extracted(tmp_path):
    served, archives = _coco_archives(images=b"x" * 1000)  # train2017.zip: wrong bytes
    archives["train"] = Archive("zips/train2017.zip", 1000, archives["train"].md5, "train2017")
    server = Server(served)
    try:
        with pytest.raises(DownloadError, match=r"train2017.zip: MD5 \w+ is not the expected"):
            download_coco(tmp_path / "coco", base_url=server.url, archives=archives)
    finally:
        server.close()
    assert not (tmp_path / "coco/train2017").exists()
    assert not list((tmp_path / "coco/downloads").glob("train2017.zip*"))
    assert (tmp_path / "coco/val2017").is_dir()  # what came before is complete


def test_offline_names_the_url_and_where_to_put_it(tmp_path, caplog):
    server = Server({})
    url = server.url
    server.close()  # nothing listens there now
    code = main(["coco", "--root", str(tmp_path / "coco"), "--splits", "val", "--base-url", url])
    assert code == 1
    assert f"cannot download {url}/annotations/annotations_trainval2017.zip" in caplog.text
    assert f"put it at {tmp_path / 'coco/downloads/annotations_trainval2017.zip'}" in caplog.text


def test_the_missing_root_error_names_the_download_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"python -m graphvision.data.download coco"):
        check_coco_root(tmp_path / "nowhere")
