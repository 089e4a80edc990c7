"""One benchmark run (train, then evaluate by the protocol) and the sweep that runs them all, resuming."""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
from tqdm.auto import tqdm

import diffenvs
from agents import registry
from agents.benchmark.backends import RAY_MISSING, local, ray_tasks
from agents.benchmark.config import TEST_SEED, VALIDATION_SEED, RunSpec, budget, protocol
from agents.benchmark.records import CurvePoint, RunFailure, RunRecord
from agents.cards import Protocol, card
from agents.episodes import GymPolicy, run_episodes
from agents.files import differences, folder_lock, jsonable, write_json


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

    def flag(self, curve: Sequence[Mapping[str, float]]) -> list[CurvePoint]:
        """The curve points (every key the agent gave them) with ``incomplete``: episodes of that evaluation that did
        not reach the objective."""
        return [cast(CurvePoint, {**point, "incomplete": self.incomplete.get(point["cost"], 0)}) for point in curve]


def execute(spec_data: dict[str, Any]) -> RunRecord | RunFailure:
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
        record: RunRecord = {
            "spec": spec_data, "env_id": spec.env_id, "variant": spec.variant, "mode": spec.mode, "agent": spec.agent,
            "family": agent.family, "seed": spec.seed,
            "starts": {"validation": validation, "test": test, "episodes": spec.protocol.episodes},
            "final_cost": float(costs.mean()), "final_costs": costs.tolist(), "incomplete": incomplete,
            "transitions": int(trained.transitions), "seconds": float(trained.seconds),
            "total_seconds": time.perf_counter() - began, "curve": curve, "details": jsonable(trained.details),
        }
        return record
    except Exception:  # a failed run is reported, not fatal to the sweep
        return {"spec": spec_data, "error": traceback.format_exc()}


def run_path(out: str | os.PathLike, spec: RunSpec) -> Path:
    """The run file of ``spec`` in the folder ``out``: ``<out>/runs/<spec.key>.json``."""
    return Path(out) / "runs" / f"{spec.key}.json"


class RunFileError(ValueError):
    """A run file that is not a benchmark run of its name; the message names the file and what is wrong.

    ``foreign`` is False for a file that cannot be read as a run (damaged, truncated, not a
    run's JSON object, fields missing or of the wrong type), True for a readable run that names
    another run than its spec or its file name.
    """

    def __init__(self, path: str | os.PathLike, reason: str, foreign: bool = False):
        super().__init__(f"run file {path}: {reason}")
        self.path, self.reason, self.foreign = Path(path), reason, foreign


