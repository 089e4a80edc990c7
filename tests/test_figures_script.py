"""scripts/figures.py end to end on tiny budgets: every experiment runs and every figure lands with its index line."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "figures.py"


def load():
    spec = importlib.util.spec_from_file_location("figures_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_every_figure_of_the_report_is_made_and_indexed(tmp_path: Path) -> None:
    figures = load()
    index = figures.main(["--quick", "--out", str(tmp_path)])
    text = index.read_text()
    expected = [(e.name, number, Path(source).stem) for e in figures.EXPERIMENTS for number, source, _ in e.figures]
    assert len(expected) == 12
    for name, number, stem in expected:
        png = tmp_path / f"figure{number}-{name}-{stem}.png"
        assert png.stat().st_size > 5_000, png  # a drawn figure, not an empty file
        assert f"| {number} | {png.name} |" in text
    assert text.count("final cost") == 9 and "active/random" in text and "posterior std" in text


def test_unknown_experiment_is_refused(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        load().main(["--only", "pendulum"])
    error = capsys.readouterr().err
    assert "invalid choice 'pendulum'" in error and "--only" in error
