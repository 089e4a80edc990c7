"""The ``analytic`` agent: the closed-form controller of an environment's card, played as it is.

Each card (:mod:`agents.cards`) holds its environment's mathematics: its reference
(:attr:`agents.cards.Card.reference`, an :class:`agents.references.Reference`) and its named
controllers (:attr:`agents.cards.Card.controllers`). :func:`reference` and
:func:`analytic_agent` look them up by environment id; the registered agent plays the
reference's controller where it has one (Pontryagin, the harmonic field, LQR, the greedy design).
"""

from __future__ import annotations

from typing import Any

import torch

from agents.cards import card, cards
from agents.episodes import gym_policy
from agents.references import Reference
from agents.registry import Agent, Budget, CurveCost, Trained, constant_curve, register
from diffenvs import problem_of


def reference(env_id: str, env_kwargs: dict[str, Any] | None = None) -> Reference | None:
    """The analytic reference of ``env_id`` built with ``env_kwargs`` (its card's); ``None`` where there is none."""
    return card(env_id).reference(env_id, dict(env_kwargs or {}))


def analytic_agent(name: str, env_id: str, env_kwargs: dict[str, Any] | None = None) -> torch.nn.Module:
    """The analytic controller ``name`` of ``env_id``'s card (e.g. ``"lqr"`` for the cartpole)."""
    controllers = card(env_id).controllers
    if name not in controllers:
        owners = [c.env_id for c in cards().values() if name in c.controllers]
        if owners:
            raise ValueError(f"agent {name!r} is the analytic answer of {' and '.join(owners)} only, got env_id {env_id!r}")
        raise ValueError(f"agent must be one of the analytic controllers of {env_id} {tuple(controllers)}, got {name!r}")
    return controllers[name](problem_of(env_id, **(env_kwargs or {})))


def _train(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost) -> Trained:
    answer = reference(env_id, env_kwargs)
    if answer is None or answer.policy is None:
        raise ValueError(f"the card of {env_id} gives no reference controller for env_kwargs {env_kwargs!r}")
    return constant_curve(gym_policy(answer.policy, answer.problem), curve_cost, {"controller": answer.name})


def _has_controller(env_id: str, env_kwargs: dict[str, Any]) -> bool:
    answer = reference(env_id, env_kwargs)
    return answer is not None and answer.policy is not None


AGENT = register(Agent("analytic", "reference", "the closed-form optimal controller of the environment's card "
                       "(Pontryagin, harmonic field, LQR, greedy design)", _train, _has_controller, cost=0.1))