#: what :func:`execute` writes into every run file and the report reads, with the JSON types it expects
RUN_FIELDS: dict[str, type | tuple[type, ...]] = {
    "spec": dict, "env_id": str, "agent": str, "family": str, "seed": int, "final_cost": (int, float),
    "incomplete": int, "transitions": (int, float), "seconds": (int, float), "total_seconds": (int, float),
    "curve": list,
}
#: what every learning-curve point holds
CURVE_FIELDS = ("transitions", "seconds", "cost")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def read_run(path: str | os.PathLike) -> RunRecord:
    """The run stored in ``path``, checked: it is whole, and it is the run its spec and its file name say.

    Raises :class:`RunFileError` naming the file and what is wrong: ``foreign=False`` if it
    cannot be read as a run (a number of its record or curve that is NaN or infinite included:
    no finished run has one), ``foreign=True`` if its body (``env_id``, ``agent``, ``seed``,
    ``mode``, ``variant``) names another run than its spec, or its spec another than its name.
    """
    path = Path(path)
    try:
        result = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RunFileError(path, "not UTF-8 text (a binary or damaged file)") from None
    except json.JSONDecodeError as error:
        raise RunFileError(path, f"not whole JSON (truncated or damaged: {error})") from None
    except OSError as error:
        raise RunFileError(path, f"cannot be read ({error.strerror or error})") from None
    if not isinstance(result, dict):
        raise RunFileError(path, f"holds a JSON {type(result).__name__}, not a run's object")
    missing = [name for name in RUN_FIELDS if name not in result]
    if missing:
        raise RunFileError(path, f"has no {', '.join(missing)} (not a run written by the benchmark)")
    for name, kind in RUN_FIELDS.items():
        value = result[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RunFileError(path, f"its {name} is {value!r}, not of the type a run holds")
    for name, kind in RUN_FIELDS.items():
        if kind == (int, float) and not math.isfinite(result[name]):
            raise RunFileError(path, f"its {name} is {result[name]!r}, not a finite number")
    for point in result["curve"]:
        if not (isinstance(point, dict) and all(_number(point.get(name)) and math.isfinite(point[name])
                                                for name in CURVE_FIELDS)):
            raise RunFileError(path, f"a learning-curve point is {point!r}, not finite numbers {', '.join(CURVE_FIELDS)}")
    try:
        spec = RunSpec.from_dict(result["spec"])
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise RunFileError(path, f"its spec cannot be read ({type(error).__name__}: {error})") from None
    others = [f"{name} {result[name]!r} in its body, {getattr(spec, name)!r} in its spec"
              for name in ("env_id", "agent", "seed", "mode", "variant")
              if name in result and result[name] != getattr(spec, name)]
    if path.name != f"{spec.key}.json":
        others.append(f"its spec is the run {spec.key!r}, its name {path.name!r}")
    if others:
        raise RunFileError(path, "names another run: " + "; ".join(others), foreign=True)
    return cast(RunRecord, result)  # its fields and curve points are checked above


def finished(out: str | os.PathLike, spec: RunSpec) -> RunRecord | None:
    """The stored result of ``spec`` if it finished with the same specification, else None (also for a bad file)."""
    path = run_path(out, spec)
    if not path.exists():
        return None
    try:
        result = read_run(path)
    except RunFileError:
        return None
    return result if result["spec"] == spec.as_dict() else None


def spec_differences(stored: Any, planned: Any) -> list[str]:
    """Each field where two spec dicts differ, in the spec's order: ``name: <stored> in the file, <planned> planned``."""
    return differences(stored, planned, labels=("in the file", "planned"), sort=False)


def current_spec(stored: dict[str, Any]) -> RunSpec | None:
    """The spec the present cards and agents give the run of a stored spec (``None``: its agent or environment is gone)."""
    try:
        old = RunSpec.from_dict(stored)
        variants = card(old.env_id).variants
        if old.variant and old.variant not in variants:
            return None
        extra = dict(variants[old.variant].env_kwargs) if old.variant else {}
        return RunSpec(old.env_id, old.agent, old.seed, budget(old.mode, old.env_id, old.agent), protocol(old.env_id, old.mode),
                       old.mode, old.variant, extra)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def collect(out: str | os.PathLike, mode: str) -> tuple[list[RunRecord], list[str]]:
    """Every run file of ``mode`` in ``<out>/runs`` whose spec is the present one, whatever sweep wrote it.

    Returns ``(results, skipped)``: results in table order (environments as registered, the
    protocol before its variants, agents as registered, seeds), and the files left out, each
    as ``name (why)``: their spec is not what the cards and agents now give (another budget,
    protocol or variant, an unknown agent), or the file cannot be read as a run, or it names
    another run than its spec or its name (:func:`read_run`). Runs of another mode are
    neither used nor listed.
    """
    results: list[RunRecord] = []
    skipped: list[str] = []
    for path in sorted((Path(out) / "runs").glob("*.json")):
        try:
            result = read_run(path)
        except RunFileError as error:
            skipped.append(f"{path.name} ({error.reason})")
            continue
        stored = result["spec"]
        if stored.get("mode", mode) != mode:
            continue
        spec = current_spec(stored)
        if spec is None:
            skipped.append(f"{path.name} (its agent, environment or variant is not registered)")
        elif spec.as_dict() != stored:
            skipped.append(f"{path.name} (another spec than the present one: "
                           f"{'; '.join(spec_differences(stored, spec.as_dict()))})")
        else:
            results.append(result)
    return sorted(results, key=_table_order), skipped


def _table_order(result: RunRecord) -> tuple[int, str, int, int]:
    envs, agents = list(diffenvs.ENV_IDS), list(registry.agents())
    env, agent = result["env_id"], result["agent"]
    return (envs.index(env) if env in envs else len(envs), result.get("variant", ""),
            agents.index(agent) if agent in agents else len(agents), result["seed"])


#: the file in a sweep's output folder that holds the process id of the sweep writing there
LOCK_FILE = "sweep.lock"


def warn_stderr(message: str) -> None:
    """Print ``warning: <message>`` to stderr (the default of a sweep's ``warn``)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def sweep_lock(out: str | os.PathLike, warn: Callable[[str], None] = warn_stderr) -> Iterator[Path]:
    """Hold ``<out>/sweep.lock`` while the block runs, so that no two sweeps write into one folder at once.

    :func:`agents.files.folder_lock` under the name :data:`LOCK_FILE`: created with
    ``O_CREAT | O_EXCL``, holding this process's id and host; a lock whose process is gone is
    taken over with a ``warn``ing; a live one raises :class:`agents.files.FolderLockedError` (a
    ``RuntimeError``) naming the folder, the lock and the process. Yields the lock's path.
    """
    with folder_lock(out, name=LOCK_FILE, warn=warn) as folder:
        yield folder / LOCK_FILE


def _aside(path: Path) -> Path:
    """``path`` moved to ``<name>.corrupt`` (``.corrupt.1``, ... if taken); the new path."""
    target, number = path.with_name(f"{path.name}.corrupt"), 0
    while target.exists():
        number += 1
        target = path.with_name(f"{path.name}.corrupt.{number}")
    os.replace(path, target)
    return target


def _stored_runs(specs: Sequence[RunSpec], out: Path, replace: bool,
                 warn: Callable[[str], None]) -> dict[str, RunRecord]:
    """The finished runs among ``specs`` in ``out``; the others' files are checked before anything runs.

    A file that cannot be read is moved aside to ``<name>.corrupt`` (its run is done again). A
    file of another spec, or one that names another run, raises ``ValueError`` naming the
    files and the differences, unless ``replace``: then its run is done again and overwrites it.
    """
    done: dict[str, RunRecord] = {}
    refused: list[str] = []
    damaged: list[RunFileError] = []
    for spec in specs:
        path = run_path(out, spec)
        if not path.exists():
            continue
        try:
            result = read_run(path)
        except RunFileError as error:
            if not error.foreign:
                damaged.append(error)
            elif replace:
                warn(f"{error}; --replace: the run is done again and overwrites it")
            else:
                refused.append(f"{path}: it {error.reason}")
            continue
        if result["spec"] == spec.as_dict():
            done[spec.key] = result
            continue
        differences = "; ".join(spec_differences(result["spec"], spec.as_dict()))
        if replace:
            warn(f"run file {path} holds a run of another spec ({differences}); --replace: the run is done again and "
                 f"overwrites it")
        else:
            refused.append(f"{path}: another spec than planned ({differences})")
    if refused:
        raise ValueError(f"{len(refused)} run file(s) in {out / 'runs'} are not the runs this sweep plans, and a sweep "
                         f"never overwrites them: sweep into another --out, or pass --replace to run them again and "
                         f"overwrite them.\n  " + "\n  ".join(refused))
    for damage in damaged:
        warn(f"{damage}; moved aside to {_aside(damage.path).name}, the run is done again")
    return done


def _by_run_file(specs: Sequence[RunSpec]) -> dict[str, RunSpec]:
    """``specs`` by run file name, in order; specs sharing a run file must be equal (repeats count once)."""
    unique: dict[str, RunSpec] = {}
    for spec in specs:
        if unique.setdefault(spec.key, spec) != spec:
            raise ValueError(f"specs holds two different runs with the run file {spec.key}.json: "
                             f"{'; '.join(spec_differences(unique[spec.key].as_dict(), spec.as_dict()))}")
    return unique


def sweep(specs: Sequence[RunSpec], out: str | os.PathLike, workers: int = 0, use_ray: bool = False,
          ray_address: str | None = None, progress: bool = True, replace: bool = False,
          warn: Callable[[str], None] = warn_stderr) -> tuple[list[RunRecord], list[RunFailure]]:
    """Run every spec not already finished in ``out``; returns ``(results, failures)`` in the order of ``specs``.

    ``workers`` local processes (0: one per CPU core; 1: in this process), or Ray tasks
    (``use_ray``; ``ray_address`` of a running cluster, default a local instance). Each
    result is written atomically as it arrives, so an interruption loses only the runs in
    flight.

    The sweep holds ``<out>/sweep.lock`` (:func:`sweep_lock`): a second sweep into the same
    folder at once raises ``RuntimeError``. Before anything runs, the run files of ``specs``
    already in ``out`` are checked (:func:`read_run`): a file that cannot be read is moved
    aside to ``<name>.corrupt`` with a ``warn``ing and its run done again; a file of another
    spec (e.g. another budget), or one that names another run, raises ``ValueError`` naming
    each file and what differs, unless ``replace`` (then the run is done again and its new
    result overwrites the file). Specs sharing a run file must be equal (repeats count once).
    """
    if workers < 0:
        raise ValueError(f"workers must be non-negative (0: one per CPU core), got {workers}")
    if use_ray:
        try:
            import ray  # noqa: F401
        except ImportError as error:
            raise RuntimeError(RAY_MISSING) from error
    _by_run_file(specs)  # before the lock: a bad plan touches nothing
    with sweep_lock(out, warn):
        return sweep_locked(specs, out, workers, use_ray, ray_address, progress, replace, warn)


def sweep_locked(specs: Sequence[RunSpec], out: str | os.PathLike, workers: int = 0, use_ray: bool = False,
                 ray_address: str | None = None, progress: bool = True, replace: bool = False,
                 warn: Callable[[str], None] = warn_stderr) -> tuple[list[RunRecord], list[RunFailure]]:
    """:func:`sweep` for a caller that holds ``<out>/sweep.lock`` already (:func:`sweep_lock`)."""
    if workers < 0:
        raise ValueError(f"workers must be non-negative (0: one per CPU core), got {workers}")
    unique = _by_run_file(specs)
    out = Path(out)
    for leftover in (out / "runs").glob(".*.partial"):  # a write cut short by a killed sweep (none runs now)
        leftover.unlink(missing_ok=True)
    done = _stored_runs(list(unique.values()), out, replace, warn)
    # the slowest agents first, so that the sweep does not end on one long run
    todo = sorted((spec for spec in unique.values() if spec.key not in done),
                  key=lambda spec: -registry.get(spec.agent).cost)
    failures: list[RunFailure] = []
    bar = tqdm(total=len(unique), initial=len(done), desc="benchmark", unit="run", disable=not progress,
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
    return [done[key] for key in unique if key in done], failures
