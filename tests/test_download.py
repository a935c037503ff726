"""`geoposenet download` against a local HTTP server (127.0.0.1, port 0) serving archives the
tests build: a good download unpacks and passes `check`; a .part resumes with a Range request;
a truncated transfer and a wrong checksum exit 2 naming the file, with nothing half-unpacked."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import builders
import pytest

from geoposenet.catalog import ARCHIVES, URL_BASE_VARIABLE
from geoposenet.cli import main


class Server:
    """Serves `files` (URL path -> bytes) with Range support; `truncate` sends only that many
    bytes of a file while announcing all of it; `ranges` records the Range headers received."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: int | None = None
        self.ranges: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if (header := self.headers.get("Range")) is not None:
                    server.ranges.append(header)
                    start = int(header.removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                self.wfile.write(body if server.truncate is None else body[: server.truncate])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mirror"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def zip_folder(folder: Path, files: dict[str, bytes] | None = None) -> bytes:
    """A zip of `folder` with paths starting at its name (as the real archives), plus `files`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent).as_posix())
        for name, data in (files or {}).items():
            archive.writestr(name, data)
    return buffer.getvalue()


def seven_scenes_zip(tmp_path: Path) -> bytes:
    """stairs.zip as Microsoft packs it: split files and one zip per sequence."""
    scene = builders.stairs(tmp_path / "src" / "stairs")
    inner = {}
    for seq in sorted(p for p in scene.iterdir() if p.is_dir()):
        inner[f"stairs/{seq.name}.zip"] = zip_folder(seq)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("TrainSplit.txt", "TestSplit.txt"):
            archive.write(scene / name, f"stairs/{name}")
        for name, data in inner.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def cambridge_zip(tmp_path: Path) -> bytes:
    return zip_folder(builders.cambridge(tmp_path / "src" / "KingsCollege"))


def test_good_downloads_unpack_into_the_readers_layout(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server.files["/mirror/stairs.zip"] = seven_scenes_zip(tmp_path)
    server.files["/mirror/KingsCollege.zip"] = cambridge_zip(tmp_path)
    data = tmp_path / "data"
    for name in ("stairs", "KingsCollege"):
        assert main(["download", name, str(data), "--url-base", server.url, "--no-progress"]) == 0
        assert main(["check", str(data / name)]) == 0, capsys.readouterr().err
    assert sorted(p.name for p in data.iterdir()) == ["KingsCollege", "stairs"]  # zips deleted
    assert (data / "stairs" / "seq-01" / "frame-000000.pose.txt").is_file()
    assert not list((data / "stairs").glob("*.zip"))
    assert (data / "KingsCollege" / "dataset_train.txt").is_file()
    assert main(["download", "stairs", str(data), "--url-base", server.url]) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_part_file_resumes_with_a_range_request(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = cambridge_zip(tmp_path)
    digest = hashlib.sha256(archive).hexdigest()
    monkeypatch.setitem(
        ARCHIVES,
        "KingsCollege",
        replace(ARCHIVES["KingsCollege"], size=len(archive), sha256=digest),
    )
    server.files["/mirror/KingsCollege.zip"] = archive
    monkeypatch.setenv(URL_BASE_VARIABLE, server.url)  # the environment variable, this time
    data = tmp_path / "data"
    data.mkdir()
    half = len(archive) // 2
    (data / "KingsCollege.zip.part").write_bytes(archive[:half])
    assert main(["download", "KingsCollege", str(data), "--no-progress"]) == 0
    assert server.ranges == [f"bytes={half}-"]
    assert main(["check", str(data / "KingsCollege")]) == 0
    assert [p.name for p in data.iterdir()] == ["KingsCollege"]


def test_a_truncated_transfer_keeps_the_part_to_resume(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = seven_scenes_zip(tmp_path)
    server.files["/mirror/stairs.zip"] = archive
    server.truncate = 1000
    data = tmp_path / "data"
    assert main(["download", "stairs", str(data), "--url-base", server.url, "--no-progress"]) == 2
    err = capsys.readouterr().err
    part = data / "stairs.zip.part"
    assert str(part) in err and "resume" in err and "Traceback" not in err
    assert [p.name for p in data.iterdir()] == ["stairs.zip.part"]  # nothing unpacked
    assert part.read_bytes() == archive[:1000]
    server.truncate = None  # the connection is back: the same command finishes the job
    assert main(["download", "stairs", str(data), "--url-base", server.url, "--no-progress"]) == 0
    assert server.ranges == ["bytes=1000-"]
    assert main(["check", str(data / "stairs")]) == 0


def test_a_wrong_checksum_removes_the_file(
    server: Server,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setitem(ARCHIVES, "stairs", replace(ARCHIVES["stairs"], sha256="0" * 64))
    server.files["/mirror/stairs.zip"] = seven_scenes_zip(tmp_path)
    data = tmp_path / "data"
    assert main(["download", "stairs", str(data), "--url-base", server.url, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert str(data / "stairs.zip.part") in err and "SHA-256" in err and "removed" in err
    assert list(data.iterdir()) == []


def test_a_damaged_zip_leaves_nothing_unpacked(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    archive = bytearray(cambridge_zip(tmp_path))
    archive[200] ^= 0xFF  # inside the first member's data: its CRC fails while unpacking
    server.files["/mirror/KingsCollege.zip"] = bytes(archive)
    data = tmp_path / "data"
    args = ["download", "KingsCollege", str(data), "--url-base", server.url, "--no-progress"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert str(data / "KingsCollege.zip") in err and "removed" in err
    assert list(data.iterdir()) == []


def test_an_unknown_url_names_it(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["download", "chess", str(tmp_path), "--url-base", server.url]) == 2
    err = capsys.readouterr().err
    assert f"{server.url}/chess.zip" in err and "404" in err
    assert list(tmp_path.iterdir()) == []
