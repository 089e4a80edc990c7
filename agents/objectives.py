r"""What a critic-based learner trains on: the objective an environment's card gives the RL baselines (and SHAC).

A card's ``"rl"`` section may hold an ``"objective"``: ``{"env_kwargs": ..., "label": ...,
"why": ...}``, the environment keyword arguments a baseline trains with instead of the
evaluation objective, with a short label and the reason. An agent's own section may replace
it (``"ppo"``, ``"sac"``, ``"td3"``, ``"shac"``).

One rule for every environment: a critic learner trains on the scored objective, or on a
proxy whose optimum *under the learner's own discount* is the scored one, never on another
cost. A critic learner maximises :math:`\sum_k \gamma^k r_k`; a scored cost paid late (at a
horizon :math:`T`, or at a time limit) is shrunk by :math:`\gamma^k`, which may reward
postponing it. So either the learner's :math:`\gamma` is 1 (Zermelo, whose episodes end at
different times), or the reward is the scored cost shaped for that :math:`\gamma` (the
swing-ups' ``cost="terminal-shaped"`` with ``discount`` = the learner's :math:`\gamma`: over a
fixed horizon the discounted return is :math:`c(s_0) - \gamma^{K-1}c(s_K)`).
``tests/test_objectives.py`` plays simple policies and the reference on each learner's
discounted objective, with its discount as the agent reads it, and checks both.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from agents.cards import card

#: the family whose card section holds the objective of every critic-based learner
FAMILY = "rl"


@dataclass(frozen=True)
class TrainingObjective:
    """The environment keyword arguments a baseline trains with, and why."""

    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Overrides of the caller's ``env_kwargs`` for training (never for evaluation)."""
    label: str = "default"
    """Short name for tables."""
    why: str = ""
    """Reason for the choice."""


def training_objective(env_id: str, agent: str = FAMILY) -> TrainingObjective:
    """What ``agent`` trains on in ``env_id``: the ``"objective"`` of its card's ``"rl"`` section updated by the
    agent's own, else the default objective. A key of the objective that is not a field of
    :class:`TrainingObjective` is a ``ValueError`` naming the environment, the agent and the key."""
    objective = card(env_id).settings(agent, FAMILY).get("objective")
    if objective is None:
        return TrainingObjective()
    known = {f.name for f in dataclasses.fields(TrainingObjective)}
    unknown = sorted(set(objective) - known)
    if unknown:
        raise ValueError(f"the card of {env_id} gives agent {agent!r} an objective with the setting {unknown[0]!r}, "
                         f"which is not one of {sorted(known)}")
    return TrainingObjective(**objective)
