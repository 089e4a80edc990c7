"""The head-to-head benchmark: every agent on every environment, one evaluation protocol.

For each (environment, agent, seed) a run trains the agent under a budget
(the environment's card, else :data:`DEFAULT_BUDGETS`; in environment transitions) and
evaluates its deterministic policy on the Gymnasium face, on the objective of the card's
protocol — whatever reward the agent trained on. Two disjoint sets of starts: every
learning-curve point (:class:`CurveCost`), and so the best gap and the time to a target, uses
the validation starts ``reset(seed=VALIDATION_SEED + i)``; the final score alone uses the test
starts ``reset(seed=TEST_SEED + i)``. A run records its final cost, the transitions and training
seconds it used, its learning curve (cost against transitions and against seconds; the time
spent evaluating the curve is not counted), both sets of starts and its full spec (mode, budget,
protocol, variant). A card's variants (e.g. isochronism with the full state observed) add runs,
labelled ``env_id [label]``, for the agent families they name, under the same objective.

Each result is compared with the environment's reference (:func:`compute_reference`): the
analytic answer of the environment's card (:func:`agents.analytic.reference`): a closed-form
optimum where there is one, else what the card computes (the oracle planner for system
identification). Every environment is scored by one normalisation,

.. math:: \\text{gap} = \\frac{J - J^\\star}{J_0 - J^\\star},

with :math:`J_0` the cost of the zero action (doing nothing) on the same starts: 0 is the
reference, 1 doing nothing, so "within 1%" means 1% of the way from doing nothing to the optimum.

An episode that ends by truncation in an environment whose objective is paid on arrival
(``problem.horizon_ends == "truncated"``: e.g. a far bank never reached) has not reached the objective; its cost is
recorded but flagged, and such a run or curve point never counts as reaching a target.

Summaries over seeds are interquartile means with 95% stratified-bootstrap intervals
(:mod:`~agents.benchmark.stats`, on ``rliable``); seeds per mode come from the card, else
:data:`DEFAULT_SEEDS`. A target (10%, 1%) counts only where a run's validation curve stays within it
to the end of training, and the time to it is an IQM over all seeds, a seed that does not keep it
counted at its whole training (censored, never dropped). The verdict per environment compares the
best gradient agent with the best baseline, both chosen on the validation starts, by the probability
of improvement of their test gaps and their speed to 1% kept (:func:`verdict`), and prints its reason.
Aggregates over environments (the performance profile) weigh each environment equally. Runs record
the protocol version that planned them (:data:`PROTOCOL_VERSION`); runs of another version are
never mixed in.

Runs are independent: the sweep runs them in parallel processes (spawned, one torch thread
each) or as Ray tasks (``use_ray``, the optional extra ``ray``). Each finished run is written
atomically to ``<out>/runs/<mode>__<env>[<variant>]__<agent>__seed<k>.json``; a sweep started
again skips the runs already there with the same specification, so an interrupted sweep
resumes where it stopped. It never overwrites a run file of another specification (the same
mode, environment, variant, agent and seed under another budget or protocol): it stops before
running anything, naming each file and what differs, unless told to ``replace`` them. A run
file that cannot be read is moved aside to ``<name>.corrupt`` and its run done again; one that
names another run than its spec or its name is refused. One sweep at a time writes into a
folder: it holds ``<out>/sweep.lock`` (its process id), and takes over the lock of a killed
sweep. The report is built from every run file of the mode in
``<out>/runs`` whose spec is the present one (:func:`collect`), so sweeps of one environment
at a time into one folder merge; a file of another spec is listed, never used. :func:`report`
writes ``results.csv``, ``results.json``, ``table.md``, ``curves.png``, ``final.png`` and
``profile.png``.

The package is split by job: :mod:`~agents.benchmark.config` (targets, budgets, run specs,
options), :mod:`~agents.benchmark.run` (one run, the resuming sweep),
:mod:`~agents.benchmark.backends` (local processes, Ray), :mod:`~agents.benchmark.reference`
(the reference and the normalised gap), :mod:`~agents.benchmark.stats` (IQM, bootstrap,
profiles), :mod:`~agents.benchmark.report` (tables, headline) and :mod:`~agents.benchmark.plots`
(pictures).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import diffenvs
from agents import registry
from agents.benchmark.config import (
    DEFAULT_BUDGETS,
    DEFAULT_SEEDS,
    MAX_EPISODES,
    MAX_SEEDS,
    MODES,
    PROTOCOL_VERSION,
    QUICK_EPISODES,
    TARGETS,
    TEST_SEED,
    VALIDATION_SEED,
    BenchmarkConfig,
    RunSpec,
    budget,
    check_starts,
    plan_runs,
    protocol,
    seeds,
)
from agents.benchmark.records import CurvePoint, RunFailure, RunRecord, RunStarts
from agents.benchmark.reference import compute_reference, normalised_gap, references
from agents.benchmark.report import (
    CSV_FIELDS,
    block,
    check_document,
    headline,
    improvement,
    markdown_table,
    report,
    splice,
    summarise,
    table_text,
    verdict,
    verdict_table,
)
from agents.benchmark.run import (
    LOCK_FILE,
    CurveCost,
    RunFileError,
    collect,
    execute,
    finished,
    incomplete_episodes,
    protocol_costs,
    read_run,
    run_path,
    sweep,
    sweep_lock,
    sweep_locked,
)
from agents.files import write_json, write_text

__all__ = ["CSV_FIELDS", "DEFAULT_BUDGETS", "DEFAULT_SEEDS", "LOCK_FILE", "MAX_EPISODES", "MAX_SEEDS", "MODES",
           "PROTOCOL_VERSION", "QUICK_EPISODES", "TARGETS",
           "TEST_SEED", "CurvePoint", "RunFailure", "RunRecord", "RunStarts",
           "VALIDATION_SEED", "BenchmarkConfig", "CurveCost", "RunFileError", "RunSpec", "budget", "check_plan",
           "check_starts", "collect", "compute_reference", "execute",
           "finished", "headline", "improvement", "incomplete_episodes", "markdown_table", "normalised_gap", "plan_runs",
           "protocol",
           "protocol_costs", "read_run", "references", "report", "run_benchmark", "run_path", "seeds", "summarise", "sweep",
           "sweep_lock", "sweep_locked",
           "verdict", "verdict_table", "write_json", "block", "splice", "table_text"]


def check_plan(specs: list[RunSpec], envs: list[str], agents: list[str]) -> None:
    """Raise ``ValueError`` if the plan is empty, or if one of the ``agents`` asked for applies to none of ``envs``."""
    idle = [agent for agent in agents if not any(spec.agent == agent for spec in specs)]
    if idle:
        raise ValueError(f"agents {idle} apply to none of the environments {envs}: leave them out, or add an "
                         f"environment they apply to")
    if not specs:
        raise ValueError(f"nothing to run: none of the agents applies to any of the environments {envs}")


def run_benchmark(config: BenchmarkConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Plan and sweep (resuming; nothing with ``report_only``), then report every run of the mode in ``config.out``.

    Raises ``ValueError`` before anything runs if the plan is empty, an agent asked for applies
    to none of the environments (:func:`check_plan`), a ``readme`` document is missing or has no
    marked block, or a run file in the way is of another
    spec (see :func:`sweep`; ``config.replace`` overwrites it), and ``RuntimeError`` if another
    sweep is writing into ``config.out``. The sweep and the report are written under one hold of
    ``<out>/sweep.lock`` (:func:`sweep_lock`), ``report_only`` included. ``report_only`` raises
    ``ValueError`` on a folder with no run of the mode to report (none, or only files left out,
    each named).
    """
    began = time.perf_counter()
    for name in config.readme:  # before the sweep, not after it
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"readme must name existing documents, got {name!r}")
        check_document(path.read_text(), name)
    specs: list[RunSpec] = []
    failures: list[RunFailure] = []
    runs = Path(config.out) / "runs"
    if config.report_only and not runs.is_dir():
        raise ValueError(f"--report-only: {config.out} holds no benchmark runs (no folder {runs}); give the --out of "
                         "a sweep")
    if not config.report_only:
        envs = list(dict.fromkeys(config.envs or diffenvs.ENV_IDS))
        agents = list(dict.fromkeys(config.agents or registry.agents()))
        specs = plan_runs(envs, agents, config.seed_list, config.mode)
        check_plan(specs, envs, list(dict.fromkeys(config.agents)))
    with sweep_lock(config.out):  # the report too: a report is never written beside a sweep still writing runs
        if not config.report_only:
            _, failures = sweep_locked(specs, config.out, config.workers, config.ray, config.ray_address or None,
                                       config.progress, replace=config.replace)
        results, skipped = collect(config.out, config.mode)
        if skipped:
            log("left out of the report (another spec than the present one, or not a run's file):\n  "
                + "\n  ".join(skipped))
        if not results and config.report_only:
            raise ValueError(f"--report-only: no run of mode {config.mode!r} in {runs} to report"
                             + ("; left out:\n  " + "\n  ".join(skipped) if skipped else ""))
        refs = references(list(dict.fromkeys(r["env_id"] for r in results)), config.out, config.mode)
        paths = report(results, refs, config.out)
        for name in config.readme:
            write_text(Path(name), splice(Path(name).read_text(), paths["table"].read_text()))
    wall = time.perf_counter() - began
    log(f"{len(results)} runs reported ({len(specs)} planned, {len(failures)} failed), {wall:.0f} s; "
        f"table: {paths['table']}")
    return {"specs": specs, "results": results, "failures": failures, "skipped": skipped, "references": refs,
            "paths": paths, "seconds": wall}
