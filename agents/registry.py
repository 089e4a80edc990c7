"""The agents a benchmark can run, by name: how each trains under a budget and what it hands back.

Every agent, whatever it is, is reduced to the same contract: given an environment, a
seed and a :class:`Budget`, train, and return a :class:`Trained` — a deterministic
Gymnasium policy (observation -> action in [-1, 1]) and a learning curve. The benchmark
then evaluates every policy with the one protocol (:mod:`agents.episodes`).

Agents are plug-ins: each agent module builds its :class:`Agent` (its benchmark adapter)
and passes it to :func:`register` when it is imported. The modules named in
:data:`PLUGINS` are imported on first use; an agent defined elsewhere registers the same way.
This module knows no agent and no environment.

Budgets are in environment transitions (simulated transitions of the gradient path for
gradient agents), with an optional cap on training seconds. Learning-curve points are
stamped with the transitions and the training seconds spent so far; the time spent
evaluating them is excluded.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agents.episodes import GymPolicy
from diffenvs.core.problem import check_integer

#: a learning-curve evaluator the benchmark hands to an agent: policy -> mean cost on fixed starts
CurveCost = Callable[[GymPolicy], float]


@dataclass(frozen=True)
class Budget:
    """What one training run may spend, and how often its learning curve is sampled."""

    transitions: int
    """Environment transitions (for gradient agents: simulated transitions of the gradient path)."""
    seconds: float = math.inf
    """Cap on training wall time (learning-curve evaluation excluded)."""
    eval_every: int = 1_000
    """Transitions between learning-curve points."""
    cap: str = ""
    """Why this budget is below the one the environment gives every other learner: the agent's own published
    setting (e.g. rl-baselines3-zoo's ``n_timesteps``); empty for the common budget. The benchmark's table marks it."""

    def __post_init__(self) -> None:
        for name in ("transitions", "eval_every"):
            check_integer(name, getattr(self, name))
        if not self.seconds > 0:
            raise ValueError(f"seconds must be positive, got {self.seconds!r}")


@dataclass
class Trained:
    """What an agent hands back: a policy, its learning curve and what training used."""

    policy: GymPolicy
    """Deterministic Gymnasium policy: observation -> action in [-1, 1]."""
    curve: list[dict[str, float]]
    """Points ``{"transitions", "seconds", "cost"}`` (cost: mean over the benchmark's curve starts)."""
    transitions: int
    """Transitions used in training."""
    seconds: float
    """Training wall time, learning-curve evaluation excluded."""
    details: dict[str, Any] = field(default_factory=dict)
    """JSON-able facts for the report (e.g. the reward trained on)."""


#: the agent families, and what an agent of each may use (the benchmark table's disclosure column)
FAMILIES: dict[str, str] = {
    "gradient": "exact model gradients",
    "zeroth-order": "simulator rollouts, no derivatives",
    "rl": "model-free samples",
    "reference": "the analytic answer",
}

TrainFunction = Callable[[str, dict[str, Any], int, Budget, CurveCost], Trained]
"""``train(env_id, env_kwargs, seed, budget, curve_cost) -> Trained``."""


@dataclass(frozen=True)
class Agent:
    """A named agent: its family, what it is, how it trains and where it applies."""

    name: str
    family: str
    """One of :data:`FAMILIES`: ``gradient``, ``zeroth-order``, ``rl`` or ``reference``."""
    description: str
    train: TrainFunction
    applies: Callable[[str, dict[str, Any]], bool] = lambda env_id, env_kwargs: True
    """Whether the agent can run on ``(env_id, env_kwargs)``: decided from what the problem and its card declare."""
    cost: float = 1.0
    """Relative wall time of one run: a sweep starts the costliest runs first, so that it does not end on one."""
    uses: str = ""
    """What the agent may use, for the reader of a comparison (empty: its family's, :data:`FAMILIES`)."""
    tuned: Callable[[str, dict[str, Any]], bool] = lambda env_id, env_kwargs: False
    """Whether its hyperparameters on ``(env_id, env_kwargs)`` were tuned by hand on that environment (the
    benchmark's verdict compares agents of equal tuning); False: published defaults."""

    @property
    def disclosure(self) -> str:
        """What the agent may use: its own words, else its family's."""
        return self.uses or FAMILIES[self.family]


#: modules whose import registers the built-in agents, in the order of the benchmark's tables
PLUGINS = ("agents.analytic", "agents.neural_ode", "agents.rl", "agents.shac", "agents.identification", "agents.evolution")

_AGENTS: dict[str, Agent] = {}
_loaded = False


def register(agent: Agent) -> Agent:
    """Add ``agent`` to the table (a name is registered once)."""
    if agent.family not in FAMILIES:
        raise ValueError(f"agent.family must be one of {tuple(FAMILIES)}, got {agent.family!r}")
    if agent.name in _AGENTS and _AGENTS[agent.name] is not agent:
        raise ValueError(f"an agent named {agent.name!r} is already registered")
    _AGENTS[agent.name] = agent
    return agent


def _plugin_rank(agent: Agent) -> int:
    """The place in :data:`PLUGINS` of the module that defines ``agent``'s ``train`` (after them: any other)."""
    module = getattr(agent.train, "__module__", "") or ""
    ranks = [i for i, plugin in enumerate(PLUGINS) if module == plugin or module.startswith(plugin + ".")]
    return ranks[0] if ranks else len(PLUGINS)


def agents() -> dict[str, Agent]:
    """Every registered agent by name: the built-in plug-ins' in the order of :data:`PLUGINS` (each module's in the
    order it registers them), whichever was imported first, then the others in the order they were registered."""
    global _loaded
    if not _loaded:
        _loaded = True
        for module in PLUGINS:
            importlib.import_module(module)
    return {agent.name: agent for agent in sorted(_AGENTS.values(), key=_plugin_rank)}


def get(name: str) -> Agent:
    """The registered agent ``name``."""
    table = agents()
    if name not in table:
        raise ValueError(f"agent must be one of {tuple(table)}, got {name!r}")
    return table[name]


def applicable(env_id: str, env_kwargs: dict[str, Any] | None = None) -> list[str]:
    """Names of the registered agents that run on ``env_id``."""
    return [name for name, agent in agents().items() if agent.applies(env_id, dict(env_kwargs or {}))]


def constant_curve(policy: GymPolicy, curve_cost: CurveCost, details: dict[str, Any]) -> Trained:
    """A policy that needs no training: one curve point at zero transitions."""
    return Trained(policy, [{"transitions": 0.0, "seconds": 0.0, "cost": float(curve_cost(policy))}], 0, 0.0,
                   {"trained_on": "–", **details})
