"""Environment cards: everything the agents, the benchmark and the tests know about one environment.

An environment is its definition module (``diffenvs/envs/<env>.py``) plus its card
(``agents/cards/<env>.py``): the named presets, the settings of each agent that differs from
its defaults there, the evaluation protocol and budgets, the analytic reference and
controllers (the environment's own mathematics: Pontryagin's heading, the LQR of a
linearisation, ...) and the settings of the fast tests. Generic code reads cards
(:func:`card`) and the capabilities problems and agents declare; it never tests an
environment id.

A card is data. Its agents' settings are one mapping, :attr:`Card.agents`, keyed by agent name
or family (as rl-baselines3-zoo keeps its hyperparameters outside the algorithms); each agent
reads its own section with :meth:`Card.settings` and builds its own config from it. A card
module imports :mod:`diffenvs`, this package, :mod:`agents.registry` (``Budget``),
:mod:`agents.references` and the numerical libraries, never an agent plug-in: agents import
cards, not the reverse.

A card module builds a :class:`Card` and passes it to :func:`register`. The modules of this
package are imported on first use; a card defined elsewhere (a user's own environment) is
registered the same way, from the user's file.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from agents.references import Reference
from agents.registry import Budget

#: the quick mode's cap on each run's training seconds: a smoke run of the whole pipeline, not a result
QUICK_SECONDS = 15.0


def zoo_budget(task: str, transitions: int) -> str:
    """The reason a baseline's budget is below an environment's common one (:attr:`agents.registry.Budget.cap`):
    rl-baselines3-zoo's ``n_timesteps`` for ``task``, the budget its hyperparameters are published for."""
    return f"rl-baselines3-zoo's n_timesteps for {task} ({transitions:,}), the budget its settings are published for"


@dataclass(frozen=True)
class Protocol:
    """How an environment is evaluated in the benchmark."""

    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """The objective every agent is evaluated on (the environment's default: empty)."""
    episodes: int = 20
    """Episodes of every evaluation: learning-curve points on the validation starts
    (``reset(seed=20000 + i)``), the final score on the test starts (``reset(seed=7300000 + i)``);
    see :mod:`agents.benchmark.config`."""


@dataclass(frozen=True)
class Variant:
    """A labelled change of the environment for some agent families, under the same objective.

    A variant's run trains and is evaluated on the protocol's ``env_kwargs`` updated with
    ``env_kwargs``, on the same starts; the table labels its rows ``env_id [label]``. It may
    change what an agent observes, never the reward.
    """

    env_kwargs: dict[str, Any]
    """Added to the protocol's ``env_kwargs`` (e.g. ``{"observe": "full"}``)."""
    families: tuple[str, ...] = ("rl", "zeroth-order")
    """The agent families that also run this variant (beside the protocol itself)."""


