"""The eager gradient path's per-step cost, pinned as counts (deterministic, not timed), and the stacked RK4 step
against the component-wise one."""

from __future__ import annotations

import math

import pytest
import torch

from diffenvs.core import numerics
from diffenvs.core.numerics import SCALAR, TORCH, rk4_step
from diffenvs.core.opcount import OpCounter, environment_run, graph_nodes, main, rollout_counts
from diffenvs.envs.cartpole import Cartpole

#: per step of an eager cartpole rollout (RK4, float32): autograd nodes, aten operations forward and backward, and
#: the conversions of Python numbers (aten::to). Before the stacked RK4 step and the terminal cost kept out of the
#: graph where it is not due: 166, 180, 318 and 117; before the constants and step sizes multiplied as 0-d tensors of
#: the rollout's dtype and the shared terms of the cartpole's two accelerations computed once: 130, 142, 306 and 79.
CARTPOLE_STEP = {"nodes": 106, "forward_ops": 133, "backward_ops": 266, "conversions": 14}


def test_cartpole_step_counts_stay_at_most_what_they_are() -> None:
    counts = rollout_counts(environment_run("DiffCartpole-v0", batch=4))
    measured = {name: getattr(counts, name) for name in CARTPOLE_STEP}
    assert all(measured[name] <= bound for name, bound in CARTPOLE_STEP.items()), measured
    assert counts.node_names["StackBackward0"] <= 6  # the state and the four stages stacked, and the observation
    assert counts.node_names["CeilBackward0"] == 0  # the terminal cost's angle wrapping: not in the graph before it is due


def test_counts_do_not_depend_on_the_batch() -> None:
    small, large = (rollout_counts(environment_run("DiffCartpole-v0", batch=b)) for b in (2, 16))
    assert (small.nodes, small.forward_ops, small.backward_ops) == (large.nodes, large.forward_ops, large.backward_ops)


def test_graph_nodes_and_the_op_counter_count_what_runs() -> None:
    a = torch.ones(3, requires_grad=True)
    with OpCounter() as counter:
        loss = (a * a + 1.0).sum()
    assert counter.ops == {"aten.mul.Tensor": 1, "aten.add.Tensor": 1, "aten.sum.default": 1}
    assert graph_nodes(loss) == {"SumBackward0": 1, "AddBackward0": 1, "MulBackward0": 1, "torch::autograd::AccumulateGrad": 1}


def test_main_prints_a_row_per_environment(capsys: pytest.CaptureFixture[str]) -> None:
    text = main(["--env", "DiffIsochronism-v0", "--batch", "2"])
    assert "| DiffIsochronism-v0 |" in text and text in capsys.readouterr().out


def _pendulums(t: object, x: tuple, u: object) -> tuple:
    """Two damped pendulums, the second pushed by the first: four components."""
    theta, omega, phi, nu = x
    push = 0.0 if u is None else u
    return omega, -9.8 * TORCH.sin(theta) + push - 0.1 * omega, nu, -4.0 * TORCH.sin(phi) + 0.3 * omega / 7.0


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("h", ["number", "per_trajectory"])
def test_stacked_step_equals_the_component_wise_step_to_the_last_bit(dtype: torch.dtype, h: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    generator = torch.Generator().manual_seed(0)
    x = tuple(torch.randn(1000, generator=generator, dtype=dtype) * 3 for _ in range(4))
    step = 0.05 if h == "number" else torch.rand(1000, generator=generator, dtype=dtype) * 0.1
    stacked = rk4_step(_pendulums, 0.0, x, step, 0.5)
    monkeypatch.setattr(numerics, "_stackable", lambda x, h: False)
    components = rk4_step(_pendulums, 0.0, x, step, 0.5)
    for a, b in zip(stacked, components):
        assert torch.equal(a, b)


def test_stacked_step_broadcasts_number_derivatives_and_keeps_floats_component_wise() -> None:
    def clock(t: object, x: tuple, u: object) -> tuple:
        return 1.0, x[0], 0.0, x[2]  # derivatives that are numbers

    x = tuple(torch.full((3,), v, dtype=torch.float64) for v in (0.0, 1.0, 2.0, 3.0))
    t1, y1, z1, w1 = rk4_step(clock, 0.0, x, 0.1)
    assert torch.allclose(t1, torch.full((3,), 0.1, dtype=torch.float64))
    assert torch.allclose(y1, torch.full((3,), 1.005, dtype=torch.float64))
    assert torch.equal(z1, x[2]) and torch.allclose(w1, torch.full((3,), 3.2, dtype=torch.float64))
    scalar = rk4_step(lambda t, z, u: (1.0, z[0]), 0.0, (0.0, 1.0), 0.1)
    assert scalar == pytest.approx((0.1, 1.005)) and all(isinstance(v, float) for v in scalar)
    assert SCALAR.sin(math.pi / 2) == 1.0


def test_cartpole_rollout_is_the_component_wise_rollout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The stacked step changes nothing a rollout returns (float64, to the last bit)."""
    import diffenvs

    problem = Cartpole(max_steps=20)
    x0 = torch.tensor([[0.0, 0.1, 3.0, -0.2], [0.3, 0.0, 0.2, 1.0]], dtype=torch.float64)
    controls = torch.linspace(-60.0, 60.0, 40, dtype=torch.float64).reshape(20, 2, 1)
    stacked = diffenvs.rollout(problem, controls, x0)
    monkeypatch.setattr(numerics, "_stackable", lambda x, h: False)
    components = diffenvs.rollout(problem, controls, x0)
    assert torch.equal(stacked.states, components.states) and torch.equal(stacked.rewards, components.rewards)


def test_a_terminal_cost_not_yet_due_still_makes_a_non_finite_step_nan() -> None:
    """Out of the graph before it is due, the terminal cost still enters the reward as 0 * cost: nan where not finite."""
    import diffenvs

    problem = Cartpole(max_steps=10)
    x0 = torch.tensor([[0.0, 0.0, 0.5, 0.0], [0.0, 0.0, 0.5, 1e200]], dtype=torch.float64, requires_grad=True)
    trajectory = diffenvs.rollout(problem, torch.zeros(2, 2, 1, dtype=torch.float64), x0, steps=2, check=False)
    assert trajectory.rewards[0, 0] == 0.0 and trajectory.rewards[0, 1].isnan()
    (gradient,) = torch.autograd.grad(trajectory.rewards[:, 0].sum(), x0)
    assert not gradient[0].any()  # the costs stay in the graph, with a zero gradient before any is due
