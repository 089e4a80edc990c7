"""The gradient path: arguments, solvers, torch.func, precision."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
import torchdiffeq

import diffenvs
from diffenvs.core.memory import saved_tensor_bytes
from diffenvs.core.numerics import SCALAR, TORCH
from diffenvs.core.problem import Held, OdeProblem
from diffenvs.core.transition import transition
from diffenvs.envs.cartpole import Cartpole
from diffenvs.envs.isochronism import Isochronism
from diffenvs.envs.linear_sysid import LinearSysID
from diffenvs.envs.zermelo import Zermelo


def test_bad_arguments_name_themselves() -> None:
    problem = Cartpole()
    x0 = torch.zeros(2, 4, dtype=torch.float64)
    zero = torch.zeros(100, 2, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="x0 must be a tensor of shape"):
        diffenvs.rollout(problem, zero, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="control must be"):
        diffenvs.rollout(problem, zero, x0, control="continuous")
    with pytest.raises(TypeError, match="solver must be"):
        diffenvs.rollout(problem, zero, x0, solver="rk4")
    with pytest.raises(ValueError, match="method must be one of"):
        diffenvs.Adaptive(method="dopri4")
    with pytest.raises(ValueError, match="rtol must be a positive number"):
        diffenvs.Adjoint(rtol=0.0)
    with pytest.raises(ValueError, match="policy as a tensor of controls must have shape"):
        diffenvs.rollout(problem, torch.zeros(5, 2, 1), x0)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        diffenvs.rollout(problem, zero, x0, steps=0)
    with pytest.raises(TypeError, match="torch.nn.Module"):
        diffenvs.rollout(problem, lambda obs: obs[:, :1], x0, control="feedback", solver=diffenvs.Adjoint())
    with pytest.raises(ValueError, match="discrete-time map"):
        diffenvs.rollout(LinearSysID(), lambda obs: obs[:, :4], torch.zeros(1, 4), control="feedback")
    with pytest.raises(ValueError, match="cost must be one of"):
        Cartpole(cost="dense")


@pytest.mark.parametrize("method", diffenvs.core.rollout.METHODS)
def test_every_listed_method_is_one_torchdiffeq_accepts(method: str) -> None:
    """The documented list agrees with torchdiffeq's public ``odeint`` on du/dt = -u."""
    options = {"solver": "RK45"} if method == "scipy_solver" else {"step_size": 0.01} if method in (
        "euler", "midpoint", "heun2", "heun3", "rk4", "explicit_adams", "implicit_adams", "fixed_adams") else None
    u = torchdiffeq.odeint(lambda t, u: -u, torch.ones(1, dtype=torch.float64),
                           torch.tensor([0.0, 0.5], dtype=torch.float64), method=method, options=options)
    assert abs(float(u[-1, 0]) - math.exp(-0.5)) < 1e-2
    assert diffenvs.Adaptive(method).method == method


def test_a_name_torchdiffeq_refuses_is_not_listed() -> None:
    with pytest.raises(ValueError):
        torchdiffeq.odeint(lambda t, u: -u, torch.ones(1), torch.tensor([0.0, 0.5]), method="dopri4")
    assert "dopri4" not in diffenvs.core.rollout.METHODS


def test_open_loop_controls_broadcast_over_the_batch() -> None:
    problem = Cartpole()
    x0 = torch.tensor([[0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 3.0, 0.0]], dtype=torch.float64)
    shared = torch.randn(100, 1, dtype=torch.float64)
    trajectory = diffenvs.rollout(problem, shared, x0)
    torch.testing.assert_close(trajectory.states[:, 0], trajectory.states[:, 1])
    assert trajectory.controls.shape == (100, 2, 1) and trajectory.rewards.shape == (100, 2)


