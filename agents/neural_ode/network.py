"""The neural-ODE agent's policy network and its training starts."""

from __future__ import annotations

import torch
from torch.nn import functional

from diffenvs.core.numerics import TORCH, stack
from diffenvs.core.problem import Problem


class PolicyNetwork(torch.nn.Module):
    r"""Observations ``(B, obs)`` -> physical controls ``(B, m)`` inside the problem's control set.

    ``depth`` tanh layers of ``width`` units, a linear layer to :math:`z \in \mathbb R^m`,
    :math:`a = \tanh z`, then ``problem.control_from_action(a)`` (see the module docstring).
    With ``symmetric`` the pre-activation is made odd, :math:`z(o) = (h(o) - h(-o))/2`, so the
    control is odd about the centre of its range.
    """

    def __init__(self, problem: Problem, width: int = 16, depth: int = 2, init_scale: float = 0.1, symmetric: bool = False):
        super().__init__()
        self.problem = problem
        self.symmetric = symmetric
        sizes = [len(problem.observation_names), *[width] * depth]
        layers: list[torch.nn.Module] = []
        for fan_in, fan_out in zip(sizes, sizes[1:]):
            layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.Tanh()]
        self.hidden = torch.nn.Sequential(*layers)
        self.output = torch.nn.Linear(sizes[-1], problem.control_dim)
        with torch.no_grad():
            self.output.weight.mul_(init_scale)
            self.output.bias.zero_()

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        z = self._pre_activation(observation)
        if self.symmetric:
            z = 0.5 * (z - self._pre_activation(-observation))
        action = torch.tanh(z)
        if action.shape[-1] == 1:  # one control: its column is the component, kept (batch, 1)
            (control,) = self.problem.control_from_action((action,), TORCH)
            return control
        return stack(self.problem.control_from_action(action.unbind(-1), TORCH), like=observation)

    def _pre_activation(self, observation: torch.Tensor) -> torch.Tensor:
        """``output(hidden(observation))``, the layers' functions called directly: a rollout calls the network
        every step of tiny batches, where the modules' call machinery costs as much as their arithmetic."""
        h = observation
        for layer in self.hidden:
            h = functional.linear(h, layer.weight, layer.bias) if isinstance(layer, torch.nn.Linear) else torch.tanh(h)
        return functional.linear(h, self.output.weight, self.output.bias)


def initial_states(problem: Problem, batch: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Physical start states ``(batch, n)`` from the problem's own ``initial_state`` on torch draws.

    The draws (``problem.initial_draws``: uniform on [0, 1) or standard normal) come from
    ``generator``; they are not the Gymnasium face's counter-based draws, so training and
    evaluation starts differ while following the same distribution.
    """
    kind, count = problem.initial_draws
    shape = (batch, count)
    draws = (torch.rand if kind == "uniform" else torch.randn)(shape, generator=generator, dtype=dtype)
    params = problem.params_like(problem.params, draws)
    x = problem.state_to_physical(problem.initial_state(draws, params, TORCH))
    return torch.stack([torch.as_tensor(c, dtype=dtype).expand(batch) for c in x], -1)
