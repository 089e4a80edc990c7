"""The two scripts end to end on tiny budgets, into a temporary folder."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def load(name: str):
    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_ude_script_checks_times_sweeps_and_recovers(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("pysindy", reason="the optional extra 'ude'")
    ude = load("ude")
    results = ude.main(["--out", str(tmp_path), "--lambdas", "0", "1e-4", "--adam-iterations", "4", "--lbfgs-iterations", "2",
                        "--repeats", "1", "--steps", "1", "--extrapolate-to", "6", "--max-terms", "1"])
    check = results["gradient_check"]
    scale = check["gradient_max_abs"]
    assert check["weights"] == 87 and scale > 0
    assert check["forward_vs_reverse"] < 1e-12 * scale and check["forward_vs_loop"] < 1e-12 * scale
    assert check["forward_vs_weight_differences"] < 1e-6 * scale  # central differences, step 1e-6
    assert check["regulariser_forward"] == pytest.approx(check["regulariser_reverse"], rel=1e-12)
    assert set(results["seconds_per_evaluation"]) == {"regulariser", "loss"}
    assert all(s > 0 for part in results["seconds_per_evaluation"].values() for s in part.values())
    assert [row["lambda"] for row in results["sweep"]] == [0.0, 1e-4]
    assert results["chosen_lambda"] in (0.0, 1e-4)
    assert len([h for h in results["refit_history"] if h["phase"] == "adam"]) == 4
    assert results["refit"]["terms_relative_rms"] > 0 and "extrapolation_relative_rms" in results["symbolic"]
    symbolic = results["symbolic"]
    assert len(symbolic["candidates"]) == 1 and all(len(t) <= 1 for t in symbolic["terms"])
    assert len(symbolic["stlsq_terms"]) == 2 and isinstance(symbolic["stlsq_structure_recovered"], bool)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["gradient_check"]["weights"] == 87 and len(saved["sweep"]) == 2
    assert (tmp_path / "ude.png").stat().st_size > 0 and (tmp_path / "ude_sweep.png").stat().st_size > 0
    assert "| λ |" in (tmp_path / "table.md").read_text()
    assert "forward-over-reverse" in capsys.readouterr().out


def test_ude_script_refuses_bad_lambdas(capsys: pytest.CaptureFixture) -> None:
    ude = load("ude")
    with pytest.raises(SystemExit) as exit_:  # a usage error, as for any value the command line refuses
        ude.main(["--lambdas", "0", "-1", "--no-checks"])
    assert exit_.value.code == 2 and "lambdas must be" in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "message"), [
    (["--holdout-every", "1000"], "holdout_every must be at most 21"),
    (["--holdout-every", "22"], "holdout_every must be at most 21"),
    (["--seeds", "0", "-1"], "seeds must be integers from 0"),
    (["--max-terms", "0"], "max_terms must be"),
])
def test_ude_script_refuses_before_training(argv: list[str], message: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture) -> None:
    """A hold-out that holds nothing out was refused only after the sweep, by the choice of λ."""
    ude = load("ude")
    with pytest.raises(SystemExit) as exit_:
        ude.main([*argv, "--no-checks", "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_ude_script_reports_over_seeds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("pysindy", reason="the optional extra 'ude'")
    ude = load("ude")
    results = ude.main(["--out", str(tmp_path), "--seeds", "0", "1", "--lambdas", "0", "--adam-iterations", "4",
                        "--lbfgs-iterations", "2", "--steps", "1", "--max-terms", "1"])
    rows = results["seeds"]
    assert [r["seed"] for r in rows] == [0, 1] and rows[0]["u0"] != rows[1]["u0"]
    assert all(len(r["terms"]) == 2 and r["extrapolation_relative_rms"] >= 0 for r in rows)
    summary = results["summary"]
    assert summary["seeds"] == 2 and 0 <= summary["structure_recovered"] <= 2
    assert summary["beta_relative_error"]["worst"] == max(r["beta_relative_error"] for r in rows)
    table = (tmp_path / "seeds.md").read_text()
    assert table.count("\n| 0 |") + table.count("\n| 1 |") == 2 and "u1u2 alone in both components on" in table
    assert json.loads((tmp_path / "results.json").read_text())["summary"]["seeds"] == 2
    assert "u1u2 alone in both components on" in capsys.readouterr().out
    assert not (tmp_path / "ude.png").exists()


def test_design_script_runs_algorithm_2_and_writes_figure_17(tmp_path: Path) -> None:
    design = load("design")
    results = design.main(["--out", str(tmp_path), "--measurements", "2", "--episodes", "2", "--derivative", "schwarz",
                           "--tolerance", "0.001", "--patience", "5"])
    checks = results["derivative_checks"]
    assert checks["sensitivity"] < 1e-4 and checks["dgdt_autograd_vs_schwarz"] < 1e-4
    assert results["max_relative_design_error"] < 0.01
    assert results["calibration"]["max_relative_design_error"] < 0.01
    episode = results["episode"]
    assert len(episode["designs"]) == 2 and len(episode["means"]) == 3
    assert episode["variances"][-1] < episode["variances"][0]
    assert (tmp_path / "design.png").stat().st_size > 0 and (tmp_path / "results.json").exists()


def test_ude_script_lists_the_training_options_in_its_help(capsys: pytest.CaptureFixture,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    ude = load("ude")
    with pytest.raises(SystemExit) as exit_:
        ude.main(["--help"])
    text = capsys.readouterr().out
    assert exit_.value.code == 0
    for flag in ("--adam-iterations", "--lr", "--lr-final", "--lbfgs-iterations", "--horizons", "--lbfgs-horizon",
                 "--steps", "--lambdas", "--holdout-every", "--threshold", "--degree", "--no-checks", "--seeds",
                 "--max-terms"):
        assert flag in text, flag
