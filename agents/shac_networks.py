r"""SHAC's networks as in Xu et al. 2022: the running observation normaliser, the Gaussian actor, the critic.

Their code (``models/actor.py``, ``models/critic.py``, ``utils/running_mean_std.py`` of the
paper's repository) fixes what the paper leaves open; here, with the same choices:

- :class:`RunningMeanStd`: running mean and (population) variance of the observations, merged
  batch by batch with the parallel formula of Chan et al.; it starts at mean 0, variance 1 and
  a count of ``1e-4``, and normalises :math:`(o - \mu)/\sqrt{\sigma^2 + 10^{-5}}`.
- :class:`Actor`: a mean network of ``depth`` layers of ``width`` units, each a linear map, an
  ELU and a LayerNorm, then a linear output :math:`\mu(o)`, PyTorch's default initialisation;
  a state-independent log standard deviation :math:`\log\sigma` (one per control, started at
  -1). While :meth:`Actor.sampling` is active the pre-activation is the reparameterised sample
  :math:`z = \mu(o) + \sigma\,\epsilon`, :math:`\epsilon \sim \mathcal N(0, I)`, so gradients
  reach :math:`\mu` and :math:`\log\sigma` through the sample; otherwise it is the mean
  (evaluation). The action :math:`\tanh z \in [-1, 1]` is mapped affinely onto the control
  bounds (the paper's environment clips :math:`\tanh z` and scales it by its action strength).
  The normaliser is a submodule: its statistics are buffers of the actor's ``state_dict``, so
  a saved actor evaluates with them.
- :class:`Critic`: ``depth`` layers of a linear map, an ELU and a LayerNorm, a linear output;
  orthogonal weights of gain :math:`\sqrt 2`, zero biases.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch.nn import functional

from diffenvs.core.numerics import TORCH, stack
from diffenvs.core.problem import Problem

#: the paper's count of the normaliser's prior (mean 0, variance 1) and the variance floor of its normalisation
PRIOR_COUNT = 1e-4
VARIANCE_FLOOR = 1e-5


class RunningMeanStd(torch.nn.Module):
    """Running mean and population variance of ``size``-vectors; calling it normalises ``(..., size)`` tensors.

    ``prior_count`` weighs the starting statistics (mean 0, variance 1); 0 gives the plain
    statistics of the data seen. The count is kept in float64 whatever the statistics' dtype.
    """

    mean: torch.Tensor
    var: torch.Tensor
    count: torch.Tensor

    def __init__(self, size: int, prior_count: float = PRIOR_COUNT, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        if not (isinstance(prior_count, (int, float)) and math.isfinite(prior_count) and prior_count >= 0):
            raise ValueError(f"prior_count must be a finite non-negative number, got {prior_count!r}")
        self.register_buffer("mean", torch.zeros(size, dtype=dtype))
        self.register_buffer("var", torch.ones(size, dtype=dtype))
        self.register_buffer("count", torch.tensor(float(prior_count), dtype=torch.float64))

    @torch.no_grad()
    def update(self, batch: torch.Tensor) -> None:
        """Merge the observations ``batch`` ``(..., size)`` (every leading index one observation)."""
        rows = batch.reshape(-1, self.mean.shape[0]).to(self.mean.dtype)
        if rows.shape[0] == 0:
            return
        self.merge(rows.mean(0), rows.var(0, unbiased=False), rows.shape[0])

    @torch.no_grad()
    def merge(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        r"""Merge the moments of ``count`` observations: with :math:`\delta = \mu_b - \mu_a` and :math:`n = n_a + n_b`,
        :math:`\mu = \mu_a + \delta n_b / n`, :math:`n\sigma^2 = n_a\sigma_a^2 + n_b\sigma_b^2 + \delta^2 n_a n_b / n`."""
        prior = float(self.count)
        total = prior + count
        delta = mean - self.mean
        squares = self.var * prior + var * count + delta * delta * (prior * count / total)
        self.mean.add_(delta * (count / total))
        self.var.copy_(squares / total)
        self.count.fill_(total)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return (observation - self.mean) / torch.sqrt(self.var + VARIANCE_FLOOR)


def _elu_layer_norm_stack(sizes: list[int], dtype: torch.dtype) -> torch.nn.Sequential:
    """Linear, ELU, LayerNorm for each consecutive pair of ``sizes``."""
    layers: list[torch.nn.Module] = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out, dtype=dtype), torch.nn.ELU(), torch.nn.LayerNorm(fan_out, dtype=dtype)]
    return torch.nn.Sequential(*layers)


class Actor(torch.nn.Module):
    """Observations ``(B, obs)`` -> physical controls ``(B, m)``: the paper's Gaussian actor (see the module docstring).

    ``stochastic=False`` leaves out :math:`\\log\\sigma`: the mean alone, always (the paper's
    code offers a deterministic actor as an alternative). ``normalise=False`` leaves out the
    normaliser (the paper's ``obs_rms: False``).
    """

    def __init__(self, problem: Problem, width: int = 64, depth: int = 2, stochastic: bool = True,
                 normalise: bool = True, log_std_init: float = -1.0, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.problem = problem
        observation_size = len(problem.observation_names)
        self.hidden = _elu_layer_norm_stack([observation_size, *[width] * depth], dtype)
        self.output = torch.nn.Linear(width if depth else observation_size, problem.control_dim, dtype=dtype)
        self.log_std = (torch.nn.Parameter(torch.full((problem.control_dim,), float(log_std_init), dtype=dtype))
                        if stochastic else None)
        self.normaliser = RunningMeanStd(observation_size, dtype=dtype) if normalise else None
        self._generator: torch.Generator | None = None

    @contextmanager
    def sampling(self, generator: torch.Generator) -> Iterator[None]:
        """Within the block the actor samples its pre-activation, the noise drawn from ``generator``."""
        if self.log_std is None:
            raise ValueError("sampling needs a stochastic actor (stochastic=True)")
        self._generator = generator
        try:
            yield
        finally:
            self._generator = None

    def normalised(self, observation: torch.Tensor) -> torch.Tensor:
        """``observation`` through the normaliser (unchanged without one)."""
        return observation if self.normaliser is None else self.normaliser(observation)

    def mean_pre_activation(self, observation: torch.Tensor) -> torch.Tensor:
        r""":math:`\mu(o)` of raw observations ``(B, obs)``."""
        h = self.normalised(observation)
        for layer in self.hidden:  # the layers' functions called directly: a rollout calls the actor every step
            if isinstance(layer, torch.nn.Linear):
                h = functional.linear(h, layer.weight, layer.bias)
            elif isinstance(layer, torch.nn.LayerNorm):
                h = functional.layer_norm(h, layer.normalized_shape, layer.weight, layer.bias, layer.eps)
            else:
                h = functional.elu(h)
        return functional.linear(h, self.output.weight, self.output.bias)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        z = self.mean_pre_activation(observation)
        if self._generator is not None and self.log_std is not None:
            noise = torch.randn(z.shape, generator=self._generator, dtype=z.dtype, device=z.device)
            z = z + self.log_std.exp() * noise
        action = torch.tanh(z)
        if action.shape[-1] == 1:  # one control: its column is the component, kept (batch, 1)
            (control,) = self.problem.control_from_action((action,), TORCH)
            return control
        return stack(self.problem.control_from_action(action.unbind(-1), TORCH), like=observation)


class Critic(torch.nn.Module):
    """V(o) of normalised observations: ``depth`` (linear, ELU, LayerNorm) layers of ``width`` units, a linear output;
    orthogonal weights of gain sqrt(2) and zero biases, as the paper's critic."""

    def __init__(self, observation_size: int, width: int = 64, depth: int = 2, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(*_elu_layer_norm_stack([observation_size, *[width] * depth], dtype),
                                       torch.nn.Linear(width if depth else observation_size, 1, dtype=dtype))
        with torch.no_grad():
            for layer in self.net:
                if isinstance(layer, torch.nn.Linear):
                    torch.nn.init.orthogonal_(layer.weight, gain=math.sqrt(2.0))
                    layer.bias.zero_()

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.net(observation).squeeze(-1)
