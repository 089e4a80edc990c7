"""The head-to-head benchmark: every agent on every environment, one evaluation protocol.

For each (environment, agent, seed) a run trains the agent under a budget
(:data:`BUDGETS`, in environment transitions) and evaluates its deterministic policy with
:func:`agents.evaluation.evaluate` on the Gymnasium face, from fixed starts, on the
environment's default objective (:data:`PROTOCOLS`) — whatever reward the agent trained on.
A run records its final cost, the transitions and training seconds it used and its learning
curve (cost against transitions and against seconds; the time spent evaluating the curve is
not counted).

Each result is compared with the environment's reference (:func:`compute_reference`): the
analytic optimum (:func:`agents.analytic.reference`) where there is one, else the oracle
planner (system identification). The *gap* is normalised:

.. math:: \\text{gap} = \\frac{J - J^\\star}{|J^\\star|} \\;\\text{if}\\; J^\\star \\ne 0, \\qquad
          \\frac{J - J^\\star}{J_0 - J^\\star} \\;\\text{if}\\; J^\\star = 0,

with :math:`J_0` the cost of the zero action (the hanging pole left alone, no force). So
"within 1%" means 1% of the optimum, or 1% of the way from doing nothing to the optimum
where the optimum is zero.

An episode that ends by truncation in an environment whose objective is paid on arrival
(Zermelo: the far bank was never reached) has not reached the objective; its cost is
recorded but flagged, and such a run or curve point never counts as reaching a target.

Runs are independent: the sweep runs them in parallel processes (spawned, one torch thread
each) or as Ray tasks (``use_ray``, the optional extra ``ray``). Each finished run is written
atomically to ``<out>/runs/<env>__<agent>__seed<k>.json``; a sweep started again skips the
runs already there with the same specification, so an interrupted sweep resumes where it
stopped. :func:`report` writes ``results.csv``, ``results.json``, ``table.md``,
``curves.png`` and ``final.png``.
"""

from __future__ import annotations

import concurrent.futures
import csv
import dataclasses
import json
import math
import multiprocessing
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm.auto import tqdm

import diffenvs
from agents import registry
from agents.evaluation import GymPolicy, evaluate, run_episodes
from agents.registry import Budget

#: the learning-curve targets: normalised gaps of 10% and 1%
TARGETS = (0.1, 0.01)


# ---- the protocol and the budgets ----------------------------------------------------------
@dataclass(frozen=True)
class Protocol:
    """How an environment is evaluated in the benchmark."""

    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """The objective every agent is evaluated on (the environment's default: empty)."""
    episodes: int = 20
    """Episodes of every evaluation, learning-curve points and final alike (starts ``reset(seed=10000 + i)``)."""


#: evaluation protocol per environment (absent: ``Protocol()``). Zermelo's start is
#: deterministic, so one episode of a deterministic policy is exact; the noisier objectives
#: get more episodes, so that a 10% gap is well above the evaluation noise.
PROTOCOLS: dict[str, Protocol] = {
    "DiffZermelo-v0": Protocol(episodes=1),
    "DiffCartpole-v0": Protocol(episodes=20),
    "DiffIsochronism-v0": Protocol(episodes=20),
    "DiffLinearSysID-v0": Protocol(episodes=50),
    "DiffDecayDesign-v0": Protocol(episodes=20),
}

