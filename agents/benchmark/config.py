"""What a benchmark sweep runs: the targets, the budgets, one run's specification and the sweep's options."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym

from agents import registry
from agents.cards import Protocol, card
from agents.registry import Budget

#: the learning-curve targets: normalised gaps of 10% and 1%
TARGETS = (0.1, 0.01)

#: budgets per mode and agent family where an environment's card sets none
DEFAULT_BUDGETS: dict[str, dict[str, Budget]] = {
    "quick": {  # minutes in all on two cores: every run also stops after 30 s of training
        "rl": Budget(transitions=5_000, seconds=30.0, eval_every=1_000),
        "zeroth-order": Budget(transitions=5_000, seconds=30.0, eval_every=1_000),
        "gradient": Budget(transitions=10_000, seconds=30.0, eval_every=1_000),
        "reference": Budget(transitions=1),
    },
    "full": {
        "rl": Budget(transitions=10_000, eval_every=1_000),
        "zeroth-order": Budget(transitions=10_000, eval_every=1_000),
        "gradient": Budget(transitions=100_000, eval_every=5_000),
        "reference": Budget(transitions=1),
    },
}
MODES = tuple(DEFAULT_BUDGETS)


def protocol(env_id: str) -> Protocol:
    """The evaluation protocol of ``env_id`` (its card's)."""
    return card(env_id).protocol


def budget(mode: str, env_id: str, agent: str) -> Budget:
    """The budget of ``agent`` on ``env_id`` in ``mode``: the card's for the agent, else for its family, else the default."""
    if mode not in DEFAULT_BUDGETS:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    family = registry.get(agent).family
    found = card(env_id).budget(mode, agent, family)
    return found if found is not None else DEFAULT_BUDGETS[mode][family]


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run (a finished run is reused only if its spec is equal)."""

    env_id: str
    agent: str
    seed: int
    budget: Budget
    protocol: Protocol

    @property
    def key(self) -> str:
        return f"{self.env_id}__{self.agent}__seed{self.seed}"

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON (an unlimited ``budget.seconds`` is ``None``)."""
        data = json.loads(json.dumps(dataclasses.asdict(self), default=str))
        if math.isinf(self.budget.seconds):
            data["budget"]["seconds"] = None
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSpec:
        seconds = data["budget"]["seconds"]
        budget = Budget(**{**data["budget"], "seconds": math.inf if seconds is None else float(seconds)})
        return cls(data["env_id"], data["agent"], data["seed"], budget, Protocol(**data["protocol"]))


def plan_runs(envs: Sequence[str], agents: Sequence[str], seeds: Sequence[int], mode: str) -> list[RunSpec]:
    """Every (environment, agent, seed) run, skipping agents that do not apply to an environment."""
    specs = []
    for env_id in envs:
        if env_id not in gym.registry:
            raise ValueError(f"envs must be registered ids, got {env_id!r}")
        proto = protocol(env_id)
        for agent in agents:
            if not registry.get(agent).applies(env_id, dict(proto.env_kwargs)):
                continue
            seed_list = seeds[:1] if registry.get(agent).family == "reference" else seeds
            specs.extend(RunSpec(env_id, agent, seed, budget(mode, env_id, agent), proto) for seed in seed_list)
    return specs


@dataclass(frozen=True)
class BenchmarkConfig:
    """A benchmark sweep (the command line of ``scripts/benchmark.py`` is generated from these fields)."""

    envs: tuple[str, ...] = ()
    """Environment ids (default: every registered diffenvs id)."""
    agents: tuple[str, ...] = ()
    """Agent names (default: every registered agent; each runs where it applies)."""
    seeds: int = 0
    """Seeds per (environment, agent) (0: 1 with --quick, 3 otherwise; reference agents: one)."""
    quick: bool = False
    """Small budgets: every agent on every environment in minutes on a laptop CPU."""
    out: str = "bench"
    """Output folder (runs, tables, plots); a sweep into the same folder resumes."""
    workers: int = 0
    """Parallel worker processes (0: one per CPU core; 1: in this process)."""
    ray: bool = False
    """Run each run as a Ray task (needs the optional extra 'ray')."""
    ray_address: str = ""
    """Address of a running Ray cluster (empty: start a local Ray instance)."""
    progress: bool = True
    """Show a progress bar over the sweep."""

    def __post_init__(self) -> None:
        if self.seeds < 0:
            raise ValueError(f"seeds must be non-negative (0: the mode's default), got {self.seeds}")
        if self.workers < 0:
            raise ValueError(f"workers must be non-negative (0: one per CPU core), got {self.workers}")
        for agent in self.agents:
            registry.get(agent)
        for env_id in self.envs:
            if env_id not in gym.registry:
                raise ValueError(f"envs must be registered ids, got {env_id!r}")

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"

    @property
    def seed_list(self) -> list[int]:
        return list(range(self.seeds or (1 if self.quick else 3)))
