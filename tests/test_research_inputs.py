"""The research scripts refuse bad arguments before any work, with an error that names the argument.

Each case was a bare exception raised after the work had started (``ZeroDivisionError``, ``OverflowError``,
a ``RuntimeError`` from torch, a NaN action): the scripts' configs and ``main`` now check first.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from agents.identification import MAX_SAMPLES, SysIDConfig
from studies.design import DesignConfig, optimal_design

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import design  # noqa: E402
import gradients  # noqa: E402
import sysid  # noqa: E402

QUICK = ["--quick", "--no-adjoint", "--horizons", "0.1"]


@pytest.mark.parametrize("env_id", ["DiffZermelo-v0", "DiffDecayDesign-v0", "DiffLinearSysID-v0"])
def test_gradient_study_refuses_environments_with_one_start_and_says_why(env_id):
    with pytest.raises(ValueError, match=f"envs: {env_id} starts every episode from one state.*variance is 0"):
        gradients.GradientStudyConfig(envs=(env_id,), horizons=(6.0,))


@pytest.mark.parametrize("field,value,match", [
    ("sizes", (0,), "sizes must be positive integers"),
    ("sizes", (16, -2), "sizes must be positive integers"),
    ("horizons", (float("inf"),), "horizons must be finite"),
    ("horizons", (0.001,), "horizons must be from half a step"),  # 0 steps of cartpole's 0.02 s
    ("horizons", (1e9,), "horizons must be from half a step to 100,000 steps"),
    ("sigma", float("inf"), "sigma must be a finite positive number"),
    ("envs", ("Cartpole-v9",), "envs must be environment ids"),
    ("env_kwargs", '{"params": {"gravityy": 1.62}}', "env-kwargs params of DiffCartpole-v0.*gravityy"),
    ("env_kwargs", '{"params": 3}', "env-kwargs params of DiffCartpole-v0 must be a JSON object"),
    ("env_kwargs", '{"pole_lenght": 0.5}', "env_kwargs .* refused by DiffCartpole-v0"),
    ("env_kwargs", '{"max_steps": 5}', "env_kwargs must not set max_steps"),
])
def test_gradient_study_config_names_the_bad_argument(field, value, match):
    settings = {"envs": ("DiffCartpole-v0",), "horizons": (0.1,), field: value}
    with pytest.raises(ValueError, match=match):
        gradients.GradientStudyConfig(**settings)


def test_gradient_study_takes_nested_params(tmp_path):
    results = gradients.main([*QUICK, "--envs", "DiffCartpole-v0", "--env-kwargs", '{"params": {"gravity": 1.62}}',
                              "--out", str(tmp_path / "study")])
    assert [row["steps"] for row in results["rows"]] == [5]


@pytest.mark.parametrize("arguments", [["--envs", "DiffZermelo-v0"], ["--sizes", "0"], ["--horizons", "inf"],
                                       ["--env-kwargs", '{"params": {"gravityy": 1}}']])
def test_gradient_script_exits_as_argparse_before_writing(tmp_path, capsys, arguments):
    out = tmp_path / "study"
    with pytest.raises(SystemExit) as exit_:
        gradients.main([*QUICK, "--envs", "DiffCartpole-v0", *arguments, "--out", str(out)])
    assert exit_.value.code == 2 and not out.exists()


def test_design_script_refuses_an_initial_time_beyond_t_max_before_any_work(tmp_path):
    out = tmp_path / "design"
    with pytest.raises(ValueError, match="--initial-time must be at most --t-max = 5 s"):
        design.main(["--initial-time", "1e9", "--out", str(out)])
    assert not out.exists()


def test_design_ascent_refuses_a_start_outside_its_interval():
    with pytest.raises(ValueError, match=r"initial_time must lie in \[0, t_max\]"):
        optimal_design(2.0, 1.0, 0.05, DesignConfig(initial_time=1e9), t_max=5.0)
    with pytest.raises(ValueError, match="start must lie"):
        optimal_design(np.array([2.0]), np.array([1.0]), 0.05, DesignConfig(), start=np.array([np.nan]), t_max=5.0)


def test_design_ascent_names_a_diverging_solver():
    """RK4 with 10 steps over [0, 1e9] s at a rate of 2/s (h θ = 2e8) overflows: a clear error, not a NaN design."""
    with pytest.raises(ValueError, match="information gain is not finite.*raise config.steps"):
        optimal_design(2.0, 1.0, 0.05, DesignConfig(initial_time=1e9), t_max=1e9)


@pytest.mark.parametrize("arguments,match", [(["--threads", "0"], "threads must be a positive integer"),
                                             (["--growth", "1e300"], "growth and epochs must keep every experiment"),
                                             (["--epochs", "100000"], "growth and epochs must keep every experiment")])
def test_sysid_script_refuses_before_any_work(tmp_path, arguments, match, capsys):
    out = tmp_path / "sysid"
    with pytest.raises(SystemExit) as exit_:
        sysid.main(["--runs", "2", "--epochs", "2", "--first-epoch", "6", "--progress", "0", *arguments,
                    "--out", str(out)])
    assert exit_.value.code == 2 and not out.exists()
    assert match in " ".join(capsys.readouterr().err.split())


def test_sysid_config_bounds_the_longest_experiment():
    SysIDConfig(first_epoch=MAX_SAMPLES, epochs=1)
    with pytest.raises(ValueError, match="growth and epochs"):
        SysIDConfig(first_epoch=MAX_SAMPLES, epochs=2, growth=1.5)