#: budgets per mode, keyed by (environment, agent name), then (environment, family), then
#: ("*", family). RL baselines get the same transitions on an environment; the gradient
#: agents' budgets are their tuned iteration counts expressed in simulated transitions.
BUDGETS: dict[str, dict[tuple[str, str], Budget]] = {
    "quick": {  # minutes in all on two cores: every run also stops after 30 s of training
        ("*", "rl"): Budget(transitions=5_000, seconds=30.0, eval_every=1_000),
        ("DiffCartpole-v0", "rl"): Budget(transitions=10_000, seconds=30.0, eval_every=2_000),
        ("DiffDecayDesign-v0", "rl"): Budget(transitions=2_000, seconds=30.0, eval_every=500),
        ("*", "gradient"): Budget(transitions=10_000, seconds=30.0, eval_every=1_000),
        ("DiffZermelo-v0", "neural-ode"): Budget(transitions=15_000, seconds=30.0, eval_every=1_500),
        ("DiffCartpole-v0", "neural-ode"): Budget(transitions=80_000, seconds=30.0, eval_every=8_000),
        ("DiffIsochronism-v0", "neural-ode"): Budget(transitions=15_360_000, seconds=30.0, eval_every=2_560_000),
        ("DiffLinearSysID-v0", "neural-ode"): Budget(transitions=80_000, seconds=30.0, eval_every=8_000),
        ("DiffDecayDesign-v0", "neural-ode"): Budget(transitions=1_000, seconds=30.0, eval_every=100),
        ("DiffLinearSysID-v0", "planning"): Budget(transitions=30_000, seconds=30.0),
        ("*", "reference"): Budget(transitions=1),
    },
    "full": {  # neural-ode: its tuned iterations (agents.neural_ode.TUNED) x batch x rollout steps
        ("*", "rl"): Budget(transitions=10_000, eval_every=1_000),
        ("DiffZermelo-v0", "rl"): Budget(transitions=20_000, eval_every=1_000),
        ("DiffCartpole-v0", "rl"): Budget(transitions=30_000, eval_every=2_500),
        ("DiffCartpole-v0", "ppo"): Budget(transitions=60_000, eval_every=2_500),  # cheap per step, needs more
        ("DiffDecayDesign-v0", "rl"): Budget(transitions=5_000, eval_every=250),
        ("*", "gradient"): Budget(transitions=100_000, eval_every=5_000),
        ("DiffZermelo-v0", "neural-ode"): Budget(transitions=60_000, eval_every=1_500),
        ("DiffCartpole-v0", "neural-ode"): Budget(transitions=320_000, eval_every=8_000),
        ("DiffIsochronism-v0", "neural-ode"): Budget(transitions=64_000_000, eval_every=2_560_000),
        ("DiffLinearSysID-v0", "neural-ode"): Budget(transitions=160_000, eval_every=8_000),
        ("DiffDecayDesign-v0", "neural-ode"): Budget(transitions=3_000, eval_every=50),
        ("DiffLinearSysID-v0", "planning"): Budget(transitions=60_000),
        ("*", "reference"): Budget(transitions=1),
    },
}
MODES = tuple(BUDGETS)


def protocol(env_id: str) -> Protocol:
    """The evaluation protocol of ``env_id``."""
    return PROTOCOLS.get(env_id, Protocol())


def budget(mode: str, env_id: str, agent: str) -> Budget:
    """The budget of ``agent`` on ``env_id`` in ``mode`` (``quick`` or ``full``)."""
    if mode not in BUDGETS:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    table, family = BUDGETS[mode], registry.get(agent).family
    for key in ((env_id, agent), (env_id, family), ("*", family)):
        if key in table:
            return table[key]
    raise ValueError(f"no budget for agent {agent!r} on {env_id!r} in mode {mode!r}")


# ---- one run ------------------------------------------------------------------------------
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
            "total_seconds": time.perf_counter() - began, "curve": curve, "details": _jsonable(trained.details),
        }
    except Exception:  # a failed run is reported, not fatal to the sweep
        return {"spec": spec_data, "error": traceback.format_exc()}


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else repr(v)))


