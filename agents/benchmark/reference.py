"""The reference each environment's runs are measured against, and the normalised gap to it."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents import analytic
from agents.benchmark.config import protocol
from agents.cards import Protocol
from agents.episodes import evaluate, start_states
from agents.files import write_json


def compute_reference(env_id: str, proto: Protocol) -> dict[str, Any]:
    """The reference cost of ``env_id`` under ``proto``, and the scale of its normalised gap.

    ``optimum``: the analytic answer of the environment's card
    (:attr:`agents.cards.Card.reference`) on the protocol's starts — a closed form where there
    is one, else what the card computes (for system identification, the oracle planner's cost
    under the protocol). ``zero_action_cost``: the protocol cost of the zero action.
    ``optimum`` is ``None`` where no reference exists.
    """
    kwargs = dict(proto.env_kwargs)
    env = gym.make(env_id, **kwargs)
    zeros = np.zeros(env.action_space.shape, dtype=np.float32)
    env.close()
    zero_cost = float(evaluate(env_id, lambda observation: zeros, proto.episodes, kwargs).mean())
    result: dict[str, Any] = {"env_id": env_id, "protocol": dataclasses.asdict(proto), "zero_action_cost": zero_cost,
                              "optimum": None, "name": None, "description": "no reference"}
    reference = analytic.reference(env_id, kwargs)
    if reference is not None:
        numbers = reference.analytic(start_states(env_id, kwargs, proto.episodes))
        result.update(optimum=numbers["optimum"], name=reference.name, description=reference.description)
    return result


def references(envs: Sequence[str], out: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """References of ``envs``, computed afresh (a few seconds) and written to ``<out>/references.json``.

    Not cached: a reference added or changed in ``agents.analytic`` shows in the next report.
    """
    refs = {env_id: compute_reference(env_id, protocol(env_id)) for env_id in envs}
    write_json(Path(out) / "references.json", refs)
    return refs


def normalised_gap(cost: float, reference: dict[str, Any]) -> float | None:
    """(cost - optimum) / |optimum|, or / (zero-action cost - optimum) where the optimum is 0; None without a reference."""
    optimum = reference.get("optimum")
    if optimum is None:
        return None
    scale = abs(optimum) if optimum != 0 else reference["zero_action_cost"] - optimum
    return (cost - optimum) / scale if scale > 0 else None


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (``nan`` for one value) of ``values``."""
    values = np.asarray(values, dtype=np.float64)
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return float(values.mean()), se
