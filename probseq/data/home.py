"""The data home: the one folder where probseq looks for datasets the user has not pointed it at.

Like torchvision's ``root`` and scikit-learn's ``get_data_home``: the folder is ``$PROBSEQ_DATA``
when that environment variable is set, else ``~/.cache/probseq``. Inside it every dataset has a
fixed relative place (its ``home`` entry in the registry), the same layout ``probseq download``
writes and the developer copy ``shared/data`` already has::

    polyphonic/JSB_Chorales.mat  polyphonic/Piano_midi.mat  polyphonic/Nottingham.mat  ...
    fsdd/recordings/*.wav
    mocap/motion.mat  mocap/35.asf  mocap/35_01.amc
    dialogue/{train,valid,test}.jsonl.gz

So ``PROBSEQ_DATA=../shared/data probseq fit ...`` uses the developer copy, and nothing in the
library looks next to its own source.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

__all__ = ["DATA_HOME_VARIABLE", "data_home", "find_in_home"]

#: the environment variable that names the data home
DATA_HOME_VARIABLE = "PROBSEQ_DATA"


def data_home() -> Path:
    """``$PROBSEQ_DATA`` (``~`` expanded) if set and non-empty, else ``~/.cache/probseq``.

    The folder need not exist; ``probseq download`` creates it.
    """
    value = os.environ.get(DATA_HOME_VARIABLE, "").strip()
    return Path(value).expanduser() if value else Path.home() / ".cache" / "probseq"


def find_in_home(candidates: Iterable[str], home: Path | None = None) -> Path | None:
    """The first of ``candidates`` (paths relative to the data home) that is there, else ``None``.

    A candidate whose last part is a pattern (``"fsdd/recordings/*.wav"``) stands for its folder,
    which counts as there when it holds at least one matching file.
    """
    root = data_home() if home is None else home
    for relative in candidates:
        path = root / relative
        if "*" in path.name:
            if path.parent.is_dir() and next(path.parent.glob(path.name), None) is not None:
                return path.parent
        elif path.exists():
            return path
    return None
