"""scripts/train.py end to end on tiny budgets."""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from agents.training import PRESETS, add_config_arguments, config_from_arguments, parse_env_kwargs

_SPEC = importlib.util.spec_from_file_location("train_script", Path(__file__).resolve().parents[1] / "scripts" / "train.py")
train_script = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = train_script  # dataclasses and tyro resolve the module's annotations through sys.modules
_SPEC.loader.exec_module(train_script)

FIELDS = {"env", "env_kwargs", "agent", "seed", "final_cost", "optimum", "gap", "env_steps", "wall_time", "train_seconds",
          "episodes", "reference", "plots"}


@dataclasses.dataclass(frozen=True)
class Inner:
    """A nested config: its fields become options of their own."""

    rate: float | None = None
    """step size; None: automatic"""
    depth: int = 2
    """layers"""


@dataclasses.dataclass(frozen=True)
class Outer:
    """A config with every kind of field the command line takes."""

    flag: bool = False
    """switch it on"""
    count: int = 3
    """how many"""
    scale: float = 1.5
    """how large, in % of the unit"""
    name: str = "x"
    """what to call it"""
    names: tuple[str, ...] = ()
    """several names"""
    inner: Inner = dataclasses.field(default_factory=Inner)
    """the nested part"""


def test_neural_ode_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "upright"
    argv = ["DiffCartpole-v0", "--preset", "upright", "--env-kwargs", '{"horizon": 0.2}', "--out", str(out),
            "--iterations", "3", "--batch-size", "2", "--episodes", "2", "--quiet"]
    results = train_script.main(argv)
    assert "final cost" in capsys.readouterr().out
    saved = json.loads((out / "results.json").read_text())
    assert FIELDS <= set(saved)
    assert saved["env"] == "DiffCartpole-v0" and saved["agent"] == "neural-ode" and saved["seed"] == 0
    assert saved["env_kwargs"] == {**PRESETS["upright"][1], "horizon": 0.2}
    assert saved["env_steps"] == 3 * 2 * 10 and saved["iterations"] == 3
    assert saved["config"]["iterations"] == 3 and saved["config"]["batch_size"] == 2
    assert saved["final_cost"] == pytest.approx(results["final_cost"])
    assert saved["gap"] == pytest.approx(saved["final_cost"] - saved["optimum"])
    assert saved["reference"] == "lqr" and saved["reference_cost"] > 0 and saved["control_rms"] >= 0
    for plot in ("loss.png", "trajectory.png", "control.png"):
        assert (out / plot).stat().st_size > 1000
    assert (out / "checkpoint.pt").exists()
    # resuming a finished run trains no further and reports the same policy
    again = train_script.main([*argv, "--resume"])
    assert again["final_cost"] == pytest.approx(saved["final_cost"], rel=1e-12)
    assert again["iterations"] == 3


def test_analytic_agent_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "harmonic"
    results = train_script.main(["DiffIsochronism-v0", "--agent", "harmonic", "--env-kwargs", '{"steps": 200}',
                                 "--out", str(out), "--episodes", "3"])
    assert results["env_steps"] == 0 and results["iterations"] == 0
    assert results["optimum"] == 0.0 and results["final_cost"] < 1e-2
    assert results["control_rms"] < 1e-6  # the reference compared with itself
    assert not (out / "loss.png").exists() and (out / "control.png").exists()


def test_analytic_agents_refuse_other_environments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'pontryagin' is the analytic answer of DiffZermelo-v0 only"):
        train_script.main(["DiffCartpole-v0", "--agent", "pontryagin", "--out", str(tmp_path)])


def test_env_kwargs_and_presets_are_checked() -> None:
    assert parse_env_kwargs('{"initial_noise": 0.0}', "upright", "DiffCartpole-v0")["initial_noise"] == 0.0
    with pytest.raises(ValueError, match="preset 'upright' is for DiffCartpole-v0"):
        parse_env_kwargs(None, "upright", "DiffZermelo-v0")
    with pytest.raises(ValueError, match="env_kwargs must be a JSON object"):
        parse_env_kwargs("[1, 2]", None, "DiffZermelo-v0")
    with pytest.raises(ValueError, match="env_kwargs must be a JSON object"):
        parse_env_kwargs("{initial_noise: 0}", None, "DiffZermelo-v0")
    with pytest.raises(SystemExit):  # argparse refuses an unknown agent
        train_script.main(["DiffCartpole-v0", "--agent", "ppo"])


def test_config_command_line_is_generated_from_the_dataclass(capsys: pytest.CaptureFixture) -> None:
    parser = argparse.ArgumentParser()
    add_config_arguments(parser, Outer)

    def parse(*argv: str) -> Outer:
        return config_from_arguments(parser.parse_args(argv), Outer())

    assert parse() == Outer()  # nothing given: every default kept, the nested one included
    assert parse("--depth", "5") == Outer(inner=Inner(depth=5))
    config = parse("--flag", "--count", "7", "--scale", "0.25", "--name", "y", "--names", "a", "b", "--rate", "0.1")
    assert config == Outer(True, 7, 0.25, "y", ("a", "b"), Inner(rate=0.1))
    assert parse("--rate", "none").inner.rate is None and parse("--rate", "None", "--no-flag").flag is False
    # only the given options override a base that is not the default, field by field in the nested config
    base = Outer(count=9, inner=Inner(rate=0.5, depth=4))
    assert config_from_arguments(parser.parse_args(["--depth", "1"]), base) == Outer(count=9, inner=Inner(rate=0.5, depth=1))
    help_text = parser.format_help()
    assert "--names STR [STR ...]" in help_text and "--rate FLOAT|none" in help_text and "--no-flag" in help_text
    assert "how large, in % of the unit (default: 1.5)" in help_text and "inner options (Inner)" in help_text
    capsys.readouterr()
    for argv, option in ((["--count", "many"], "--count"), (["--rate", "fast"], "--rate"), (["--names"], "--names"),
                         (["--scale", "x"], "--scale")):
        with pytest.raises(SystemExit):
            parser.parse_args(argv)
        assert f"argument {option}" in capsys.readouterr().err


def test_config_command_line_refuses_what_it_cannot_parse() -> None:
    @dataclasses.dataclass(frozen=True)
    class Mapping:
        table: dict = dataclasses.field(default_factory=dict)

    with pytest.raises(TypeError, match="'table'"):
        add_config_arguments(argparse.ArgumentParser(), Mapping)