# ---- files --------------------------------------------------------------------------------
def _atomic(path: str | os.PathLike, write: Callable[[Any], None], newline: str | None = None) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it onto ``path`` (``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "w", newline=newline) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; give it the usual permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as JSON atomically: a temporary file in the same folder, then ``os.replace``."""
    _atomic(path, lambda file: json.dump(data, file, indent=1))


def _write_text(path: Path, text: str) -> None:
    _atomic(path, lambda file: file.write(text))


def run_path(out: str | os.PathLike, spec: RunSpec) -> Path:
    return Path(out) / "runs" / f"{spec.key}.json"


def finished(out: str | os.PathLike, spec: RunSpec) -> dict[str, Any] | None:
    """The stored result of ``spec`` if it finished with the same specification, else None."""
    path = run_path(out, spec)
    if not path.exists():
        return None
    try:
        result = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    return result if result.get("spec") == spec.as_dict() else None


# ---- the sweep ----------------------------------------------------------------------------
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


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    os.environ.setdefault("MPLBACKEND", "Agg")


def _local(specs: list[RunSpec], workers: int) -> Iterable[dict[str, Any]]:
    if workers == 1:  # in this process: no start-up cost, and agents registered at run time are visible
        for spec in specs:
            yield execute(spec.as_dict())
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
        futures = [pool.submit(execute, spec.as_dict()) for spec in specs]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


RAY_MISSING = ("--ray needs Ray, the optional extra 'ray': pip install 'diffenvs[ray]' "
               "(or pip install ray); without it the sweep runs in local processes")


def _ray(specs: list[RunSpec], address: str | None) -> Iterable[dict[str, Any]]:
    try:
        import ray
    except ImportError as error:
        raise RuntimeError(RAY_MISSING) from error
    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=1)(execute)
    pending = [task.remote(spec.as_dict()) for spec in specs]
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
    finally:
        for reference in pending:
            ray.cancel(reference)


_SLOWEST_FIRST = {"sac": 0, "neural-ode": 1, "td3": 2, "planning": 3, "ppo": 4}


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
    todo = sorted((spec for spec in specs if spec.key not in done), key=lambda spec: _SLOWEST_FIRST.get(spec.agent, 9))
    failures: list[dict[str, Any]] = []
    bar = tqdm(total=len(specs), initial=len(done), desc="benchmark", unit="run", disable=not progress,
               dynamic_ncols=True)
    if todo:
        workers = workers or os.cpu_count() or 1
        stream = _ray(todo, ray_address) if use_ray else _local(todo, min(workers, len(todo)))
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


# ---- references -----------------------------------------------------------------------------
def compute_reference(env_id: str, proto: Protocol, out: str | os.PathLike | None = None) -> dict[str, Any]:
    """The reference cost of ``env_id`` under ``proto``, and the scale of its normalised gap.

    ``optimum``: the analytic optimum (:func:`agents.analytic.reference`) on the protocol's
    starts; for system identification, the oracle planner's cost under the protocol (seed 0:
    taken from the sweep's own oracle run in ``out`` when there is one, else planned here,
    which gives the same number). ``zero_action_cost``: the protocol cost of the zero
    action. ``optimum`` is ``None`` where no reference exists.
    """
    from agents import analytic
    from agents.training import start_states

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
    elif "oracle" in registry.AGENTS and registry.get("oracle").applies(env_id, kwargs):
        spec = RunSpec(env_id, "oracle", 0, budget("full", env_id, "oracle"), proto)
        stored = finished(out, spec) if out is not None else None
        if stored is None:
            trained = registry.get("oracle").train(env_id, kwargs, 0, spec.budget, lambda policy: math.nan)
            optimum = float(evaluate(env_id, trained.policy, proto.episodes, kwargs).mean())
        else:
            optimum = stored["final_cost"]
        result.update(optimum=optimum, name="oracle",
                      description="differentiable planning on the true A (agents.planning), evaluated by the protocol")
    return result


def references(envs: Sequence[str], out: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """References of ``envs``, computed afresh (a few seconds) and written to ``<out>/references.json``.

    Not cached: a reference added or changed in ``agents.analytic`` shows in the next report.
    """
    refs = {env_id: compute_reference(env_id, protocol(env_id), out) for env_id in envs}
    write_json(Path(out) / "references.json", refs)
    return refs


def normalised_gap(cost: float, reference: dict[str, Any]) -> float | None:
    """(cost - optimum) / |optimum|, or / (zero-action cost - optimum) where the optimum is 0; None without a reference."""
    optimum = reference.get("optimum")
    if optimum is None:
        return None
    scale = abs(optimum) if optimum != 0 else reference["zero_action_cost"] - optimum
    return (cost - optimum) / scale if scale > 0 else None


# ---- summaries ------------------------------------------------------------------------------
def time_to_target(result: dict[str, Any], reference: dict[str, Any], target: float) -> tuple[float, float] | None:
    """(transitions, seconds) at the first curve point within ``target`` of the reference, None if never."""
    for point in result["curve"]:
        gap = normalised_gap(point["cost"], reference)
        if gap is not None and gap <= target and not point.get("incomplete", 0):
            return point["transitions"], point["seconds"]
    return None


def best_gap(result: dict[str, Any], reference: dict[str, Any]) -> float | None:
    """The smallest normalised gap over the run's complete curve points and its final evaluation."""
    gaps = [normalised_gap(p["cost"], reference) for p in result["curve"] if not p.get("incomplete", 0)]
    if not result["incomplete"]:
        gaps.append(normalised_gap(result["final_cost"], reference))
    gaps = [g for g in gaps if g is not None]
    return min(gaps) if gaps else None


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    se = float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else math.nan
    return float(values.mean()), se


