"""The benchmark's report: per-seed rows, summaries over seeds, the markdown tables and the headline."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.benchmark.config import TARGETS
from agents.benchmark.plots import plot_curves, plot_final
from agents.benchmark.reference import mean_se, normalised_gap
from agents.files import atomic_write, jsonable, write_json, write_text


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
        row["cost"], row["cost_se"] = mean_se([r["final_cost"] for r in runs])
        gaps = [normalised_gap(r["final_cost"], reference) for r in runs]
        row["gap"], row["gap_se"] = mean_se(gaps) if None not in gaps else (None, None)
        row["transitions"], row["transitions_se"] = mean_se([r["transitions"] for r in runs])
        row["seconds"], row["seconds_se"] = mean_se([r["seconds"] for r in runs])
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
                     "objective (an arrival the episode never made, such as a river crossing); their cost is not that of "
                     "reaching it.")
    return "\n".join(lines + notes) + "\n"


def headline(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per environment and gradient-family agent: its transitions and seconds to 1% against the best RL baseline's."""
    lines = []
    for mine in rows:
        others = [r for r in rows if r["env_id"] == mine["env_id"] and r["family"] == "rl"]
        if mine["family"] != "gradient" or not others or mine["optimum"] is None:
            continue
        text = f"{mine['env_id']}: {mine['agent']} "
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

    atomic_write(paths["csv"], write_csv, newline="")
    summary = summarise(results, refs)
    write_json(paths["json"], jsonable({"references": refs, "summary": summary, "runs": list(results)}))
    write_text(paths["table"], markdown_table(summary) + "\n" + "\n".join(f"- {line}" for line in headline(summary))
                + "\n")
    if plots and results:
        paths["curves"] = plot_curves(results, refs, out / "curves.png")
        paths["final"] = plot_final(results, refs, out / "final.png")
    return paths


