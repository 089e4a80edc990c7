"""The reference each environment's runs are measured against, and the normalised gap to it."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from agents.benchmark.config import TEST_SEED, VALIDATION_SEED, protocol
from agents.cards import Protocol, card
from agents.episodes import batch_policy, evaluate, start_states
from agents.files import write_json


def compute_reference(env_id: str, proto: Protocol) -> dict[str, Any]:
    """The reference cost of ``env_id`` under ``proto``, and the scale of its normalised gap.

    ``optimum``: the analytic answer of the environment's card
    (:attr:`agents.cards.Card.reference`) on the protocol's starts — a closed form where there
    is one, else what the card computes (for system identification, the oracle planner's cost
    under the protocol). ``zero_action_cost``: the protocol cost of the zero action.
    ``optimum`` is ``None`` where no reference exists. Both are on the test starts (the final
    score's); ``validation`` holds the same two numbers on the validation starts (the learning
    curves').
    """
    kwargs = dict(proto.env_kwargs)
    env = gym.make(env_id, **kwargs)
    shape = env.action_space.shape
    env.close()
    if shape is None:
        raise ValueError(f"the action space of {env_id} must have a shape (a Box)")

    @batch_policy
    def zero_action(observation: np.ndarray) -> np.ndarray:
        return np.zeros((*np.shape(observation)[:-1], *shape), dtype=np.float32)

    reference = card(env_id).reference(env_id, kwargs)
    numbers = {}
    for split, seed in (("test", TEST_SEED), ("validation", VALIDATION_SEED)):
        zero_cost = float(evaluate(env_id, zero_action, proto.episodes, kwargs, seed).mean())
        optimum = None if reference is None else reference.analytic(start_states(env_id, kwargs, proto.episodes, seed), seed)
        numbers[split] = {"optimum": None if optimum is None else optimum["optimum"], "zero_action_cost": zero_cost}
    result: dict[str, Any] = {"env_id": env_id, "protocol": dataclasses.asdict(proto), **numbers["test"],
                              "validation": numbers["validation"], "name": None, "description": "no reference"}
    if reference is not None:
        result.update(name=reference.name, description=reference.description)
    return result


#: how far (relative) a reference computed afresh may differ from the stored one and still be the same reference:
#: the last bits of a simulation on another CPU or library build, far below any digit the report prints
SAME_REFERENCE = 1e-9


def _same(stored: Any, fresh: Any) -> bool:
    """Whether two references are the same up to :data:`SAME_REFERENCE` in each number (and equal elsewhere)."""
    if isinstance(fresh, dict):
        return isinstance(stored, dict) and stored.keys() == fresh.keys() and all(_same(stored[k], fresh[k]) for k in fresh)
    if isinstance(fresh, float) and isinstance(stored, (int, float)) and not isinstance(stored, bool):
        return math.isclose(stored, fresh, rel_tol=SAME_REFERENCE, abs_tol=SAME_REFERENCE)
    return bool(stored == fresh)


def references(envs: Sequence[str], out: str | os.PathLike, mode: str = "full") -> dict[str, dict[str, Any]]:
    """References of ``envs`` on the starts of ``mode``'s protocol, computed afresh (a few seconds) and written to
    ``<out>/references.json``.

    Not cached: a reference added or changed in a card shows in the next report. Where the stored
    ``references.json`` holds the same reference (its protocol, name and numbers equal up to
    :data:`SAME_REFERENCE`), the stored numbers are kept, so that a report rebuilt on another machine is the same
    byte for byte, whatever the last bits of its simulations.
    """
    path = Path(out) / "references.json"
    try:
        stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        stored = {}
    stored = stored if isinstance(stored, dict) else {}
    refs = {}
    for env_id in envs:
        fresh = json.loads(json.dumps(compute_reference(env_id, protocol(env_id, mode))))
        refs[env_id] = stored[env_id] if _same(stored.get(env_id), fresh) else fresh
    write_json(path, refs)
    return refs


def env_label(result: Mapping[str, Any]) -> str:
    """A run's or row's environment as the table shows it: ``env_id``, or ``env_id [variant]``."""
    return f"{result['env_id']} [{result['variant']}]" if result.get("variant") else result["env_id"]


def on_validation(reference: dict[str, Any]) -> dict[str, Any]:
    """The reference on the validation starts, for learning-curve points (itself if it has no validation numbers)."""
    return {**reference, **reference.get("validation", {})}


def normalised_gap(cost: float, reference: dict[str, Any]) -> float | None:
    r"""The one normalisation of every environment, :math:`(J - J^\star) / (J_0 - J^\star)`.

    :math:`J^\star` is the reference's ``optimum``, :math:`J_0` the cost of the zero action on the same starts: 0 is
    the optimum, 1 doing nothing, whatever the units and the sign of the cost. ``None`` without a reference, or where
    the zero action is not worse than the reference (no scale to measure progress on).
    """
    optimum = reference.get("optimum")
    if optimum is None:
        return None
    scale = reference["zero_action_cost"] - optimum
    return (cost - optimum) / scale if scale > 0 else None


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error (``nan`` for one value) of ``values``."""
    array = np.asarray(values, dtype=np.float64)
    se = float(array.std(ddof=1) / math.sqrt(len(array))) if len(array) > 1 else math.nan
    return float(array.mean()), se
