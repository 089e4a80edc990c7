"""The analytic references against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.integrate
import torch

import diffenvs
from agents import analytic, references
from agents.cards import cards
from agents.cards import cartpole as cartpole_card
from agents.cards import decay_design as decay_card
from agents.cards import isochronism as isochronism_card
from agents.cards import zermelo as zermelo_card
from agents.episodes import evaluate, gym_policy, start_states
from diffenvs import Adaptive, problem_of, rollout
from diffenvs.core.numerics import TORCH
from diffenvs.envs.cartpole import Cartpole, CartpoleParams
from diffenvs.envs.isochronism import Isochronism
from diffenvs.envs.zermelo import Zermelo, ZermeloParams, wind

UPRIGHT = {"initial_angle": 0.1, "initial_noise": 0.0, "cost": "quadratic"}


# ---- Zermelo ---------------------------------------------------------------------------
def test_pontryagin_heading_solves_the_adjoint_condition() -> None:
    params = ZermeloParams()
    y = np.linspace(-0.5, 2.5, 61)
    u = np.array([zermelo_card.pontryagin_heading(v, params, math) for v in y])
    assert np.allclose(np.cos(u), -params.boat_speed / wind(y, params, np), atol=1e-14)
    assert np.all((u > math.pi / 2) & (u <= math.pi))
    torch_u = zermelo_card.pontryagin_heading(torch.as_tensor(y), params, TORCH)
    assert np.allclose(torch_u.numpy(), u, atol=1e-14)


def test_pontryagin_deviation_matches_a_fine_rollout_of_the_pontryagin_policy() -> None:
    # continuous feedback (the heading evaluated inside RK4) over 0.02 s steps, the crossing located inside the step
    problem = Zermelo(dt=0.02, max_steps=210)
    with torch.no_grad():
        trajectory = rollout(problem, zermelo_card.PontryaginPolicy(problem), torch.zeros(1, 2, dtype=torch.float64),
                             control="feedback")
    assert bool(trajectory.done[-1])
    assert trajectory.states[-1, 0, 1].item() == pytest.approx(2.0, abs=1e-9)
    assert trajectory.costs.item() == pytest.approx(zermelo_card.pontryagin_deviation(), abs=1e-6)


def test_pontryagin_deviation_closed_form_and_optimality() -> None:
    params = ZermeloParams()
    v = params.boat_speed
    # with cos u = -v/w the integrand simplifies to sqrt(w^2 - v^2)/v
    closed, _ = scipy.integrate.quad(lambda y: math.sqrt(wind(y, params, math) ** 2 - v * v) / v, 0.0, 2.0,
                                     points=[1.0], epsabs=1e-12)
    optimum = zermelo_card.pontryagin_deviation(params)
    assert optimum == pytest.approx(closed, abs=1e-10)
    # any other heading profile deviates more
    for bump in (-0.2, 0.1, 0.3):
        def slope(y: float, bump: float = bump) -> float:
            u = zermelo_card.pontryagin_heading(y, params, math) + bump * math.exp(-((y - 0.7) / 0.3) ** 2)
            return (v * math.cos(u) + wind(y, params, math)) / (v * math.sin(u))

        other, _ = scipy.integrate.quad(slope, 0.0, 2.0, points=[1.0])
        assert other > optimum + 1e-4
    # from a start half-way the quadrature runs over the rest of the river only
    assert zermelo_card.pontryagin_deviation(params, 1.0) < optimum
    with pytest.raises(ValueError, match="y0"):
        zermelo_card.pontryagin_deviation(params, 2.5)


# ---- Cartpole ----------------------------------------------------------------------------
def hamiltonian_care(a: np.ndarray, b: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:
    """P from the stable invariant subspace of the Hamiltonian matrix (independent of SciPy's CARE solver)."""
    n = a.shape[0]
    h = np.block([[a, -b @ np.linalg.solve(r, b.T)], [-q, -a.T]])
    values, vectors = np.linalg.eig(h)
    stable = vectors[:, values.real < 0]
    return np.real(stable[n:] @ np.linalg.inv(stable[:n]))


def test_hand_linearisation_matches_the_autograd_jacobian() -> None:
    for params in (CartpoleParams(), CartpoleParams(cart_mass=2.0, pole_mass=0.3, pole_length=0.7, gravity=9.81)):
        problem = Cartpole(params=params)
        x0, u0 = torch.zeros(4, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
        jac_x, jac_u = torch.autograd.functional.jacobian(lambda x, u, p=problem: p.dynamics(0.0, x, u), (x0, u0))
        a, b = cartpole_card.cartpole_linearisation(params)
        np.testing.assert_allclose(jac_x.numpy(), a, atol=1e-12)
        np.testing.assert_allclose(jac_u.numpy(), b, atol=1e-12)


def test_riccati_gain_against_hand_and_autograd_linearisations() -> None:
    q, r = cartpole_card.lqr_weights()
    a, b = cartpole_card.cartpole_linearisation()
    gain, p = references.lqr(a, b, q, r)
    # the Riccati residual vanishes and P agrees with the Hamiltonian-subspace solution
    residual = a.T @ p + p @ a - p @ b @ np.linalg.solve(r, b.T) @ p + q
    assert np.abs(residual).max() < 1e-8 * np.abs(p).max()
    np.testing.assert_allclose(p, hamiltonian_care(a, b, q, r), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(gain, np.linalg.solve(r, b.T @ hamiltonian_care(a, b, q, r)), rtol=1e-8)
    assert np.all(np.linalg.eigvals(a - b @ gain).real < 0)
    # the same gain from the autograd Jacobian of the nonlinear dynamics
    problem = Cartpole()
    jac_x, jac_u = torch.autograd.functional.jacobian(
        lambda x, u: problem.dynamics(0.0, x, u), (torch.zeros(4, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)))
    gain_autograd, _ = references.lqr(jac_x.numpy(), jac_u.numpy(), q, r)
    np.testing.assert_allclose(gain_autograd, gain, rtol=1e-10)


def test_finite_horizon_riccati_is_the_cost_of_its_own_time_varying_feedback() -> None:
    q, r = cartpole_card.lqr_weights()
    a, b = cartpole_card.cartpole_linearisation()
    horizon = 2.0
    times = np.linspace(0.0, horizon, 201)
    p_t = references.finite_horizon_riccati(a, b, q, r, horizon, times)
    assert np.allclose(p_t[-1], 0.0)
    s0 = np.array([0.05, -0.1, 0.1, 0.2])
    predicted = s0 @ p_t[0] @ s0

    # simulate the linear system under f = -R^-1 B' P(t) s and integrate the cost alongside
    def p_of(t: float) -> np.ndarray:
        return references.finite_horizon_riccati(a, b, q, r, horizon, np.array([t]))[0]

    grid = np.linspace(0.0, horizon, 2001)
    gains = {t: np.linalg.solve(r, b.T @ p_of(t)) for t in grid[:: 50]}
    keys = np.array(sorted(gains))

    def gain_at(t: float) -> np.ndarray:  # piecewise-linear interpolation of K(t)
        i = min(np.searchsorted(keys, t, side="right") - 1, len(keys) - 2)
        w = (t - keys[i]) / (keys[i + 1] - keys[i])
        return (1 - w) * gains[keys[i]] + w * gains[keys[i + 1]]

    def rhs(t: float, z: np.ndarray) -> np.ndarray:
        s = z[:4]
        f = -gain_at(t) @ s
        return np.concatenate([a @ s + b @ f, [s @ q @ s + f @ r @ f]])

    sol = scipy.integrate.solve_ivp(rhs, (0.0, horizon), np.concatenate([s0, [0.0]]), rtol=1e-10, atol=1e-12)
    assert sol.y[-1, -1] == pytest.approx(predicted, rel=1e-3)
    # a longer horizon costs more, and tends to the infinite-horizon cost (the slowest closed-loop mode decays at 0.07/s)
    _, p_inf = references.lqr(a, b, q, r)
    long = references.finite_horizon_riccati(a, b, q, r, 200.0)[0]
    assert predicted < s0 @ long @ s0
    np.testing.assert_allclose(long, p_inf, rtol=1e-8, atol=1e-10)


def test_lqr_policy_runs_on_both_faces_and_agrees() -> None:
    problem = Cartpole(**UPRIGHT)
    policy = cartpole_card.cartpole_lqr_policy(problem)
    with torch.no_grad():
        trajectory = rollout(problem, policy, torch.tensor([[0.0, 0.0, 0.1, 0.0]], dtype=torch.float64))
    cost_torch = trajectory.costs.item()
    cost_gym = evaluate("DiffCartpole-v0", gym_policy(policy, problem), 1, UPRIGHT)[0]
    assert cost_gym == pytest.approx(cost_torch, rel=1e-5)  # float32 observations on the Gymnasium face
    # the LQR controller on the nonlinear system pays a little more than the linear finite-horizon optimum
    ref = analytic.reference("DiffCartpole-v0", UPRIGHT)
    numbers = ref.analytic(np.array([[0.0, 0.0, 0.1, 0.0]]))
    assert numbers["optimum"] < cost_torch < 1.05 * numbers["optimum"]
    assert numbers["infinite_horizon_lqr"] == pytest.approx(cost_torch, rel=0.02)
    # bounds are respected
    with torch.no_grad():
        force = policy(torch.tensor([[0.0, 0.0, 1.0, 0.0, 50.0, 0.0]], dtype=torch.float64))
    assert force.abs().item() == pytest.approx(problem.max_force)


# ---- Isochronism -------------------------------------------------------------------------
def test_harmonic_field_is_isochronous() -> None:
    problem = Isochronism(max_steps=20)
    policy = isochronism_card.HarmonicField(problem)
    x0 = torch.randn(16, 2, dtype=torch.float64)
    with torch.no_grad():
        exact = rollout(problem, policy, x0, control="feedback", solver=Adaptive("dopri5", 1e-10, 1e-12))
        held = rollout(problem, policy, x0)  # force held over each step: no longer exactly periodic
    assert exact.costs.max().item() < 1e-12
    assert held.costs.mean().item() > 1e-4
    # a field with another period is not isochronous at T
    stiff = lambda obs: -1.1 * obs[..., :1]
    with torch.no_grad():
        assert rollout(problem, stiff, x0, control="feedback").costs.mean().item() > 1e-2
    # on the Gymnasium face (force held over 1000 steps) the cost stays small
    cost = evaluate("DiffIsochronism-v0", gym_policy(policy, Isochronism()), 5)
    assert cost.mean() < 1e-3


def test_analytic_agents_only_on_their_own_environment() -> None:
    assert isinstance(analytic.analytic_agent("pontryagin", "DiffZermelo-v0"), zermelo_card.PontryaginPolicy)
    assert isinstance(analytic.analytic_agent("lqr", "DiffCartpole-v0", UPRIGHT), references.LinearFeedback)
    assert isinstance(analytic.analytic_agent("harmonic", "DiffIsochronism-v0"), isochronism_card.HarmonicField)
    with pytest.raises(ValueError, match="'lqr' is the analytic answer of DiffCartpole-v0 and DiffDoublePendulum-v0 only"):
        analytic.analytic_agent("lqr", "DiffZermelo-v0")
    with pytest.raises(ValueError, match="agent must be one of"):
        analytic.analytic_agent("ppo", "DiffZermelo-v0")


def test_references_of_every_environment() -> None:
    zermelo = analytic.reference("DiffZermelo-v0")
    assert zermelo.analytic(np.zeros((3, 2)))["optimum"] == pytest.approx(zermelo_card.pontryagin_deviation())
    swing_up = analytic.reference("DiffCartpole-v0")
    assert swing_up.policy is None and swing_up.analytic(np.zeros((1, 4)))["optimum"] == 0.0
    assert analytic.reference("DiffIsochronism-v0").analytic(np.zeros((1, 2)))["optimum"] == 0.0
    oracle = analytic.reference("DiffLinearSysID-v0")  # no closed form: the planner on the true matrix
    assert oracle.name == "oracle" and oracle.policy is None
    assert analytic.reference("DiffLinearSysID-v0", {"matrix": "random"}) is None  # no one truth to plan on
    greedy = analytic.reference("DiffDecayDesign-v0")
    assert greedy.name == "greedy-design" and isinstance(greedy.policy, decay_card.GreedyDesign)
    assert set(diffenvs.ENV_IDS) <= {c.env_id for c in cards().values()}  # every built-in environment has its card


def test_greedy_design_is_the_peak_of_the_squared_sensitivity() -> None:
    problem = problem_of("DiffDecayDesign-v0")
    policy = analytic.analytic_agent("greedy-design", "DiffDecayDesign-v0")
    t_max = problem.control_high[0]
    times = np.linspace(0.0, t_max, 200_001)
    for mean in (0.5, 1.0, 1.7, 2.0, 7.0):
        design = policy(torch.tensor([[mean, 0.3]], dtype=torch.float64)).item()
        peak = times[np.argmax(times**2 * np.exp(-2.0 * mean * times))]  # g^2 = t^2 exp(-2 theta t)
        assert design == pytest.approx(1.0 / mean, rel=1e-12)
        assert design == pytest.approx(peak, abs=2 * t_max / 200_000)
    # a belief at or below 1/t_max (or not positive) measures as late as allowed
    beliefs = torch.tensor([[1.0 / t_max, 1.0], [0.0, 1.0], [-1.0, 1.0]], dtype=torch.float64)
    assert policy(beliefs).flatten().tolist() == [t_max] * 3


def test_greedy_design_reference_is_its_own_cost_on_the_same_episodes() -> None:
    reference = analytic.reference("DiffDecayDesign-v0")
    states = start_states("DiffDecayDesign-v0", {}, 4)
    optimum = reference.analytic(states)["optimum"]
    costs = evaluate("DiffDecayDesign-v0", reference.gym_policy, 4)
    assert optimum == pytest.approx(float(costs.mean()), rel=1e-12)
    assert optimum < 0  # information is gained: the cost is minus the gain
