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
from agents.cards import QUICK_SECONDS, Protocol, card
from agents.episodes import EVAL_SEED, TEST_SEED, VALIDATION_SEED
from agents.registry import Budget

#: the benchmark protocol's version, recorded in every report: 2 scores every environment by (J - J*)/(J0 - J*),
#: counts a target only where it is kept to the end of training, and tests on fresh starts
PROTOCOL_VERSION = 2

#: the learning-curve targets: normalised gaps of 10% and 1%
TARGETS = (0.1, 0.01)

#: the most episodes an evaluation may play: every range of starts (validation, test, ``scripts/train.py``'s
#: ``EVAL_SEED + i``) stays disjoint from the others up to it
MAX_EPISODES = 10_000
#: seeds per (environment, agent) by mode, where a card sets none (a card with slow runs may ask fewer, ≥ 5)
DEFAULT_SEEDS = {"quick": 1, "full": 10}
#: the most seeds a sweep may ask per (environment, agent): far above any table's need, so a typo fails at once
MAX_SEEDS = 1000

#: budgets per mode and agent family where an environment's card sets none
DEFAULT_BUDGETS: dict[str, dict[str, Budget]] = {
    "quick": {  # minutes in all on two cores: every run also stops after QUICK_SECONDS of training
        "rl": Budget(transitions=5_000, seconds=QUICK_SECONDS, eval_every=1_000),
        "zeroth-order": Budget(transitions=5_000, seconds=QUICK_SECONDS, eval_every=1_000),
        "gradient": Budget(transitions=10_000, seconds=QUICK_SECONDS, eval_every=1_000),
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


#: evaluation episodes at most in the quick mode, a smoke run: on isochronism an evaluation of 20
#: episodes of 1000 steps costs more than a quick run's training
QUICK_EPISODES = 5


def protocol(env_id: str, mode: str = "full") -> Protocol:
    """The evaluation protocol of ``env_id`` in ``mode``: its card's (the quick mode plays at most
    :data:`QUICK_EPISODES` episodes per evaluation, the reference the same starts)."""
    proto = card(env_id).protocol
    if mode == "quick":
        return dataclasses.replace(proto, episodes=min(proto.episodes, QUICK_EPISODES))
    return proto


def check_starts(episodes: int) -> None:
    """Raise ``ValueError`` unless ``episodes`` is between 1 and :data:`MAX_EPISODES`, within which the validation
    starts, the test starts and ``scripts/train.py``'s evaluation starts (``EVAL_SEED + i``) are disjoint."""
    if not 1 <= episodes <= MAX_EPISODES:
        raise ValueError(f"episodes must be between 1 and {MAX_EPISODES} so that the validation starts (seed "
                         f"{VALIDATION_SEED} + i), the test starts (seed {TEST_SEED} + i) and the training script's "
                         f"evaluation starts (seed {EVAL_SEED} + i) are disjoint, got {episodes}")


def seeds(mode: str, env_id: str, agent: str | None = None) -> int:
    """Seeds of ``agent`` on ``env_id`` in ``mode``: the card's (one number for every agent, or a table by agent
    name or family, the name first), else :data:`DEFAULT_SEEDS`."""
    if mode not in DEFAULT_SEEDS:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    entry = card(env_id).seeds.get(mode, DEFAULT_SEEDS[mode])
    if isinstance(entry, int):
        return entry
    if agent is None:
        return DEFAULT_SEEDS[mode]
    return entry.get(agent, entry.get(registry.get(agent).family, DEFAULT_SEEDS[mode]))


def budget(mode: str, env_id: str, agent: str) -> Budget:
    """The budget of ``agent`` on ``env_id`` in ``mode``: the card's for the agent, else for its family, else the default."""
    if mode not in DEFAULT_BUDGETS:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    family = registry.get(agent).family
    found = card(env_id).budget(mode, agent, family)
    return found if found is not None else DEFAULT_BUDGETS[mode][family]


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines a run (a finished run is reused, or reported, only if its spec is equal)."""

    env_id: str
    agent: str
    seed: int
    budget: Budget
    protocol: Protocol
    mode: str = "full"
    """The benchmark mode that planned the run (a quick run never stands in a full table)."""
    variant: str = ""
    """The card's variant label (empty: the protocol itself)."""
    variant_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """The variant's ``env_kwargs``, added to the protocol's."""
    starts: tuple[int, int] = (VALIDATION_SEED, TEST_SEED)
    """The first reset seeds of the validation and the test episodes."""
    version: int = PROTOCOL_VERSION
    """The protocol version that planned the run (a run file without one is of version 1): runs of another
    version are never reused nor reported beside the present ones."""

    @property
    def key(self) -> str:
        """The run file's name: mode, environment (and variant), agent, seed."""
        variant = f"[{self.variant.replace(' ', '-')}]" if self.variant else ""
        return f"{self.mode}__{self.env_id}{variant}__{self.agent}__seed{self.seed}"

    @property
    def env_kwargs(self) -> dict[str, Any]:
        """What the run trains and is evaluated on: the protocol's ``env_kwargs`` and the variant's."""
        return {**self.protocol.env_kwargs, **self.variant_kwargs}

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
        return cls(data["env_id"], data["agent"], data["seed"], budget, Protocol(**data["protocol"]), data["mode"],
                   data["variant"], data["variant_kwargs"], tuple(data["starts"]), int(data.get("version", 1)))


def plan_runs(envs: Sequence[str], agents: Sequence[str], seed_list: Sequence[int] | None, mode: str) -> list[RunSpec]:
    """Every (environment, variant, agent, seed) run, skipping agents that do not apply.

    ``seed_list`` (``None``: ``range(seeds(mode, env_id, agent))``); reference agents
    run one seed. Each card variant adds runs for the agent families it names. An environment,
    agent or seed named twice counts once (the first place it is named keeps its order).
    """
    envs, agents = list(dict.fromkeys(envs)), list(dict.fromkeys(agents))
    seed_list = None if seed_list is None else list(dict.fromkeys(seed_list))
    specs: list[RunSpec] = []
    for env_id in envs:
        if env_id not in gym.registry:
            raise ValueError(f"envs must be registered ids, got {env_id!r}")
        proto = protocol(env_id, mode)
        check_starts(proto.episodes)
        variants: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {"": ({}, tuple(registry.FAMILIES))}
        variants.update({label: (v.env_kwargs, v.families) for label, v in card(env_id).variants.items()})
        for label, (extra, families) in variants.items():
            for agent in agents:
                family = registry.get(agent).family
                if family not in families or not registry.get(agent).applies(env_id, {**proto.env_kwargs, **extra}):
                    continue
                chosen = list(range(seeds(mode, env_id, agent))) if seed_list is None else list(seed_list)
                chosen = chosen[:1] if family == "reference" else chosen
                specs.extend(RunSpec(env_id, agent, seed, budget(mode, env_id, agent), proto, mode, label, dict(extra))
                             for seed in chosen)
    return specs


@dataclass(frozen=True)
class BenchmarkConfig:
    """A benchmark sweep (the command line of ``scripts/benchmark.py`` is generated from these fields)."""

    envs: tuple[str, ...] = ()
    """Environment ids (default: every registered diffenvs id)."""
    agents: tuple[str, ...] = ()
    """Agent names (default: every registered agent; each runs where it applies)."""
    seeds: int = 0
    """Seeds per (environment, agent) (0: the card's for the mode, else 1 with --quick and 10 otherwise;
    reference agents: one)."""
    quick: bool = False
    """Small budgets: every agent on every environment in minutes on a laptop CPU."""
    out: str = "bench"
    """Output folder (runs, tables, plots); a sweep into the same folder resumes."""
    replace: bool = False
    """Run again, and overwrite, the run files in <out>/runs of another spec (e.g. another budget) than planned
    (without it such a sweep stops before it runs anything, naming the files)."""
    workers: int = 0
    """Parallel worker processes (0: one per CPU core; 1: in this process)."""
    ray: bool = False
    """Run each run as a Ray task (needs the optional extra 'ray')."""
    ray_address: str = ""
    """Address of a running Ray cluster (empty: start a local Ray instance)."""
    progress: bool = True
    """Show a progress bar over the sweep."""
    report_only: bool = False
    """Run nothing: rebuild the tables and plots from every run file of the mode in <out>/runs."""
    readme: tuple[str, ...] = ()
    """Documents whose marked blocks are rewritten from table.md: docs/benchmark.md (the whole table), README.md
    (its summary); checked before anything runs."""

    def __post_init__(self) -> None:
        if not 0 <= self.seeds <= MAX_SEEDS:
            raise ValueError(f"seeds must be between 0 (the mode's default) and {MAX_SEEDS}, got {self.seeds}")
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
    def seed_list(self) -> list[int] | None:
        """The seeds asked on the command line (``None``: each card's for the mode)."""
        return list(range(self.seeds)) if self.seeds else None
