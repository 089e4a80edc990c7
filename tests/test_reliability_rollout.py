"""The gradient path refuses bad input by name, and clips controls as ``env.step`` does."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import diffenvs
from diffenvs.cartpole import Cartpole, CartpoleParams
from diffenvs.core.problem import Problem
from diffenvs.decay_design import DecayDesign
from diffenvs.zermelo import Zermelo, ZermeloParams

HANGING = [[0.0, 0.0, 3.0, 0.0], [1.0, 0.0, 3.0, 0.0], [0.0, 0.5, 2.5, 0.0]]


def starts() -> torch.Tensor:
    return torch.tensor(HANGING, dtype=torch.float64)


def constant(force: float):
    """A policy pushing with ``force`` newtons whatever it observes."""
    return lambda observation: torch.full((observation.shape[0], 1), force, dtype=observation.dtype)


# ---- params ------------------------------------------------------------------------------

def test_params_meet_the_constructors_checks() -> None:
    with pytest.raises(ValueError, match="params.pole_mass must be a finite positive number, got -1.0"):
        diffenvs.rollout(Cartpole(), constant(0.0), starts(), params=CartpoleParams(pole_mass=-1.0))
    with pytest.raises(ValueError, match="params.gravity must be a finite positive number, got nan"):
        diffenvs.rollout(Cartpole(), constant(0.0), starts(), params=CartpoleParams(gravity=math.nan))
    with pytest.raises(ValueError, match="boat_speed < wind_min <= wind_max"):
        diffenvs.rollout(Zermelo(), torch.zeros(5, 1, 1, dtype=torch.float64), torch.zeros(1, 2, dtype=torch.float64),
                         steps=5, params=ZermeloParams(boat_speed=10.0))
    with pytest.raises(TypeError, match="params must be a CartpoleParams .* got dict"):
        diffenvs.rollout(Cartpole(), constant(0.0), starts(), params={"pole_mass": 1.0})
    heavier = diffenvs.rollout(Cartpole(), constant(10.0), starts(), params=CartpoleParams(pole_mass=2.0))
    assert not torch.equal(heavier.states, diffenvs.rollout(Cartpole(), constant(10.0), starts()).states)


@pytest.mark.parametrize("problem", [Cartpole(max_steps=5), DecayDesign(max_steps=3)], ids=["cartpole", "decay-design"])
def test_tensor_params_are_left_to_the_gradient(problem: Problem) -> None:
    """A tensor constant is not checked (DecayDesign's constructor would refuse any tensor): it gets its gradient."""
    name = "pole_mass" if isinstance(problem, Cartpole) else "noise_std"
    value = torch.tensor(float(getattr(problem.params, name)), dtype=torch.float64, requires_grad=True)
    params = dataclasses.replace(problem.params, **{name: value})
    m, n = problem.control_dim, problem.state_dim
    low, high = problem.control_low[0], problem.control_high[0]
    controls = torch.full((problem.max_steps, 2, m), 0.5 * (low + high) + 0.1 * (high - low), dtype=torch.float64)
    x0 = torch.tensor([[0.1 * (i + 1)] * n for i in range(2)], dtype=torch.float64) if isinstance(problem, Cartpole) else (
        torch.tensor([[problem.params.prior_mean, problem.params.prior_variance]] * 2, dtype=torch.float64))
    noise = torch.randn(problem.max_steps, 2, problem.step_noise, dtype=torch.float64) if problem.step_noise else None
    trajectory = diffenvs.rollout(problem, controls, x0, params=params, noise=noise)
    (gradient,) = torch.autograd.grad(trajectory.costs.sum(), value)
    assert torch.isfinite(gradient) and gradient != 0


# ---- tolerances --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value", [math.inf, math.nan, -1e-6, 0.0, True], ids=["inf", "nan", "negative", "zero", "bool"])
def test_tolerances_must_be_finite_positive_numbers(name: str, value: float) -> None:
    for solver in (diffenvs.Adaptive, diffenvs.Adjoint):
        with pytest.raises(ValueError, match=f"{name} must be a positive number, finite, got {value!r}"):
            solver(**{name: value})
