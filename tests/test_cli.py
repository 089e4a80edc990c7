"""Command-line help is plain text: the reST markup of the docstrings it is built from is taken off."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from agents.cli import plain_text

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("text", "plain"), [
    (":math:`x^2`", "x^2"),
    (":math:`\\dot x = f(x, u)` and :math:`T`", "\\dot x = f(x, u) and T"),
    ("``a``", "a"),
    ("``--out`` (default ``runs/<env>``)", "--out (default runs/<env>)"),
    (":func:`~a.b`", "b"),
    (":func:`a.b`", "a.b"),
    (":mod:`a`", "a"),
    (":mod:`studies.gradients`", "studies.gradients"),
    (":class:`the config <agents.cli.Switch>`", "the config"),
    (":py:data:`~agents.cli.MAX_SEED`", "MAX_SEED"),
    ("`tyro <https://brentyi.github.io/tyro/>`_", "tyro (https://brentyi.github.io/tyro/)"),
    ("`x`", "x"),
    ("returns the config::\n\n    config = parse(C)", "returns the config:\n\n    config = parse(C)"),
    ("the commands ::\n\n    run", "the commands\n\n    run"),
    ("no markup: a < b, 2 * 3, `", "no markup: a < b, 2 * 3, `"),
])
def test_plain_text_takes_the_markup_off(text: str, plain: str) -> None:
    assert plain_text(text) == plain


def test_plain_text_keeps_plain_text_and_code_as_they_are() -> None:
    text = "    python scripts/train.py DiffCartpole-v0 --preset upright   # φ0 = 0.1\n\nTwo lines: a, b."
    assert plain_text(text) == text


def _script(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses and tyro resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_a_scripts_help_shows_its_docstring_without_markup(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    gradients = _script("gradients", monkeypatch)
    assert gradients.__doc__ is not None
    assert ":mod:`studies.gradients`" in gradients.__doc__  # the docstring has markup ...
    with pytest.raises(SystemExit) as stop:
        gradients.main(["--help"])
    assert stop.value.code == 0
    shown = capsys.readouterr().out
    assert "studies.gradients" in shown and "--sigma" in shown
    for markup in (":mod:", ":func:", ":math:", "``"):  # ... and its help has none
        assert markup not in shown.split("╭")[0]  # the description, above the option groups


SCRIPTS_WITH_HELP = sorted(path.stem for path in (ROOT / "scripts").glob("*.py") if "cli.parse" in path.read_text())


@pytest.mark.parametrize("name", SCRIPTS_WITH_HELP)
def test_every_scripts_help_is_plain_text_options_included(name: str, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as stop:
        _script(name, monkeypatch).main(["--help"])
    assert stop.value.code == 0
    shown = capsys.readouterr().out
    assert "--help" in shown
    for markup in (":mod:", ":func:", ":class:", ":math:", ":attr:", "``"):
        assert markup not in shown, f"scripts/{name}.py --help shows {markup!r}"
