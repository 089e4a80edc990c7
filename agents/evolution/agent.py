"""The evolution agents' training loop under a budget, and their benchmark adapters (``es``, ``cma-es``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from agents.cards import card
from agents.episodes import TrainedNetwork, gym_policy
from agents.evolution.config import EvolutionConfig
from agents.evolution.population import flat_weights, load_weights, population_costs
from agents.evolution.strategies import strategy
from agents.neural_ode import PolicyNetwork, default_config, initial_states
from agents.registry import Agent, Budget, CurveCost, Trained, TrainFunction, register
from diffenvs import problem_of
from diffenvs.core.problem import Problem


@dataclass
class EvolutionResult(TrainedNetwork):
    """What :func:`train` returns: the mean weights as a ``policy`` network, its learning ``curve`` and ``history``.

    ``history`` has one dict per generation (``generation``, ``mean_cost`` and ``best_cost`` of
    the population, ``transitions``, ``seconds``); ``curve`` the points
    ``{"transitions", "seconds", "cost", "backward_transitions"}`` of ``curve_cost`` on the mean weights (no
    backward pass: ``backward_transitions`` is 0).
    """

    config: EvolutionConfig
    problem: Problem
    policy: PolicyNetwork
    batch_size: int
    steps: int
    population: int = 0
    """Members per generation (the config's, or the strategy's default for the network's weights)."""
    history: list[dict[str, float]] = field(default_factory=list)
    curve: list[dict[str, float]] = field(default_factory=list)


def network_dimension(config: EvolutionConfig, env_id: str, env_kwargs: dict[str, Any] | None = None) -> int:
    """The number of weights :math:`n` of the policy network on ``env_id`` (the search space's dimension)."""
    problem = problem_of(env_id, **dict(env_kwargs or {}))
    widths = [len(problem.observation_names), *[config.width] * config.depth, problem.control_dim]
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in zip(widths, widths[1:]))


def generation_transitions(config: EvolutionConfig, env_id: str, env_kwargs: dict[str, Any] | None = None) -> int:
    """Simulated transitions of one generation: population x batch x rollout steps."""
    batch_size, steps = config.resolved(env_id, dict(env_kwargs or {}))
    return config.population_for(network_dimension(config, env_id, env_kwargs)) * batch_size * steps


def train(env_id: str, budget: Budget, config: EvolutionConfig | None = None, env_kwargs: dict[str, Any] | None = None,
          curve_cost: CurveCost | None = None) -> EvolutionResult:
    """Evolve the policy network's weights on ``env_id`` for as many generations as ``budget`` allows.

    A generation draws ``batch_size`` starts (:func:`~agents.neural_ode.initial_states`), asks
    the strategy for ``population`` members, rolls them all out in one batch
    (:func:`~agents.evolution.population.population_costs`, the environment's own cost, no
    derivatives) and tells it their mean costs. It counts every simulated transition,
    :math:`P \\times B \\times T`. Generations run while the next one fits in
    ``budget.transitions`` (at least one runs) and the training clock is under
    ``budget.seconds``. After the first generation past each multiple of ``budget.eval_every``
    transitions, and after the last generation, ``curve_cost`` (if given) scores the mean
    weights; its time is not on the training clock.
    """
    env_kwargs = dict(env_kwargs or {})
    config = EvolutionConfig() if config is None else config
    if not isinstance(config, EvolutionConfig):
        raise TypeError(f"config must be an EvolutionConfig, got {type(config).__name__}")
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be an agents.registry.Budget, got {type(budget).__name__}")
    problem = problem_of(env_id, **env_kwargs)
    batch_size, steps = config.resolved(env_id, env_kwargs)
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)  # the neural-ODE agent's initial weights for the same seed
            # the neural-ODE agent's architecture on this environment (e.g. its odd network for isochronism)
            symmetric = default_config(env_id, env_kwargs).symmetric
            network = PolicyNetwork(problem, config.width, config.depth, config.init_scale, symmetric).to(torch.float64)
        result = EvolutionResult(config, problem, network, batch_size, steps)
        _loop(result, budget, curve_cost)
        return result
    finally:
        torch.set_num_threads(threads)