def test_rk4_rollout_works_under_torch_func() -> None:
    problem = Zermelo()
    x0 = torch.tensor([[0.0, 1.9], [0.5, 1.8]], dtype=torch.float64)
    controls = torch.full((20, 2, 1), 2.0, dtype=torch.float64)

    def final_x(start: torch.Tensor) -> torch.Tensor:
        return diffenvs.rollout(problem, controls, start, steps=20).states[-1, :, 0]

    jacobian = torch.func.jacrev(final_x)(x0)
    expected = torch.autograd.functional.jacobian(final_x, x0)
    torch.testing.assert_close(jacobian, expected)
    assert jacobian.abs().sum() > 0


def test_float32_follows_float64() -> None:
    problem = Cartpole()
    controls = torch.randn(100, 3, 1, dtype=torch.float64) * 10
    x0 = torch.tensor([[0.0, 0.0, 3.1, 0.0]] * 3, dtype=torch.float64)
    double = diffenvs.rollout(problem, controls, x0)
    single = diffenvs.rollout(problem, controls.float(), x0.float())
    assert single.states.dtype == torch.float32
    torch.testing.assert_close(single.states.double(), double.states, rtol=1e-3, atol=1e-3)


def test_sampled_and_feedback_converge_as_the_step_shrinks() -> None:
    """Holding u over a step differs from evaluating it inside the ODE by O(dt)."""
    gaps = []
    for dt in (0.02, 0.005):
        problem = Zermelo(dt=dt, max_steps=round(10.0 / dt))  # the same 10 s
        heading = lambda obs: math.pi / 2 + 0.5 * torch.tanh(obs[:, 1:2] - 1.0)  # noqa: E731
        x0 = torch.zeros(1, 2, dtype=torch.float64)
        sampled = diffenvs.rollout(problem, heading, x0, control="sampled").costs
        feedback = diffenvs.rollout(problem, heading, x0, control="feedback").costs
        gaps.append(float((sampled - feedback).abs()))
    assert gaps[1] < gaps[0] / 3


def test_adaptive_solver_matches_rk4_on_a_smooth_problem() -> None:
    problem = Cartpole()
    x0 = torch.tensor([[0.0, 0.0, 3.0, 0.0]], dtype=torch.float64)
    controls = torch.sin(torch.linspace(0, 6, 100, dtype=torch.float64))[:, None, None] * 20
    rk4 = diffenvs.rollout(problem, controls, x0)
    adaptive = diffenvs.rollout(problem, controls, x0, solver=diffenvs.Adaptive(rtol=1e-10, atol=1e-12))
    torch.testing.assert_close(rk4.states, adaptive.states, rtol=1e-4, atol=1e-4)  # RK4 truncation at dt = 0.02


class TanhPolicy(torch.nn.Module):
    """A small float64 network from observations to a force inside the control bounds."""

    def __init__(self, problem: OdeProblem, hidden: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(len(problem.observation_names), hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, problem.control_dim)).double()
        self.scale = problem.control_high[0]

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(self.net(observation))


