"""scripts/train.py end to end on tiny budgets."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import typing
from pathlib import Path

import pytest

from agents import cli, neural_ode
from agents.cards import presets
from agents.cli import parse_env_kwargs

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

    def __post_init__(self) -> None:
        if self.depth < 1:
            raise ValueError(f"depth must be at least 1, got {self.depth}")


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
    argv = ["DiffCartpole-v0", "--preset", "upright", "--env-kwargs", '{"max_steps": 10}', "--out", str(out),
            "--iterations", "3", "--batch-size", "2", "--episodes", "2", "--quiet"]
    results = train_script.main(argv)
    assert "final cost" in capsys.readouterr().out
    saved = json.loads((out / "results.json").read_text())
    assert FIELDS <= set(saved)
    assert saved["env"] == "DiffCartpole-v0" and saved["agent"] == "neural-ode" and saved["seed"] == 0
    assert saved["env_kwargs"] == {**presets()["upright"][1], "max_steps": 10}
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
    results = train_script.main(["DiffIsochronism-v0", "--agent", "harmonic", "--env-kwargs", '{"max_steps": 200}',
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


@dataclasses.dataclass(frozen=True)
class Output:
    """Where it goes."""

    out: str = "runs"
    """folder"""
    verbose: cli.Switch = False
    """say more"""


DOCS = {"flag": "switch it on", "count": "how many", "scale": "how large, in % of the unit", "name": "what to call it",
        "names": "several names", "rate": "step size; None: automatic", "depth": "layers", "out": "folder",
        "verbose": "say more"}


def flags(kind: type) -> list[str]:
    """The option of every field of the config ``kind``, its nested configs flattened."""
    found = []
    for name, field_type in typing.get_type_hints(kind).items():
        if isinstance(field_type, type) and dataclasses.is_dataclass(field_type):
            found += flags(field_type)
        else:
            found.append("--" + name.replace("_", "-"))
    return found


def help_text(capsys: pytest.CaptureFixture, run) -> str:
    """The ``--help`` of ``run``, without the frame around it and with every run of white space one space."""
    with pytest.raises(SystemExit) as exit_:
        run()
    assert exit_.value.code == 0
    return " ".join(capsys.readouterr().out.replace("│", " ").split())


def test_each_flag_sets_its_field() -> None:
    assert cli.parse(Outer, []) == Outer()  # nothing given: every default kept, the nested one included
    assert cli.parse(Outer, ["--depth", "5"]) == Outer(inner=Inner(depth=5))  # nested: flat, no prefix
    config = cli.parse(Outer, ["--flag", "--count", "7", "--scale", "0.25", "--name", "y", "--names", "a", "b",
                               "--rate", "0.1"])
    assert config == Outer(True, 7, 0.25, "y", ("a", "b"), Inner(rate=0.1))
    assert cli.parse(Outer, ["--rate", "None", "--no-flag"], default=Outer(flag=True, inner=Inner(rate=1.0))) == Outer()


def test_options_not_given_keep_the_default_instance() -> None:
    base = Outer(count=9, names=("p",), inner=Inner(rate=0.5, depth=4))
    assert cli.parse(Outer, [], default=base) == base
    assert cli.parse(Outer, ["--depth", "1"], default=base) == dataclasses.replace(base, inner=Inner(rate=0.5, depth=1))
    with pytest.raises(TypeError, match="default must be an instance of Outer"):
        cli.parse(Outer, [], default=Inner())


def test_two_configs_on_one_command_line() -> None:
    outer, output = cli.parse_pair(Outer, Output, ["--out", "x", "--count", "4", "--verbose", "--depth", "3"])
    assert outer == Outer(count=4, inner=Inner(depth=3)) and output == Output("x", True)
    outer, output = cli.parse_pair(Outer, Output, ["--name", "z"], defaults=(Outer(count=2), None))
    assert outer == Outer(count=2, name="z") and output == Output()
    with pytest.raises(TypeError, match=r"Inner.depth and Clash.depth would both be the option --depth"):
        @dataclasses.dataclass(frozen=True)
        class Clash:
            depth: int = 1

        cli.parse_pair(Outer, Clash, [])
    with pytest.raises(ValueError, match="titles"):
        cli.parse_pair(Outer, Output, [], titles=("same", "same"))


def test_help_lists_every_field_with_its_docstring(capsys: pytest.CaptureFixture, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    text = help_text(capsys, lambda: cli.parse_pair(Outer, Output, ["--help"], titles=("model", "output"),
                                                     description="What it does."))
    assert "What it does." in text and "model options" in text and "output options" in text
    assert {flag[2:] for flag in flags(Outer) + flags(Output)} == set(DOCS)  # every field is checked
    for name, doc in DOCS.items():
        assert f"--{name}" in text and doc in text, name
    assert "--flag, --no-flag" in text and "--no-verbose" not in text  # bool pairs; a Switch is a bare flag
    assert "how large, in % of the unit (default: 1.5)" in text and "the nested part" in text


@pytest.mark.parametrize("argv, option", [(["--count", "many"], "--count"), (["--rate", "fast"], "--rate"),
                                          (["--scale", "x"], "--scale"), (["--depth", "0"], "depth must be at least 1")])
def test_a_bad_value_exits_with_a_message_naming_the_option(argv: list[str], option: str,
                                                            capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.parse(Outer, argv)
    assert exit_.value.code == 2 and option in capsys.readouterr().err


def test_every_script_lists_every_option_in_its_help(capsys: pytest.CaptureFixture, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    scripts = Path(__file__).resolve().parents[1] / "scripts"
    for name in ("benchmark", "design", "sysid", "ude"):
        spec = importlib.util.spec_from_file_location(f"help_{name}", scripts / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, spec.name, module)
        spec.loader.exec_module(module)
        text = help_text(capsys, lambda: module.main(["--help"]))  # noqa: B023
        configs = {"benchmark": ["BenchmarkConfig"], "design": ["DesignScriptConfig", "DesignConfig"],
                   "sysid": ["SysIDConfig", "Options"], "ude": ["UdeConfig"]}[name]
        for config in configs:
            kind = getattr(module, config)
            for flag in flags(kind):
                assert flag in text, (name, flag)
    text = help_text(capsys, lambda: train_script.main(["--help"]))
    for flag in ["--agent", "--out", "--env-kwargs", "--preset", "--episodes", "--resume", "--quiet",
                 *flags(neural_ode.NeuralOdeConfig)]:
        assert flag in text, flag
    assert "--no-resume" not in text and "--adjoint, --no-adjoint" in text
    assert "L-BFGS steps after Adam" in text and "replaced by the tuned ones of the environment's card" in text


def test_train_options_given_replace_the_tuned_defaults() -> None:
    tuned = neural_ode.default_config("DiffIsochronism-v0")
    assert tuned.symmetric and tuned.iterations != 7
    for argv in (["DiffIsochronism-v0", "--iterations", "7", "--no-symmetric", "--quiet"],
                 ["--iterations", "7", "--quiet", "DiffIsochronism-v0", "--no-symmetric"]):
        arguments = train_script.parse_arguments(argv)
        assert arguments.quiet and not arguments.resume
        assert arguments.neural_ode == dataclasses.replace(tuned, iterations=7, symmetric=False)
    assert train_script.parse_arguments(["DiffIsochronism-v0"]).neural_ode == tuned
