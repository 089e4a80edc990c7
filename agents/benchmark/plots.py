"""The benchmark's pictures: learning curves (gap against transitions and seconds), final costs per seed and the
performance profile (fraction of runs within a gap, over the gap)."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.benchmark.config import TARGETS
from agents.benchmark.records import RunRecord
from agents.benchmark.reference import env_label, mean_se, normalised_gap, on_validation
from agents.benchmark.stats import iqm, iqm_curve, profile
from agents.plots import pyplot, save

#: gaps below this (including negative ones: a cost at or below the reference) are drawn at it
GAP_FLOOR = 1e-4


def _colours(agents: Sequence[str]) -> dict[str, Any]:
    plt = pyplot()
    cycle = plt.get_cmap("tab10")
    return {agent: cycle(i % 10) for i, agent in enumerate(agents)}


def _gap(cost: float, reference: dict[str, Any]) -> float:
    """The normalised gap, nan (not drawn) where the reference gives none."""
    gap = normalised_gap(cost, reference)
    return math.nan if gap is None else gap


#: points of the grid on which the runs' curves are read for their IQM band
GRID_POINTS = 60


def _on_grid(points: Sequence[tuple[float, float]], grid: np.ndarray) -> np.ndarray:
    """A curve's values ``[(x, y), ...]`` (x increasing) read at ``grid`` as a step function: the last y at or
    before each grid point."""
    xs = np.array([x for x, _ in points], dtype=np.float64)
    ys = np.array([y for _, y in points], dtype=np.float64)
    return ys[np.clip(np.searchsorted(xs, grid, side="right") - 1, 0, len(ys) - 1)]


def iqm_band(curves: Sequence[Sequence[tuple[float, float]]], log: bool = True
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The IQM over runs of curves ``[(x, y), ...]`` with its 95% bootstrap band, on a shared grid of x.

    The grid spans the x where every run has a point (from the latest first point to the earliest last one),
    log-spaced if ``log``. Returns ``(grid, iqm, band)``, or ``None`` where the runs share no span (a run with a
    value that is not finite, such as a gap where the zero action is no worse than the reference, is left out).
    """
    curves = [c for c in curves if c and all(math.isfinite(y) for _, y in c)]  # a gap without a scale is not drawn
    if not curves:
        return None
    low, high = max(c[0][0] for c in curves), min(c[-1][0] for c in curves)
    if not high > low > (0 if log else -math.inf):
        return None
    grid = np.geomspace(low, high, GRID_POINTS) if log else np.linspace(low, high, GRID_POINTS)
    values = np.stack([_on_grid(c, grid) for c in curves])
    middle, band = iqm_curve(values)
    return grid, middle, band


def plot_curves(results: Sequence[RunRecord], refs: dict[str, dict[str, Any]], path: str | os.PathLike) -> Path:
    """Learning curves (validation starts): per agent the IQM over all its runs of the normalised gap, with its 95%
    bootstrap band, against transitions and against seconds, log axes, a row per environment."""
    plt = pyplot()
    envs = list(dict.fromkeys(env_label(r) for r in results))
    colours = _colours(list(dict.fromkeys(r["agent"] for r in results)))
    fig, axes = plt.subplots(len(envs), 2, figsize=(11, 3.2 * len(envs)), squeeze=False)
    for row, env in enumerate(envs):
        runs = [r for r in results if env_label(r) == env]
        reference = on_validation(refs.get(runs[0]["env_id"], {"optimum": None}))
        has_reference = reference.get("optimum") is not None
        for agent in dict.fromkeys(r["agent"] for r in runs):
            mine = [r for r in runs if r["agent"] == agent]
            label = f"{agent} ({len(mine)})"
            for column, key in enumerate(("transitions", "seconds")):
                ax = axes[row, column]
                curves = [[(float(p["transitions"] if key == "transitions" else p["seconds"]),
                            _gap(p["cost"], reference) if has_reference else p["cost"]) for p in r["curve"]]
                          for r in mine]
                if all(not c or c[-1][0] <= 0 for c in curves):  # no training: a level line at the IQM
                    finals = [c[-1][1] for c in curves if c]
                    if finals:
                        ax.axhline(max(iqm(finals), GAP_FLOOR) if has_reference else iqm(finals), color=colours[agent],
                                   ls=":", lw=1.5, label=label if column == 0 else None)
                    continue
                band = iqm_band(curves)
                if band is None:
                    continue
                grid, middle, interval = band
                floor = GAP_FLOOR if has_reference else -math.inf
                ax.plot(grid, np.maximum(middle, floor), color=colours[agent], lw=1.4, label=label if column == 0 else None)
                ax.fill_between(grid, np.maximum(interval[0], floor), np.maximum(interval[1], floor),
                                color=colours[agent], alpha=0.15, lw=0)
        for column, key in enumerate(("environment transitions", "training seconds")):
            ax = axes[row, column]
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.set_xlabel(key)
            if has_reference:
                for target in TARGETS:
                    ax.axhline(target, color="0.5", ls="--", lw=0.8)
                ax.set_yscale("log")
                ax.set_ylabel("normalised gap (IQM)")
            else:
                ax.set_ylabel("cost (IQM; no reference)")
            ax.set_title(f"{env} (reference: {reference.get('name') or 'none'})", fontsize=9)
        axes[row, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Learning curves on the validation starts: IQM over all runs of (J − J*)/(J0 − J*), shaded 95% "
                 f"bootstrap band\n(dashed: 10% and 1%; gaps ≤ {GAP_FLOOR:g} drawn at {GAP_FLOOR:g}; dotted: agents "
                 f"without training; (n): runs)", fontsize=9)
    return save(fig, path, dpi=110)


