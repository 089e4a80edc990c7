r"""Search strategies on a flat weight vector: ask for a population, tell its costs.

OpenAI-ES (Salimans et al. 2017) estimates the gradient of the Gaussian-smoothed cost
:math:`J_\sigma(\theta) = \mathbb E_{\varepsilon \sim N(0, I)}[J(\theta + \sigma\varepsilon)]`,

.. math:: \nabla J_\sigma(\theta) = \frac1\sigma \mathbb E[J(\theta + \sigma\varepsilon)\,\varepsilon]
          \approx \hat g = \frac{1}{n\sigma} \sum_{i=1}^{n} f_i\, \varepsilon_i,

from :math:`n` antithetic members :math:`\theta \pm \sigma\varepsilon_i`, :math:`i = 1 \dots n/2`
(:math:`\varepsilon_{n/2+i} = -\varepsilon_i`), where :math:`f_i` is member :math:`i`'s cost or,
for robustness to its scale, its centred rank (:func:`centred_ranks`); Adam descends
:math:`\sigma\hat g + \lambda\theta`: the L2 term is added at the scale of Salimans et al.'s released code, whose
estimate has no :math:`1/\sigma` (Adam is blind to the scale of the estimate alone, not to its ratio to
:math:`\lambda\theta`). CMA-ES is the maintained ``cmaes`` package behind the same two calls. Both take their
population from :meth:`EvolutionConfig.population_for` (0: the strategy's default for the number of weights).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from agents.evolution.config import EvolutionConfig


class Strategy(Protocol):
    """What the training loop needs of a search strategy."""

    population: int
    """Members per generation."""

    def ask(self) -> torch.Tensor:
        """The generation's members, ``(population, dimension)``."""

    def tell(self, costs: torch.Tensor) -> None:
        """Update from the members' costs ``(population,)`` (lower is better; non-finite is worst)."""

    @property
    def mean(self) -> torch.Tensor:
        """The current search mean ``(dimension,)``: the weights to deploy."""


def centred_ranks(costs: torch.Tensor) -> torch.Tensor:
    r"""Fitness shaping: the ranks of ``costs`` ``(n,)`` scaled to :math:`[-\frac12, \frac12]`, :math:`r_i/(n-1) - \frac12`.

    The lowest cost gets :math:`-\frac12`, the highest :math:`+\frac12`; a non-finite cost ranks
    as the highest (NaN and ``-inf`` alike: a diverged rollout is never the best). Ties are broken by order.
    """
    if costs.dim() != 1 or costs.numel() < 2:
        raise ValueError(f"costs must be a vector of at least 2 values, got shape {tuple(costs.shape)}")
    finite = torch.where(torch.isfinite(costs), costs, torch.full_like(costs, torch.inf))
    ranks = torch.empty_like(costs)
    ranks[torch.argsort(finite, stable=True)] = torch.arange(costs.numel(), dtype=costs.dtype)
    return ranks / (costs.numel() - 1) - 0.5


def es_gradient(epsilon: torch.Tensor, fitness: torch.Tensor, sigma: float) -> torch.Tensor:
    r"""The antithetic estimate :math:`\hat g = \frac{1}{n\sigma}\sum_i f_i \varepsilon_i
    = \frac{1}{n\sigma}\sum_{i=1}^{n/2} (f^+_i - f^-_i)\,\varepsilon_i`.

    ``epsilon`` ``(n/2, d)`` are the perturbation directions, ``fitness`` ``(n,)`` the fitness of
    :math:`\theta + \sigma\varepsilon_1, \dots, \theta + \sigma\varepsilon_{n/2}` then of
    :math:`\theta - \sigma\varepsilon_1, \dots`; with raw costs it is an unbiased estimate of
    :math:`\nabla J_\sigma(\theta)`.
    """
    pairs = epsilon.shape[0]
    if fitness.shape != (2 * pairs,):
        raise ValueError(f"fitness must have shape ({2 * pairs},) for {pairs} directions, got {tuple(fitness.shape)}")
    return (fitness[:pairs] - fitness[pairs:]) @ epsilon / (2 * pairs * sigma)


class OpenAIES:
    """Antithetic Gaussian ES with centred ranks and Adam (see the module docstring)."""

    def __init__(self, theta: torch.Tensor, config: EvolutionConfig, generator: torch.Generator):
        self.config, self.generator = config, generator
        self.theta = theta.detach().clone()
        self.population = config.population_for(self.theta.numel())
        self.optimizer = torch.optim.Adam([self.theta], lr=config.learning_rate)
        self.epsilon: torch.Tensor | None = None

    @property
    def mean(self) -> torch.Tensor:
        return self.theta

    def ask(self) -> torch.Tensor:
        pairs = self.population // 2
        self.epsilon = torch.randn((pairs, self.theta.numel()), generator=self.generator, dtype=self.theta.dtype)
        step = self.config.sigma * self.epsilon
        return torch.cat([self.theta + step, self.theta - step])

    def tell(self, costs: torch.Tensor) -> None:
        if self.epsilon is None:
            raise RuntimeError("tell() before ask()")
        gradient = es_gradient(self.epsilon, centred_ranks(costs), self.config.sigma)
        self.theta.grad = self.config.sigma * gradient + self.config.weight_decay * self.theta
        self.optimizer.step()
        self.epsilon = None


class CovarianceES:
    """CMA-ES from the ``cmaes`` package (Hansen's defaults for its learning rates) on the flat weights."""

    def __init__(self, theta: torch.Tensor, config: EvolutionConfig):
        from cmaes import CMA

        self.dtype, self.threads = theta.dtype, config.threads
        self.population = config.population_for(theta.numel())  # 0: the package's own default, 4 + floor(3 ln n)
        self.optimizer = CMA(mean=theta.detach().cpu().numpy().astype(np.float64), sigma=config.sigma,
                             population_size=config.population or None, seed=config.seed)
        if self.optimizer.population_size != self.population:
            raise RuntimeError(f"the cmaes package's default population is {self.optimizer.population_size}, "
                               f"not 4 + floor(3 ln n) = {self.population}: update default_population")
        self.members: list[np.ndarray] = []

    @property
    def mean(self) -> torch.Tensor:
        return torch.as_tensor(self.optimizer.mean, dtype=self.dtype)

    def ask(self) -> torch.Tensor:
        with threadpool_limits(self.threads):  # numpy's BLAS on all cores is many times slower on these small matrices
            self.members = [self.optimizer.ask() for _ in range(self.optimizer.population_size)]
        return torch.as_tensor(np.stack(self.members), dtype=self.dtype)

    def tell(self, costs: torch.Tensor) -> None:
        values = costs.detach().cpu().numpy().astype(np.float64)
        finite = np.isfinite(values)
        if not finite.any():
            raise RuntimeError("every member of the generation has a non-finite cost; lower sigma")
        values = np.where(finite, values, values[finite].max() + 1.0)  # non-finite: worse than the worst finite
        with threadpool_limits(self.threads):
            self.optimizer.tell(list(zip(self.members, values.tolist())))
        self.members = []


def strategy(theta: torch.Tensor, config: EvolutionConfig, generator: torch.Generator) -> Strategy:
    """The strategy ``config.strategy`` started at ``theta``."""
    if config.strategy == "cma-es":
        return CovarianceES(theta, config)
    return OpenAIES(theta, config, generator)
