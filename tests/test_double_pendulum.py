"""The double pendulum on a cart against exact answers: energy, equilibria, linearisation, limits, gradients."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import diffenvs
from agents import analytic
from agents.cards import card, presets
from diffenvs.core.numerics import TORCH
from diffenvs.envs.cartpole import Cartpole, CartpoleParams
from diffenvs.envs.double_pendulum import DoublePendulum, DoublePendulumParams

ENV_ID = "DiffDoublePendulum-v0"
#: starts (x, θ1, θ2, ẋ, θ̇1, θ̇2) of large, chaotic motion: a pole over the top, spinning poles, a fast cart
STARTS = torch.tensor([[0.0, 2.0, -1.0, 0.0, 0.0, 0.0],
                       [0.3, math.pi - 0.3, 0.5, 1.0, 3.0, -4.0],
                       [-1.0, 0.1, 0.2, -2.0, 6.0, 0.0]], dtype=torch.float64)


def mass_matrix(x: torch.Tensor, p: DoublePendulumParams) -> torch.Tensor:
    """M(q) of the Lagrangian, built as a matrix (``(batch, 3, 3)``)."""
    theta1, theta2 = x[:, 1], x[:, 2]
    mu = p.pole1_mass + p.pole2_mass
    b = mu * p.pole1_length * torch.cos(theta1)
    c = p.pole2_mass * p.pole2_length * torch.cos(theta2)
    e = p.pole2_mass * p.pole1_length * p.pole2_length * torch.cos(theta1 - theta2)
    a = torch.full_like(b, p.cart_mass + mu)
    d = torch.full_like(b, mu * p.pole1_length**2)
    h = torch.full_like(b, p.pole2_mass * p.pole2_length**2)
    return torch.stack([torch.stack([a, b, c], -1), torch.stack([b, d, e], -1), torch.stack([c, e, h], -1)], -2)


def energy(states: torch.Tensor, problem: DoublePendulum) -> torch.Tensor:
    return problem.energy(states.unbind(-1), problem.params, TORCH)


def test_energy_is_conserved_without_force() -> None:
    """RK4 in float64 over 4 s of chaotic motion: the relative drift is small and falls like dt^4."""
    drifts = []
    for dt in (0.005, 0.0025):
        problem = DoublePendulum(dt=dt, max_steps=round(4.0 / dt))
        trajectory = diffenvs.rollout(problem, torch.zeros(problem.max_steps, len(STARTS), 1, dtype=torch.float64),
                                      STARTS)
        e = energy(trajectory.states, problem)
        drifts.append(float(((e - e[0]).abs().max(0).values / e[0].abs()).max()))
    assert drifts[0] < 1e-4, drifts  # measured 1.8e-5 (the relative drift of the start with the most)
    assert drifts[1] < drifts[0] / 8, drifts  # fourth order: a factor 16 per halving


def test_the_force_does_the_work() -> None:
    """dE/dt = f ẋ exactly (autograd of the energy along the vector field), at random states and forces."""
    problem = DoublePendulum()
    generator = torch.Generator().manual_seed(1)
    x = (4.0 * torch.rand(64, 6, generator=generator, dtype=torch.float64) - 2.0).requires_grad_(True)
    u = 20.0 * torch.randn(64, 1, generator=generator, dtype=torch.float64)
    (gradient,) = torch.autograd.grad(energy(x, problem).sum(), x)
    power = (gradient * problem.dynamics(0.0, x, u)).sum(-1)
    torch.testing.assert_close(power, u[:, 0] * x[:, 3].detach(), rtol=1e-10, atol=1e-10)


def test_closed_form_solve_equals_the_mass_matrix_solve() -> None:
    """Cramer's rule in the definition against torch.linalg.solve of M(q) q'' = tau, tau built independently."""
    p = DoublePendulumParams(cart_mass=1.3, pole1_mass=0.7, pole2_mass=0.4, pole1_length=0.6, pole2_length=0.9)
    problem = DoublePendulum(params=p)
    generator = torch.Generator().manual_seed(2)
    x = 6.0 * torch.rand(128, 6, generator=generator, dtype=torch.float64) - 3.0
    u = 30.0 * torch.randn(128, 1, generator=generator, dtype=torch.float64)
    mu, m2, l1, l2, g = p.pole1_mass + p.pole2_mass, p.pole2_mass, p.pole1_length, p.pole2_length, p.gravity
    _, t1, t2, _, w1, w2 = x.unbind(-1)
    tau = torch.stack([u[:, 0] + mu * l1 * torch.sin(t1) * w1**2 + m2 * l2 * torch.sin(t2) * w2**2,
                       mu * g * l1 * torch.sin(t1) - m2 * l1 * l2 * torch.sin(t1 - t2) * w2**2,
                       m2 * g * l2 * torch.sin(t2) + m2 * l1 * l2 * torch.sin(t1 - t2) * w1**2], -1)
    expected = torch.linalg.solve(mass_matrix(x, p), tau)
    derivative = problem.dynamics(0.0, x, u)
    torch.testing.assert_close(derivative[:, :3], x[:, 3:], rtol=0, atol=0)
    torch.testing.assert_close(derivative[:, 3:], expected, rtol=1e-11, atol=1e-11)
    # the same code on Python floats (the Gymnasium face) gives the same numbers
    scalar = problem.vector_field(0.0, tuple(x[0].tolist()), (float(u[0, 0]),), p, diffenvs.core.numerics.SCALAR)
    np.testing.assert_allclose(scalar, derivative[0].numpy(), rtol=1e-13, atol=1e-13)


