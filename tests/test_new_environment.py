"""An environment added from outside the package (tests/oscillator.py: a module and its card) runs everywhere.

Nothing in ``diffenvs`` or ``agents`` names it: the conformance suite picks it up from the
registry (tests/test_conformance.py), and here the agents and the benchmark run on it.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import oscillator

from agents import benchmark, neural_ode, registry, rl
from agents.cards import card
from agents.registry import Budget

ENV_ID = oscillator.ENV_ID


def test_its_card_is_read_by_the_generic_layers() -> None:
    assert card(ENV_ID) is oscillator.CARD
    assert benchmark.protocol(ENV_ID).episodes == 2
    assert benchmark.budget("quick", ENV_ID, "neural-ode") == Budget(160, 30.0, 80)
    assert benchmark.budget("full", ENV_ID, "ppo") == benchmark.DEFAULT_BUDGETS["full"]["rl"]  # nothing set: the default
    assert neural_ode.default_config(ENV_ID).batch_size == 4
    # the agents that need nothing more than a definition apply; those that need a reference or a linear system do not
    assert set(registry.applicable(ENV_ID)) == {"neural-ode", "neural-ode-default", "shac", "es", "cma-es", "ppo", "sac", "td3"}


def test_one_neural_ode_training_step() -> None:
    config = neural_ode.default_config(ENV_ID)
    result = neural_ode.train(ENV_ID, config.__class__(**{**config.__dict__, "iterations": 1}), progress=False)
    assert len(result.history) == 1 and math.isfinite(result.history[0]["loss"])
    assert result.transitions == 4 * oscillator.DampedOscillator().max_steps


def test_one_rl_step() -> None:
    result = rl.train(ENV_ID, "td3", Budget(50, eval_every=50), eval_episodes=1)
    assert result.transitions == 50 and len(result.curve) == 1 and math.isfinite(result.curve[0]["cost"])


def test_a_one_run_benchmark_with_its_report(tmp_path: Path) -> None:
    config = benchmark.BenchmarkConfig(envs=(ENV_ID,), agents=("neural-ode",), seeds=1, quick=True, out=str(tmp_path),
                                       workers=1, progress=False)
    outcome = benchmark.run_benchmark(config, log=lambda line: None)
    assert not outcome["failures"] and len(outcome["results"]) == 1
    run = outcome["results"][0]
    assert run["env_id"] == ENV_ID and run["transitions"] == 160 and np.isfinite(run["final_cost"])
    assert outcome["references"][ENV_ID]["optimum"] is None  # no analytic answer on its card
    assert f"| {ENV_ID} | neural-ode |" in (tmp_path / "table.md").read_text()
