"""SHAC: its TD(lambda) targets by hand, its improvement on a tiny budget, its place in the benchmark."""

from __future__ import annotations

import math

import pytest
import torch

import diffenvs
from agents import registry
from agents.shac import ShacConfig, lambda_returns, train
from diffenvs.envs.cartpole import Cartpole


def test_lambda_returns_equal_a_hand_computation_on_three_steps() -> None:
    gamma, lam = 0.9, 0.5
    r = torch.tensor([[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]])
    v = torch.tensor([[10.0, 10.0], [20.0, 20.0], [30.0, 30.0]])  # V(o_1), V(o_2), V(o_3)
    ended = torch.tensor([[False, False], [False, True], [False, False]])  # column 2: the episode ends at step 2
    # column 1, backwards: G2 = 3 + 0.9 * 30 = 30; G1 = 2 + 0.9 * (0.5 * 20 + 0.5 * 30) = 24.5;
    # G0 = 1 + 0.9 * (0.5 * 10 + 0.5 * 24.5) = 16.525
    # column 2: G2 = 30 (as column 1); G1 = 2 (ended: nothing follows); G0 = 1 + 0.9 * (0.5 * 10 + 0.5 * 2) = 6.4
    expected = torch.tensor([[16.525, 6.4], [24.5, 2.0], [30.0, 30.0]])
    torch.testing.assert_close(lambda_returns(r, v, ended, gamma, lam), expected)
    # lambda = 1: the discounted return to the window's end and its bootstrap; lambda = 0: one-step targets
    torch.testing.assert_close(lambda_returns(r, v, ended, gamma, 1.0)[0, 0], torch.tensor(1 + 0.9 * 2 + 0.81 * 3 + 0.729 * 30))
    torch.testing.assert_close(lambda_returns(r, v, ended, gamma, 0.0), r + gamma * v * (~ended))


def test_shac_improves_the_swing_up_on_a_tiny_budget() -> None:
    """20 windows of the paper's 32 steps over 16 cartpoles (five 100-step episodes in windows of 32, 32, 32 and 4
    steps: 8,000 transitions) cut the swing-up's quadratic cost by 40% (about half: 1047 to 518)."""
    problem = Cartpole(cost="quadratic")
    x0 = torch.zeros(8, 4)
    x0[:, 2] = math.pi + torch.linspace(-0.05, 0.05, 8)
    costs = []

    def record(iteration, metrics, actor) -> bool:
        if iteration in (0, 19):
            with torch.no_grad():
                costs.append(diffenvs.rollout(problem, actor, x0).costs.mean().item())
        return False

    config = ShacConfig(iterations=20, num_envs=16, horizon=32)
    result = train("DiffCartpole-v0", config, {"cost": "quadratic"}, callback=record, progress=False)
    assert result.transitions == 5 * 16 * 100
    assert costs[1] < 0.6 * costs[0]


def test_shac_is_a_benchmark_agent_on_every_environment() -> None:
    agent = registry.get("shac")
    assert agent.family == "gradient"
    for env_id in diffenvs.ENV_IDS:
        assert "shac" in registry.applicable(env_id)


@pytest.mark.parametrize("field, value", [("num_envs", 0), ("gamma", 1.5), ("lam", -0.1), ("compile", "yes"),
                                          ("actor_learning_rate", 0.0), ("betas", (0.9, 1.0))])
def test_bad_settings_name_the_field(field, value) -> None:
    with pytest.raises(ValueError, match=field):
        ShacConfig(**{field: value})


def test_the_budget_counts_the_short_last_window() -> None:
    """100-step episodes in windows of 32 take 4 windows (32, 32, 32, 4): 64 x 100 transitions per 4 windows."""
    from agents.registry import Budget
    from agents.shac import budget_config

    config = budget_config(Budget(64 * 100 * 10), 0, 100)
    assert config.iterations == 40  # ten episodes: every transition of the budget used, none more


def test_in_the_benchmark_shac_trains_on_the_critics_objective_and_is_scored_on_the_default() -> None:
    """On the swing-up the card gives critic-based learners the shaped terminal cost; the curve scores the default."""
    from agents.registry import Budget
    from agents.rl import training_objective

    scored = []

    def curve_cost(policy) -> float:
        scored.append(policy)
        return 1.0

    trained = registry.get("shac").train("DiffCartpole-v0", {}, 0, Budget(64 * 100, eval_every=64 * 100), curve_cost)
    assert trained.details["trained_on"] == training_objective("DiffCartpole-v0", "shac").label \
        == "terminal, shaped (gamma 0.99)"
    assert trained.transitions == 64 * 100 and len(scored) == len(trained.curve) >= 1
