"""The data home, ``probseq datasets`` and ``probseq download`` (against a local HTTP server)."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import json
import tarfile
import threading
import wave
from pathlib import Path

import numpy as np
import pytest

from probseq.cli import main
from probseq.data import download as dl
from probseq.data.home import DATA_HOME_VARIABLE, data_home, find_in_home
from probseq.data.registry import load_dataset
from probseq.errors import UserError


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server(tmp_path):
    """A static file server on 127.0.0.1 over ``tmp_path / "served"``; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def home(tmp_path, monkeypatch):
    path = tmp_path / "home"
    monkeypatch.setenv(DATA_HOME_VARIABLE, str(path))
    return path


def _tiny_jsb_json(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    song = [[60, 64], [62], [], [65, 69]]
    path.write_text(json.dumps({"train": [song, song], "valid": [song], "test": [song[:2]]}))


def _no_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


# ---------------------------------------------------------------------------- data home
def test_data_home_is_the_variable_else_the_user_cache(monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_HOME_VARIABLE, str(tmp_path))
    assert data_home() == tmp_path
    monkeypatch.delenv(DATA_HOME_VARIABLE)
    assert data_home() == Path.home() / ".cache" / "probseq"


def test_find_in_home_patterns_stand_for_their_folder(tmp_path):
    (tmp_path / "fsdd" / "recordings").mkdir(parents=True)
    assert find_in_home(["fsdd/recordings/*.wav"], tmp_path) is None  # empty folder: not there
    (tmp_path / "fsdd" / "recordings" / "0_a_1.wav").write_bytes(b"")
    assert find_in_home(["fsdd/recordings/*.wav"], tmp_path) == tmp_path / "fsdd" / "recordings"


def test_load_dataset_reads_the_copy_in_the_data_home(home):
    _tiny_jsb_json(home / "polyphonic" / "jsb-chorales-quarter.json")
    data = load_dataset("jsb")
    assert data.meta["source"].endswith("jsb-chorales-quarter.json")
    assert [len(data.splits[s]) for s in ("train", "valid", "test")] == [2, 1, 1]
    assert data.splits["train"][0][0].nonzero().flatten().tolist() == [60 - 21, 64 - 21]


def test_datasets_command_says_present_or_missing_and_where(home, capsys):
    _tiny_jsb_json(home / "polyphonic" / "jsb-chorales-quarter.json")
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert f"data home: {home}" in out
    blocks = {b.split()[0]: b for b in out.split("\n") if b and not b.startswith(" ")}
    assert "jsb" in blocks and "piano-midi" in blocks
    lines = out.splitlines()

    def data_line(name):
        start = next(i for i, line in enumerate(lines) if line.startswith(name + " "))
        return next(line for line in lines[start:] if line.strip().startswith("data:"))

    assert f"present  {home / 'polyphonic' / 'jsb-chorales-quarter.json'}" in data_line("jsb")
    assert f"missing  (looked at {home / 'polyphonic' / 'Piano_midi.mat'}" in data_line("piano-midi")
    assert "probseq download piano-midi" in data_line("piano-midi")
    assert f"looked at {home / 'fsdd' / 'recordings'}" in data_line("fsdd")
    assert "generated" in data_line("bouncing-balls")


# ---------------------------------------------------------------------------- downloads
def _remote(monkeypatch, name, remote):
    monkeypatch.setitem(dl.DOWNLOADS, name, dl.Download("test", (remote,)))


def test_download_checks_the_sha256_and_renames_into_place(server, home, monkeypatch):
    folder, url = server
    _tiny_jsb_json(folder / "tiny.json")
    digest = hashlib.sha256((folder / "tiny.json").read_bytes()).hexdigest()
    _remote(monkeypatch, "tiny", dl.Remote(f"{url}/tiny.json", "polyphonic/jsb-chorales-quarter.json",
                                           digest, dl._check_pianoroll))
    paths = dl.download("tiny", progress=False)
    assert paths == [home / "polyphonic" / "jsb-chorales-quarter.json"]
    assert paths[0].read_bytes() == (folder / "tiny.json").read_bytes()
    assert _no_leftovers(home / "polyphonic") == ["jsb-chorales-quarter.json"]
    assert load_dataset("jsb").meta["source"] == str(paths[0])


def test_download_refuses_a_file_whose_checksum_differs_and_writes_nothing(server, home, monkeypatch):
    folder, url = server
    _tiny_jsb_json(folder / "tiny.json")
    _remote(monkeypatch, "tiny", dl.Remote(f"{url}/tiny.json", "polyphonic/x.json", "0" * 64))
    with pytest.raises(UserError, match="has SHA-256 .* not the expected 0{64}; nothing was written"):
        dl.download("tiny", progress=False)
    assert _no_leftovers(home / "polyphonic") == []


def test_download_without_a_checksum_checks_the_format(server, home, monkeypatch):
    folder, url = server
    (folder / "Nottingham.mat").write_bytes(b"<html>not found</html>")
    _remote(monkeypatch, "tiny", dl.Remote(f"{url}/Nottingham.mat", "polyphonic/Nottingham.mat", None,
                                           dl._check_pianoroll))
    with pytest.raises(UserError, match="is not a valid Nottingham.mat.*nothing was written"):
        dl.download("tiny", progress=False)
    assert _no_leftovers(home / "polyphonic") == []


def test_download_reports_a_missing_file_in_one_sentence(server, home, monkeypatch, capsys):
    _, url = server
    _remote(monkeypatch, "tiny", dl.Remote(f"{url}/absent.mat", "polyphonic/absent.mat", "0" * 64))
    assert main(["download", "tiny", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probseq: error: could not download") and "404" in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert _no_leftovers(home / "polyphonic") == []


def test_every_download_is_pinned_and_says_how_it_is_checked():
    for name, entry in dl.DOWNLOADS.items():
        for remote in entry.files:
            assert remote.url.startswith("https://"), name
            # a file is checked by its hash or by its contents; an archive by its manifest
            assert remote.sha256 or remote.check or remote.manifest_sha256, name
            if "github" in remote.url:
                assert any(len(part) == 40 and all(c in "0123456789abcdef" for c in part)
                           for part in remote.url.replace(".", "/").split("/")), f"{name}: not pinned"


def test_cli_download_through_a_mirror_of_the_real_jsb_file(shared_data, server, home, capsys):
    source = shared_data / "polyphonic" / "JSB_Chorales.mat"
    if not source.is_file():
        pytest.skip(f"needs {source}")
    folder, url = server
    (folder / "JSB_Chorales.mat").write_bytes(source.read_bytes())
    assert main(["download", "jsb", "--mirror", url, "--quiet"]) == 0
    assert (home / "polyphonic" / "JSB_Chorales.mat").read_bytes() == source.read_bytes()
    # a corrupted copy on the mirror is refused, and the installed file is left alone
    (folder / "JSB_Chorales.mat").write_bytes(source.read_bytes()[:-1] + b"\0")
    assert main(["download", "jsb", "--mirror", url, "--quiet", "--force"]) == 2
    assert "not the expected" in capsys.readouterr().err
    assert (home / "polyphonic" / "JSB_Chorales.mat").read_bytes() == source.read_bytes()
    assert _no_leftovers(home / "polyphonic") == ["JSB_Chorales.mat"]


def _wav_bytes(seed: int) -> bytes:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes((np.random.default_rng(seed).standard_normal(800) * 3000).astype("<i2").tobytes())
    return buffer.getvalue()


def _archive(path: Path, members: dict[str, bytes], *, link: bool = False) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo("repo/recordings/9_link_1.wav")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)


def test_archive_extraction_keeps_only_expected_regular_files_under_their_base_name(
        server, home, monkeypatch, tmp_path):
    folder, url = server
    good = {f"repo/recordings/{d}_spk_{t}.wav": _wav_bytes(10 * d + t) for d in range(3) for t in range(2)}
    hostile = {"repo/README.md": b"hi", "repo/setup.py": b"import os", "../../0_evil_7.wav": b"x"}
    _archive(folder / "repo.tar.gz", {**good, **hostile}, link=True)
    expected = {Path(n).name: b for n, b in good.items()} | {"0_evil_7.wav": b"x"}
    manifest = "".join(f"{hashlib.sha256(expected[n]).hexdigest()}  recordings/{n}\n" for n in sorted(expected))
    _remote(monkeypatch, "fsdd-test", dl.Remote(f"{url}/repo.tar.gz", "fsdd/recordings", None,
                                                extract=r"\d_[A-Za-z0-9-]+_\d+\.wav",
                                                manifest_sha256=hashlib.sha256(manifest.encode()).hexdigest()))
    dl.download("fsdd-test", progress=False)
    recordings = home / "fsdd" / "recordings"
    assert sorted(p.name for p in recordings.iterdir()) == sorted(expected)
    assert not any(p.is_symlink() for p in recordings.iterdir())
    assert _no_leftovers(home / "fsdd") == sorted(["recordings", *expected])
    assert not (tmp_path / "0_evil_7.wav").exists() and not (home.parent / "0_evil_7.wav").exists()
    assert dl.manifest_digest(recordings) == dl.DOWNLOADS["fsdd-test"].files[0].manifest_sha256


def test_archive_whose_files_differ_from_the_manifest_is_refused(server, home, monkeypatch):
    folder, url = server
    _archive(folder / "repo.tar.gz", {"repo/recordings/1_a_1.wav": _wav_bytes(0)})
    _remote(monkeypatch, "fsdd-test", dl.Remote(f"{url}/repo.tar.gz", "fsdd/recordings", None,
                                                extract=r"\d_[A-Za-z0-9-]+_\d+\.wav", manifest_sha256="0" * 64))
    with pytest.raises(UserError, match="differ from the expected ones.*nothing was written"):
        dl.download("fsdd-test", progress=False)
    assert _no_leftovers(home / "fsdd") == []


def test_fsdd_manifest_digest_matches_the_developer_copy(shared_data):
    recordings = shared_data / "fsdd" / "recordings"
    if not recordings.is_dir():
        pytest.skip(f"needs {recordings}")
    assert dl.manifest_digest(recordings) == dl.DOWNLOADS["fsdd"].files[0].manifest_sha256


def test_fsdd_data_dir_accepts_the_repository_root(tmp_path):
    recordings = tmp_path / "free-spoken-digit-dataset" / "recordings"
    recordings.mkdir(parents=True)
    for digit, take in [(1, 0), (2, 5), (3, 20), (4, 30)]:
        (recordings / f"{digit}_spk_{take}.wav").write_bytes(_wav_bytes(digit))
    data = load_dataset("fsdd", data_dir=tmp_path / "free-spoken-digit-dataset")
    assert data.meta["recordings"] == {"train": 2, "valid": 1, "test": 1}
