"""The evolution agents' hyperparameters: each strategy's published defaults on the network the neural-ODE agent uses."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from agents.neural_ode.config import default_config
from diffenvs import problem_of
from diffenvs.core.problem import check_integer

#: the search strategies: antithetic OpenAI-ES with Adam, and CMA-ES (the ``cmaes`` package)
STRATEGIES = ("openai-es", "cma-es")

#: ``steps`` that takes the neural-ODE agent's tuned rollout length on the environment (its card's), not the horizon
TUNED_STEPS = "neural-ode"


def default_population(strategy: str, dimension: int) -> int:
    r"""The population of ``strategy`` for a search space of ``dimension`` :math:`n` weights (``population=0``).

    CMA-ES: the ``cmaes`` package's default (Hansen's), :math:`\lambda = 4 + \lfloor 3 \ln n \rfloor` (21 for the
    401 weights of the 2 x 16 network on Cartpole's 6 observations). OpenAI-ES: the same number rounded up to
    even (antithetic pairs), so that a generation of either strategy costs about the same rollouts; Salimans et al.'s
    10,000 episodes per generation do not fit these budgets (at 100 steps an episode, one generation would be
    10^6 transitions, more than the whole budget of most runs).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    check_integer("dimension", dimension)
    population = 4 + math.floor(3 * math.log(dimension))
    return population + population % 2 if strategy == "openai-es" else population


@dataclass(frozen=True)
class EvolutionConfig:
    r"""Hyperparameters of evolution strategies on the policy network's flat weights.

    **The network** is the neural-ODE agent's by design (:class:`~agents.neural_ode.PolicyNetwork`, the report's
    2 x 16 tanh layers mapped into the control set, with its initial weights for the same seed and its odd form
    where the environment's card makes it odd): the comparison is of the search, gradient or none, on one
    parameterisation. Nothing else is taken from the neural-ODE agent's tuning unless asked (``batch_size=0``,
    ``steps="neural-ode"``).

    **The defaults are each strategy's published ones**, untuned on any environment:

    * OpenAI-ES, Salimans et al. (2017), "Evolution Strategies as a Scalable Alternative to Reinforcement
      Learning", with the settings of their released MuJoCo configuration (``configurations/humanoid.json`` of
      ``openai/evolution-strategies-starter``): perturbation scale :math:`\sigma = 0.02` (``noise_stdev``); Adam
      with step size 0.01 (``stepsize``; betas 0.9, 0.999); L2 coefficient :math:`\lambda = 0.005` (``l2coeff``),
      added to the estimate at their code's scale, Adam on :math:`\sigma \hat g + \lambda \theta`
      (:class:`~agents.evolution.strategies.OpenAIES`); antithetic (mirrored) pairs and centred-rank fitness
      (``return_proc_mode: centered_rank``); one episode per perturbation, run to the environment's own time
      limit (``episode_cutoff_mode: env_default``). Not applied: their 10,000 episodes per generation (see
      :func:`default_population`), their observation normalisation (``calc_obstat_prob``) and their action
      noise while training (``ac_noise_std``: 0.01).
    * CMA-ES: the ``cmaes`` package's defaults (Hansen's learning rates and weights) with its default population
      :math:`4 + \lfloor 3 \ln n \rfloor` for :math:`n` weights (``population=0``). The initial step size is the
      caller's choice in that package (no default); it is OpenAI-ES's :math:`\sigma = 0.02`, the perturbation
      scale both strategies start from, which CMA-ES then adapts.
    """

    strategy: str = "openai-es"
    """'openai-es' (antithetic Gaussian perturbations, centred ranks, Adam) or 'cma-es' (the cmaes package)."""
    population: int = 0
    r"""Perturbed networks per generation, at least 2 (even for 'openai-es': population / 2 antithetic pairs); 0: the
    strategy's default for the network's number of weights :math:`n` (:func:`default_population`; for 'cma-es' the
    ``cmaes`` package's :math:`4 + \lfloor 3 \ln n \rfloor`)."""
    sigma: float = 0.02
    """Standard deviation of the weight perturbations (for 'cma-es': the initial step size); Salimans et al.: 0.02."""
    learning_rate: float = 0.01
    """Adam's step size on the estimated gradient ('openai-es' only); Salimans et al.: 0.01."""
    weight_decay: float = 0.005
    r"""L2 coefficient :math:`\lambda`, Adam on :math:`\sigma \hat g + \lambda\theta` ('openai-es' only); Salimans et
    al.: 0.005."""
    batch_size: int = 1
    """Start states per member per generation, the same for all members (Salimans et al.: one episode per
    perturbation; 0: the neural-ODE agent's tuned batch)."""
    steps: int | str = 0
    """Environment steps per training rollout: 0, the environment's horizon (its own time limit, as Salimans et al.'s
    ``env_default`` cutoff); a positive number, that many (a prefix of the episode); ``"neural-ode"``
    (:data:`TUNED_STEPS`): the neural-ODE agent's tuned steps on the environment (its card's; the horizon where the
    card sets none)."""
    width: int = 16
    """Units per hidden layer (the report's 16: the neural-ODE agent's network, shared by design)."""
    depth: int = 2
    """Hidden tanh layers (the report's 2: the neural-ODE agent's network, shared by design)."""
    init_scale: float = 0.1
    """Scale of the output layer's initial weights (as the neural-ODE agent: near the centre of the control range)."""
    seed: int = 0
    """Seed of the initial weights, the perturbations and the training starts."""
    threads: int = 1
    """torch CPU threads while training."""

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {STRATEGIES}, got {self.strategy!r}")
        for name in ("width", "depth", "threads"):
            check_integer(name, getattr(self, name))
        check_integer("population", self.population, least=0)
        if self.population == 1 or (self.strategy == "openai-es" and self.population % 2):
            raise ValueError(f"population must be 0 (the strategy's default) or at least 2 (and even for "
                             f"'openai-es': antithetic pairs), got {self.population!r}")
        for name in ("batch_size", "seed"):
            check_integer(name, getattr(self, name), least=0)
        if self.steps != TUNED_STEPS:
            if isinstance(self.steps, str):
                raise ValueError(f"steps must be a non-negative integer (0: the horizon) or {TUNED_STEPS!r}, "
                                 f"got {self.steps!r}")
            check_integer("steps", self.steps, least=0)
        for name in ("sigma", "learning_rate", "init_scale"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite positive number, got {value!r}")
        if not (isinstance(self.weight_decay, (int, float)) and math.isfinite(self.weight_decay)
                and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be a finite non-negative number, got {self.weight_decay!r}")

    def population_for(self, dimension: int) -> int:
        """The population for a network of ``dimension`` weights: the set one, else :func:`default_population`."""
        return self.population or default_population(self.strategy, dimension)

    def resolved(self, env_id: str, env_kwargs: dict[str, Any]) -> tuple[int, int]:
        """``(batch_size, steps)`` on ``env_id``: the set values, the horizon for ``steps=0``, the neural-ODE agent's
        tuned ones for ``batch_size=0`` and ``steps="neural-ode"``.

        Raises ``ValueError`` if ``steps`` exceeds the problem's horizon.
        """
        horizon = problem_of(env_id, **env_kwargs).max_steps
        tuned = default_config(env_id, env_kwargs) if self.batch_size == 0 or self.steps == TUNED_STEPS else None
        if self.steps == TUNED_STEPS:
            assert tuned is not None
            steps = tuned.steps or horizon
        else:
            steps = int(self.steps) or horizon
        if steps > horizon:
            raise ValueError(f"steps must be at most the horizon {horizon}, got {steps}")
        batch_size = self.batch_size or (tuned.batch_size if tuned is not None else 1)
        return batch_size, steps
