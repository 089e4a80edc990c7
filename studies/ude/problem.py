r"""The forum post's Lotka--Volterra problem: the true system, its noisy data, the network and the regulariser.

.. math:: \dot u_1 = \alpha u_1 - \beta u_1 u_2, \qquad \dot u_2 = \gamma u_1 u_2 - \delta u_2,
          \qquad (\alpha, \beta, \gamma, \delta) = (1.3, 0.9, 0.8, 1.8).

The network :math:`\hat U` (2-5-5-5-2, activations :math:`e^{-x^2}`) stands for the missing terms
:math:`(-\beta u_1 u_2, \gamma u_1 u_2)`; the regulariser is
:math:`\sum_{x \in \{0, 0.1, \dots, 10\}} \|\partial \hat U/\partial u\,(x, 1)\|_F^2`.
"""

from __future__ import annotations

import torch

from diffenvs.core.rollout import Adaptive
from diffenvs.derivatives import input_jacobian, solve

__all__ = [
    "TRUE_PARAMETERS", "SAVE_EVERY", "DATA_POINTS", "NOISE", "lotka_volterra", "true_trajectory", "make_data", "Rbf",
    "make_network",
    "regulariser_points", "regulariser", "true_regulariser", "missing_terms",
]

TRUE_PARAMETERS = (1.3, 0.9, 0.8, 1.8)  # α, β, γ, δ
SAVE_EVERY = 0.25
DATA_POINTS = 21
"""Saved states of the data: every 0.25 on [0, 5]."""
NOISE = 5e-3


def lotka_volterra(t: torch.Tensor, x: torch.Tensor, theta: object = None) -> torch.Tensor:
    """The true vector field, batched over leading dimensions of ``x``."""
    alpha, beta, gamma, delta = TRUE_PARAMETERS
    u1, u2 = x[..., 0], x[..., 1]
    return torch.stack([alpha * u1 - beta * u1 * u2, gamma * u1 * u2 - delta * u2], -1)


def true_trajectory(u0: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """The noise-free states ``(len(times), 2)`` from ``u0`` ``(2,)``: dopri5 at rtol 1e-10."""
    return solve(lotka_volterra, u0.reshape(1, 2), times, solver=Adaptive("dopri5", rtol=1e-10, atol=1e-12))[:, 0]


def make_data(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Times ``(21,)`` (every 0.25 on ``[0, 5]``), noise-free states ``(21, 2)`` (:func:`true_trajectory`), noisy data
    ``(21, 2)``: the post's recipe, seeded. The start state is ``5 * rand(2)``, the noise ``5e-3 * mean(X) * randn``."""
    generator = torch.Generator().manual_seed(seed)
    u0 = 5.0 * torch.rand(1, 2, generator=generator, dtype=torch.float64)
    times = torch.arange(DATA_POINTS, dtype=torch.float64) * SAVE_EVERY
    clean = true_trajectory(u0[0], times)
    noise = torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    return times, clean, clean + NOISE * clean.mean(0) * noise


class Rbf(torch.nn.Module):
    """The post's activation, :math:`e^{-x^2}`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-x * x)


def make_network(seed: int) -> torch.nn.Sequential:
    """2-5-5-5-2 with :math:`e^{-x^2}` activations, Glorot-uniform weights and zero biases (Lux's defaults)."""
    torch.manual_seed(seed)
    network = torch.nn.Sequential(torch.nn.Linear(2, 5), Rbf(), torch.nn.Linear(5, 5), Rbf(), torch.nn.Linear(5, 5), Rbf(),
                                  torch.nn.Linear(5, 2)).double()
    for layer in network:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    return network


def regulariser_points() -> torch.Tensor:
    """The post's grid: first input 0, 0.1, ..., 10, second input 1.0; shape ``(101, 2)``."""
    x = torch.arange(101, dtype=torch.float64) / 10
    return torch.stack([x, torch.ones_like(x)], -1)


def regulariser(network: torch.nn.Module, weights: dict[str, torch.Tensor], points: torch.Tensor, mode: str,
                input_step: float = 1e-4) -> torch.Tensor:
    r""":math:`\sum_i \|\partial U/\partial u\,(x_i)\|_F^2` by ``mode``.

    ``"forward"``/``"reverse"``: exact, :func:`diffenvs.derivatives.input_jacobian`;
    ``"loop"``: exact, one ``torch.autograd.grad(create_graph=True)`` per point and output (as
    the post's ``map``); ``"differences"``: central differences in each input, step ``input_step``.
    """
    if mode in ("forward", "reverse"):
        return input_jacobian(network, points, params=weights, mode=mode).square().sum()

    def call(x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.func.functional_call(network, weights, (x,))
        return out

    if mode == "loop":
        total = points.new_zeros(())
        for point in points:
            x = point.detach().clone().requires_grad_(True)
            out = call(x[None])[0]
            for i in range(out.shape[0]):
                (row,) = torch.autograd.grad(out[i], x, create_graph=True)
                total = total + row.square().sum()
        return total
    if mode != "differences":
        raise ValueError(f"mode must be one of ('forward', 'reverse', 'loop', 'differences'), got {mode!r}")
    eye = torch.eye(points.shape[1], dtype=points.dtype)
    columns = [(call(points + input_step * e) - call(points - input_step * e)) / (2 * input_step) for e in eye]
    return torch.stack(columns, -1).square().sum()


def true_regulariser(points: torch.Tensor) -> float:
    r"""The regulariser of the true missing terms, whose Jacobian is
    :math:`[[-\beta u_2, -\beta u_1], [\gamma u_2, \gamma u_1]]`."""
    _, beta, gamma, _ = TRUE_PARAMETERS
    u1, u2 = points[:, 0], points[:, 1]
    return float(((beta**2 + gamma**2) * (u1 * u1 + u2 * u2)).sum())


def missing_terms(states: torch.Tensor) -> torch.Tensor:
    r"""The terms the network stands for: :math:`(-\beta u_1 u_2, \gamma u_1 u_2)`."""
    _, beta, gamma, _ = TRUE_PARAMETERS
    product = states[..., 0] * states[..., 1]
    return torch.stack([-beta * product, gamma * product], -1)
