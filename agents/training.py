"""A training run's folder and its end: claim the folder (:func:`claim_folder`), then evaluate the
policy on the Gymnasium face, compare it with the analytic reference, write ``results.json`` and
plots, and say how it did.

Nothing here knows a particular agent or environment: any agent that gives a Gymnasium
policy, gradient-based or not, goes through :func:`finish_run`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.episodes import EVAL_SEED, Episode, GymPolicy, controls_on, evaluate, record_episode, start_states
from agents.files import differences, jsonable, write_json
from agents.plots import plot_controls, plot_learning_curve, plot_trajectories
from agents.references import Reference
from diffenvs import problem_of

RESULTS_FILE = "results.json"
CHECKPOINT_FILE = "checkpoint.pt"
#: what the run in a folder is (environment, agent, its settings), written when the run claims the folder
RUN_FILE = "run.json"
#: every file a run may write (its results.json lists those it wrote, with their digests: ``files``); no other file
#: is ever a run's
RUN_FILES = (RUN_FILE, RESULTS_FILE, CHECKPOINT_FILE, "loss.png", "trajectory.png", "control.png")


def run_identity(env_id: str, agent: str, env_kwargs: dict[str, Any] | None, config: Any = None) -> dict[str, Any]:
    """What makes two runs the same run, as JSON values: what ``run.json`` holds."""
    return jsonable({"env": env_id, "agent": agent, "env_kwargs": dict(env_kwargs or {}), "config": config})


#: the folder inside a run's folder where an ``--overwrite`` run writes until it has finished: the run it replaces
#: stays whole until then (:func:`claim_folder`, :func:`commit_run`)
STAGING_DIR = ".overwrite"
#: the file in :data:`STAGING_DIR` that says its run finished, and which files replacing the old run removes and moves in
COMMIT_FILE = "commit.json"


def _present(out: Path) -> list[str]:
    """The names of :data:`RUN_FILES` present in ``out`` as files (a link or a folder of that name is not a run's)."""
    return [name for name in RUN_FILES if (out / name).is_file() and not (out / name).is_symlink()]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def manifest(folder: str | os.PathLike, names: Sequence[str]) -> dict[str, str | None]:
    """What a run's ``results.json`` lists as the files it wrote (``files``): each of ``names`` present in ``folder``
    with the SHA-256 of its bytes, and ``results.json`` itself (None: it cannot hold its own digest)."""
    folder = Path(folder)
    return {**{name: _sha256(folder / name) for name in names if (folder / name).is_file()}, RESULTS_FILE: None}


def written_files(out: str | os.PathLike) -> list[str]:
    """The files of the run in ``out`` that the run itself wrote: the names of :data:`RUN_FILES` present there; where
    its ``results.json`` has a manifest (``files``, :func:`manifest`), only those it lists with the digest of the
    bytes there now (a file of a run's name the run did not write, or that was rewritten since, is not the run's). A
    name outside :data:`RUN_FILES` is never one, whatever ``results.json`` lists: no run writes it."""
    out = Path(out)
    present = _present(out)
    try:
        listed = json.loads((out / RESULTS_FILE).read_text()).get("files")
    except (OSError, ValueError, AttributeError):
        return present
    if not isinstance(listed, dict):
        return present
    return [name for name in present
            if name in listed and (listed[name] is None if name == RESULTS_FILE else listed[name] == _sha256(out / name))]


def _commit_plan(staging: Path) -> dict[str, list[str]] | None:
    """The commit file of ``staging`` (its ``remove`` and ``add`` lists of run file names), None if it has none."""
    try:
        plan = json.loads((staging / COMMIT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(plan, dict) and all(isinstance(plan.get(key), list) for key in ("remove", "add"))):
        return None
    return {key: [name for name in plan[key] if name in RUN_FILES] for key in ("remove", "add")}


def _apply(out: Path, staging: Path, plan: dict[str, list[str]]) -> None:
    """Replace the old run in ``out`` by the staged one: remove the old run's files the new run does not write, move
    the new run's files in (``results.json`` last), delete ``staging``. Each step can be repeated: a replacement cut
    short is finished by doing it again."""
    for name in plan["remove"]:
        if name not in plan["add"]:
            (out / name).unlink(missing_ok=True)
    for name in sorted(plan["add"], key=lambda name: name == RESULTS_FILE):
        if (staging / name).is_file():
            os.replace(staging / name, out / name)
    shutil.rmtree(staging, ignore_errors=True)


def recover(out: str | os.PathLike) -> None:
    """Finish or undo an ``--overwrite`` run that was cut short in ``out`` (call it holding the folder's lock).

    A staged run with its commit file had finished: its replacement of the old run is completed. One without had
    not: it is deleted, and the old run, never touched, stays.
    """
    staging = Path(out) / STAGING_DIR
    if staging.is_symlink() or (staging.exists() and not staging.is_dir()):
        staging.unlink()
        return
    if not staging.is_dir():
        return
    plan = _commit_plan(staging)
    if plan is None:
        shutil.rmtree(staging)
    else:
        _apply(Path(out), staging, plan)


def claim_folder(out: str | os.PathLike, identity: dict[str, Any], *, resume: bool = False, overwrite: bool = False) -> Path:
    """Make ``out`` the folder of the run ``identity`` (:func:`run_identity`), or refuse; returns where the run writes.

    An empty (or new) folder is claimed, and so is one holding only a ``run.json`` (a run
    refused or failed before it wrote anything else). A folder holding a run's files is claimed
    only if ``resume`` and its ``run.json`` says it is the same run, or if ``overwrite``: then the
    new run writes into ``out/.overwrite`` (the returned folder) and the old run stays whole
    until :func:`commit_run` replaces it with the new run's files, removing only the files the
    old run wrote (:func:`written_files`), never another. A replacement cut short by a killed
    process is finished or undone first (:func:`recover`). Writes ``run.json`` into the returned
    folder. Hold the folder's lock (:func:`agents.files.folder_lock`) around this, the run and
    :func:`commit_run` (or :func:`abandon_run` if the run fails).

    The messages name the options of ``scripts/train.py`` (``--resume``, ``--overwrite``, ``--out``).

    Raises:
        ValueError: ``resume`` and ``overwrite`` both given; ``out`` holds a run and neither
            is given; or ``resume`` and the run in ``out`` is another one (each difference named).
    """
    out = Path(out)
    if resume and overwrite:
        raise ValueError(f"--resume continues the run in {out} and --overwrite deletes it: give one, not both")
    if out.is_dir():
        recover(out)
    files = _present(out) if out.is_dir() else []
    present = [name for name in files if name != RUN_FILE]
    folder = out
    if present and overwrite:
        folder = out / STAGING_DIR
        folder.mkdir(parents=True)
    elif present and not resume:
        raise ValueError(f"the output folder {out} holds a run already ({', '.join(files)}): "
                         "give --resume to continue it, --overwrite to replace it, or another --out")
    elif present:
        try:
            found = json.loads((out / RUN_FILE).read_text())
        except FileNotFoundError:
            raise ValueError(f"--resume: the output folder {out} holds files of a run ({', '.join(present)}) "
                             f"but no {RUN_FILE} saying which run; give --overwrite to replace it") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"--resume: {out / RUN_FILE} is not JSON ({error})") from None
        mismatch = differences(found, identity)
        if mismatch:
            raise ValueError(f"--resume: the run in {out} is another run (its value there, this run's here): "
                             f"{'; '.join(mismatch)}. Give --overwrite to replace it, or another --out")
    write_json(folder / RUN_FILE, identity)
    return folder


def commit_run(out: str | os.PathLike, folder: str | os.PathLike) -> None:
    """Make the finished run in ``folder`` (what :func:`claim_folder` returned) the run of ``out``.

    Nothing to do if it wrote into ``out``. A staged ``--overwrite`` run replaces the old one:
    a commit file listing the old run's files to remove and the new run's to move in is
    written first, so that a process killed while replacing leaves a replacement the next
    claim of the folder finishes (:func:`recover`).
    """
    out, folder = Path(out), Path(folder)
    if folder == out:
        return
    plan = {"remove": written_files(out), "add": written_files(folder)}
    write_json(folder / COMMIT_FILE, plan)
    _apply(out, folder, plan)


def abandon_run(out: str | os.PathLike, folder: str | os.PathLike) -> None:
    """Undo what a run that failed or was refused wrote, where nothing of it is worth keeping.

    A staged ``--overwrite`` run is deleted (the old run stays as it was); a run that wrote
    only its ``run.json`` into ``out`` takes it back, so that a corrected command is not
    refused for it. A run that wrote a checkpoint keeps it (``--resume`` continues it).
    """
    out, folder = Path(out), Path(folder)
    if folder != out:
        shutil.rmtree(folder, ignore_errors=True)
    elif _present(out) == [RUN_FILE]:
        (out / RUN_FILE).unlink(missing_ok=True)


def write_results(out: str | os.PathLike, results: dict[str, Any]) -> Path:
    """Write ``results`` (through :func:`~agents.files.jsonable`) as ``results.json`` in the folder ``out``, atomically."""
    return write_json(Path(out) / RESULTS_FILE, jsonable(results))


def _compare(results: dict[str, Any], reference: Reference | None, env_id: str, env_kwargs: dict[str, Any],
             episodes: int) -> None:
    """Add the reference's optimum, its controller's cost on the same episodes and the gaps to ``results``."""
    if reference is None:
        results.update(reference=None, optimum=None)
        return
    analytic = reference.analytic(start_states(env_id, env_kwargs, episodes))
    optimum = analytic.get("optimum")
    results.update(reference=reference.name, reference_description=reference.description, analytic=analytic,
                   optimum=optimum)
    if optimum is not None:
        results["gap"] = results["final_cost"] - optimum
        if optimum != 0:
            results["relative_gap"] = results["gap"] / abs(optimum)
    if reference.gym_policy is not None:
        reference_cost = float(evaluate(env_id, reference.gym_policy, episodes, env_kwargs).mean())
        results.update(reference_cost=reference_cost, reference_gap=results["final_cost"] - reference_cost)
        if reference_cost != 0:
            results["reference_relative_gap"] = results["reference_gap"] / abs(reference_cost)


def _shown_episodes(results: dict[str, Any], problem: Any, policy: GymPolicy, reference: Reference | None, agent: str,
                    env_id: str, env_kwargs: dict[str, Any], shown: int
                    ) -> tuple[dict[str, list[Episode]], tuple[str, np.ndarray, dict[str, np.ndarray]] | None]:
    """The episodes the plots show (the agent's and the reference controller's, from the first evaluation
    starts) and the controls of both at the reference's probe; adds ``control_rms`` to ``results``."""
    reference_policy = None if reference is None else reference.gym_policy
    runs = {agent: [record_episode(env_id, policy, env_kwargs, EVAL_SEED + i) for i in range(shown)]}
    if reference is not None and reference_policy is not None and reference.name != agent:
        runs[f"{reference.name} (analytic)"] = [record_episode(env_id, reference_policy, env_kwargs, EVAL_SEED + i)
                                                for i in range(shown)]
    if reference is None or reference.probe is None:
        return runs, None
    reference_episode = runs[agent][0] if reference.name == agent else (
        runs[f"{reference.name} (analytic)"][0] if reference_policy is not None else None)
    label, coordinates, observations = reference.probe(reference_episode)
    learned = controls_on(problem, policy, observations)
    probe_controls = {agent: learned}
    if reference_policy is not None:
        optimal = controls_on(problem, reference_policy, observations)
        probe_controls[f"{reference.name} (analytic)"] = optimal
        results["control_rms"] = float(np.sqrt(np.mean((learned - optimal) ** 2)))
        results["control_probe"] = label
    return runs, (label, coordinates, probe_controls)


def finish_run(out: str | os.PathLike, *, env_id: str, agent: str, policy: GymPolicy, env_kwargs: dict[str, Any] | None = None,
               seed: int | None = None, reference: Reference | None = None, history: Sequence[dict[str, float]] = (),
               env_steps: int = 0, train_seconds: float = 0.0, config: Any = None, episodes: int = 10,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate ``policy`` on the Gymnasium face, compare it with ``reference``, write ``results.json`` and plots.

    The final cost is the mean over ``episodes`` episodes of :func:`agents.episodes.evaluate`
    (starts ``reset(seed=EVAL_SEED + i)``); the reference controller, if any, runs the same
    episodes. ``gap`` is ``final_cost - optimum`` and ``relative_gap`` divides it by
    ``|optimum|`` (absent when the optimum is 0 or unknown); ``reference_gap`` and
    ``reference_relative_gap`` compare with the reference controller's cost instead.
    ``control_rms`` is the RMS difference of the physical controls at the reference's probe
    observations. Returns the results dictionary.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    began = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env_kwargs = dict(env_kwargs or {})
    problem = problem_of(env_id, **env_kwargs)

    costs = evaluate(env_id, policy, episodes, env_kwargs)
    results: dict[str, Any] = {
        "env": env_id, "env_kwargs": env_kwargs, "agent": agent, "seed": seed,
        "final_cost": float(costs.mean()), "final_cost_std": float(costs.std()), "costs": costs,
        "episodes": episodes, "eval_seed": EVAL_SEED,
    }
    _compare(results, reference, env_id, env_kwargs, episodes)
    runs, probe_plot = _shown_episodes(results, problem, policy, reference, agent, env_id, env_kwargs, min(episodes, 5))
    plots = []
    title = f"{env_id} — {agent}"
    if history:
        plots.append(plot_learning_curve(history, out / "loss.png", results.get("optimum"), title))
    plots.append(plot_trajectories(runs, problem.state_names, problem.state_units, out / "trajectory.png",
                                   None if reference is None else reference.plane, title))
    plots.append(plot_controls({label: episodes_[0] for label, episodes_ in runs.items()}, problem.control_names,
                               problem.control_units, out / "control.png", probe_plot, title))
    results.update(
        env_steps=int(env_steps), iterations=len(history), train_seconds=float(train_seconds),
        evaluation_seconds=time.perf_counter() - began, wall_time=float(train_seconds) + time.perf_counter() - began,
        config=config, plots=[p.name for p in plots], **(extra or {}),
    )
    results["files"] = manifest(out, [RUN_FILE, CHECKPOINT_FILE, *(p.name for p in plots)])
    write_results(out, results)
    return results


def summary(results: dict[str, Any]) -> str:
    """A few lines saying how the run did."""
    lines = [f"{results['env']} {json.dumps(jsonable(results['env_kwargs']))}  agent={results['agent']}  seed={results['seed']}",
             f"  final cost {results['final_cost']:.6g} (± {results['final_cost_std']:.2g} over {results['episodes']} "
             f"Gymnasium episodes)"]
    if results.get("optimum") is not None:
        relative = results.get("relative_gap")
        lines.append(f"  analytic optimum {results['optimum']:.6g}  gap {results['gap']:.3g}"
                     + ("" if relative is None else f" ({100 * relative:.3g}%)"))
    if results.get("reference_cost") is not None:
        relative = results.get("reference_relative_gap")
        lines.append(f"  {results['reference']} controller {results['reference_cost']:.6g}  gap {results['reference_gap']:.3g}"
                     + ("" if relative is None else f" ({100 * relative:.3g}%)"))
    if results.get("control_rms") is not None:
        lines.append(f"  control RMS difference to {results['reference']}: {results['control_rms']:.3g} "
                     f"(at observations along {results['control_probe']})")
    lines.append(f"  {results['env_steps']} environment steps, {results['iterations']} iterations, "
                 f"wall time {results['wall_time']:.1f} s")
    return "\n".join(lines)
