r"""A population of policy networks rolled out as one batch.

Member :math:`j` of a generation is the neural-ODE agent's :class:`~agents.neural_ode.PolicyNetwork`
with the flat weights :math:`\theta_j` (row :math:`j` of a ``(P, d)`` tensor). Every member
plays the same :math:`B` starts (and the same process noise): common random numbers, so that
the members' costs differ only by their weights. The :math:`P \times B` trajectories are one call
of :func:`diffenvs.rollout`, the networks one ``torch.func.vmap`` of ``functional_call`` over
the stacked weights, and member :math:`j`'s cost is its mean episode cost
:math:`J_j = \frac1B \sum_b J(x_0^b; \theta_j)`.
"""

from __future__ import annotations

import torch
from torch.func import functional_call, vmap

from agents.neural_ode import PolicyNetwork
from diffenvs import rollout
from diffenvs.core.problem import Problem
from diffenvs.core.rollout import time_limited


def flat_weights(network: torch.nn.Module) -> torch.Tensor:
    """The network's parameters as one vector ``(d,)`` (the order of ``named_parameters``)."""
    return torch.nn.utils.parameters_to_vector(network.parameters()).detach().clone()


def load_weights(network: torch.nn.Module, theta: torch.Tensor) -> torch.nn.Module:
    """Copy the flat weights ``theta`` ``(d,)`` into ``network``; returns it."""
    with torch.no_grad():
        torch.nn.utils.vector_to_parameters(theta.to(next(network.parameters()).dtype), network.parameters())
    return network


def stacked_parameters(network: torch.nn.Module, members: torch.Tensor) -> dict[str, torch.Tensor]:
    """The rows of ``members`` ``(P, d)`` as ``{name: (P, *shape)}`` in the network's layout."""
    dimension = sum(p.numel() for p in network.parameters())
    if members.dim() != 2 or members.shape[1] != dimension:
        raise ValueError(f"members must have shape (population, {dimension}), got {tuple(members.shape)}")
    stacked, start = {}, 0
    for name, parameter in network.named_parameters():
        stacked[name] = members[:, start:start + parameter.numel()].reshape(-1, *parameter.shape)
        start += parameter.numel()
    return stacked


class PopulationPolicy:
    """Observations ``(P B, obs)``, member-major, -> controls ``(P B, m)``: member ``j`` acts on rows ``j B .. (j+1) B - 1``."""

    def __init__(self, network: PolicyNetwork, members: torch.Tensor):
        self.parameters = stacked_parameters(network, members)
        self.population = members.shape[0]
        self.act = vmap(lambda parameters, observations: functional_call(network, parameters, (observations,)))

    def __call__(self, observations: torch.Tensor) -> torch.Tensor:
        grouped = observations.reshape(self.population, -1, observations.shape[-1])
        return self.act(self.parameters, grouped).reshape(observations.shape[0], -1)


def population_costs(problem: Problem, network: PolicyNetwork, members: torch.Tensor, x0: torch.Tensor,
                     steps: int, noise: torch.Tensor | None = None) -> torch.Tensor:
    """Each member's mean episode cost ``(P,)`` over the starts ``x0`` ``(B, n)``, from one batched rollout.

    ``noise`` ``(steps, B, k)`` is the process noise of stochastic problems, the same for every
    member. No gradient is taken.
    """
    population, batch = members.shape[0], x0.shape[0]
    starts = x0.repeat(population, 1)  # member-major: member j has rows j B .. (j+1) B - 1
    shared = None if noise is None else noise.repeat(1, population, 1)
    with torch.no_grad():
        trajectory = rollout(time_limited(problem, steps), PopulationPolicy(network, members.to(x0.dtype)), starts, steps=steps,
                             noise=shared)
    return trajectory.costs.reshape(population, batch).mean(1)
