"""Derivatives inside a loss: each API checked by gradcheck and gradgradcheck in float64, and the adjoint refusal."""

from __future__ import annotations

import math

import pytest
import torch
import torchdiffeq
from torch.autograd import gradcheck, gradgradcheck

from diffenvs import RK4, Adaptive, Adjoint
from diffenvs.derivatives import input_jacobian, sensitivity, sensitivity_schwarz, solve, time_derivatives

TIGHT = Adaptive("dopri5", rtol=1e-10, atol=1e-12)


def decay(t: torch.Tensor, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """dx_i/dt = -theta_i x_i (n = m = 2): S = diag(-t exp(-theta_i t)) from x0 = 1."""
    return -theta * x


def forced(t: torch.Tensor, x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """A non-autonomous, nonlinear field mixing components, for the gradient checks."""
    return torch.stack([theta[..., 0] * torch.sin(x[..., 1]) + torch.cos(t), -theta[..., 1] * x[..., 0] * x[..., 1]], -1)


def small_network(n_in: int, n_out: int) -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(n_in, 3), torch.nn.Tanh(), torch.nn.Linear(3, n_out)).double()


def as_inputs(module: torch.nn.Module) -> tuple[list[str], list[torch.Tensor]]:
    names = [name for name, _ in module.named_parameters()]
    return names, [p.detach().clone().requires_grad_(True) for p in module.parameters()]


# ---- input Jacobian ----------------------------------------------------------------------------
def test_input_jacobian_matches_the_chain_rule_and_both_modes_agree() -> None:
    network = small_network(2, 3)
    x = torch.randn(7, 2, dtype=torch.float64)
    first, _, second = network
    hidden = torch.tanh(first(x))
    expected = second.weight @ ((1 - hidden**2)[:, :, None] * first.weight)  # W2 diag(1 - h^2) W1
    forward, reverse = input_jacobian(network, x), input_jacobian(network, x, mode="reverse")
    assert forward.shape == (7, 3, 2)
    torch.testing.assert_close(forward, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(reverse, expected, rtol=1e-12, atol=1e-12)


def test_input_jacobian_loss_reaches_the_module_parameters() -> None:
    network = small_network(2, 2)
    input_jacobian(network, torch.randn(5, 2, dtype=torch.float64)).square().sum().backward()
    assert all(p.grad is not None for p in network[0].parameters())
    assert network[0].weight.grad.abs().sum() > 0
    assert network[2].bias.grad is None or network[2].bias.grad.abs().max() == 0  # J does not depend on the last bias


@pytest.mark.parametrize("mode", ["forward", "reverse"])
def test_input_jacobian_gradcheck_and_gradgradcheck(mode: str) -> None:
    network = small_network(2, 2)
    names, values = as_inputs(network)
    x = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)

    def jacobian(x, *values):
        return input_jacobian(network, x, params=dict(zip(names, values)), mode=mode)

    assert gradcheck(jacobian, (x, *values))
    assert gradgradcheck(jacobian, (x, *values))


def test_input_jacobian_refuses_bad_input() -> None:
    network = small_network(2, 2)
    with pytest.raises(ValueError, match="mode"):
        input_jacobian(network, torch.zeros(3, 2, dtype=torch.float64), mode="sideways")
    with pytest.raises(ValueError, match="x must"):
        input_jacobian(network, torch.zeros(2, dtype=torch.float64))


# ---- time derivatives --------------------------------------------------------------------------
def test_time_derivatives_of_a_known_function() -> None:
    t = torch.linspace(0.0, 2.0, 5, dtype=torch.float64)
    derivatives = time_derivatives(lambda s: torch.sin(3 * s), t, 4)
    expected = torch.stack([torch.sin(3 * t), 3 * torch.cos(3 * t), -9 * torch.sin(3 * t), -27 * torch.cos(3 * t),
                            81 * torch.sin(3 * t)])
    torch.testing.assert_close(derivatives, expected, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(time_derivatives(lambda s: s**3, t, 0), (t**3)[None])


def test_time_derivatives_gradcheck_and_gradgradcheck() -> None:
    network = small_network(1, 2)
    names, values = as_inputs(network)
    t = torch.rand(3, dtype=torch.float64, requires_grad=True)

    def derivatives(t, *values):
        return time_derivatives(network, t, 2, params=dict(zip(names, values)))

    assert derivatives(t, *values).shape == (3, 3, 2)
    assert gradcheck(derivatives, (t, *values))
    assert gradgradcheck(derivatives, (t, *values))


def test_time_derivatives_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="order"):
        time_derivatives(torch.sin, torch.zeros(3, dtype=torch.float64), -1)
    with pytest.raises(ValueError, match="t must"):
        time_derivatives(torch.sin, torch.zeros(3, 1, dtype=torch.float64), 1)


# ---- ODE solutions and sensitivities -------------------------------------------------------------
@pytest.mark.parametrize("solver", [RK4(), TIGHT, Adjoint("dopri5", rtol=1e-10, atol=1e-12)], ids=["rk4", "dopri5", "adjoint"])
def test_solve_matches_the_exponential_with_per_batch_times(solver) -> None:
    theta = torch.tensor([0.5, 2.0], dtype=torch.float64)
    times = torch.tensor([[0.0, 0.5], [0.7, 1.0], [1.5, 0.2]], dtype=torch.float64)  # (K, batch), one clock per row
    x0 = torch.ones(2, 2, dtype=torch.float64)
    x = solve(decay, x0, times, theta, solver=solver, steps=40)
    expected = torch.exp(-theta[None, None, :] * (times - times[0])[:, :, None])
    torch.testing.assert_close(x, expected, rtol=1e-7, atol=1e-9)


def test_sensitivity_matches_the_closed_form() -> None:
    theta = torch.tensor([0.8, 1.7], dtype=torch.float64)
    t = torch.tensor([0.0, 0.4, 1.1, 2.5], dtype=torch.float64)
    s = sensitivity(decay, torch.ones(1, 2, dtype=torch.float64), t, theta, solver=TIGHT)
    assert s.shape == (4, 1, 2, 2)
    expected = torch.diag_embed(-t[:, None] * torch.exp(-theta * t[:, None]))[:, None]
    torch.testing.assert_close(s, expected, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("solver", [RK4(), Adaptive("rk4")], ids=["rk4", "torchdiffeq-rk4"])
def test_sensitivity_gradcheck_and_gradgradcheck_in_times_parameters_and_start(solver) -> None:
    t = torch.tensor([[0.0, 0.1], [0.3, 0.5]], dtype=torch.float64, requires_grad=True)  # (K, batch)
    theta = torch.tensor([0.7, 1.3], dtype=torch.float64, requires_grad=True)
    x0 = torch.tensor([[0.5, 1.0], [1.0, -0.4]], dtype=torch.float64, requires_grad=True)

    def s(t, theta, x0):
        return sensitivity(forced, x0, t, theta, solver=solver, steps=3)[1:]

    assert gradcheck(s, (t, theta, x0))  # fixed steps: the discrete solution's derivatives, exactly
    assert gradgradcheck(s, (t, theta, x0))


def test_the_adjoint_solver_is_refused_when_the_sensitivity_must_be_differentiated() -> None:
    x0, t = torch.ones(1, 1, dtype=torch.float64), torch.tensor([0.0, 0.5], dtype=torch.float64)
    theta = torch.tensor([1.3], dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match="torch.no_grad") as error:
        sensitivity(decay, x0, t, theta, solver=Adjoint())
    assert "RK4()" in str(error.value) and "create_graph=False" in str(error.value)
    # first order is fine with the adjoint, and agrees with backpropagation through the solver
    adjoint = sensitivity(decay, x0, t, theta, solver=Adjoint("dopri5", rtol=1e-10, atol=1e-12), create_graph=False)
    torch.testing.assert_close(adjoint, sensitivity(decay, x0, t, theta, solver=TIGHT), rtol=1e-8, atol=1e-10)
    assert not adjoint.requires_grad


def test_odeint_adjoint_silently_drops_a_derivative_inside_the_loss() -> None:
    """Why the refusal: L = u(t; θ) + g², g = ∂u/∂θ. Through odeint_adjoint, dL/dθ comes back as g alone."""
    theta = torch.tensor([1.3], dtype=torch.float64, requires_grad=True)
    clock, u0, t = torch.tensor([0.0, 0.7], dtype=torch.float64), torch.ones(1, dtype=torch.float64), 0.7
    field = lambda s, u: -theta * u
    options = dict(rtol=1e-10, atol=1e-12)
    gradients = {}
    for name, u in (("direct", torchdiffeq.odeint(field, u0, clock, **options)[-1]),
                    ("adjoint", torchdiffeq.odeint_adjoint(field, u0, clock, adjoint_params=(theta,), **options)[-1])):
        (g,) = torch.autograd.grad(u.sum(), theta, create_graph=True)
        gradients[name] = (g.detach(), g.requires_grad, torch.autograd.grad(u.sum() + g.square().sum(), theta)[0])
    g = -t * math.exp(-1.3 * t)
    exact = g + 2 * g * (t * t * math.exp(-1.3 * t))  # dL/dθ = g + 2 g ∂g/∂θ
    assert gradients["direct"][1] and abs(gradients["direct"][2].item() - exact) < 1e-8
    assert not gradients["adjoint"][1]  # the adjoint's g is a constant to autograd ...
    assert abs(gradients["adjoint"][2].item() - g) < 1e-8  # ... so the g² term's gradient is silently missing
    assert abs(gradients["adjoint"][2].item() - exact) > 0.1


# ---- the Schwarz sensitivity ----------------------------------------------------------------------
def test_schwarz_sensitivity_and_its_time_derivative_agree_with_autograd_and_the_closed_form() -> None:
    theta = torch.tensor([0.8, 1.7], dtype=torch.float64)
    t = torch.tensor([0.3, 1.2], dtype=torch.float64, requires_grad=True)
    x0 = torch.ones(2, 2, dtype=torch.float64)
    schwarz = sensitivity_schwarz(decay, x0, t, theta, solver=TIGHT)
    through = sensitivity(decay, x0, torch.stack([torch.zeros_like(t), t]), theta, solver=TIGHT)[-1]
    torch.testing.assert_close(schwarz, through, rtol=1e-9, atol=1e-11)
    weights = torch.tensor([[[1.0, 0.3], [0.0, -2.0]], [[0.5, 0.0], [1.0, 1.0]]], dtype=torch.float64)
    (by_schwarz,) = torch.autograd.grad((weights * schwarz).sum(), t)
    (by_autograd,) = torch.autograd.grad((weights * through).sum(), t)
    exact_slope = (theta * t[:, None] - 1) * torch.exp(-theta * t[:, None])  # d/dt of -t exp(-θ t)
    expected = (weights.diagonal(dim1=1, dim2=2) * exact_slope).sum(-1)
    torch.testing.assert_close(by_schwarz, expected, rtol=1e-8, atol=1e-10)
    torch.testing.assert_close(by_autograd, expected, rtol=1e-8, atol=1e-10)


def test_schwarz_sensitivity_gradcheck_and_gradgradcheck_in_time() -> None:
    theta = torch.tensor([0.7, 1.3], dtype=torch.float64)
    x0 = torch.tensor([[0.5, 1.0], [1.0, -0.4]], dtype=torch.float64)
    t = torch.tensor([0.3, 0.5], dtype=torch.float64, requires_grad=True)

    def s(t):
        return sensitivity_schwarz(forced, x0, t, theta, steps=10)

    assert gradcheck(s, (t,), atol=1e-5, rtol=1e-4)  # the exact-ODE derivative: agrees to the solver's accuracy
    assert gradgradcheck(s, (t,), atol=1e-5, rtol=1e-4)


def test_schwarz_sensitivity_takes_the_adjoint_once_and_refuses_it_twice() -> None:
    theta = torch.tensor([1.3], dtype=torch.float64)
    x0 = torch.ones(1, 1, dtype=torch.float64)
    t = torch.tensor([0.6], dtype=torch.float64, requires_grad=True)
    s = sensitivity_schwarz(decay, x0, t, theta, solver=Adjoint("dopri5", rtol=1e-10, atol=1e-12))
    (slope,) = torch.autograd.grad(s.sum(), t)
    assert abs(slope.item() - (1.3 * 0.6 - 1) * math.exp(-1.3 * 0.6)) < 1e-8
    s = sensitivity_schwarz(decay, x0, t, theta, solver=Adjoint())
    with pytest.raises(ValueError, match="torch.no_grad"):
        torch.autograd.grad(s.sum(), t, create_graph=True)
    with pytest.raises(ValueError, match="theta must not require grad"):
        sensitivity_schwarz(decay, x0, t, theta.clone().requires_grad_(True))
