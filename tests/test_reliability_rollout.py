"""The gradient path refuses bad input by name, and clips controls as ``env.step`` does."""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

import diffenvs
from diffenvs.core.problem import Problem
from diffenvs.envs.cartpole import Cartpole, CartpoleParams
from diffenvs.envs.decay_design import DecayDesign
from diffenvs.envs.linear_sysid import LinearSysID
from diffenvs.envs.zermelo import Zermelo, ZermeloParams

HANGING = [[0.0, 0.0, 3.0, 0.0], [1.0, 0.0, 3.0, 0.0], [0.0, 0.5, 2.5, 0.0]]


def starts() -> torch.Tensor:
    return torch.tensor(HANGING, dtype=torch.float64)


def constant(force: float):
    """A policy pushing with ``force`` newtons whatever it observes."""
    return lambda observation: torch.full((observation.shape[0], 1), force, dtype=observation.dtype)


class Network(torch.nn.Module):
    """A float64 linear policy whose output is ``nan_rows`` NaN (for the adjoint, which needs a module)."""

    def __init__(self, nan_rows: bool = False) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(6, 1).double()
        self.nan_rows = nan_rows

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        u = self.linear(observation)
        if self.nan_rows:  # NaN where the cart starts at x = 1 (the second start)
            u = torch.where(observation[:, :1] > 0.5, torch.full_like(u, math.nan), u)
        return u


# ---- non-finite input --------------------------------------------------------------------

def test_non_finite_x0_is_refused_by_name() -> None:
    x0 = starts()
    x0[1, 3] = math.inf
    with pytest.raises(ValueError, match=r"x0 must be finite, got \[1.0, 0.0, 3.0, inf\] in row 1"):
        diffenvs.rollout(Cartpole(), constant(0.0), x0)
    trajectory = diffenvs.rollout(Cartpole(), constant(0.0), x0, check=False)  # the check switched off: as before
    assert not torch.isfinite(trajectory.states[-1, 1]).all() and torch.isfinite(trajectory.states[-1, 0]).all()


def test_a_policy_returning_nan_is_named_with_its_step() -> None:
    """The time fraction t/T passes 0.065 at step 7: the error says so."""
    def late_nan(observation: torch.Tensor) -> torch.Tensor:
        u = torch.zeros(observation.shape[0], 1, dtype=observation.dtype)
        return torch.where(observation[:, 5:6] > 0.065, torch.full_like(u, math.nan), u)

    with pytest.raises(ValueError, match=r"policy must return finite controls, got \[nan\] at step 7 \(trajectory 0\)"):
        diffenvs.rollout(Cartpole(), late_nan, starts())
    assert torch.isnan(diffenvs.rollout(Cartpole(), late_nan, starts(), check=False).costs).all()


def test_a_policy_returning_inf_is_refused_although_clipping_would_hide_it() -> None:
    def infinite(observation: torch.Tensor) -> torch.Tensor:
        return torch.full((observation.shape[0], 1), math.inf, dtype=observation.dtype)

    with pytest.raises(ValueError, match=r"got \[inf\] at step 0"):
        diffenvs.rollout(Cartpole(), infinite, starts())
    unchecked = diffenvs.rollout(Cartpole(), infinite, starts(), check=False)
    torch.testing.assert_close(unchecked.states, diffenvs.rollout(Cartpole(), constant(50.0), starts()).states)


