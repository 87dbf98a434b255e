"""Sphinx configuration of the probseq documentation site.

Build it with ``python -m sphinx -W -b html docs docs/_build`` (warnings are errors, as in CI).
The pages are the Markdown files of this folder (read by myst-parser); the API reference is
generated from the docstrings (autodoc, napoleon for Google-style sections, MathJax for the maths).
"""

from __future__ import annotations

import os
import re
import sys

sys.path.insert(0, os.path.abspath(".."))
os.environ.setdefault("MPLBACKEND", "Agg")

project = "probseq"
author = "the probseq authors"
copyright = "the probseq authors"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "README*.md"]

# Markdown: $...$ and $$...$$ maths, ::: fences, heading anchors for in-page links
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# API reference: members in source order, type hints in the description, Google-style docstrings
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_custom_sections = [("Class attributes", "params_style")]

# Docstrings cross-reference each other loosely (``:class:`Batch``` without the module, names of
# torch and numpy types): unresolved Python references are not errors in a nitpick-free build.
nitpicky = False
suppress_warnings = [
    "myst.xref_missing",        # links from the pages to files outside docs/ (benchmarks, examples)
    "ref.python",               # a short name that matches two objects (e.g. a re-export)
    "autodoc.import_object",    # never silently: a module that fails to import fails the test suite
]

html_theme = "alabaster"
html_title = "probseq"
html_static_path: list[str] = []


# ---------------------------------------------------------------------------- API pages
# One page per package, one section per module, written at build time from the package itself,
# so a new module appears in the reference without anyone editing a list (docs/api/ is generated).
def _write_api_pages(app) -> None:
    import importlib
    import pkgutil
    from pathlib import Path

    import probseq

    out = Path(app.srcdir) / "api"
    out.mkdir(exist_ok=True)
    modules = sorted(m.name for m in pkgutil.walk_packages(probseq.__path__, "probseq."))
    packages = ["probseq"] + [m for m in modules if hasattr(importlib.import_module(m), "__path__")]
    pages = []
    for package in packages:
        members = [m for m in modules if m.rsplit(".", 1)[0] == package
                   and not hasattr(importlib.import_module(m), "__path__")]
        if package == "probseq":
            title = "probseq (top-level modules)"
        else:
            title = package
        lines = [title, "=" * len(title), "", f".. automodule:: {package}", "   :no-members:", ""]
        for module in members:
            lines += [module, "-" * len(module), "", f".. automodule:: {module}", ""]
        page = package.replace(".", "-")
        text = "\n".join(lines)
        path = out / f"{page}.rst"
        if not path.exists() or path.read_text() != text:  # rewrite only on change (incremental builds)
            path.write_text(text)
        pages.append(page)
    index = "\n".join(["API reference", "=============", "",
                       "Generated from the docstrings: every module of every package.", "",
                       ".. toctree::", "   :maxdepth: 1", ""] + [f"   api/{p}" for p in pages]) + "\n"
    api = Path(app.srcdir) / "api.rst"
    if not api.exists() or api.read_text() != index:
        api.write_text(index)


# Docstrings write labelled blocks with hanging indents (``References:`` with wrapped entries,
# ``Hyperparameters:`` lists); reStructuredText reads a deeper-indented continuation line as an
# unexpected block quote. Join each continuation line onto its entry before napoleon sees it.
_HEADER = re.compile(r"^(\s*)[A-Z][\w ()',/-]*:\s*$")


def _join_hanging_indents(app, what, name, obj, options, lines: list[str]) -> None:
    out: list[str] = []
    block_indent = item_indent = None
    for line in lines:
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if block_indent is not None and stripped and indent <= block_indent:
            block_indent = item_indent = None  # the block ended
        if block_indent is None:
            match = _HEADER.match(line)
            if match and not line.rstrip().endswith("::"):
                block_indent = len(match.group(1))
            out.append(line)
            continue
        if not stripped:
            out.append(line)
            continue
        if item_indent is None:
            item_indent = indent
        if indent > item_indent and out and out[-1].strip() and not out[-1].rstrip().endswith("::"):
            out[-1] = out[-1].rstrip() + " " + stripped
        else:
            out.append(line)
    lines[:] = out


def setup(app):
    app.connect("builder-inited", _write_api_pages)
    app.connect("autodoc-process-docstring", _join_hanging_indents, priority=400)
