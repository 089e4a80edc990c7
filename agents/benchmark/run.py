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
from agents.benchmark.config import TEST_SEED, VALIDATION_SEED, RunSpec, budget, protocol
from agents.cards import Protocol, card
from agents.episodes import GymPolicy, run_episodes
from agents.files import jsonable, write_json


def protocol_costs(env_id: str, policy: GymPolicy, episodes: int, env_kwargs: dict[str, Any] | None = None,
                   seed: int = TEST_SEED) -> tuple[np.ndarray, int]:
    """The protocol's episode costs, and how many episodes end by truncation where the objective is paid on arrival.

    Episode ``i`` starts from ``reset(seed=seed + i)``: :data:`TEST_SEED` for the final score,
    :data:`VALIDATION_SEED` for everything an agent or the report selects on.

    Only environments whose horizon is a time limit outside the problem (``horizon_ends ==
    "truncated"``, e.g. Zermelo) can fail this way; elsewhere the count is 0. One pass over the
    episodes gives both.
    """
    costs, terminated = run_episodes(env_id, policy, episodes, env_kwargs, seed)
    arrival = diffenvs.problem_of(env_id, **(env_kwargs or {})).horizon_ends == "truncated"
    return costs, int((~terminated).sum()) if arrival else 0


def incomplete_episodes(env_id: str, policy: GymPolicy, episodes: int, env_kwargs: dict[str, Any] | None = None) -> int:
    """How many of the protocol's episodes end without reaching the objective (see :func:`protocol_costs`)."""
    return protocol_costs(env_id, policy, episodes, env_kwargs)[1]


class CurveCost:
    """The benchmark's learning-curve evaluator: the mean protocol cost of a policy on the validation starts.

    Its episodes start from ``reset(seed=VALIDATION_SEED + i)``, disjoint from the test starts
    of the final score, so that whatever an agent or the report selects on a curve (the
    best point, the time to a target, early stopping) never sees the test set.
    It also counts each evaluation's episodes that did not reach the objective
    (:func:`protocol_costs`), keyed by the cost it returned, so that :meth:`flag` can mark the
    agent's curve points (an agent may evaluate more often than it keeps points).
    """

    def __init__(self, env_id: str, protocol: Protocol, env_kwargs: dict[str, Any] | None = None,
                 seed: int = VALIDATION_SEED):
        self.env_id, self.protocol, self.seed = env_id, protocol, seed
        self.env_kwargs = dict(protocol.env_kwargs if env_kwargs is None else env_kwargs)
        self.incomplete: dict[float, int] = {}
        self.seconds = 0.0

    def __call__(self, policy: GymPolicy) -> float:
        start = time.perf_counter()
        costs, incomplete = protocol_costs(self.env_id, policy, self.protocol.episodes, self.env_kwargs, self.seed)
        cost = float(costs.mean())
        self.incomplete[cost] = incomplete
        self.seconds += time.perf_counter() - start
        return cost

    def flag(self, curve: Sequence[dict[str, float]]) -> list[dict[str, float]]:
        """The curve points with ``incomplete``: episodes of that evaluation that did not reach the objective."""
        return [{**point, "incomplete": self.incomplete.get(point["cost"], 0)} for point in curve]


def execute(spec_data: dict[str, Any]) -> dict[str, Any]:
    """Train (curve points on the validation starts) and score on the test starts one run; never raises.

    Runs in a worker process or a Ray task. Returns the run's result, or
    ``{"spec": ..., "error": traceback}`` if it failed.
    """
    import torch

    torch.set_num_threads(1)
    spec = RunSpec.from_dict(spec_data)
    try:
        torch.manual_seed(spec.seed)
        np.random.seed(spec.seed)
        agent = registry.get(spec.agent)
        kwargs = spec.env_kwargs
        validation, test = spec.starts
        curve_cost = CurveCost(spec.env_id, spec.protocol, kwargs, validation)
        began = time.perf_counter()
        trained = agent.train(spec.env_id, kwargs, spec.seed, spec.budget, curve_cost)
        costs, incomplete = protocol_costs(spec.env_id, trained.policy, spec.protocol.episodes, kwargs, test)
        curve = curve_cost.flag(trained.curve)
        return {
            "spec": spec_data, "env_id": spec.env_id, "variant": spec.variant, "mode": spec.mode, "agent": spec.agent,
            "family": agent.family, "seed": spec.seed,
            "starts": {"validation": validation, "test": test, "episodes": spec.protocol.episodes},
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


def current_spec(stored: dict[str, Any]) -> RunSpec | None:
    """The spec the present cards and agents give the run of a stored spec (``None``: its agent or environment is gone)."""
    try:
        old = RunSpec.from_dict(stored)
        variants = card(old.env_id).variants
        if old.variant and old.variant not in variants:
            return None
        extra = dict(variants[old.variant].env_kwargs) if old.variant else {}
        return RunSpec(old.env_id, old.agent, old.seed, budget(old.mode, old.env_id, old.agent), protocol(old.env_id),
                       old.mode, old.variant, extra)
    except (KeyError, TypeError, ValueError):
        return None


def collect(out: str | os.PathLike, mode: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Every run file of ``mode`` in ``<out>/runs`` whose spec is the present one, whatever sweep wrote it.

    Returns ``(results, skipped)``: results in table order (environments as registered, the
    protocol before its variants, agents as registered, seeds), and the names of the files
    left out because their spec is not what the cards and agents now give (another budget,
    protocol or variant, an unknown agent, an unreadable file). Runs of another mode are
    neither used nor listed.
    """
    results, skipped = [], []
    for path in sorted((Path(out) / "runs").glob("*.json")):
        try:
            result = json.loads(path.read_text())
            stored = result["spec"]
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError):
            skipped.append(path.name)
            continue
        if stored.get("mode", mode) != mode:
            continue
        spec = current_spec(stored)
        if spec is None or spec.as_dict() != stored:
            skipped.append(path.name)
        else:
            results.append(result)
    return sorted(results, key=_table_order), skipped


def _table_order(result: dict[str, Any]) -> tuple[int, str, int, int]:
    envs, agents = list(diffenvs.ENV_IDS), list(registry.agents())
    env, agent = result["env_id"], result["agent"]
    return (envs.index(env) if env in envs else len(envs), result.get("variant", ""),
            agents.index(agent) if agent in agents else len(agents), result["seed"])


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