TOLERANCE = dict(rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("solver", [diffenvs.RK4(), diffenvs.Adaptive(**TOLERANCE), diffenvs.Adjoint(**TOLERANCE)],
                         ids=["rk4", "adaptive", "adjoint-whole-horizon"])
def test_a_feedback_policy_returning_nan_is_refused(solver: diffenvs.Solver) -> None:
    problem = Cartpole(max_steps=5)
    with pytest.raises(ValueError, match=r"got \[nan\] at step 0 \(trajectory 1\)"):
        diffenvs.rollout(problem, Network(nan_rows=True), starts(), control="feedback", solver=solver)
    finite = diffenvs.rollout(problem, Network(), starts(), control="feedback", solver=solver)
    assert torch.isfinite(finite.costs).all() and finite.costs.requires_grad


def test_a_state_that_diverges_by_itself_is_not_blamed_on_the_policy() -> None:
    """φ̇ = 1e200 overflows in the first step; the policy's NaN after that comes from the state: no error."""
    x0 = torch.tensor([[0.0, 0.0, 3.0, 1e200]], dtype=torch.float64)
    trajectory = diffenvs.rollout(Cartpole(max_steps=3), lambda observation: 0.0 * observation[:, 4:5], x0)
    assert torch.isfinite(trajectory.states[0]).all() and not torch.isfinite(trajectory.states[-1]).all()


def test_noise_is_checked_for_finiteness_dtype_and_use() -> None:
    problem, x0 = LinearSysID(max_steps=6), torch.zeros(2, 4, dtype=torch.float64)
    controls = torch.full((6, 2, 4), 0.3, dtype=torch.float64)
    noise = torch.randn(6, 2, 4, dtype=torch.float64)
    noise[3, 1, 2] = math.nan
    with pytest.raises(ValueError, match=r"noise must be finite, got \[.*nan.*\] at \(step, trajectory\) = \(3, 1\)"):
        diffenvs.rollout(problem, controls, x0, noise=noise)
    with pytest.raises(TypeError, match=r"noise must have x0's dtype and device \(torch.float64, cpu\), got \(torch.float32"):
        diffenvs.rollout(problem, controls, x0, noise=torch.zeros(6, 2, 4))
    with pytest.raises(TypeError, match="noise must be a torch.Tensor of shape"):
        diffenvs.rollout(problem, controls, x0, noise=np.zeros((6, 2, 4)))
    with pytest.raises(ValueError, match="noise must be None: Cartpole has no process noise"):
        diffenvs.rollout(Cartpole(), constant(0.0), starts(), noise=torch.zeros(100, 3, 1, dtype=torch.float64))


def test_a_tensor_of_controls_must_be_finite() -> None:
    controls = torch.zeros(100, 3, 1, dtype=torch.float64)
    controls[42, 2] = -math.inf
    message = r"policy as a tensor of controls must be finite, got \[-inf\] at \(step, trajectory\) = \(42, 2\)"
    with pytest.raises(ValueError, match=message):
        diffenvs.rollout(Cartpole(), controls, starts())


def test_the_checks_keep_gradients_and_torch_func() -> None:
    problem = Cartpole(max_steps=10, cost="quadratic")
    x0 = starts().requires_grad_(True)
    policy = Network()
    checked = torch.autograd.grad(diffenvs.rollout(problem, policy, x0).costs.sum(), (x0, *policy.parameters()))
    unchecked = torch.autograd.grad(diffenvs.rollout(problem, policy, x0, check=False).costs.sum(), (x0, *policy.parameters()))
    for a, b in zip(checked, unchecked):
        assert torch.equal(a, b) and a.abs().sum() > 0
    controls = torch.full((10, 3, 1), 5.0, dtype=torch.float64)
    jacobian = torch.func.jacrev(lambda start: diffenvs.rollout(problem, controls, start).costs)(starts())
    assert jacobian.shape == (3, 3, 4) and jacobian.abs().sum() > 0


def test_check_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="check must be True or False, got 'no'"):
        diffenvs.rollout(Cartpole(), constant(0.0), starts(), check="no")


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


# ---- control bounds ----------------------------------------------------------------------

def test_out_of_bounds_force_is_clipped_as_env_step_clips_the_action() -> None:
    problem = Cartpole()
    pushed, at_bound = (diffenvs.rollout(problem, constant(force), starts()) for force in (100.0, 50.0))
    torch.testing.assert_close(pushed.costs, at_bound.costs, rtol=0, atol=0)
    assert (pushed.controls == 50.0).all()  # the controls recorded are those applied
    env = gym.make("DiffCartpole-v0")
    env.reset(options={"state": HANGING[0]})
    rewards = [env.step(np.array([2.0], np.float32))[1] for _ in range(problem.max_steps)]  # 100 N as an action
    np.testing.assert_allclose(-sum(rewards), float(pushed.costs[0]), rtol=1e-10)


