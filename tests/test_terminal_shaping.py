r"""The swing-ups' shaped terminal cost and Zermelo's random starts, on every face.

``cost="terminal-shaped"`` (the cartpole and the double pendulum) pays the terminal cost
:math:`c` as :math:`r_k = c(s_k) - \\gamma c(s_{k+1})` before the last step and
:math:`c(s_{K-1}) - c(s_K)` at it, so that :math:`\\sum_k \\gamma^k r_k = c(s_0) - \\gamma^{K-1} c(s_K)`:
checked here on the Gymnasium face, the vector face and the gradient path (per step and the
whole-horizon adjoint), with its gradient. Zermelo's start box: the draws, the faces, the
bad input, and Pontryagin's quadrature optimum from random starts; its ``cost="completion-shaped"``,
whose return is :math:`C(s_0)` minus the default cost with :math:`C = x + \Delta x(y)`.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import diffenvs
from agents import analytic
from agents.benchmark.config import TEST_SEED, VALIDATION_SEED, check_starts
from agents.cards import card
from agents.cards import zermelo as zermelo_card
from agents.episodes import start_states
from diffenvs.core.numerics import SCALAR, TORCH
from diffenvs.envs.cartpole import Cartpole
from diffenvs.envs.double_pendulum import DoublePendulum
from diffenvs.envs.zermelo import Zermelo, straight_across_deviation

SWING_UPS = {"DiffCartpole-v0": Cartpole, "DiffDoublePendulum-v0": DoublePendulum}


def swing_up_cost(problem, states: torch.Tensor) -> torch.Tensor:
    """The terminal cost c of physical states ``(..., n)``."""
    return problem.swing_up_cost(states.unbind(-1), TORCH)


@pytest.mark.parametrize("gamma", [1.0, 0.98, 0.9])
@pytest.mark.parametrize("env_id", SWING_UPS)
def test_the_shaped_return_telescopes_to_the_scored_cost(env_id: str, gamma: float) -> None:
    """On the gradient path: every step pays c(s_k) - gamma c(s_k+1) (the last c(s_K-1) - c(s_K)), the discounted
    return is c(s_0) - gamma^(K-1) c(s_K), and the default objective's cost is c(s_K), from the same states."""
    shaped = SWING_UPS[env_id](cost="terminal-shaped", discount=gamma, max_steps=40)
    scored = SWING_UPS[env_id](max_steps=40)
    generator = torch.Generator().manual_seed(3)
    x0 = torch.tensor(shaped.initial_state([0.5] * shaped.state_dim, None, TORCH), dtype=torch.float64).repeat(4, 1)
    x0 = x0 + 0.3 * torch.randn(x0.shape, dtype=torch.float64, generator=generator)
    controls = shaped.max_force * torch.randn(40, 4, 1, dtype=torch.float64, generator=generator).tanh()
    trajectory = diffenvs.rollout(shaped, controls, x0)
    reference = diffenvs.rollout(scored, controls, x0)
    torch.testing.assert_close(trajectory.states, reference.states, rtol=0, atol=0)
    c = swing_up_cost(shaped, trajectory.states)  # (K + 1, B)
    factors = torch.full((40, 1), gamma, dtype=torch.float64)
    factors[-1] = 1.0
    torch.testing.assert_close(trajectory.rewards, c[:-1] - factors * c[1:], rtol=1e-12, atol=1e-12)
    discounts = gamma ** torch.arange(40, dtype=torch.float64)[:, None]
    torch.testing.assert_close((discounts * trajectory.rewards).sum(0), c[0] - gamma ** 39 * reference.costs,
                               rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(reference.costs, c[-1], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("env_id", SWING_UPS)
def test_the_faces_pay_the_same_shaped_rewards(env_id: str) -> None:
    """The Gymnasium face (floats), the vector face (numpy rows) and the gradient path (tensors) take the same steps
    and pay the same shaped rewards."""
    kwargs = {"cost": "terminal-shaped", "discount": 0.95, "max_steps": 30}
    actions = np.sin(np.arange(30) / 3.0).astype(np.float32)[:, None]
    env = gym.make(env_id, **kwargs)
    env.reset(seed=5)
    start = torch.tensor(env.unwrapped.state, dtype=torch.float64).unsqueeze(0)
    rewards = []
    for action in actions:
        _, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
    assert terminated and not truncated
    vector = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point", **kwargs)
    vector.reset(seed=5)
    vector_rewards = [vector.step(np.repeat(action[None], 2, 0))[1] for action in actions]
    problem = env.unwrapped.problem
    trajectory = diffenvs.rollout(problem, torch.tensor(actions, dtype=torch.float64)[:, None] * problem.max_force, start)
    np.testing.assert_allclose(np.array(rewards), trajectory.rewards[:, 0].numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.array(vector_rewards)[:, 0], np.array(rewards), rtol=1e-6, atol=1e-9)


def test_the_whole_horizon_adjoint_pays_the_shaped_rewards() -> None:
    """The memory-light feedback path (one adjoint solve over the horizon) pays the per-step path's shaped rewards and
    gradients."""
    problem = Cartpole(cost="terminal-shaped", discount=0.9, max_steps=10)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    policy = torch.nn.Sequential(net, torch.nn.Tanh())  # a force of at most 1 N: inside the bounds

    x0 = torch.tensor([[0.1, 0.0, 2.9, 0.3], [-0.2, 0.1, 3.3, -0.5]], dtype=torch.float64)
    tolerance = dict(rtol=1e-10, atol=1e-12)
    runs = []
    for solver in (diffenvs.Adaptive(**tolerance), diffenvs.Adjoint(**tolerance)):
        trajectory = diffenvs.rollout(problem, policy, x0, control="feedback", solver=solver)
        runs.append((trajectory, torch.autograd.grad(trajectory.costs.sum(), list(net.parameters()))))
    (direct, direct_grads), (adjoint, adjoint_grads) = runs
    torch.testing.assert_close(adjoint.rewards, direct.rewards, rtol=1e-6, atol=1e-9)
    for a, b in zip(adjoint_grads, direct_grads):
        assert b.abs().sum() > 0
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("env_id", SWING_UPS)
def test_gradcheck_of_a_shaped_rollout(env_id: str) -> None:
    problem = SWING_UPS[env_id](cost="terminal-shaped", discount=0.9, max_steps=4)
    x0 = torch.tensor(problem.initial_state([0.3] * problem.state_dim, None, TORCH), dtype=torch.float64)
    x0 = (x0.repeat(2, 1) + 0.1).requires_grad_(True)
    controls = (5.0 * torch.randn(4, 2, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    controls.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: diffenvs.rollout(problem, b, a).rewards, (x0, controls), eps=1e-6,
                                    atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("env_id", SWING_UPS)
@pytest.mark.parametrize("discount", [0.0, -0.5, 1.5, math.nan, math.inf, True, "0.9"])
def test_a_bad_discount_is_refused(env_id: str, discount: object) -> None:
    with pytest.raises(ValueError, match="discount"):
        SWING_UPS[env_id](cost="terminal-shaped", discount=discount)


@pytest.mark.parametrize("env_id", SWING_UPS)
def test_the_swing_up_critics_train_on_the_shaped_cost_for_their_own_discount(env_id: str) -> None:
    from agents import rl, shac
    from agents.objectives import training_objective

    for agent in ("ppo", "sac", "td3", "shac"):
        objective = training_objective(env_id, agent)
        gamma = shac.card_config(env_id).gamma if agent == "shac" else rl.hyperparameters(env_id, agent).gamma
        assert objective.env_kwargs == {"cost": "terminal-shaped", "discount": 0.99 if gamma is None else gamma}


# ---- Zermelo: the start box --------------------------------------------------------------
def test_zermelo_starts_fill_the_box_and_the_default_start_stays_the_origin() -> None:
    box = {"initial_x_spread": 0.5, "initial_y_spread": 0.4}
    states = start_states("DiffZermelo-v0", box, 200, seed=0)
    assert (np.abs(states[:, 0]) <= 0.5).all() and (states[:, 1] >= 0).all() and (states[:, 1] <= 0.4).all()
    assert states[:, 0].min() < -0.4 and states[:, 0].max() > 0.4 and states[:, 1].max() > 0.35
    assert len({tuple(s) for s in states}) == 200
    np.testing.assert_array_equal(start_states("DiffZermelo-v0", {}, 3, seed=0), np.zeros((3, 2)))
    vector = gym.make_vec("DiffZermelo-v0", num_envs=3, vectorization_mode="vector_entry_point", **box)
    observations, _ = vector.reset(seed=0)
    np.testing.assert_allclose(observations[:, :2], states[:3], rtol=1e-6, atol=1e-7)  # float32 observations
    np.testing.assert_array_equal(observations[:, 2], 0.0)  # t / T at the start
    x0 = torch.rand(1000, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    problem = Zermelo(**box)
    drawn = torch.stack(problem.initial_state(x0, problem.params, TORCH), -1)
    assert (drawn[:, 0].abs() <= 0.5).all() and (drawn[:, 1] >= 0).all() and (drawn[:, 1] <= 0.4).all()


def test_zermelo_observes_the_time_fraction() -> None:
    env = gym.make("DiffZermelo-v0")
    observation, _ = env.reset(seed=0)
    assert env.observation_space.shape == (3,) and observation[2] == 0.0
    for k in range(1, 11):
        observation, *_ = env.step(np.array([0.5], np.float32))
        assert observation[2] == pytest.approx(k / 500, abs=1e-7)


@pytest.mark.parametrize("name, value", [("initial_x_spread", -0.1), ("initial_x_spread", math.nan),
                                         ("initial_y_spread", -0.1), ("initial_y_spread", 2.0),
                                         ("initial_y_spread", math.inf), ("initial_y_spread", True)])
def test_zermelo_refuses_a_bad_start_box(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        Zermelo(**{name: value})


def test_zermelo_protocol_draws_distinct_validation_and_test_starts() -> None:
    protocol = card("DiffZermelo-v0").protocol
    assert protocol.episodes >= 100 and protocol.env_kwargs["initial_y_spread"] > 0
    check_starts(protocol.episodes)
    validation = start_states("DiffZermelo-v0", protocol.env_kwargs, protocol.episodes, seed=VALIDATION_SEED)
    test = start_states("DiffZermelo-v0", protocol.env_kwargs, protocol.episodes, seed=TEST_SEED)
    assert not {tuple(s) for s in validation} & {tuple(s) for s in test}
    assert len({tuple(s) for s in test}) == protocol.episodes


def test_pontryagin_quadrature_is_exact_from_random_starts() -> None:
    """The card's reference optimum int sqrt(w^2 - v^2)/v dy from y0 (the cost x(l) - x0) matches a Pontryagin
    feedback rollout (the heading inside RK4, the crossing located in the step) from five of the protocol's random
    starts, start by start."""
    protocol = card("DiffZermelo-v0").protocol.env_kwargs
    starts = start_states("DiffZermelo-v0", protocol, 5, seed=TEST_SEED)
    answer = analytic.reference("DiffZermelo-v0", protocol)
    problem = Zermelo(**protocol, max_steps=300)
    with torch.no_grad():
        trajectory = diffenvs.rollout(problem, zermelo_card.PontryaginPolicy(problem),
                                      torch.tensor(starts, dtype=torch.float64), control="feedback")
    assert bool(trajectory.done[-1].all())
    for i, start in enumerate(starts):
        optimum = answer.analytic(starts[i:i + 1], TEST_SEED + i)["optimum"]
        assert optimum == pytest.approx(zermelo_card.pontryagin_deviation(problem.params, start[1]), rel=1e-14)
        assert trajectory.costs[i].item() == pytest.approx(optimum, abs=1e-6)
    # the quadrature's integrand is sqrt(w^2 - v^2)/v: a closed form of Pontryagin's slope
    params = problem.params
    y = np.linspace(0.0, 2.0, 9)
    heading = zermelo_card.pontryagin_heading(torch.as_tensor(y), params, TORCH).numpy()
    w = zermelo_card.wind(y, params, np)
    slope = (params.boat_speed * np.cos(heading) + w) / (params.boat_speed * np.sin(heading))
    np.testing.assert_allclose(slope, np.sqrt(w * w - params.boat_speed ** 2) / params.boat_speed, rtol=1e-12)


# ---- Zermelo: the deviation shaped by the completed crossing ------------------------------
@pytest.mark.parametrize("action", [1.0, 0.95, 0.5, 0.0])
def test_zermelo_shaped_return_is_the_start_completion_minus_the_cost_on_every_face(action: float) -> None:
    """cost='completion-shaped' pays C(s_k) - C(s_k+1), C = x + dx(y): its return is C(s_0) minus the default cost, on
    the Gymnasium face, the vector face and the gradient path, whether the boat crosses (0.5, 0.0) or the time limit
    comes first (1.0 upstream, 0.95)."""
    box = {"initial_y_spread": 0.5}
    action = float(np.float32(action))
    returns = {}
    for cost in ("deviation", "completion-shaped"):
        env = gym.make("DiffZermelo-v0", cost=cost, **box)
        env.reset(seed=4)
        start = env.unwrapped.state.copy()
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(np.array([action], np.float32))
            total += reward
            done = terminated or truncated
        returns[cost] = total
    problem = Zermelo(**box)
    completion = start[0] + straight_across_deviation(start[1], problem.params, SCALAR)
    assert returns["completion-shaped"] == pytest.approx(completion + returns["deviation"], rel=1e-12, abs=1e-12)
    assert terminated == (action < 0.9)

    shaped = Zermelo(cost="completion-shaped", **box)
    vector = gym.make_vec("DiffZermelo-v0", num_envs=2, vectorization_mode="vector_entry_point", cost="completion-shaped",
                          **box)
    vector.reset(seed=4)
    totals, ended = np.zeros(2), np.zeros(2, bool)
    for _ in range(shaped.max_steps):
        _, reward, terminated, truncated, _ = vector.step(np.full((2, 1), action, np.float32))
        totals += np.where(ended, 0.0, reward)
        ended |= terminated | truncated
        if ended.all():
            break
    assert totals[0] == pytest.approx(returns["completion-shaped"], rel=1e-12, abs=1e-12)
    heading = shaped.control_from_action((action,), SCALAR)[0]
    trajectory = diffenvs.rollout(shaped, torch.full((shaped.max_steps, 1, 1), heading, dtype=torch.float64),
                                  torch.tensor(start[None], dtype=torch.float64))
    assert -trajectory.costs.item() == pytest.approx(returns["completion-shaped"], rel=1e-12, abs=1e-12)


def test_zermelo_shaped_step_pays_the_completed_crossings_decrease() -> None:
    """Per step: heading upstream at the near bank loses about (w - v) dt, straight across loses nothing, Pontryagin's
    heading gains; with the default reward upstream pays least (dx = (w - v) dt, the others more)."""
    problem, params = Zermelo(cost="completion-shaped"), Zermelo().params
    start = torch.tensor([[0.0, 0.2]], dtype=torch.float64)
    heading = {"upstream": math.pi, "across": math.pi / 2,
               "pontryagin": float(zermelo_card.pontryagin_heading(0.2, params, SCALAR))}
    def first_reward(episode: Zermelo, u: float) -> float:
        controls = torch.full((1, 1, 1), u, dtype=torch.float64)
        return diffenvs.rollout(episode, controls, start, steps=1).rewards[0, 0].item()

    shaped = {name: first_reward(problem, u) for name, u in heading.items()}
    plain = {name: first_reward(Zermelo(), u) for name, u in heading.items()}
    drift = (zermelo_card.wind(0.2, params, SCALAR) - params.boat_speed) * problem.dt
    assert shaped["upstream"] == pytest.approx(-drift, rel=1e-3) and abs(shaped["across"]) < 1e-9
    assert shaped["pontryagin"] > 0
    assert plain["upstream"] == pytest.approx(-drift, rel=1e-3) and plain["upstream"] > plain["pontryagin"]


def test_zermelo_refuses_an_unknown_cost() -> None:
    with pytest.raises(ValueError, match="cost"):
        Zermelo(cost="shaped")