def count_odeint_adjoint_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch ``torchdiffeq.odeint_adjoint`` to count its calls (the rollout looks it up on the module)."""
    calls = [0]
    original = torchdiffeq.odeint_adjoint

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(torchdiffeq, "odeint_adjoint", counted)
    return calls


@pytest.mark.parametrize("problem, steps", [
    (Cartpole(max_steps=10), None),
    (Cartpole(max_steps=10, cost="quadratic"), None),
    (Cartpole(max_steps=10), 13),  # past the horizon: frozen states, zero rewards
    (Isochronism(max_steps=20), None),
], ids=["cartpole-terminal", "cartpole-quadratic", "cartpole-past-horizon", "isochronism"])
def test_whole_horizon_adjoint_matches_direct_backprop(problem: OdeProblem, steps: int | None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Feedback + Adjoint without events is one odeint_adjoint solve with the per-step path's rewards and gradients."""
    policy = TanhPolicy(problem)
    x0 = 0.3 * torch.randn(3, problem.state_dim, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    x0[:, 0] += 0.5
    field = "pole_mass" if isinstance(problem, Cartpole) else "period"  # the period only sets dt: zero gradient
    value = torch.tensor(float(getattr(problem.params, field)), dtype=torch.float64)
    tolerance = dict(rtol=1e-10, atol=1e-12)

    def run(solver: diffenvs.Solver) -> tuple[diffenvs.Trajectory, list[torch.Tensor]]:
        start, physical = x0.clone().requires_grad_(True), value.clone().requires_grad_(True)
        params = dataclasses.replace(problem.params, **{field: physical})
        trajectory = diffenvs.rollout(problem, policy, start, steps=steps, params=params, control="feedback", solver=solver)
        leaves = [start, physical, *policy.parameters()]
        return trajectory, list(torch.autograd.grad(trajectory.costs.sum(), leaves, allow_unused=True))

    direct, direct_grads = run(diffenvs.Adaptive(**tolerance))
    calls = count_odeint_adjoint_calls(monkeypatch)
    adjoint, adjoint_grads = run(diffenvs.Adjoint(**tolerance))
    assert calls[0] == 1  # the whole horizon in one solve

    assert adjoint.rewards.shape == direct.rewards.shape and adjoint.states.shape == direct.states.shape
    torch.testing.assert_close(adjoint.costs, direct.costs, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(adjoint.rewards, direct.rewards, rtol=1e-6, atol=1e-9)  # step by step
    torch.testing.assert_close(adjoint.states, direct.states, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(adjoint.controls, direct.controls, rtol=1e-6, atol=1e-9)
    assert torch.equal(adjoint.done, direct.done) and torch.equal(adjoint.times, direct.times)
    assert adjoint.rewards.abs().sum() > 0
    for a, b in zip(adjoint_grads, direct_grads):
        if b is None:
            assert a is None or not a.any()
        else:
            assert a is not None and b.abs().sum() > 0
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-9)


def test_whole_horizon_adjoint_costs_stay_differentiable_before_any_cost_is_due() -> None:
    """Four steps of a terminal-cost horizon of 100 cost nothing, yet the costs are in the graph (as the per-step path)."""
    problem = Cartpole()
    x0 = torch.tensor([[0.0, 0.0, 3.0, 0.0]], dtype=torch.float64, requires_grad=True)
    trajectory = diffenvs.rollout(problem, TanhPolicy(problem), x0, steps=4, control="feedback", solver=diffenvs.Adjoint())
    assert trajectory.costs.requires_grad and not trajectory.done.any()
    (gradient,) = torch.autograd.grad(trajectory.costs.sum(), x0)
    assert not gradient.any()


def test_adjoint_keeps_the_per_step_path_for_events(monkeypatch: pytest.MonkeyPatch) -> None:
    """Zermelo's bank crossing is located inside a step: one solve per step, as before."""
    problem = Zermelo()
    policy = TanhPolicy(problem)
    calls = count_odeint_adjoint_calls(monkeypatch)
    x0 = torch.tensor([[0.0, 1.9]], dtype=torch.float64)
    diffenvs.rollout(problem, policy, x0, steps=3, control="feedback", solver=diffenvs.Adjoint())
    assert calls[0] > 3


def saved_bytes(solver: diffenvs.Solver, steps: int, batch: int) -> int:
    """Bytes the autograd graph of a cartpole feedback rollout keeps for backward (each storage once)."""
    problem = Cartpole(max_steps=steps)
    policy = TanhPolicy(problem, hidden=16)
    x0 = torch.zeros(batch, 4, dtype=torch.float64)
    x0[:, 2] = 0.1
    costs, saved = saved_tensor_bytes(lambda: diffenvs.rollout(problem, policy, x0, control="feedback", solver=solver).costs)
    assert costs.requires_grad
    return saved


def test_whole_horizon_adjoint_memory_grows_by_the_grid_only() -> None:
    """150 more steps keep at most 1.5x the grid of states (n + 1 numbers per trajectory and step) more."""
    batch, n = 32, 4
    tolerance = dict(rtol=1e-6, atol=1e-8)
    short, long = (saved_bytes(diffenvs.Adjoint(**tolerance), steps, batch) for steps in (50, 200))
    grid = 150 * batch * (n + 1) * 8
    assert long - short < 1.5 * grid
    assert long < saved_bytes(diffenvs.Adaptive(**tolerance), 200, batch) / 50  # direct backprop keeps the solver's graph


@pytest.mark.parametrize("env_id", diffenvs.ENV_IDS)
def test_transition_is_the_same_on_floats_and_tensors(env_id: str) -> None:
    """One transition, two namespaces: the last step of an episode from a seeded start (LinearSysID: the first, G is singular)."""
    problem = diffenvs.problem_of(env_id)
    env = gym.make(env_id)
    env.reset(seed=1)
    x = env.unwrapped._x
    u = problem.control_from_action((0.3,) * problem.control_dim, SCALAR)
    k = 0 if env_id == "DiffLinearSysID-v0" else problem.max_steps - 1
    noise = (0.5,) * problem.step_noise or None
    scalar = transition(problem, k, x, Held(u), x0=x, params=problem.params, ns=SCALAR, noise=noise)
    def column(values):
        return None if values is None else tuple(torch.tensor([c], dtype=torch.float64) for c in values)

    x_tensor = problem.state_from_physical(column(env.unwrapped.state), problem.params, TORCH)
    params = problem.params_like(problem.params, torch.zeros((), dtype=torch.float64))
    tensor = transition(problem, torch.tensor([k]), x_tensor, Held(column(u)), x0=x_tensor, params=params, ns=TORCH,
                        noise=column(noise))
    np.testing.assert_allclose(tensor.reward.numpy(), [scalar.reward], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(torch.stack(problem.state_to_physical(tensor.x), -1)[0].numpy(),
                               problem.state_to_physical(scalar.x), rtol=1e-12, atol=1e-12)
    assert (bool(tensor.terminated), bool(tensor.truncated), bool(tensor.finite)) == (
        bool(scalar.terminated), bool(scalar.truncated), bool(scalar.finite))
    last = scalar.terminated if problem.horizon_ends == "terminated" else scalar.truncated
    assert scalar.finite and last == (k == problem.max_steps - 1)


def test_a_nonfinite_transition_keeps_the_start_and_truncates() -> None:
    problem = Cartpole()
    start = (0.0, 0.0, 1.0, 1e30)
    step = transition(problem, 0, start, Held((0.0,)), x0=start, params=problem.params, ns=SCALAR)
    assert (step.finite, step.terminated, step.truncated, step.reward, step.x) == (False, False, True, 0.0, start)
    batch = tuple(torch.tensor([c, 0.5], dtype=torch.float64) for c in start)  # the second start is finite
    step = transition(problem, 0, batch, Held((torch.zeros(2, dtype=torch.float64),)), x0=batch, params=problem.params, ns=TORCH)
    assert step.finite.tolist() == [False, True] and step.truncated.tolist() == [True, False]
    assert step.terminated.tolist() == [False, False] and float(step.reward[0]) == 0.0
    assert [float(c[0]) for c in step.x] == list(start) and float(step.x[3][1]) != 0.5


def test_whole_horizon_solve_is_declared_and_off_for_events_or_own_steps() -> None:
    class WithEvent(Cartpole):
        def event(self, x, params, ns):
            return x[0] - 1.0

    class Declared(WithEvent):
        whole_horizon_solve = True

    assert Cartpole.whole_horizon_solve and Isochronism.whole_horizon_solve
    assert not Zermelo.whole_horizon_solve and not WithEvent.whole_horizon_solve and Declared.whole_horizon_solve
    assert not LinearSysID.whole_horizon_solve
