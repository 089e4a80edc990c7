"""The head-to-head benchmark: every agent on every environment, one evaluation protocol.

For each (environment, agent, seed) a run trains the agent under a budget
(the environment's card, else :data:`DEFAULT_BUDGETS`; in environment transitions) and
evaluates its deterministic policy with :func:`agents.episodes.evaluate` on the Gymnasium
face, from fixed starts, on the objective of the card's protocol — whatever reward the agent
trained on.
A run records its final cost, the transitions and training seconds it used and its learning
curve (cost against transitions and against seconds; the time spent evaluating the curve is
not counted).

Each result is compared with the environment's reference (:func:`compute_reference`): the
analytic answer of the environment's card (:func:`agents.analytic.reference`): a closed-form
optimum where there is one, else what the card computes (the oracle planner for system
identification). The *gap* is normalised:

.. math:: \\text{gap} = \\frac{J - J^\\star}{|J^\\star|} \\;\\text{if}\\; J^\\star \\ne 0, \\qquad
          \\frac{J - J^\\star}{J_0 - J^\\star} \\;\\text{if}\\; J^\\star = 0,

with :math:`J_0` the cost of the zero action (doing nothing). So
"within 1%" means 1% of the optimum, or 1% of the way from doing nothing to the optimum
where the optimum is zero.

An episode that ends by truncation in an environment whose objective is paid on arrival
(``problem.horizon_ends == "truncated"``: e.g. a far bank never reached) has not reached the objective; its cost is
recorded but flagged, and such a run or curve point never counts as reaching a target.

Runs are independent: the sweep runs them in parallel processes (spawned, one torch thread
each) or as Ray tasks (``use_ray``, the optional extra ``ray``). Each finished run is written
atomically to ``<out>/runs/<env>__<agent>__seed<k>.json``; a sweep started again skips the
runs already there with the same specification, so an interrupted sweep resumes where it
stopped. :func:`report` writes ``results.csv``, ``results.json``, ``table.md``,
``curves.png`` and ``final.png``.

The package is split by job: :mod:`~agents.benchmark.config` (targets, budgets, run specs,
options), :mod:`~agents.benchmark.run` (one run, the resuming sweep),
:mod:`~agents.benchmark.backends` (local processes, Ray), :mod:`~agents.benchmark.reference`
(the reference and the normalised gap), :mod:`~agents.benchmark.report` (tables) and
:mod:`~agents.benchmark.plots` (pictures).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import diffenvs
from agents import registry
from agents.benchmark.config import (
    DEFAULT_BUDGETS,
    MODES,
    TARGETS,
    BenchmarkConfig,
    RunSpec,
    budget,
    plan_runs,
    protocol,
)
from agents.benchmark.reference import compute_reference, normalised_gap, references
from agents.benchmark.report import CSV_FIELDS, headline, markdown_table, report, summarise
from agents.benchmark.run import CurveCost, execute, finished, incomplete_episodes, protocol_costs, run_path, sweep
from agents.files import write_json

__all__ = ["CSV_FIELDS", "DEFAULT_BUDGETS", "MODES", "TARGETS", "BenchmarkConfig", "CurveCost", "RunSpec", "budget",
           "compute_reference", "execute", "finished", "headline", "incomplete_episodes", "markdown_table",
           "normalised_gap", "plan_runs", "protocol", "protocol_costs", "references", "report", "run_benchmark",
           "run_path", "summarise", "sweep", "write_json"]


def run_benchmark(config: BenchmarkConfig, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Plan, sweep (resuming), compute references and write the report of ``config``."""
    envs = list(config.envs or diffenvs.ENV_IDS)
    agents = list(config.agents or registry.agents())
    specs = plan_runs(envs, agents, config.seed_list, config.mode)
    began = time.perf_counter()
    results, failures = sweep(specs, config.out, config.workers, config.ray, config.ray_address or None, config.progress)
    refs = references(envs, config.out)
    paths = report(results, refs, config.out)
    wall = time.perf_counter() - began
    log(f"{len(results)}/{len(specs)} runs finished, {len(failures)} failed, {wall:.0f} s; table: {paths['table']}")
    return {"specs": specs, "results": results, "failures": failures, "references": refs, "paths": paths,
            "seconds": wall}