@dataclass(frozen=True)
class TestSettings:
    """What the fast tests need to run an environment in milliseconds."""

    short: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments that shorten an episode to a few steps that end it (``gradcheck`` of a whole episode)."""
    gradcheck_start: tuple[tuple[float, ...], ...] | None = None
    """Physical start states for ``gradcheck``, away from kinks and bounds (``None``: a drawn start and a shifted copy)."""


Settings = Mapping[str, Any]
"""One agent's settings on an environment: keyword -> value (what the keys mean is the agent's business)."""

Section = Settings | Callable[[Mapping[str, Any]], Settings]
"""A card's section for one agent or family: its settings, or ``env_kwargs -> settings`` where they depend on
the objective (the cartpole's neural-ODE settings differ between the swing-up and the quadratic cost)."""

ReferenceFactory = Callable[[str, dict[str, Any]], Reference | None]
"""``(env_id, env_kwargs) -> Reference``: the analytic answer a run is compared with (``None``: none)."""

Controller = Callable[[Any], torch.nn.Module]
"""``problem -> torch.nn.Module``: an analytic controller (observations ``(B, obs)`` -> physical controls)."""


def _no_reference(env_id: str, env_kwargs: dict[str, Any]) -> Reference | None:
    return None


@dataclass(frozen=True)
class Card:
    """Everything about one environment outside its physics (see the module docstring)."""

    env_id: str
    """The registered Gymnasium id."""
    presets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Named environment settings (``scripts/train.py --preset NAME``)."""
    agents: dict[str, Section] = field(default_factory=dict)
    """Settings per agent, keyed by agent name or by agent family (see :meth:`settings`): e.g.
    ``{"neural-ode": {"iterations": 200}, "rl": {"objective": {...}}, "ppo": {"zoo": "Pendulum-v1"}}``. Each
    agent documents the keys it reads; an agent absent here runs its defaults."""
    protocol: Protocol = field(default_factory=Protocol)
    """The benchmark's evaluation protocol."""
    budgets: dict[str, dict[str, Budget]] = field(default_factory=dict)
    """Per benchmark mode, budgets keyed by agent name or by agent family (the name wins); the
    benchmark's defaults per family apply to what is not listed."""
    reference: ReferenceFactory = _no_reference
    """``(env_id, env_kwargs) -> Reference``: the analytic answer a run is compared with (``None``: none)."""
    controllers: dict[str, Controller] = field(default_factory=dict)
    """Analytic controllers by name, ``problem -> torch.nn.Module`` (``scripts/train.py --agent NAME``)."""
    tests: TestSettings = field(default_factory=TestSettings)
    """Settings of the fast tests."""
    seeds: dict[str, int | dict[str, int]] = field(default_factory=dict)
    """Seeds per agent by benchmark mode, where the benchmark's default per mode does not fit: one number for every
    agent (``{"full": 5}``), or a table keyed by agent name or family, the benchmark's default for the rest
    (``{"full": {"rl": 5}}``: five seeds for runs that take more than a minute, ten for the others); ``--seeds``
    overrides both."""
    variants: dict[str, Variant] = field(default_factory=dict)
    """Protocol variants by label (e.g. ``"full observation"``): extra rows for the families that want them."""

    def budget(self, mode: str, agent: str, family: str) -> Budget | None:
        """This card's budget for ``agent`` (of ``family``) in ``mode``, ``None`` if the card sets none."""
        table = self.budgets.get(mode, {})
        return table.get(agent, table.get(family))

    def settings(self, agent: str, family: str | None = None, env_kwargs: Mapping[str, Any] | None = None,
                 known: Collection[str] | None = None) -> dict[str, Any]:
        """The settings of ``agent`` (of ``family``) on ``env_kwargs``: the family's section updated by the agent's.

        A section given as a function is called with ``env_kwargs``. With ``known``, a key outside it is a
        ``ValueError`` that names this card's environment, the agent and the key.
        """
        merged: dict[str, Any] = {}
        for key in (family, agent):
            section = None if key is None else self.agents.get(key)
            if section is not None:
                merged.update(section(dict(env_kwargs or {})) if callable(section) else section)
        unknown = [] if known is None else sorted(set(merged) - set(known))
        if unknown:
            raise ValueError(f"the card of {self.env_id} gives agent {agent!r} the setting {unknown[0]!r}, which it "
                             f"does not read (it reads {sorted(known or ())})")
        return merged


CARDS: dict[str, Card] = {}
_discovered = False


def register(new: Card) -> Card:
    """Add ``new`` to the cards (one per environment id; registering an id again replaces its card)."""
    CARDS[new.env_id] = new
    return new


def _discover() -> None:
    global _discovered
    if not _discovered:
        _discovered = True
        for module in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{module.name}")


def card(env_id: str) -> Card:
    """The card of ``env_id``; an environment without one gets an empty card (defaults everywhere)."""
    _discover()
    return CARDS.get(env_id) or Card(env_id)


def cards() -> dict[str, Card]:
    """Every registered card, by environment id."""
    _discover()
    return dict(CARDS)


def presets() -> dict[str, tuple[str, dict[str, Any]]]:
    """Every card's presets: ``name -> (env_id, env_kwargs)``."""
    return {name: (env_id, kwargs) for env_id, c in cards().items() for name, kwargs in c.presets.items()}
