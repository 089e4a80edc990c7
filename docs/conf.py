"""Sphinx configuration of the diffenvs documentation.

Build it with warnings as errors::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import sys
from pathlib import Path

from sphinx.application import Sphinx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # diffenvs, agents and studies from this checkout, installed or not

project = "diffenvs"
author = "the diffenvs authors"
copyright = "diffenvs authors"

extensions = [
    "myst_parser",  # the pages are Markdown
    "sphinx.ext.autodoc",  # the environment pages and the API from the docstrings
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",  # the docstrings' :math: and the pages' $...$
    "sphinx.ext.napoleon",  # the Args:/Returns: sections of some functions' docstrings
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
autodoc_mock_imports: list[str] = []
autosummary_generate = False

html_theme = "furo"
html_title = "diffenvs"


#: the docstrings of attributes as written, kept from napoleon, which would read ``T, s: the period`` (a symbol
#: and its unit, then what it is) as a type followed by a description
_ATTRIBUTE_DOCS: dict[str, list[str]] = {}


def _keep_attribute_doc(app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    if what in ("attribute", "data"):
        _ATTRIBUTE_DOCS[name] = list(lines)


def _restore_attribute_doc(app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]) -> None:
    if what in ("attribute", "data") and name in _ATTRIBUTE_DOCS:
        lines[:] = _ATTRIBUTE_DOCS.pop(name)


def setup(app: Sphinx) -> None:
    """Keep napoleon to the functions' docstrings: attribute docstrings are shown as written."""
    app.connect("autodoc-process-docstring", _keep_attribute_doc, priority=100)  # before napoleon (500)
    app.connect("autodoc-process-docstring", _restore_attribute_doc, priority=900)  # after it