def summarise(results: Sequence[dict[str, Any]], refs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (environment, agent), in the order first met: means ± standard errors over seeds."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["env_id"], result["agent"]), []).append(result)
    rows = []
    for (env_id, agent), runs in groups.items():
        reference = refs.get(env_id, {"optimum": None})
        row: dict[str, Any] = {"env_id": env_id, "agent": agent, "family": runs[0]["family"], "seeds": len(runs),
                               "trained_on": runs[0].get("details", {}).get("trained_on", "default"),
                               "optimum": reference.get("optimum"),
                               "incomplete_runs": sum(1 for r in runs if r["incomplete"])}
        row["cost"], row["cost_se"] = _mean_se([r["final_cost"] for r in runs])
        gaps = [normalised_gap(r["final_cost"], reference) for r in runs]
        row["gap"], row["gap_se"] = _mean_se(gaps) if None not in gaps else (None, None)
        row["transitions"], row["transitions_se"] = _mean_se([r["transitions"] for r in runs])
        row["seconds"], row["seconds_se"] = _mean_se([r["seconds"] for r in runs])
        for target in TARGETS:
            reached = [t for r in runs if (t := time_to_target(r, reference, target)) is not None]
            row[f"reached_{target}"] = len(reached)
            row[f"transitions_{target}"] = float(np.mean([t[0] for t in reached])) if reached else None
            row[f"seconds_{target}"] = float(np.mean([t[1] for t in reached])) if reached else None
        best = [b for r in runs if (b := best_gap(r, reference)) is not None]
        row["best_gap"] = min(best) if best else None
        rows.append(row)
    return rows


def _number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}"


def _plus_minus(mean: float | None, se: float | None, digits: int = 4) -> str:
    if mean is None:
        return "–"
    if se is None or math.isnan(se):
        return _number(mean, digits)
    return f"{_number(mean, digits)} ± {_number(se, 2)}"


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.3g}%"


