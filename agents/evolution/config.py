"""The evolution agents' hyperparameters, and the settings they share with the neural-ODE agent."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agents.neural_ode.config import default_config
from diffenvs import problem_of
from diffenvs.core.problem import check_integer

#: the search strategies: antithetic OpenAI-ES with Adam, and CMA-ES (the ``cmaes`` package)
STRATEGIES = ("openai-es", "cma-es")


@dataclass(frozen=True)
class EvolutionConfig:
    """Hyperparameters of evolution strategies on the policy network's flat weights.

    The defaults follow Salimans et al. (2017) scaled to a network of a few hundred weights and a
    budget of about 1e5 transitions: antithetic pairs, centred-rank fitness, Adam, perturbations
    of a few hundredths, one start per member (as their one episode per perturbation). With
    100-step episodes, 1e5 transitions are 1000 episodes: 16 members give 62 generations.
    """

    strategy: str = "openai-es"
    """'openai-es' (antithetic Gaussian perturbations, centred ranks, Adam) or 'cma-es' (the cmaes package)."""
    population: int = 16
    """Perturbed networks per generation (even for 'openai-es': population / 2 antithetic pairs)."""
    sigma: float = 0.05
    """Standard deviation of the weight perturbations (for 'cma-es': the initial step size)."""
    learning_rate: float = 0.03
    """Adam's step size on the estimated gradient ('openai-es' only)."""
    weight_decay: float = 0.0
    """L2 coefficient added to the estimated gradient, lambda theta ('openai-es' only; Salimans et al.: 0.005)."""
    batch_size: int = 1
    """Start states per member per generation, the same for all members (0: the neural-ODE agent's tuned batch)."""
    steps: int = 0
    """Environment steps per training rollout (0: the neural-ODE agent's tuned steps, else the horizon)."""
    width: int = 16
    """Units per hidden layer (the report's 16, as the neural-ODE agent)."""
    depth: int = 2
    """Hidden tanh layers (the report's 2, as the neural-ODE agent)."""
    init_scale: float = 0.1
    """Scale of the output layer's initial weights (as the neural-ODE agent: near the centre of the control range)."""
    seed: int = 0
    """Seed of the initial weights, the perturbations and the training starts."""
    threads: int = 1
    """torch CPU threads while training."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        for name in ("population", "width", "depth", "threads"):
            check_integer(name, getattr(self, name))
        if self.population < 2 or (self.strategy == "openai-es" and self.population % 2):
            raise ValueError(f"population must be at least 2 (and even for 'openai-es': antithetic pairs), "
                             f"got {self.population!r}")
        for name in ("batch_size", "steps", "seed"):
            check_integer(name, getattr(self, name), least=0)
        for name in ("sigma", "learning_rate", "init_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite positive number, got {value!r}")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite non-negative number, got {self.weight_decay!r}")

    def resolved(self, env_id: str, env_kwargs: dict[str, Any]) -> tuple[int, int]:
        """``(batch_size, steps)`` on ``env_id``: the set values, else the neural-ODE agent's tuned ones.

        Raises ``ValueError`` if ``steps`` exceeds the problem's horizon.
        """
        tuned = default_config(env_id, env_kwargs)
        horizon = problem_of(env_id, **env_kwargs).max_steps
        steps = self.steps or tuned.steps or horizon
        if steps > horizon:
            raise ValueError(f"steps must be at most the horizon {horizon}, got {steps}")
        return self.batch_size or tuned.batch_size, steps