@pytest.mark.parametrize("env_id", diffenvs.ENV_IDS)
def test_rollout_of_out_of_bounds_controls_equals_env_step(env_id: str) -> None:
    """Actions in [-3, 3] (env.step clips them), mapped to physical controls without clipping (the rollout clips them)."""
    env = gym.make(env_id)
    problem = env.unwrapped.problem
    steps = min(problem.max_steps, 60)
    actions = np.random.default_rng(3).uniform(-3.0, 3.0, (steps, problem.control_dim)).astype(np.float32)
    low, high = np.asarray(problem.control_low), np.asarray(problem.control_high)
    controls = torch.as_tensor(low + 0.5 * (actions.astype(np.float64) + 1.0) * (high - low))[:, None]
    assert ((controls < torch.as_tensor(low)) | (controls > torch.as_tensor(high))).any()
    env.reset(seed=4)
    x0 = torch.as_tensor(env.unwrapped.state)[None]
    noise = torch.as_tensor(env.unwrapped.episode_noise(steps))[:, None] if problem.step_noise else None
    rewards, states = [], [env.unwrapped.state]
    for action in actions:
        _, reward, terminated, truncated, _ = env.step(action)
        rewards.append(reward), states.append(env.unwrapped.state)
        if terminated or truncated:
            break
    trajectory = diffenvs.rollout(problem, controls, x0, steps=steps, noise=noise)
    k = len(rewards)
    np.testing.assert_allclose(trajectory.states[: k + 1, 0].numpy(), np.array(states), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(trajectory.rewards[:k, 0].numpy(), rewards, rtol=1e-10, atol=1e-10)


def test_clipping_keeps_gradients_defined() -> None:
    """Zero through a clipped control, as through the inside at the bound itself; gradcheck away from the kinks."""
    problem = Cartpole(max_steps=4, cost="quadratic")
    x0 = starts()[:1]
    controls = torch.tensor([[[80.0]], [[50.0]], [[10.0]], [[-70.0]]], dtype=torch.float64, requires_grad=True)
    (gradient,) = torch.autograd.grad(diffenvs.rollout(problem, controls, x0).costs.sum(), controls)
    assert torch.isfinite(gradient).all()
    assert gradient[0] == 0 and gradient[3] == 0 and gradient[1] != 0 and gradient[2] != 0
    inside_and_out = torch.tensor([[[80.0]], [[30.0]], [[-20.0]], [[-70.0]]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda u: diffenvs.rollout(problem, u, x0).costs, (inside_and_out,))


# ---- shapes, dtypes, tolerances ----------------------------------------------------------

@pytest.mark.parametrize("control", ["sampled", "feedback"])
@pytest.mark.parametrize("output, message", [
    (lambda o: torch.zeros(1, 1, dtype=o.dtype),
     r"policy must return controls of shape \(batch, control_dim\) = \(3, 1\), got \(1, 1\) at step 0"),
    (lambda o: torch.zeros(3, dtype=o.dtype), r"got \(3,\) at step 0"),
    (lambda o: torch.zeros(3, 2, dtype=o.dtype), r"got \(3, 2\) at step 0"),
], ids=["one-row-for-three", "flat", "two-columns"])
def test_a_policy_output_of_the_wrong_shape_is_named(output, message: str, control: str) -> None:
    with pytest.raises(ValueError, match=message):
        diffenvs.rollout(Cartpole(), output, starts(), control=control)


def test_a_policy_output_of_the_wrong_type_or_dtype_is_named() -> None:
    with pytest.raises(TypeError, match=r"policy must return controls of x0's dtype and device \(torch.float64, cpu\), "
                                        r"got \(torch.float32, cpu\) at step 0"):
        diffenvs.rollout(Cartpole(), lambda o: torch.zeros(o.shape[0], 1), starts())
    with pytest.raises(TypeError, match="policy must return a torch.Tensor of controls of shape \\(3, 1\\), got ndarray"):
        diffenvs.rollout(Cartpole(), lambda o: np.zeros((3, 1)), starts())
    with pytest.raises(TypeError, match=r"policy as a tensor of controls must have x0's dtype and device"):
        diffenvs.rollout(Cartpole(), torch.zeros(100, 3, 1), starts())


def test_the_whole_horizon_adjoint_checks_the_output_before_solving() -> None:
    class Wide(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(6, 2).double()

        def forward(self, observation: torch.Tensor) -> torch.Tensor:
            return self.linear(observation)

    with pytest.raises(ValueError, match=r"got \(3, 2\) at step 0"):
        diffenvs.rollout(Cartpole(max_steps=5), Wide(), starts(), control="feedback", solver=diffenvs.Adjoint())


@pytest.mark.parametrize("name", ["rtol", "atol"])
@pytest.mark.parametrize("value", [math.inf, math.nan, -1e-6, 0.0, True], ids=["inf", "nan", "negative", "zero", "bool"])
def test_tolerances_must_be_finite_positive_numbers(name: str, value: float) -> None:
    for solver in (diffenvs.Adaptive, diffenvs.Adjoint):
        with pytest.raises(ValueError, match=f"{name} must be a positive number, finite, got {value!r}"):
            solver(**{name: value})


def test_linear_sysid_controls_are_projected_onto_the_ball_with_finite_gradients() -> None:
    problem = LinearSysID(max_steps=6)
    gamma = problem.gamma
    u = torch.tensor([[3.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.1, 0.0, -0.1, 0.0]],
                     dtype=torch.float64, requires_grad=True) * gamma
    clipped = problem.clip_control(u)
    np.testing.assert_allclose(clipped.detach().numpy(), [[gamma, 0, 0, 0], [gamma / 2] * 4, [0] * 4,
                                                          [0.1 * gamma, 0, -0.1 * gamma, 0]], rtol=1e-12, atol=1e-15)
    (gradient,) = torch.autograd.grad(clipped.sum(), u)
    assert torch.isfinite(gradient).all() and (gradient[2:] == 1).all()  # inside the ball, and at its centre, the identity


# ---- the episode's start is one the faces accept, in float32 or float64 -----------------------------------------
@pytest.mark.parametrize(("problem", "bad_row", "message"), [
    (DecayDesign(), [1.0, -0.5], "posterior_variance must be positive"),
    (Zermelo(), [0.0, 2.5], "below the far bank"),
])
def test_rollout_refuses_the_start_states_the_faces_refuse(problem: Problem, bad_row: list[float], message: str) -> None:
    good = [1.0, 0.5] if isinstance(problem, DecayDesign) else [0.0, 0.0]
    x0 = torch.tensor([good, bad_row], dtype=torch.float64)
    policy = torch.zeros(3, 2, problem.control_dim, dtype=torch.float64)
    with pytest.raises(ValueError, match=f"x0 row 1 is not a start state of {type(problem).__name__}: .*{message}"):
        diffenvs.rollout(problem, policy, x0, steps=3)
    env = gym.make(problem.env_id)
    with pytest.raises(ValueError, match=message):  # the face refuses the same state
        env.reset(options={"state": np.array(bad_row)})
    with pytest.raises(ValueError, match="episode_start row 1 is not a start state"):
        diffenvs.rollout(problem, policy, torch.tensor([good, good], dtype=torch.float64), steps=3, first_step=2,
                         episode_start=x0)
    diffenvs.rollout(problem, policy, x0, steps=3, check=False)  # unchecked, as documented
    diffenvs.rollout(problem, policy[:, :1], x0[:1], steps=3)  # a good start passes


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_rollout_refuses_half_precision_by_name(dtype: torch.dtype) -> None:
    with pytest.raises(TypeError, match=f"x0 must be float32 or float64 .*got dtype {dtype}"):
        diffenvs.rollout(Cartpole(), constant(0.0), starts().to(dtype), steps=2)
    trajectory = diffenvs.rollout(Cartpole(), constant(0.0), starts().float(), steps=2)
    assert trajectory.states.dtype == torch.float32
