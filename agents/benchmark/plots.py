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
from agents.benchmark.stats import profile
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


def plot_curves(results: Sequence[RunRecord], refs: dict[str, dict[str, Any]], path: str | os.PathLike) -> Path:
    """Learning curves (validation starts): gap against transitions and against seconds, log axes, a row per environment."""
    plt = pyplot()
    envs = list(dict.fromkeys(env_label(r) for r in results))
    colours = _colours(list(dict.fromkeys(r["agent"] for r in results)))
    fig, axes = plt.subplots(len(envs), 2, figsize=(11, 3.2 * len(envs)), squeeze=False)
    for row, env in enumerate(envs):
        runs = [r for r in results if env_label(r) == env]
        reference = on_validation(refs.get(runs[0]["env_id"], {"optimum": None}))
        labelled: set[str] = set()
        has_reference = reference.get("optimum") is not None
        for result in runs:
            agent = result["agent"]
            points = [p for p in result["curve"] if not p.get("incomplete", 0)]
            if not points:
                continue
            if has_reference:
                gaps = np.maximum([_gap(p["cost"], reference) for p in points], GAP_FLOOR)
            else:
                gaps = np.array([p["cost"] for p in points], dtype=np.float64)
            label = None if agent in labelled else agent
            labelled.add(agent)
            spent = {"transitions": [p["transitions"] for p in points], "seconds": [p["seconds"] for p in points]}
            for column, (key, values) in enumerate(spent.items()):
                ax = axes[row, column]
                x = np.array(values, dtype=np.float64)
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
            ax.set_title(f"{env} (reference: {reference.get('name') or 'none'})", fontsize=9)
        axes[row, 0].legend(fontsize=7, loc="best")
    fig.suptitle(f"Learning curves on the validation starts: gap to the reference (dashed: 10% and 1%; "
                 f"gaps ≤ {GAP_FLOOR:g} drawn at {GAP_FLOOR:g}; dotted: agents without training)", fontsize=10)
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
    :math:`\tau`, pooled across the environments with a reference; shaded: the 95% stratified-bootstrap interval."""
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
    ax.set_ylabel("fraction of runs with gap ≤ τ")
    if gaps:
        ax.legend(fontsize=7, loc="upper left")
    ax.set_title("Performance profile across environments (shaded: 95% stratified-bootstrap interval)", fontsize=9)
    return save(fig, path, dpi=110)
