"""Compute on equal footing: every agent reports the environment transitions its backward passes went through.

``details["backward_transitions"]`` counts, for a batch of B rollouts of h steps backpropagated once, B h (the
adjoint's backward solve over the same steps counts the same); agents that only roll out (RL, ES, CMA-ES) report 0.
The counts here are checked against the arithmetic of each agent's budget, batch and steps, and where the agent
calls ``Tensor.backward`` once per rollout batch, against the number of calls.
"""

from __future__ import annotations

import pytest
import torch

from agents import registry
from agents.evolution import EvolutionConfig, generation_transitions
from agents.neural_ode import NeuralOdeConfig, train
from agents.planning import PlannerConfig, backward_transitions, plan
from agents.registry import Budget
from agents.shac import ShacConfig
from agents.shac import train as train_shac
from diffenvs.envs.linear_sysid import LinearSysID

CARTPOLE, SHORT = "DiffCartpole-v0", {"max_steps": 10, "cost": "quadratic", "initial_angle": 0.1}


def no_curve(policy) -> float:
    return 0.0


@pytest.fixture
def backward_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the calls of ``torch.Tensor.backward`` while a test runs."""
    calls: list[int] = []
    original = torch.Tensor.backward

    def counted(self, *args, **kwargs):
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "backward", counted)
    return calls


# ---- the neural-ODE agent -----------------------------------------------------------------
def test_the_neural_ode_agent_counts_each_backpropagated_batch_of_rollouts() -> None:
    # the untuned agent: batch 1, rollouts of the horizon (10 steps); a budget of 120 transitions is 12 Adam steps
    trained = registry.get("neural-ode-default").train(CARTPOLE, SHORT, 0, Budget(120, eval_every=40), no_curve)
    assert trained.details["iterations"] == 12
    assert trained.details["backward_transitions"] == 12 * 1 * 10 == trained.transitions
    assert [p["backward_transitions"] for p in trained.curve] == [10.0, 50.0, 90.0, 120.0]
    assert all(p["backward_transitions"] == p["transitions"] for p in trained.curve)


@pytest.mark.parametrize("overrides", [{"iterations": 3, "lbfgs_steps": 1}, {"iterations": 2, "adjoint": True}],
                         ids=["adam-then-lbfgs", "adjoint"])
def test_every_loss_evaluation_of_adam_lbfgs_and_the_adjoint_is_counted(backward_calls: list[int],
                                                                        overrides: dict) -> None:
    config = NeuralOdeConfig(batch_size=2, learning_rate=0.02, **overrides)
    result = train(CARTPOLE, config, SHORT, progress=False)
    batch, steps = 2, 10
    # Adam: one batch per iteration; then every L-BFGS evaluation, each backpropagated once (the adjoint's backward
    # solve runs over the same 10 steps)
    assert [h["backward_transitions"] for h in result.history[:config.iterations]] == [
        batch * steps * (k + 1) for k in range(config.iterations)]
    assert result.history[-1]["backward_transitions"] == len(backward_calls) * batch * steps
    assert result.history[-1]["backward_transitions"] == result.history[-1]["transitions"]
    if config.lbfgs_steps:
        assert len(backward_calls) > config.iterations  # the L-BFGS step evaluated at least once


# ---- SHAC ----------------------------------------------------------------------------------
def test_shac_counts_the_windows_it_backpropagates_the_actor_through() -> None:
    # 10-step episodes in windows of 4: 4, 4, 2, then fresh starts and 4 again; 3 environments each
    config = ShacConfig(iterations=4, num_envs=3, horizon=4, critic_iterations=1, critic_minibatches=1, width=8)
    result = train_shac(CARTPOLE, config, SHORT, progress=False)
    assert [h["backward_transitions"] for h in result.history] == [12, 24, 30, 42]
    assert [h["transitions"] for h in result.history] == [12, 24, 30, 42]


def test_the_shac_agent_reports_the_count() -> None:
    # the paper's 64 environments, one window of the 10-step episode each iteration: 1280 transitions are 2 windows
    trained = registry.get("shac").train(CARTPOLE, SHORT, 0, Budget(1_280, eval_every=640), no_curve)
    assert trained.details["iterations"] == 2
    assert trained.details["backward_transitions"] == 2 * 64 * 10 == trained.transitions
    assert [p["backward_transitions"] for p in trained.curve] == [640.0, 1280.0]


# ---- differentiable planning ---------------------------------------------------------------
@pytest.mark.parametrize("stop_at", [None, 2])
def test_planning_counts_each_ascent_step_but_not_the_last_evaluation(backward_calls: list[int],
                                                                      stop_at: int | None) -> None:
    problem = LinearSysID(d=2, max_steps=6)
    runs, samples, steps = 3, 2, 6
    config = PlannerConfig(iterations=5, noise_samples=samples)
    callback = None if stop_at is None else (lambda i, metrics: i == stop_at)
    _, criteria = plan(problem, 0.5 * torch.eye(2, dtype=torch.float64).expand(runs, 2, 2),
                       torch.zeros(runs, 2, 2, dtype=torch.float64), steps, config, torch.Generator().manual_seed(0),
                       callback=callback)
    completed = 5 if stop_at is None else stop_at
    assert len(backward_calls) == completed
    assert backward_transitions(criteria, steps, config) == completed * runs * samples * steps


def test_planning_count_refuses_what_is_not_a_plan_s_criteria() -> None:
    with pytest.raises(ValueError, match="criteria"):
        backward_transitions(torch.zeros(3), 6, PlannerConfig())
    with pytest.raises(ValueError, match="steps"):
        backward_transitions(torch.zeros(3, 1), 0, PlannerConfig())


def test_the_planning_agent_reports_the_count() -> None:
    trained = registry.get("planning").train("DiffLinearSysID-v0", {}, 0, Budget(1), no_curve)
    assert trained.details["backward_transitions"] > 0


# ---- agents without a backward pass through the simulator ------------------------------------
@pytest.mark.parametrize("agent", ["es", "cma-es"])
def test_the_evolution_agents_report_no_backward_pass(agent: str) -> None:
    per_generation = generation_transitions(EvolutionConfig(strategy="cma-es" if agent == "cma-es" else "openai-es"),
                                            CARTPOLE, SHORT)
    trained = registry.get(agent).train(CARTPOLE, SHORT, 0, Budget(2 * per_generation, eval_every=per_generation),
                                        no_curve)
    assert trained.transitions == 2 * per_generation and trained.details["backward_transitions"] == 0
    assert [p["backward_transitions"] for p in trained.curve] == [0.0, 0.0]


def test_an_rl_agent_reports_no_backward_pass() -> None:
    from agents.rl import describe

    assert describe(CARTPOLE, "ppo")["backward_transitions"] == 0

