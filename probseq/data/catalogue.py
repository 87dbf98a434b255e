"""What ``probseq datasets`` prints: each dataset, present or missing, and the path it looks at."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from probseq.data.home import DATA_HOME_VARIABLE, data_home, find_in_home
from probseq.data.registry import DatasetInfo, dataset_infos

__all__ = ["DatasetStatus", "dataset_statuses", "print_catalogue"]


@dataclass(frozen=True)
class DatasetStatus:
    """One line of the catalogue.

    Attributes:
        info: the registry entry.
        status: ``"present"``, ``"damaged"`` (a file ``probseq download`` installs that fails
            its checksum), ``"missing"``, ``"embedded"`` (ships inside probseq),
            ``"generated"`` (made on demand; nothing to find) or ``"yours"`` (no place in the data
            home: the user's own files, ``midi``, ``arrays``, ...).
        path: where it was found, or where it was looked for (the first place in the data home),
            or ``None`` for generated and embedded sets without a place in the data home.
        downloadable: ``probseq download NAME`` can fetch it.
    """

    info: DatasetInfo
    status: str
    path: str | None
    downloadable: bool
    #: for ``"damaged"``: what is wrong with it
    problem: str | None = None


def _status(info: DatasetInfo) -> DatasetStatus:
    from probseq.data.download import DOWNLOADS

    downloadable = info.name in DOWNLOADS
    found = find_in_home(info.home) if info.home else None
    if found is not None:
        problem = _damage(info.name, found)
        if problem is not None:
            return DatasetStatus(info, "damaged", str(found), downloadable, problem)
        return DatasetStatus(info, "present", str(found), downloadable)
    if info.needs == "none":
        return DatasetStatus(info, "generated", None, downloadable)
    if info.needs in ("embedded", "file-or-embedded"):
        return DatasetStatus(info, "embedded", None, downloadable)
    if not info.home:
        return DatasetStatus(info, "yours", None, downloadable)
    first = data_home() / info.home[0] if info.home else None
    looked = None if first is None else str(first.parent if "*" in first.name else first)
    return DatasetStatus(info, "missing", looked, downloadable)


def _damage(name: str, found: Path) -> str | None:
    """What is wrong with ``found`` when it is a file ``probseq download NAME`` installs (checked as
    a download is), else ``None`` (also for the user's own copies under other names)."""
    from probseq.data.download import DOWNLOADS, installed_problem

    home = data_home()
    for remote in DOWNLOADS[name].files if name in DOWNLOADS else ():
        if Path(found) == home / remote.target:
            return installed_problem(remote, home)
    return None


def dataset_statuses() -> list[DatasetStatus]:
    """The status of every registered dataset, sorted by name."""
    return [_status(info) for info in dataset_infos()]


def print_catalogue() -> int:
    """Print the catalogue (the ``probseq datasets`` command); returns the exit status 0."""
    home = data_home()
    print(f"data home: {home} (set {DATA_HOME_VARIABLE} to change it; --data-file / --data-dir "
          "point a dataset at any other copy)\n")
    rows = dataset_statuses()
    width = max(len(r.info.name) for r in rows)
    pad = "".ljust(width)
    for r in rows:
        print(f"{r.info.name.ljust(width)}  {r.info.description}")
        print(f"{pad}  source: {r.info.source}")
        if r.status == "present":
            line = f"present  {r.path}"
        elif r.status == "damaged":
            fix = (f"`probseq download {r.info.name}` fetches it again" if r.downloadable
                   else "replace it")
            line = f"DAMAGED  {r.path} ({r.problem}; {fix})"
        elif r.status == "yours":
            line = "your own files (nothing to fetch; see `source`)"
        elif r.status == "generated":
            line = "generated on demand (nothing to fetch)"
        elif r.status == "embedded":
            line = "embedded (ships with probseq)"
            if r.downloadable:
                line += f"; `probseq download {r.info.name}` adds the original file to the data home"
        else:
            hint = (f"`probseq download {r.info.name}`" if r.downloadable
                    else "put your copy there or pass --data-file / --data-dir")
            line = f"missing  (looked at {r.path}; {hint})" if r.path else f"missing  ({hint})"
        print(f"{pad}  data:   {line}")
    return 0