def plot_final(results: Sequence[RunRecord], refs: dict[str, dict[str, Any]], path: str | os.PathLike) -> Path:
    """Final cost per agent, one panel per environment: every seed as a dot, mean ± standard error, the reference dashed."""
    plt = pyplot()
    envs = list(dict.fromkeys(env_label(r) for r in results))
    colours = _colours(list(dict.fromkeys(r["agent"] for r in results)))
    columns = min(len(envs), 2)
    rows = math.ceil(len(envs) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(5.5 * columns, 3.4 * rows), squeeze=False)
    for ax, env in zip(axes.flat, envs):
        runs = [r for r in results if env_label(r) == env]
        env_id = runs[0]["env_id"]
        agents = list(dict.fromkeys(r["agent"] for r in runs))
        costs_all: list[float] = []
        for i, agent in enumerate(agents):
            mine = [r for r in runs if r["agent"] == agent]
            finals: list[float] = [r["final_cost"] for r in mine]
            costs = np.array(finals)
            costs_all.extend(costs)
            bad = np.array([bool(r["incomplete"]) for r in mine])
            ax.scatter(np.full(costs.size, i)[~bad], costs[~bad], color=colours[agent], s=14, zorder=3)
            ax.scatter(np.full(costs.size, i)[bad], costs[bad], color=colours[agent], marker="x", s=30, zorder=3)
            mean, se = mean_se(finals)
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
        ax.set_title(env, fontsize=9)
    for ax in list(axes.flat)[len(envs):]:
        ax.axis("off")
    fig.suptitle("Final cost per agent on the test starts (dots: seeds, x: objective not reached; bar: mean ± s.e.)", fontsize=10)
    return save(fig, path, dpi=110)


#: the gaps at which the performance profile is drawn
PROFILE_TAUS = np.logspace(-4, 1, 101)


def plot_profile(results: Sequence[RunRecord], refs: dict[str, dict[str, Any]], path: str | os.PathLike) -> Path:
    r"""Performance profile: per agent (and variant), the fraction of its runs with final gap :math:`\le \tau`, over
    :math:`\tau`, averaged with equal weights over the environments with a reference that the agent runs on (the
    legend says how many: agents that run on different environments are not compared by it); shaded: the 95%
    stratified-bootstrap interval."""
    plt = pyplot()
    gaps: dict[str, dict[str, list[float]]] = {}
    for result in results:
        gap = normalised_gap(result["final_cost"], refs.get(result["env_id"], {"optimum": None}))
        if gap is not None:
            label = f"{result['agent']} [{result['variant']}]" if result.get("variant") else result["agent"]
            gaps.setdefault(label, {}).setdefault(result["env_id"], []).append(gap)
    colours = _colours(list(gaps))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, per_env in gaps.items():
        fraction, band = profile(list(per_env.values()), PROFILE_TAUS)
        ax.step(PROFILE_TAUS, fraction, where="post", color=colours[label], lw=1.4,
                label=f"{label} ({len(per_env)} env., {sum(map(len, per_env.values()))} runs)")
        ax.fill_between(PROFILE_TAUS, band[0], band[1], step="post", color=colours[label], alpha=0.15)
    for target in TARGETS:
        ax.axvline(target, color="0.5", ls="--", lw=0.8)
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("normalised gap τ (final score, test starts)")
    ax.set_ylabel("fraction of runs with gap ≤ τ\n(mean over environments)")
    if gaps:
        ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Performance profile, environments weighted equally (shaded: 95% stratified-bootstrap interval)", fontsize=9)
    return save(fig, path, dpi=110)
