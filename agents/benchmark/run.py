"""One benchmark run (train, then evaluate by the protocol) and the sweep that runs them all, resuming."""

from __future__ import annotations

import json
import os
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

import diffenvs
from agents import registry
from agents.benchmark.backends import RAY_MISSING, local, ray_tasks
from agents.benchmark.config import RunSpec
from agents.cards import Protocol
from agents.episodes import GymPolicy, run_episodes
from agents.files import jsonable, write_json


def protocol_costs(env_id: str, policy: GymPolicy, episodes: int, env_kwargs: dict[str, Any] | None = None
                   ) -> tuple[np.ndarray, int]:
    """The protocol's episode costs, and how many episodes end by truncation where the objective is paid on arrival.

    Only environments whose horizon is a time limit outside the problem (``horizon_ends ==
    "truncated"``, e.g. Zermelo) can fail this way; elsewhere the count is 0. One pass over the
    episodes gives both.
    """
    costs, terminated = run_episodes(env_id, policy, episodes, env_kwargs)
    arrival = diffenvs.problem_of(env_id, **(env_kwargs or {})).horizon_ends == "truncated"
    return costs, int((~terminated).sum()) if arrival else 0


def incomplete_episodes(env_id: str, policy: GymPolicy, episodes: int, env_kwargs: dict[str, Any] | None = None) -> int:
    """How many of the protocol's episodes end without reaching the objective (see :func:`protocol_costs`)."""
    return protocol_costs(env_id, policy, episodes, env_kwargs)[1]


class CurveCost:
    """The benchmark's learning-curve evaluator: the mean protocol cost of a policy.

    It also counts each evaluation's episodes that did not reach the objective
    (:func:`protocol_costs`), keyed by the cost it returned, so that :meth:`flag` can
    mark the agent's curve points (an agent may evaluate more often than it keeps points).
    """

    def __init__(self, env_id: str, protocol: Protocol):
        self.env_id, self.protocol = env_id, protocol
        self.incomplete: dict[float, int] = {}
        self.seconds = 0.0

    def __call__(self, policy: GymPolicy) -> float:
        start = time.perf_counter()
        episodes, kwargs = self.protocol.episodes, self.protocol.env_kwargs
        costs, incomplete = protocol_costs(self.env_id, policy, episodes, kwargs)
        cost = float(costs.mean())
        self.incomplete[cost] = incomplete
        self.seconds += time.perf_counter() - start
        return cost

    def flag(self, curve: Sequence[dict[str, float]]) -> list[dict[str, float]]:
        """The curve points with ``incomplete``: episodes of that evaluation that did not reach the objective."""
        return [{**point, "incomplete": self.incomplete.get(point["cost"], 0)} for point in curve]


def execute(spec_data: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate one run (in a worker process or a Ray task); never raises.

    Returns the run's result, or ``{"spec": ..., "error": traceback}`` if it failed.
    """
    import torch

    torch.set_num_threads(1)
    spec = RunSpec.from_dict(spec_data)
    try:
        torch.manual_seed(spec.seed)
        np.random.seed(spec.seed)
        agent = registry.get(spec.agent)
        kwargs = dict(spec.protocol.env_kwargs)
        curve_cost = CurveCost(spec.env_id, spec.protocol)
        began = time.perf_counter()
        trained = agent.train(spec.env_id, kwargs, spec.seed, spec.budget, curve_cost)
        costs, incomplete = protocol_costs(spec.env_id, trained.policy, spec.protocol.episodes, kwargs)
        curve = curve_cost.flag(trained.curve)
        return {
            "spec": spec_data, "env_id": spec.env_id, "agent": spec.agent, "family": agent.family, "seed": spec.seed,
            "final_cost": float(costs.mean()), "final_costs": costs.tolist(), "incomplete": incomplete,
            "transitions": int(trained.transitions), "seconds": float(trained.seconds),
            "total_seconds": time.perf_counter() - began, "curve": curve, "details": jsonable(trained.details),
        }
    except Exception:  # a failed run is reported, not fatal to the sweep
        return {"spec": spec_data, "error": traceback.format_exc()}


def run_path(out: str | os.PathLike, spec: RunSpec) -> Path:
    return Path(out) / "runs" / f"{spec.key}.json"


def finished(out: str | os.PathLike, spec: RunSpec) -> dict[str, Any] | None:
    """The stored result of ``spec`` if it finished with the same specification, else None."""
    path = run_path(out, spec)
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return result if result.get("spec") == spec.as_dict() else None


def sweep(specs: Sequence[RunSpec], out: str | os.PathLike, workers: int = 0, use_ray: bool = False,
          ray_address: str | None = None, progress: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run every spec not already finished in ``out``; returns ``(results, failures)`` in the order of ``specs``.

    ``workers`` local processes (0: one per CPU core; 1: in this process), or Ray tasks
    (``use_ray``; ``ray_address`` of a running cluster, default a local instance). Each
    result is written atomically as it arrives, so an interruption loses only the runs in
    flight.
    """
    if workers < 0:
        raise ValueError(f"workers must be non-negative (0: one per CPU core), got {workers}")
    if use_ray:
        try:
            import ray  # noqa: F401
        except ImportError as error:
            raise RuntimeError(RAY_MISSING) from error
    out = Path(out)
    done = {spec.key: result for spec in specs if (result := finished(out, spec)) is not None}
    # the slowest agents first, so that the sweep does not end on one long run
    todo = sorted((spec for spec in specs if spec.key not in done), key=lambda spec: -registry.get(spec.agent).cost)
    failures: list[dict[str, Any]] = []
    bar = tqdm(total=len(specs), initial=len(done), desc="benchmark", unit="run", disable=not progress,
               dynamic_ncols=True)
    if todo:
        workers = workers or os.cpu_count() or 1
        stream = ray_tasks(todo, ray_address, execute) if use_ray else local(todo, min(workers, len(todo)), execute)
        for result in stream:
            spec = RunSpec.from_dict(result["spec"])
            if "error" in result:
                failures.append(result)
                bar.write(f"run {spec.key} failed:\n{result['error']}")
            else:
                write_json(run_path(out, spec), result)
                done[spec.key] = result
            bar.set_postfix_str(spec.key)
            bar.update()
    bar.close()
    return [done[spec.key] for spec in specs if spec.key in done], failures


