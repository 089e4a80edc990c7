"""The gradient path: arguments, solvers, torch.func, precision."""

from __future__ import annotations

import math

import pytest
import torch

import diffenvs
from diffenvs.cartpole import Cartpole
from diffenvs.linear_sysid import LinearSysID
from diffenvs.zermelo import Zermelo


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
        problem = Zermelo(dt=dt)
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