def test_linearisation_about_upright_by_autograd_matches_the_closed_form() -> None:
    p = DoublePendulumParams(cart_mass=1.3, pole1_mass=0.7, pole2_mass=0.4, pole1_length=0.6, pole2_length=0.9)
    problem = DoublePendulum(params=p)

    def field(state_and_force: torch.Tensor) -> torch.Tensor:
        return problem.dynamics(0.0, state_and_force[:6], state_and_force[6:])

    jacobian = torch.autograd.functional.jacobian(field, torch.zeros(7, dtype=torch.float64)).numpy()
    a, b = problem.linearisation()
    np.testing.assert_allclose(jacobian[:, :6], a, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(jacobian[:, 6:], b, rtol=1e-13, atol=1e-13)
    # the hand-derived entries, independently of the method
    big_m, m1, m2, l1, l2, g = p.cart_mass, p.pole1_mass, p.pole2_mass, p.pole1_length, p.pole2_length, p.gravity
    mu = m1 + m2
    assert a[3, 1] == pytest.approx(-mu * g / big_m) and a[3, 2] == 0.0
    assert a[4, 1] == pytest.approx((big_m + m1) * mu * g / (big_m * m1 * l1))
    assert a[4, 2] == pytest.approx(-m2 * g / (m1 * l1))
    assert a[5, 1] == pytest.approx(-mu * g / (m1 * l2)) and a[5, 2] == pytest.approx(mu * g / (m1 * l2))
    assert b[:, 0].tolist() == pytest.approx([0, 0, 0, 1 / big_m, -1 / (big_m * l1), 0])
    # upright is unstable (two real positive rates), and the pair's product is det of the angle block
    rates = np.sort(np.linalg.eigvals(a).real)[-2:]
    assert (rates > 1.0).all()
    assert rates[0] ** 2 * rates[1] ** 2 == pytest.approx(np.linalg.det(a[4:, 1:3]), rel=1e-9)


def test_small_motion_near_upright_follows_the_linear_model() -> None:
    problem = DoublePendulum(dt=0.005, max_steps=100)  # 0.5 s
    a, _ = problem.linearisation()
    s0 = np.array([0.0, 1e-6, -2e-6, 0.0, 0.0, 1e-6])
    trajectory = diffenvs.rollout(problem, torch.zeros(100, 1, 1, dtype=torch.float64), torch.tensor(s0[None]))
    import scipy.linalg

    expected = scipy.linalg.expm(a * problem.horizon) @ s0
    np.testing.assert_allclose(trajectory.states[-1, 0].numpy(), expected, rtol=1e-5, atol=1e-13)


def test_hanging_and_upright_are_equilibria_and_hanging_is_stable() -> None:
    problem = DoublePendulum()
    rest = torch.tensor([[0.7, math.pi, math.pi, 0, 0, 0], [0.7, 0, 0, 0, 0, 0], [0.7, math.pi, -math.pi, 0, 0, 0]],
                        dtype=torch.float64)
    assert problem.dynamics(0.0, rest, torch.zeros(3, 1, dtype=torch.float64)).abs().max() < 1e-14
    near = torch.tensor([[0.0, math.pi - 0.01, math.pi + 0.01, 0, 0, 0]], dtype=torch.float64)
    swing = diffenvs.rollout(problem, torch.zeros(200, 1, 1, dtype=torch.float64), near).states[..., 1:3]
    assert (swing - math.pi).abs().max() < 0.03  # a small oscillation about hanging (energy bounds it)


def test_a_light_second_pole_leaves_the_cartpole() -> None:
    """m2 -> 0: the cart and the first pole obey the cartpole's equations (diffenvs.envs.cartpole)."""
    p = DoublePendulumParams(cart_mass=1.2, pole1_mass=0.8, pole2_mass=1e-9, pole1_length=0.7)
    problem = DoublePendulum(params=p)
    cartpole = Cartpole(params=CartpoleParams(cart_mass=1.2, pole_mass=0.8, pole_length=0.7, gravity=p.gravity))
    generator = torch.Generator().manual_seed(3)
    x = 4.0 * torch.rand(32, 6, generator=generator, dtype=torch.float64) - 2.0
    u = 10.0 * torch.randn(32, 1, generator=generator, dtype=torch.float64)
    double = problem.dynamics(0.0, x, u)
    single = cartpole.dynamics(0.0, x[:, [0, 3, 1, 4]], u)  # cartpole state (x, ẋ, φ, φ̇)
    torch.testing.assert_close(double[:, [3, 4]], single[:, [1, 3]], rtol=1e-7, atol=1e-7)


def test_mirror_symmetry() -> None:
    """x -> -x, θ -> -θ, f -> -f maps solutions to solutions: the vector field is odd."""
    problem = DoublePendulum()
    x = torch.randn(16, 6, dtype=torch.float64)
    u = torch.randn(16, 1, dtype=torch.float64)
    torch.testing.assert_close(problem.dynamics(0.0, -x, -u), -problem.dynamics(0.0, x, u), rtol=1e-14, atol=1e-14)


def test_nearby_starts_separate_chaos() -> None:
    """Without force, two starts 1e-9 rad apart at high energy separate a million-fold within 10 s."""
    problem = DoublePendulum(dt=0.01, max_steps=1000)
    x0 = STARTS[1:2].repeat(2, 1)
    x0[1, 2] += 1e-9
    states = diffenvs.rollout(problem, torch.zeros(1000, 2, 1, dtype=torch.float64), x0).states
    gap = (states[:, 0, 1:3] - states[:, 1, 1:3]).abs().amax(-1)
    assert gap[100] < 1e-8 and gap[-1] > 1e-3  # measured: 2.5e-9 after 1 s, 3e-2 after 10 s


@pytest.mark.parametrize("cost", ["terminal", "quadratic"])
def test_gradcheck_of_a_short_rollout(cost: str) -> None:
    problem = DoublePendulum(cost=cost, max_steps=4)
    x0 = STARTS[:2].clone().requires_grad_(True)
    controls = (10.0 * torch.randn(4, 2, 1, dtype=torch.float64)).requires_grad_(True)
    masses = torch.tensor([0.5, 0.7], dtype=torch.float64, requires_grad=True)

    def total(x0, controls, masses):
        params = dataclasses.replace(problem.params, pole1_mass=masses[0], pole2_mass=masses[1])
        trajectory = diffenvs.rollout(problem, controls, x0, params=params)
        return trajectory.rewards.sum(0), trajectory.states[-1]

    assert torch.autograd.gradcheck(total, (x0, controls, masses), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_faces_agree_on_a_swing() -> None:
    """The Gymnasium face (floats) and the gradient path (tensors) take the same steps."""
    env = gym.make(ENV_ID)
    observation, _ = env.reset(seed=5)
    start = torch.tensor(env.unwrapped.state, dtype=torch.float64).unsqueeze(0)
    actions = np.sin(np.arange(200) / 7.0).astype(np.float32)[:, None]
    rewards = []
    for action in actions:
        observation, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward)
    assert terminated and not truncated
    problem = env.unwrapped.problem
    trajectory = diffenvs.rollout(problem, torch.tensor(actions, dtype=torch.float64)[:, None] * problem.max_force, start)
    np.testing.assert_allclose(env.unwrapped.state, trajectory.states[-1, 0].numpy(), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(np.array(rewards), trajectory.rewards[:, 0].numpy(), rtol=1e-6, atol=1e-9)


def test_the_card_and_the_lqr_reference() -> None:
    assert card(ENV_ID).env_id == ENV_ID and presets()["double-upright"][0] == ENV_ID
    swing_up = analytic.reference(ENV_ID)
    assert swing_up.policy is None and swing_up.analytic(np.zeros((1, 6)))["optimum"] == 0.0
    kwargs = presets()["double-upright"][1]
    answer = analytic.reference(ENV_ID, kwargs)
    problem = diffenvs.problem_of(ENV_ID, **kwargs)
    start = torch.tensor([[0.0, problem.initial_angle, problem.initial_angle, 0, 0, 0]], dtype=torch.float64)
    trajectory = diffenvs.rollout(problem, answer.policy, start)
    cost = float(-trajectory.rewards.sum())
    optimum = answer.analytic(start.numpy())["optimum"]
    # held controls on the nonlinear system: within a few per cent of the linear continuous-control optimum
    assert optimum <= cost < 1.05 * optimum
    assert trajectory.states[-1, 0, 1:3].abs().max() < 0.01  # both poles caught
    with pytest.raises(ValueError, match="analytic answer of DiffCartpole-v0 and DiffDoublePendulum-v0 only"):
        analytic.analytic_agent("lqr", "DiffZermelo-v0")
