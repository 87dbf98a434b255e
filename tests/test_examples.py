"""Every script in examples/ runs with tiny arguments, so the examples never rot.

A new example must add its tiny arguments to ``TINY_ARGS`` (or name the test module that runs it
in ``RUN_ELSEWHERE``); the test fails otherwise.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

TINY_ARGS = {
    "fit_and_compare.py": ["--steps", "3", "--hidden", "8"],
    "length_models.py": ["--steps", "3", "--hidden", "8", "--samples", "5"],
    "restore_word_order.py": ["--steps", "2", "--hidden", "8", "--words", "3", "--phrases", "2",
                              "--window", "60", "--context", "10"],
}
#: examples that a test module of their own runs with tiny arguments (and checks their output)
RUN_ELSEWHERE = {"continue_chorale.py": "test_nade_example.py"}


def test_examples_run_elsewhere_are_run_there():
    for name, module in RUN_ELSEWHERE.items():
        assert (EXAMPLES / name).is_file(), name
        assert name in (Path(__file__).resolve().parent / module).read_text(), f"{module} does not run {name}"


@pytest.mark.parametrize("path", sorted(p for p in EXAMPLES.glob("*.py") if p.name not in RUN_ELSEWHERE),
                         ids=lambda p: p.name)
def test_example_runs_with_tiny_arguments(path, tmp_path):
    assert path.name in TINY_ARGS, f"add tiny arguments for {path.name} to TINY_ARGS"
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    args = module.parse_args([a.replace("{tmp}", str(tmp_path)) for a in TINY_ARGS[path.name]])
    assert module.main(args) is not None
