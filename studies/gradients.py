r"""First-order against zeroth-order gradients of an episode's cost (the study of ``scripts/gradients.py``).

The objective is the expected episode cost of a policy with weights :math:`\theta \in \mathbb R^p`
over the problem's start distribution, :math:`J(\theta) = \mathbb E_{x_0}[c(\theta, x_0)]`.
Two estimators from the same number :math:`B` of rollouts (Suh et al., "Do Differentiable
Simulators Give Better Policy Gradients?", ICML 2022):

* **first order** (backpropagation through the rollout): :math:`\hat g_1 = \frac1B \sum_i \nabla_\theta c(\theta, x_0^i)`,
  unbiased for :math:`\nabla J` where :math:`c` is differentiable and the expectation and gradient
  commute; its variance can explode with the horizon on a chaotic system (the per-start
  gradient grows like :math:`e^{\lambda T}`, :math:`\lambda` the largest Lyapunov exponent);
* **zeroth order** (Gaussian smoothing, antithetic): with :math:`\epsilon_j \sim \mathcal N(0, I_p)`,
  :math:`\hat g_0 = \frac{1}{B/2} \sum_{j} \frac{\Delta_j}{2\sigma}\,\epsilon_j` with
  :math:`\Delta_j = c(\theta + \sigma\epsilon_j, x_0^j) - c(\theta - \sigma\epsilon_j, x_0^j)`
  (:math:`B/2` pairs, each pair on one start), unbiased for the gradient of the smoothed objective
  :math:`J_\sigma(\theta) = \mathbb E_\epsilon[J(\theta + \sigma\epsilon)]`; its variance grows with
  :math:`p` but not with the horizon's sensitivity.

A cost function here is ``cost(thetas, starts) -> costs``: each row of ``thetas`` ``(B, p)`` its own
weights, each row of ``starts`` ``(B, n)`` its start, a differentiable cost per row. Per-row
weights make both estimators one batched rollout (:class:`BatchedMlp`), and the first-order
per-start gradients come from one backward pass (row :math:`i` of the gradient with respect
to ``thetas`` is :math:`\nabla_\theta c(\theta, x_0^i)`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from diffenvs import rollout
from diffenvs.core.numerics import TORCH, stack
from diffenvs.core.problem import Problem

CostFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def first_order(cost: CostFunction, theta: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
    """Per-start gradients ``(B, p)`` of ``cost`` at ``theta`` ``(p,)``; their mean is the first-order estimate."""
    thetas = theta.detach().expand(starts.shape[0], -1).clone().requires_grad_(True)
    (gradients,) = torch.autograd.grad(cost(thetas, starts).sum(), thetas)
    return gradients


def zeroth_order(cost: CostFunction, theta: torch.Tensor, starts: torch.Tensor, sigma: float,
                 generator: torch.Generator) -> torch.Tensor:
    """Per-pair antithetic Gaussian-smoothing estimates ``(B // 2, p)`` from ``B`` rollouts (pairs share a start)."""
    if not (isinstance(sigma, (int, float)) and sigma > 0 and math.isfinite(sigma)):
        raise ValueError(f"sigma must be a finite positive number, got {sigma!r}")
    pairs = starts.shape[0] // 2
    if pairs < 1:
        raise ValueError(f"starts must hold at least two rows (one antithetic pair), got {starts.shape[0]}")
    noise = torch.randn((pairs, theta.numel()), generator=generator, dtype=theta.dtype).to(theta.device)
    thetas = torch.cat([theta.detach() + sigma * noise, theta.detach() - sigma * noise])
    with torch.no_grad():
        costs = cost(thetas, torch.cat([starts[:pairs], starts[:pairs]]))
    return ((costs[:pairs] - costs[pairs:]) / (2.0 * sigma))[:, None] * noise


class BatchedMlp:
    """A tanh MLP from observations to controls whose every batch row has its own weights.

    ``sizes`` (observation size, hidden sizes..., control size); ``theta`` ``(B, p)`` holds each
    row's weights and biases flattened layer by layer (:attr:`size` numbers). The output
    :math:`a = \\tanh z` is mapped into the problem's control bounds, as the project's policy network does.
    """

    def __init__(self, problem: Problem, sizes: tuple[int, ...]) -> None:
        self.problem, self.sizes = problem, sizes
        self.size = sum(a * b + b for a, b in zip(sizes, sizes[1:]))

    def __call__(self, theta: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        layers, offset = [], 0
        for fan_in, fan_out in zip(self.sizes, self.sizes[1:]):
            weight = theta[:, offset:offset + fan_in * fan_out].reshape(-1, fan_out, fan_in)
            offset += fan_in * fan_out
            layers.append((weight, theta[:, offset:offset + fan_out]))
            offset += fan_out

        def policy(observation: torch.Tensor) -> torch.Tensor:
            h = observation
            for index, (weight, bias) in enumerate(layers):
                h = torch.einsum("boi,bi->bo", weight, h) + bias
                if index < len(layers) - 1:
                    h = torch.tanh(h)
            return stack(self.problem.control_from_action(torch.tanh(h).unbind(-1), TORCH), like=observation)

        return policy

    def initial(self, generator: torch.Generator, dtype: torch.dtype = torch.float64, output_scale: float = 0.5) -> torch.Tensor:
        """Weights ``(p,)`` drawn as torch's Linear layers draw them (uniform within 1/sqrt(fan_in)); the last layer scaled."""
        parts = []
        for index, (fan_in, fan_out) in enumerate(zip(self.sizes, self.sizes[1:])):
            bound = 1.0 / math.sqrt(fan_in) * (output_scale if index == len(self.sizes) - 2 else 1.0)
            parts.append((2 * torch.rand(fan_in * fan_out + fan_out, generator=generator, dtype=dtype) - 1) * bound)
        return torch.cat(parts)


def episode_cost(problem: Problem, mlp: BatchedMlp) -> CostFunction:
    """The episode cost of ``problem`` (its whole horizon) under per-row weights: a :data:`CostFunction`."""

    def cost(thetas: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        return rollout(problem, mlp(thetas), starts, check=False).costs

    return cost


def lyapunov_exponent(problem: Problem, policy: Callable[[torch.Tensor], torch.Tensor], starts: torch.Tensor,
                      steps: int, separation: float = 1e-7) -> float:
    r"""Largest Lyapunov exponent (1/s) of the closed loop, by Benettin's renormalised twin trajectories.

    Each start gets a twin displaced by ``separation`` along a fixed direction; after every step
    of :math:`\Delta t` the twin is brought back to distance ``separation`` along the current
    difference, and :math:`\lambda = \frac{1}{K \Delta t} \sum_k \log(d_k / \text{separation})`,
    averaged over the starts (float64; states, not observations).
    """
    x = starts.clone()
    direction = torch.ones_like(x) / math.sqrt(x.shape[1])
    twin = x + separation * direction
    total = torch.zeros(x.shape[0], dtype=x.dtype)
    with torch.no_grad():
        for k in range(steps):
            pair = torch.cat([x, twin])
            one = rollout(problem, policy, pair, steps=1, first_step=k, episode_start=torch.cat([starts, starts]),
                          check=False).states[-1]
            x, moved = one[:x.shape[0]], one[x.shape[0]:]
            difference = moved - x
            distance = difference.norm(dim=1).clamp_min(1e-300)
            total += torch.log(distance / separation)
            twin = x + separation * difference / distance[:, None]
    return float(total.mean() / (steps * problem.dt))
