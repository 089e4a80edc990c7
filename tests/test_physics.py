"""Physics against exact answers."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import scipy.linalg
import scipy.special
import torch

import diffenvs
from diffenvs.envs.cartpole import Cartpole, CartpoleParams
from diffenvs.envs.isochronism import Isochronism, harmonic_force
from diffenvs.envs.linear_sysid import LinearSysID, jordan_matrix
from diffenvs.envs.zermelo import Zermelo


def cartpole_energy(states: torch.Tensor, p: CartpoleParams) -> torch.Tensor:
    r""":math:`E = \tfrac12 (M+m)\dot x^2 + mL\dot x\dot\phi\cos\phi + \tfrac12 mL^2\dot\phi^2 + mgL\cos\phi`."""
    _, v, phi, omega = states.unbind(-1)
    m, big_m, length, g = p.pole_mass, p.cart_mass, p.pole_length, p.gravity
    return (0.5 * (big_m + m) * v**2 + m * length * v * omega * torch.cos(phi)
            + 0.5 * m * length**2 * omega**2 + m * g * length * torch.cos(phi))


def test_cartpole_energy_is_conserved_without_force() -> None:
    x0 = torch.tensor([[0.0, 0.5, 3.0, 0.0], [1.0, -1.0, 0.5, 2.0]], dtype=torch.float64)
    drifts = []
    for dt in (0.02, 0.01):
        problem = Cartpole(dt=dt, max_steps=round(2.0 / dt))  # the same 2 s
        trajectory = diffenvs.rollout(problem, torch.zeros(problem.max_steps, 2, 1, dtype=torch.float64), x0)
        energy = cartpole_energy(trajectory.states, problem.params)
        drifts.append(float((energy - energy[0]).abs().max() / energy[0].abs().max()))
    assert drifts[0] < 1e-4
    assert drifts[1] < drifts[0] / 10  # RK4: the drift falls like dt^4 (a factor 16 here)
    # and the force does work: pushing changes it
    problem = Cartpole()
    pushed = diffenvs.rollout(problem, torch.full((100, 2, 1), 5.0, dtype=torch.float64), x0)
    assert (cartpole_energy(pushed.states, problem.params)[-1] - energy[0]).abs().min() > 1.0


def test_cartpole_upright_is_an_equilibrium_and_hanging_is_stable() -> None:
    problem = Cartpole()
    upright = torch.zeros(1, 4, dtype=torch.float64)
    assert problem.dynamics(0.0, upright, torch.zeros(1, 1, dtype=torch.float64)).abs().max() == 0
    hanging = torch.tensor([[0.0, 0.0, math.pi - 0.01, 0.0]], dtype=torch.float64)
    swing = diffenvs.rollout(problem, torch.zeros(100, 1, 1, dtype=torch.float64), hanging).states[..., 2]
    assert (swing - math.pi).abs().max() < 0.0101  # small oscillation about the hanging position


def test_cartpole_small_motion_matches_the_linearisation_exponential() -> None:
    """Near upright the nonlinear flow follows exp(A t) of the hand linearisation."""
    p = CartpoleParams()
    m, big_m, length, g = p.pole_mass, p.cart_mass, p.pole_length, p.gravity
    a = np.array([[0, 1, 0, 0], [0, 0, -m * g / big_m, 0], [0, 0, 0, 1], [0, 0, (big_m + m) * g / (length * big_m), 0]])
    x0 = np.array([0.0, 0.0, 1e-6, 0.0])
    problem = Cartpole(dt=0.005, max_steps=200)
    trajectory = diffenvs.rollout(problem, torch.zeros(200, 1, 1, dtype=torch.float64), torch.tensor(x0)[None], steps=200)
    exact = scipy.linalg.expm(a * 1.0) @ x0
    np.testing.assert_allclose(trajectory.states[-1, 0].numpy(), exact, rtol=1e-7, atol=1e-14)


def test_zermelo_straight_crossing_against_the_exact_integral() -> None:
    r"""Heading π/2: y = v t and x(ℓ) = ∫ w(y)/v dy = (w_min ℓ + (w_max - w_min) (ℓ/10) √π erf(5)) / v."""
    problem = Zermelo()
    p = problem.params
    trajectory = diffenvs.rollout(problem, torch.full((200, 1, 1), math.pi / 2, dtype=torch.float64),
                                  torch.zeros(1, 2, dtype=torch.float64), steps=200)
    crossing = int(trajectory.done[:, 0].nonzero()[0])
    x_end, y_end = trajectory.states[crossing, 0].tolist()
    width = p.river_width / 10
    exact = (p.wind_min * p.river_width + (p.wind_max - p.wind_min) * width * math.sqrt(math.pi)
             * scipy.special.erf(p.river_width / 2 / width)) / p.boat_speed
    assert y_end == pytest.approx(p.river_width, abs=1e-12)  # the state AT the crossing, not past it
    assert x_end == pytest.approx(exact, rel=1e-8)
    assert float(trajectory.returns[0]) == pytest.approx(-exact, rel=1e-8)
    assert crossing == math.ceil(p.river_width / p.boat_speed / problem.dt)


def test_harmonic_field_is_isochronous() -> None:
    problem = Isochronism()
    x0 = torch.randn(64, 2, dtype=torch.float64)
    field = lambda obs: harmonic_force(obs, problem.params)  # noqa: E731
    trajectory = diffenvs.rollout(problem, field, x0, control="feedback")
    torch.testing.assert_close(trajectory.states[-1], x0, rtol=0, atol=1e-9)
    # held over each step (the Gymnasium face) it is isochronous to O(dt^2)
    held = diffenvs.rollout(problem, field, x0, control="sampled")
    assert held.costs.mean() < 1e-3
    # a stiffer field is not isochronous
    stiff = diffenvs.rollout(problem, lambda obs: -1.5 * obs, x0, control="feedback")
    assert stiff.costs.mean() > 0.1


def test_isochronism_full_observation_is_state_and_time_on_every_face() -> None:
    problem = Isochronism(max_steps=10, observe="full")
    env = gym.make("DiffIsochronism-v0", max_steps=10, observe="full")
    observation, _ = env.reset(seed=0)
    start = env.unwrapped.state.copy()
    for _ in range(3):
        observation, *_ = env.step(np.array([0.5], np.float32))
    np.testing.assert_allclose(observation, [*env.unwrapped.state, 3 / 10], rtol=1e-6)
    vector = gym.make_vec("DiffIsochronism-v0", num_envs=2, vectorization_mode="vector_entry_point", max_steps=10,
                          observe="full")
    observations, _ = vector.reset(seed=0)
    assert observations.shape == (2, 3) and np.all(observations[:, 2] == 0)
    seen = []  # the gradient path's policy sees (x, v, t/T) too

    def field(obs: torch.Tensor) -> torch.Tensor:
        seen.append(obs.clone())
        return torch.full((obs.shape[0], 1), 0.5 * problem.max_force, dtype=obs.dtype)

    trajectory = diffenvs.rollout(problem, field, torch.as_tensor(start, dtype=torch.float64)[None], steps=3)
    torch.testing.assert_close(seen[-1][0], torch.tensor([*trajectory.states[2, 0].tolist(), 0.2], dtype=torch.float64))
    np.testing.assert_allclose(trajectory.states[-1, 0].numpy(), env.unwrapped.state, rtol=1e-5)
    # the default observes the position alone, and the objective is the same under both
    position = gym.make("DiffIsochronism-v0", max_steps=10)
    assert position.observation_space.shape == (1,)
    returns = []
    for face in (env, position):
        face.reset(seed=5)
        returns.append(sum(face.step(np.array([0.3], np.float32))[1] for _ in range(10)))
    assert returns[0] == returns[1] != 0
    with pytest.raises(ValueError, match="observe"):
        Isochronism(observe="velocity")


def test_linear_system_against_its_closed_form() -> None:
    r""":math:`x_t = \sum_{k<t} A^{t-1-k}(B u_k + \sigma w_k)` from :math:`x_0 = 0`."""
    problem = LinearSysID(max_steps=20)
    controls = torch.randn(20, 1, 4, dtype=torch.float64) * 0.3
    noise = torch.randn(20, 1, 4, dtype=torch.float64)
    trajectory = diffenvs.rollout(problem, controls, torch.zeros(1, 4, dtype=torch.float64), noise=noise)
    a = torch.as_tensor(jordan_matrix(4))
    inside = problem.clip_control(controls)  # the ball |u| <= gamma, as env.step
    assert torch.equal(trajectory.controls, inside)
    x = torch.zeros(4, dtype=torch.float64)
    for t in range(20):
        x = torch.zeros(4, dtype=torch.float64)
        for k in range(t + 1):
            x = x + torch.linalg.matrix_power(a, t - k) @ (inside[k, 0] + 0.1 * noise[k, 0])
        torch.testing.assert_close(trajectory.states[t + 1, 0], x)
    # without noise the least-squares estimate is exact, so the terminal reward vanishes
    clean = diffenvs.rollout(problem, controls, torch.zeros(1, 4, dtype=torch.float64))
    assert abs(float(clean.returns[0])) < 1e-9
    assert float(trajectory.returns[0]) < -1e-3
