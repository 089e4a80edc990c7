"""The compiled gradient path (``RK4(compile=True)``, chunks of steps) against the eager rollout.

Each case compiles a forward and a vector-Jacobian product (tens of seconds on a small CPU), so
the cases are few and each checks much: values and gradients to 1e-10 in float64 across chunk
boundaries and the eager tail, a second call that reuses the compiled code with other inputs,
and the fall-backs.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import diffenvs
from diffenvs.core import fused
from diffenvs.core.problem import OdeProblem
from diffenvs.envs.cartpole import Cartpole
from diffenvs.envs.zermelo import Zermelo


class TanhPolicy(torch.nn.Module):
    """A small float64 network with a buffer (an observation offset), which the compiled code takes as an input."""

    def __init__(self, problem: OdeProblem, hidden: int = 8) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(torch.nn.Linear(len(problem.observation_names), hidden), torch.nn.Tanh(),
                                       torch.nn.Linear(hidden, problem.control_dim)).double()
        self.register_buffer("offset", torch.zeros(len(problem.observation_names), dtype=torch.float64))
        self.scale = problem.control_high[0]

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.scale * torch.tanh(self.net(observation - self.offset))


def rollout_and_gradients(problem, policy, x0, solver, **kwargs):
    x0 = x0.clone().requires_grad_(True)
    trajectory = diffenvs.rollout(problem, policy, x0, solver=solver, **kwargs)
    inputs = [x0, *(policy.parameters() if isinstance(policy, torch.nn.Module) else [policy])]
    loss = trajectory.costs.sum() + 1e-3 * (trajectory.states ** 2).sum() + 1e-3 * (trajectory.controls ** 2).sum()
    return trajectory, torch.autograd.grad(loss, inputs)


def assert_same(a, b) -> None:
    (trajectory_a, grads_a), (trajectory_b, grads_b) = a, b
    for name in ("states", "controls", "rewards", "times"):
        torch.testing.assert_close(getattr(trajectory_a, name), getattr(trajectory_b, name), rtol=1e-10, atol=1e-10)
    assert torch.equal(trajectory_a.done, trajectory_b.done)
    for ga, gb in zip(grads_a, grads_b):
        torch.testing.assert_close(ga, gb, rtol=1e-10, atol=1e-10)


def test_compiled_cartpole_equals_eager_across_chunks_and_the_tail() -> None:
    """7 steps in chunks of 3: two compiled chunks, one eager step; the running cost, policy and start gradients."""
    problem = Cartpole(cost="quadratic", max_steps=7)
    policy = TanhPolicy(problem)
    compiled = diffenvs.RK4(compile=True, chunk=3)
    x0 = torch.tensor([[0.0, 0.0, 0.3, 0.0], [0.1, -0.2, -0.5, 0.4], [0.0, 0.1, math.pi, 0.0]], dtype=torch.float64)
    assert_same(rollout_and_gradients(problem, policy, x0, compiled), rollout_and_gradients(problem, policy, x0, diffenvs.RK4()))
    # the second call reuses the compiled code: the start, the weights and the buffer are inputs, not constants
    assert len(fused._CACHE[policy]) == 1
    with torch.no_grad():
        for p in policy.parameters():
            p.mul_(1.5)
        policy.offset.fill_(0.1)
    x1 = x0.flip(0) + 0.05
    assert_same(rollout_and_gradients(problem, policy, x1, compiled), rollout_and_gradients(problem, policy, x1, diffenvs.RK4()))
    assert len(fused._CACHE[policy]) == 1
    # past the horizon the state is frozen and the rewards zero, in the chunks as in the eager loop
    longer = rollout_and_gradients(problem, policy, x1, compiled, steps=9)
    assert_same(longer, rollout_and_gradients(problem, policy, x1, diffenvs.RK4(), steps=9))
    assert bool(longer[0].done[7:].all()) and not bool(longer[0].done[:7].any())
    # an episode in two windows (steps 0-2, then 3-6 from where the first ended) is the episode in one
    for solver in (compiled, diffenvs.RK4()):
        whole = diffenvs.rollout(problem, policy, x1, solver=solver)
        first = diffenvs.rollout(problem, policy, x1, solver=solver, steps=3)
        second = diffenvs.rollout(problem, policy, first.states[-1], solver=solver, steps=4, first_step=3, episode_start=x1)
        torch.testing.assert_close(torch.cat([first.states, second.states[1:]]), whole.states, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(torch.cat([first.rewards, second.rewards]), whole.rewards, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(second.times, whole.times[3:])
        assert torch.equal(second.done, whole.done[3:])


def test_a_changed_policy_attribute_or_layer_after_a_compile_compiles_again() -> None:
    """What the trace baked in of the policy (a Python ``scale``, a layer's structure) keys the compiled code.

    Reusing the code traced with ``scale = 10`` after ``scale = 5`` gave results off by 0.1-0.3, and
    a replaced layer an inductor ``AssertionError``; each change now names its own compiled pair.
    """
    problem = Cartpole(cost="quadratic", max_steps=2)
    policy = TanhPolicy(problem, hidden=3)
    compiled = diffenvs.RK4(compile=True, chunk=2)
    x0 = torch.tensor([[0.1, -0.2, 2.5, 0.4], [0.0, 0.1, math.pi, 0.0]], dtype=torch.float64)

    def same() -> None:
        with torch.no_grad():
            a, b = (diffenvs.rollout(problem, policy, x0, solver=s) for s in (compiled, diffenvs.RK4()))
        torch.testing.assert_close(a.states, b.states, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(a.rewards, b.rewards, rtol=1e-10, atol=1e-10)

    same()
    policy.scale = 5.0
    same()
    policy.net[2] = torch.nn.Linear(3, problem.control_dim, dtype=torch.float64)  # the same structure: new weights
    same()
    assert len(fused._CACHE[policy]) == 2
    policy.net[2] = torch.nn.Linear(3, problem.control_dim, bias=False, dtype=torch.float64)
    same()
    assert len(fused._CACHE[policy]) == 3


def test_compiled_open_loop_zermelo_with_events_equals_eager() -> None:
    """Open-loop headings with gradients, and an event (the bank reached) inside a chunk freezing some trajectories."""
    problem = Zermelo(max_steps=6, dt=0.5)
    x0 = torch.tensor([[0.0, 0.0], [0.0, 1.2], [0.5, 1.9]], dtype=torch.float64)
    headings = torch.linspace(1.2, 1.8, 6 * 3, dtype=torch.float64).reshape(6, 3, 1).requires_grad_(True)
    compiled = rollout_and_gradients(problem, headings, x0, diffenvs.RK4(compile=True, chunk=2))
    eager = rollout_and_gradients(problem, headings, x0, diffenvs.RK4())
    assert_same(compiled, eager)
    done = eager[0].done
    assert bool(done[-1].all()) and bool(done[1:-1].any()) and not bool(done[1:-1].all())  # some ended early


def test_what_the_chunks_cannot_carry_runs_eagerly(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain callable policy, a differentiated constant and a rollout shorter than a chunk take the eager loop."""
    problem = Cartpole(max_steps=4)
    x0 = torch.tensor([[0.0, 0.0, 0.3, 0.0]], dtype=torch.float64)
    solver = diffenvs.RK4(compile=True, chunk=10)
    calls = []
    monkeypatch.setattr(fused, "_runner", lambda *args, **kwargs: calls.append(args))
    zero = lambda o: torch.zeros(o.shape[0], 1, dtype=o.dtype)  # noqa: E731
    diffenvs.rollout(problem, zero, x0, solver=diffenvs.RK4(compile=True, chunk=2))
    diffenvs.rollout(problem, TanhPolicy(problem), x0, solver=solver)  # 4 steps < one chunk of 10
    mass = torch.tensor(1.0, dtype=torch.float64, requires_grad=True)
    trajectory = diffenvs.rollout(problem, TanhPolicy(problem), x0, solver=diffenvs.RK4(compile=True, chunk=2),
                                  params=dataclasses.replace(problem.params, pole_mass=mass))
    assert calls == []
    (gradient,) = torch.autograd.grad(trajectory.costs.sum(), mass)
    assert torch.isfinite(gradient)


def test_a_state_of_matrices_runs_eagerly_and_equals_the_eager_rollout(monkeypatch: pytest.MonkeyPatch) -> None:
    """System identification's internal state carries (batch, d, d) statistics, which chunks of (batch, n) states do
    not: compiled, it takes the eager loop, with the eager result."""
    from diffenvs.envs.linear_sysid import LinearSysID

    problem = LinearSysID(max_steps=6)
    policy = TanhPolicy(problem)
    x0 = torch.zeros(2, problem.d, dtype=torch.float64)
    calls = []
    monkeypatch.setattr(fused, "_runner", lambda *args, **kwargs: calls.append(args))
    compiled = rollout_and_gradients(problem, policy, x0, diffenvs.RK4(compile=True, chunk=2))
    assert calls == []
    assert_same(compiled, rollout_and_gradients(problem, policy, x0, diffenvs.RK4()))


@pytest.mark.parametrize("chunk", [0, -1, 2.0, True])
def test_chunk_must_be_a_positive_integer(chunk) -> None:
    with pytest.raises(ValueError, match="chunk"):
        diffenvs.RK4(compile=True, chunk=chunk)


def test_neural_ode_device_is_checked() -> None:
    from agents.neural_ode.config import NeuralOdeConfig

    with pytest.raises(ValueError, match="device"):
        NeuralOdeConfig(device="not-a-device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device"):
            NeuralOdeConfig(device="cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_rollout_and_training_on_cuda_equal_the_cpu() -> None:
    from agents.neural_ode import NeuralOdeConfig, train

    problem = Cartpole(max_steps=6)
    policy = TanhPolicy(problem)
    x0 = torch.tensor([[0.0, 0.0, 0.3, 0.0], [0.1, -0.2, -0.5, 0.4]], dtype=torch.float64)
    for solver in (diffenvs.RK4(), diffenvs.RK4(compile=True, chunk=2)):
        cpu = rollout_and_gradients(problem, policy, x0, solver)
        gpu_policy = TanhPolicy(problem).cuda()
        gpu = rollout_and_gradients(problem, gpu_policy, x0.cuda(), solver)
        torch.testing.assert_close(gpu[0].states.cpu(), cpu[0].states, rtol=1e-9, atol=1e-9)
        for a, b in zip(gpu[1], cpu[1]):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-8, atol=1e-9)
    config = NeuralOdeConfig(iterations=3, batch_size=4, device="cuda", compile="off")
    result = train("DiffCartpole-v0", config=config, progress=False)
    assert next(result.policy.parameters()).device.type == "cpu"