def _count(value: float | None) -> str:
    return "–" if value is None else f"{round(value):,}"


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The benchmark's tables in markdown: final results, then time to the 10% and 1% targets."""
    lines = ["| environment | agent | trained on | final cost | reference | gap | transitions | training s |",
             "|---|---|---|---|---|---|---|---|"]
    flagged = False
    for row in rows:
        cost = _plus_minus(row["cost"], row["cost_se"])
        if row["incomplete_runs"]:
            cost += f" † ({row['incomplete_runs']}/{row['seeds']})"
            flagged = True
        gap = _percent(row["gap"])
        if row["gap"] is not None and row["gap_se"] is not None and not math.isnan(row["gap_se"]):
            gap += f" ± {_percent(row['gap_se'])}"
        lines.append(f"| {row['env_id']} | {row['agent']} | {row['trained_on']} | {cost} | {_number(row['optimum'])} | "
                     f"{gap} | {_count(row['transitions'])} | {_number(row['seconds'], 3)} |")
    lines += ["", "| environment | agent | transitions to 10% | seconds to 10% | transitions to 1% | seconds to 1% | "
              "best gap |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = []
        for target in TARGETS:
            reached = row[f"reached_{target}"]
            share = "" if reached in (0, row["seeds"]) else f" ({reached}/{row['seeds']})"
            cells += [_count(row[f"transitions_{target}"]) + share, _number(row[f"seconds_{target}"], 3)]
        lines.append(f"| {row['env_id']} | {row['agent']} | {' | '.join(cells)} | {_percent(row['best_gap'])} |")
    notes = ["", "Mean ± standard error over seeds (a single seed: the value alone). gap = (cost − reference) / "
             "|reference|, or / (zero-action cost − reference) where the reference is 0. Targets: the first learning-"
             "curve point within the gap, averaged over the seeds that reached it ((k/n): only k of n seeds did); "
             "best gap: the smallest over all curve points and the final evaluation."]
    if flagged:
        notes.append("† (k/n): in k of n runs some evaluation episodes ended at the time limit without reaching the "
                     "objective (Zermelo: the far bank); their cost is x at the time limit, not a crossing.")
    return "\n".join(lines + notes) + "\n"


def headline(rows: Sequence[dict[str, Any]], gradient: str = "neural-ode",
             baselines: Sequence[str] = ("ppo", "sac", "td3")) -> list[str]:
    """Per environment: the gradient agent's transitions and seconds to 1% against the best baseline's."""
    lines = []
    for env_id in dict.fromkeys(row["env_id"] for row in rows):
        mine = next((r for r in rows if r["env_id"] == env_id and r["agent"] == gradient), None)
        others = [r for r in rows if r["env_id"] == env_id and r["agent"] in baselines]
        if mine is None or not others or mine["optimum"] is None:
            continue
        text = f"{env_id}: {gradient} "
        if mine["transitions_0.01"] is not None:
            text += f"reaches 1% after {_count(mine['transitions_0.01'])} transitions, {_number(mine['seconds_0.01'], 3)} s"
        else:
            text += f"does not reach 1% (best gap {_percent(mine['best_gap'])})"
        for target in TARGETS:
            reached = [r for r in others if r[f"transitions_{target}"] is not None]
            if reached:
                best = min(reached, key=lambda r: r[f"transitions_{target}"])
                text += (f"; best baseline to {100 * target:g}%: {best['agent']}, {_count(best[f'transitions_{target}'])} "
                         f"transitions, {_number(best[f'seconds_{target}'], 3)} s")
                break
        else:
            best = min(others, key=lambda r: math.inf if r["best_gap"] is None else r["best_gap"])
            text += f"; no baseline reaches 10% (best: {best['agent']}, gap {_percent(best['best_gap'])})"
        lines.append(text)
    return lines


# ---- plots ----------------------------------------------------------------------------------
#: gaps below this (including negative ones: a cost at or below the reference) are drawn at it
GAP_FLOOR = 1e-4


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colours(agents: Sequence[str]) -> dict[str, Any]:
    plt = _pyplot()
    cycle = plt.get_cmap("tab10")
    return {agent: cycle(i % 10) for i, agent in enumerate(agents)}


def plot_curves(results: Sequence[dict[str, Any]], refs: dict[str, dict[str, Any]], path: str | os.PathLike) -> Path:
    """Learning curves: normalised gap against transitions and against seconds, log axes, one row per environment."""
    plt = _pyplot()
    envs = list(dict.fromkeys(r["env_id"] for r in results))
    colours = _colours(list(dict.fromkeys(r["agent"] for r in results)))
    fig, axes = plt.subplots(len(envs), 2, figsize=(11, 3.2 * len(envs)), squeeze=False)
    for row, env_id in enumerate(envs):
        reference = refs.get(env_id, {"optimum": None})
        labelled: set[str] = set()
        has_reference = reference.get("optimum") is not None
        for result in (r for r in results if r["env_id"] == env_id):
            agent = result["agent"]
            points = [p for p in result["curve"] if not p.get("incomplete", 0)]
            if not points:
                continue
            if has_reference:
                gaps = np.maximum([normalised_gap(p["cost"], reference) for p in points], GAP_FLOOR)
            else:
                gaps = np.array([p["cost"] for p in points], dtype=np.float64)
            label = None if agent in labelled else agent
            labelled.add(agent)
            for column, key in enumerate(("transitions", "seconds")):
                ax = axes[row, column]
                x = np.array([p[key] for p in points], dtype=np.float64)
                if np.all(x <= 0):  # no training: a level line
                    ax.axhline(gaps[-1], color=colours[agent], ls=":", lw=1.5, label=label)
                else:
                    ax.plot(np.maximum(x, 1e-3 if key == "seconds" else 1), gaps, color=colours[agent], lw=1.2,
                            marker=".", ms=3, alpha=0.8, label=label)
        for column, key in enumerate(("environment transitions", "training seconds")):
            ax = axes[row, column]
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.set_xlabel(key)
            if has_reference:
                for target in TARGETS:
                    ax.axhline(target, color="0.5", ls="--", lw=0.8)
                ax.set_yscale("log")
                ax.set_ylabel("gap to reference")
            else:
                ax.set_ylabel("cost (no reference)")
            ax.set_title(f"{env_id} (reference: {reference.get('name') or 'none'})", fontsize=9)
        axes[row, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Learning curves: gap to the reference (dashed: 10% and 1%; gaps ≤ {GAP_FLOOR:g} drawn at "
                 f"{GAP_FLOOR:g}; dotted: agents without training)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_final(results: Sequence[dict[str, Any]], refs: dict[str, dict[str, Any]], path: str | os.PathLike) -> Path:
    """Final cost per agent, one panel per environment: every seed as a dot, mean ± standard error, the reference dashed."""
    plt = _pyplot()
    envs = list(dict.fromkeys(r["env_id"] for r in results))
    colours = _colours(list(dict.fromkeys(r["agent"] for r in results)))
    columns = min(len(envs), 2)
    rows = math.ceil(len(envs) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.4 * rows), squeeze=False)
    for ax, env_id in zip(axes.flat, envs):
        runs = [r for r in results if r["env_id"] == env_id]
        agents = list(dict.fromkeys(r["agent"] for r in runs))
        costs_all = []
        for i, agent in enumerate(agents):
            mine = [r for r in runs if r["agent"] == agent]
            costs = np.array([r["final_cost"] for r in mine])
            costs_all.extend(costs)
            bad = np.array([bool(r["incomplete"]) for r in mine])
            ax.scatter(np.full(costs.size, i)[~bad], costs[~bad], color=colours[agent], s=14, zorder=3)
            ax.scatter(np.full(costs.size, i)[bad], costs[bad], color=colours[agent], marker="x", s=30, zorder=3)
            mean, se = _mean_se(costs)
            ax.errorbar(i + 0.18, mean, yerr=0 if math.isnan(se) else se, color="k", marker="_", ms=12, capsize=3)
        optimum = refs.get(env_id, {}).get("optimum")
        log = bool(costs_all) and min(costs_all) > 0
        if log:
            ax.set_yscale("log")
        if optimum is not None and (optimum > 0 or not log):
            ax.axhline(optimum, color="k", ls="--", lw=1, label=f"reference {optimum:.4g}")
            ax.legend(fontsize=7)
        elif optimum is not None:
            ax.text(0.98, 0.97, f"reference {optimum:.4g} (below the log axis)", transform=ax.transAxes, ha="right",
                    va="top", fontsize=7)
        ax.set_xticks(range(len(agents)), agents, rotation=30, fontsize=8)
        ax.set_ylabel("final cost")
        ax.set_title(env_id, fontsize=9)
    for ax in list(axes.flat)[len(envs):]:
        ax.axis("off")
    fig.suptitle("Final cost per agent (dots: seeds, x: objective not reached; bar: mean ± s.e.)", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---- outputs --------------------------------------------------------------------------------
CSV_FIELDS = ("env_id", "agent", "family", "seed", "final_cost", "incomplete", "gap", "transitions", "seconds",
              "total_seconds", "trained_on", "transitions_to_10pct", "seconds_to_10pct", "transitions_to_1pct",
              "seconds_to_1pct")


def report(results: Sequence[dict[str, Any]], refs: dict[str, dict[str, Any]], out: str | os.PathLike,
           plots: bool = True) -> dict[str, Path]:
    """Write ``results.csv``, ``results.json``, ``table.md`` (and ``curves.png``, ``final.png``) in ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in results:
        reference = refs.get(r["env_id"], {"optimum": None})
        reach = {t: time_to_target(r, reference, t) for t in TARGETS}
        rows.append({
            "env_id": r["env_id"], "agent": r["agent"], "family": r["family"], "seed": r["seed"],
            "final_cost": r["final_cost"], "incomplete": r["incomplete"],
            "gap": normalised_gap(r["final_cost"], reference), "transitions": r["transitions"], "seconds": r["seconds"],
            "total_seconds": r["total_seconds"], "trained_on": r.get("details", {}).get("trained_on", "default"),
            "transitions_to_10pct": reach[0.1][0] if reach[0.1] else None,
            "seconds_to_10pct": reach[0.1][1] if reach[0.1] else None,
            "transitions_to_1pct": reach[0.01][0] if reach[0.01] else None,
            "seconds_to_1pct": reach[0.01][1] if reach[0.01] else None})
    paths = {"csv": out / "results.csv", "json": out / "results.json", "table": out / "table.md"}
    def write_csv(file: Any) -> None:
        writer = csv.DictWriter(file, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)

    _atomic(paths["csv"], write_csv, newline="")
    summary = summarise(results, refs)
    write_json(paths["json"], {"references": refs, "summary": summary, "runs": list(results)})
    _write_text(paths["table"], markdown_table(summary) + "\n" + "\n".join(f"- {line}" for line in headline(summary))
                + "\n")
    if plots and results:
        paths["curves"] = plot_curves(results, refs, out / "curves.png")
        paths["final"] = plot_final(results, refs, out / "final.png")
    return paths


# ---- the whole benchmark ------------------------------------------------------------------------
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


def run_benchmark(config: BenchmarkConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Plan, sweep (resuming), compute references and write the report of ``config``."""
    envs = list(config.envs or diffenvs.ENV_IDS)
    agents = list(config.agents or registry.AGENTS)
    specs = plan_runs(envs, agents, config.seed_list, config.mode)
    began = time.perf_counter()
    results, failures = sweep(specs, config.out, config.workers, config.ray, config.ray_address or None, config.progress)
    refs = references(envs, config.out)
    paths = report(results, refs, config.out)
    wall = time.perf_counter() - began
    log(f"{len(results)}/{len(specs)} runs finished, {len(failures)} failed, {wall:.0f} s; table: {paths['table']}")
    return {"specs": specs, "results": results, "failures": failures, "references": refs, "paths": paths,
            "seconds": wall}
