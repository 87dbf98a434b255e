"""probseq: probabilistic sequence models with honest likelihoods.

Every model answers the same three questions — how to **sample**, how long a sequence is
(**length**), and how probable a held-out sequence is (**likelihood**, labelled ``exact``,
``bound`` or ``estimate``). See ``docs/`` and DESIGN.md.

The public API is flat; names are imported lazily so that ``import probseq`` stays fast.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "Batch": "probseq.data.batch",
    "DataSpec": "probseq.data.spec",
    "UserError": "probseq.errors",
    "LogProb": "probseq.models.base",
    "SequenceModel": "probseq.models.base",
    "build_model": "probseq.models.registry",
    "model_names": "probseq.models.registry",
    "load_dataset": "probseq.data.registry",
    "sample_sequences": "probseq.sampling",
    "BernoulliFrame": "probseq.frames.factorial",
    "GaussianFrame": "probseq.frames.factorial",
    "CategoricalFrame": "probseq.frames.factorial",
    "RBM": "probseq.frames.rbm",
    "NADE": "probseq.frames.nade",
    "CTC": "probseq.ctc",
    "ctc_loss": "probseq.ctc",
    "fit": "probseq.train.fit",
    "load_run": "probseq.train.checkpoint",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'probseq' has no attribute {name!r}")