def _loop(result: EvolutionResult, budget: Budget, curve_cost: CurveCost | None) -> None:
    config, problem, network = result.config, result.problem, result.policy
    generator = torch.Generator().manual_seed(config.seed)
    search = strategy(flat_weights(network), config, generator)
    result.population = search.population
    per_generation = search.population * result.batch_size * result.steps
    transitions, seconds, next_point = 0, 0.0, budget.eval_every

    def point() -> None:
        if curve_cost is not None:
            cost = float(curve_cost(gym_policy(load_weights(network, search.mean), problem)))
            result.curve.append({"transitions": float(transitions), "seconds": seconds, "cost": cost,
                                 "backward_transitions": 0.0})

    while not result.history or (transitions + per_generation <= budget.transitions and seconds < budget.seconds):
        began = time.perf_counter()
        x0 = initial_states(problem, result.batch_size, generator)
        noise = None
        if problem.step_noise:
            noise = torch.randn((result.steps, result.batch_size, problem.step_noise), generator=generator,
                                dtype=torch.float64)
        costs = population_costs(problem, network, search.ask(), x0, result.steps, noise)
        search.tell(costs)
        seconds += time.perf_counter() - began
        transitions += per_generation
        finite = costs[torch.isfinite(costs)]
        result.history.append({"generation": len(result.history), "transitions": transitions, "seconds": seconds,
                               "mean_cost": float(finite.mean()) if finite.numel() else float("nan"),
                               "best_cost": float(finite.min()) if finite.numel() else float("nan")})
        if transitions >= next_point:  # the first generation past each multiple of eval_every
            next_point += budget.eval_every * ((transitions - next_point) // budget.eval_every + 1)
            point()
    if not result.curve or result.curve[-1]["transitions"] != transitions:
        point()
    load_weights(network, search.mean)


#: the keys of an evolution agent's card section (``"es"``, ``"cma-es"`` or the family's, ``"zeroth-order"``):
#: :class:`EvolutionConfig` fields but ``strategy`` and ``seed`` (the agent's and the run's)
SETTINGS = tuple(f.name for f in dataclasses.fields(EvolutionConfig) if f.name not in ("strategy", "seed"))


def card_settings(env_id: str, agent: str, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The card's settings for ``agent`` on ``env_kwargs``: its family's section (``"zeroth-order"``) updated by its own
    (a key outside :data:`SETTINGS` is a ``ValueError``); empty where the card sets none."""
    return card(env_id).settings(agent, "zeroth-order", env_kwargs=env_kwargs, known=SETTINGS)


def card_config(env_id: str, agent: str, strategy_name: str, seed: int,
                env_kwargs: dict[str, Any] | None = None) -> EvolutionConfig:
    """The default :class:`EvolutionConfig` of ``strategy_name`` with the run's seed and the card's settings for
    ``agent`` (:func:`card_settings`)."""
    return EvolutionConfig(strategy=strategy_name, seed=seed, **card_settings(env_id, agent, env_kwargs))


def _tuned(agent: str) -> Callable[[str, dict[str, Any]], bool]:
    def tuned(env_id: str, env_kwargs: dict[str, Any]) -> bool:
        """Whether a card section sets the agent's settings on ``env_id`` (else it runs its published defaults)."""
        return bool(card_settings(env_id, agent, env_kwargs))

    return tuned


def _adapter(agent: str, strategy_name: str) -> TrainFunction:
    def train_agent(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget,
                    curve_cost: CurveCost) -> Trained:
        """The benchmark adapter: the card's :class:`EvolutionConfig` (default: the defaults) with the run's seed."""
        config = card_config(env_id, agent, strategy_name, seed, env_kwargs)
        result = train(env_id, budget, config, env_kwargs, curve_cost)
        details = {"generations": len(result.history), "population": result.population, "sigma": config.sigma,
                   "batch_size": result.batch_size, "rollout_steps": result.steps, "trained_on": "default",
                   "config": dataclasses.asdict(config), "backward_transitions": 0}  # rollouts only, no backward pass
        return Trained(result.gym_policy(), result.curve, result.transitions, result.seconds, details)

    return train_agent


ES = register(Agent("es", "zeroth-order", "OpenAI-ES (antithetic, centred ranks, Adam; Salimans et al.'s settings) on "
                    "the neural-ODE agent's network, batched rollouts without derivatives (agents.evolution)",
                    _adapter("es", "openai-es"), cost=2.0, tuned=_tuned("es")))
CMA_ES = register(Agent("cma-es", "zeroth-order", "CMA-ES (the cmaes package's defaults) on the neural-ODE agent's "
                        "network, batched rollouts without derivatives (agents.evolution)", _adapter("cma-es", "cma-es"),
                        cost=2.0, tuned=_tuned("cma-es")))
