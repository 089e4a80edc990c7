"""The benchmark's report: per-seed rows, IQM summaries over seeds with bootstrap intervals, the markdown tables."""

from __future__ import annotations

import csv
import math
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agents import registry
from agents.benchmark.config import TARGETS
from agents.benchmark.plots import plot_curves, plot_final, plot_profile
from agents.benchmark.records import RunRecord
from agents.benchmark.reference import env_label, normalised_gap, on_validation
from agents.benchmark.stats import Estimate, iqm, iqm_ci
from agents.files import atomic_write, jsonable, write_json, write_text


def time_to_target(result: RunRecord, reference: dict[str, Any], target: float) -> tuple[float, float] | None:
    """(transitions, seconds) at the first validation curve point within ``target`` of the reference, None if never."""
    reference = on_validation(reference)
    for point in result["curve"]:
        gap = normalised_gap(point["cost"], reference)
        if gap is not None and gap <= target and not point.get("incomplete", 0):
            return point["transitions"], point["seconds"]
    return None


def best_gap(result: RunRecord, reference: dict[str, Any]) -> float | None:
    """The smallest normalised gap over the run's complete learning-curve points (validation starts only)."""
    reference = on_validation(reference)
    gaps = [gap for point in result["curve"] if not point.get("incomplete", 0)
            and (gap := normalised_gap(point["cost"], reference)) is not None]
    return min(gaps) if gaps else None


def disclosure(agent: str, family: str) -> str:
    """What ``agent`` may use (:attr:`agents.registry.Agent.disclosure`; its family's if it is not registered here)."""
    try:
        return registry.get(agent).disclosure
    except ValueError:
        return registry.FAMILIES.get(family, "?")


def settings(result: RunRecord) -> str:
    """How the run's hyperparameters were chosen: ``tuned here`` (by hand, on this environment) or ``defaults``
    (:attr:`agents.registry.Agent.tuned`; ``defaults`` for an agent not registered here)."""
    if result["family"] == "reference":
        return "–"
    try:
        agent = registry.get(result["agent"])
    except ValueError:
        return "defaults"
    spec = result.get("spec", {})
    env_kwargs = {**spec.get("protocol", {}).get("env_kwargs", {}), **spec.get("variant_kwargs", {})}
    return "tuned here" if agent.tuned(result["env_id"], env_kwargs) else "defaults"


def _estimate(values: Sequence[float]) -> Estimate | None:
    return iqm_ci(values) if len(values) else None


def summarise(results: Sequence[RunRecord], refs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (environment, variant, agent), in the order first met: IQMs over seeds with 95% intervals.

    ``gap`` is the final score (test starts); the times to each target and ``best_gap`` come
    from the learning curves (validation starts), the times over the seeds that reached the target.
    """
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for result in results:
        groups.setdefault((result["env_id"], result.get("variant", ""), result["agent"]), []).append(result)
    rows = []
    for (env_id, variant, agent), runs in groups.items():
        reference = refs.get(env_id, {"optimum": None})
        family = runs[0]["family"]
        row: dict[str, Any] = {"env_id": env_id, "variant": variant, "environment": env_label(runs[0]), "agent": agent,
                               "family": family, "uses": disclosure(agent, family), "seeds": len(runs),
                               "trained_on": runs[0].get("details", {}).get("trained_on", "default"),
                               "settings": settings(runs[0]), "optimum": reference.get("optimum"),
                               "incomplete_runs": sum(1 for r in runs if r["incomplete"])}
        row["cost"] = iqm([r["final_cost"] for r in runs])
        gaps = [gap for r in runs if (gap := normalised_gap(r["final_cost"], reference)) is not None]
        row["gap"] = _estimate(gaps) if len(gaps) == len(runs) else None
        row["transitions"] = iqm([r["transitions"] for r in runs])
        row["seconds"] = iqm([r["seconds"] for r in runs])
        for target in TARGETS:
            reached = [t for r in runs if (t := time_to_target(r, reference, target)) is not None]
            row[f"reached_{target}"] = len(reached)
            row[f"transitions_{target}"] = _estimate([t[0] for t in reached])
            row[f"seconds_{target}"] = _estimate([t[1] for t in reached])
        best = [b for r in runs if (b := best_gap(r, reference)) is not None]
        row["best_gap"] = iqm(best) if best else None
        rows.append(row)
    return rows


def number(value: float | None, digits: int = 4) -> str:
    """``value`` to ``digits`` significant digits, ``–`` for none."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}g}"


def percent(value: float | None) -> str:
    """``value`` as a percentage to 3 significant digits, ``–`` for none."""
    return "–" if value is None else f"{100 * value:.3g}%"


def count(value: float | None) -> str:
    """``value`` rounded, with thousands separators, ``–`` for none."""
    return "–" if value is None else f"{round(value):,}"


def interval(estimate: Sequence[float] | None, show: Callable[[float], str]) -> str:
    """``value [low, high]`` (a zero-width interval: the value alone)."""
    if estimate is None:
        return "–"
    value, low, high = estimate
    return show(value) if low == high else f"{show(value)} [{show(low)}, {show(high)}]"


def seconds(value: float | None) -> str:
    """Seconds to 3 significant digits, ``–`` for none."""
    return number(value, 3)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """The benchmark's tables in markdown: final results, then time to the 10% and 1% targets."""
    lines = ["| environment | agent | may use | settings | trained on | seeds | final cost | reference | gap | "
             "transitions | training s |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    flagged = False
    for row in rows:
        cost = number(row["cost"])
        if row["incomplete_runs"]:
            cost += f" † ({row['incomplete_runs']}/{row['seeds']})"
            flagged = True
        lines.append(f"| {row['environment']} | {row['agent']} | {row['uses']} | {row['settings']} | {row['trained_on']} | "
                     f"{row['seeds']} | "
                     f"{cost} | {number(row['optimum'])} | {interval(row['gap'], percent)} | "
                     f"{count(row['transitions'])} | {seconds(row['seconds'])} |")
    lines += ["", "| environment | agent | transitions to 10% | seconds to 10% | transitions to 1% | seconds to 1% | "
              "best validation gap |", "|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = []
        for target in TARGETS:
            reached = row[f"reached_{target}"]
            share = "" if reached in (0, row["seeds"]) else f" ({reached}/{row['seeds']})"
            cells += [interval(row[f"transitions_{target}"], count) + share, interval(row[f"seconds_{target}"], seconds)]
        lines.append(f"| {row['environment']} | {row['agent']} | {' | '.join(cells)} | {percent(row['best_gap'])} |")
    notes = ["", "Interquartile mean (IQM) over seeds, with its 95% stratified-bootstrap interval [low, high] where it "
             "has width (rliable). gap = (cost − reference) / |reference|, or / (zero-action cost − reference) where the "
             "reference is 0, on the test starts, which serve the final score only. Targets and best validation gap: "
             "learning-curve points on the validation starts, disjoint from the test starts; the first point within the "
             "target, over the seeds that reached it ((k/n): only k of n seeds did). may use: what the agent may use. "
             "settings: the agent's published defaults (RL: rl-baselines3-zoo's for the nearest task), or tuned here by "
             "hand on this environment; the verdict compares agents of equal tuning. [label]: a variant of the "
             "environment under the same objective."]
    if flagged:
        notes.append("† (k/n): in k of n runs some evaluation episodes ended at the time limit without reaching the "
                     "objective (an arrival the episode never made, such as a river crossing); their cost is not that of "
                     "reaching it.")
    return "\n".join(lines + notes) + "\n"


#: the families a gradient agent is compared against in the headline
BASELINES = ("rl", "zeroth-order")


def _best(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The row that reaches 1% with the fewest transitions (IQM), else 10%, else with the smallest final gap."""
    def key(row: dict[str, Any]) -> tuple[float, ...]:
        to = [row[f"transitions_{t}"][0] if _reaches(row, t) else math.inf for t in sorted(TARGETS)]
        return (*to, row["gap"][0] if row["gap"] else math.inf)
    return min(rows, key=key)


def _reaches(row: dict[str, Any], target: float) -> bool:
    """Whether at least half of the row's seeds reach ``target`` on their validation curves."""
    return 2 * row[f"reached_{target}"] >= row["seeds"] > 0


def _progress(row: dict[str, Any]) -> str:
    parts = []
    for target in sorted(TARGETS):
        share = f"{row[f'reached_{target}']}/{row['seeds']} seeds"
        if row[f"reached_{target}"]:
            parts.append(f"to {100 * target:g}% {interval(row[f'transitions_{target}'], count)} transitions, "
                         f"{interval(row[f'seconds_{target}'], seconds)} s ({share})")
        else:
            parts.append(f"never {100 * target:g}% ({share})")
    return f"{row['environment']} {row['agent']} ({row['uses']}): " + "; ".join(parts)


def verdict(gradient: dict[str, Any], baseline: dict[str, Any], target: float = min(TARGETS)) -> str:
    """Which side wins at ``target``: the gradient agent if it gets there with ≥10× fewer transitions and less
    wall time (95% intervals apart), the baseline if it needs fewer of both; else neither."""
    mine, theirs = _reaches(gradient, target), _reaches(baseline, target)
    goal = f"{100 * target:g}%"
    if mine and not theirs:
        return f"the gradient agent wins: it reaches {goal}, the baseline does not"
    if theirs and not mine:
        return f"the baseline wins: it reaches {goal}, the gradient agent does not"
    if not mine:
        better = "the gradient agent" if _best([gradient, baseline]) is gradient else "the baseline"
        return f"neither reaches {goal}; {better} gets closer"
    steps, time = (gradient[f"transitions_{target}"], baseline[f"transitions_{target}"]), \
        (gradient[f"seconds_{target}"], baseline[f"seconds_{target}"])
    if 10 * steps[0][2] <= steps[1][1] and time[0][2] < time[1][1]:
        return f"the gradient agent wins: ≥10× fewer transitions and less wall time to {goal}"
    if steps[1][2] < steps[0][1] and time[1][2] < time[0][1]:
        return f"the baseline wins: fewer transitions and less wall time to {goal}"
    ratio, speed = steps[1][0] / max(steps[0][0], 1.0), time[1][0] / max(time[0][0], 1e-9)
    return (f"no clear winner at {goal}: the baseline needs {ratio:.3g}× the transitions and {speed:.3g}× the wall "
            f"time of the gradient agent (IQMs; the gradient agent wins only with ≥10× and < 1× outside the intervals)")


def headline(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Per environment: the best gradient agent against the best baseline (:data:`BASELINES`, every variant).

    The verdict compares agents of equal tuning: the best gradient agent on its defaults against
    the baselines, which run theirs. Where an agent tuned here does better, a second line gives
    its verdict, labelled as unequal tuning. Transitions and seconds to 10% and 1% (IQM [95% CI]
    on the validation curves) and the :func:`verdict`.
    """
    lines = []
    for env_id in dict.fromkeys(row["env_id"] for row in rows):
        mine = [r for r in rows if r["env_id"] == env_id and r["optimum"] is not None]
        gradients = [r for r in mine if r["family"] == "gradient"]
        baselines = [r for r in mine if r["family"] in BASELINES]
        if not gradients or not baselines:
            continue
        baseline = _best(baselines)
        untuned = [r for r in gradients if r["settings"] == "defaults"]
        best = _best(gradients)
        if untuned:
            gradient = _best(untuned)
            lines.append(f"{env_id}, equal tuning (defaults): {verdict(gradient, baseline)}. "
                         f"Gradient: {_progress(gradient)}. Baseline: {_progress(baseline)}.")
        if best["settings"] != "defaults":
            lines.append(f"{env_id}, gradient agent tuned here (unequal tuning): {verdict(best, baseline)}. "
                         f"Gradient: {_progress(best)}. Baseline: {_progress(baseline)}.")
    return lines


CSV_FIELDS = ("env_id", "variant", "mode", "agent", "family", "uses", "seed", "final_cost", "incomplete", "gap",
              "transitions", "seconds", "total_seconds", "trained_on", "transitions_to_10pct", "seconds_to_10pct",
              "transitions_to_1pct", "seconds_to_1pct")


def _csv_row(result: RunRecord, reference: dict[str, Any]) -> dict[str, Any]:
    reach = {t: time_to_target(result, reference, t) or (None, None) for t in TARGETS}
    return {"env_id": result["env_id"], "variant": result.get("variant", ""), "mode": result.get("mode", ""),
            "agent": result["agent"], "family": result["family"], "uses": disclosure(result["agent"], result["family"]),
            "seed": result["seed"], "final_cost": result["final_cost"], "incomplete": result["incomplete"],
            "gap": normalised_gap(result["final_cost"], reference), "transitions": result["transitions"],
            "seconds": result["seconds"], "total_seconds": result["total_seconds"],
            "trained_on": result.get("details", {}).get("trained_on", "default"),
            "transitions_to_10pct": reach[0.1][0], "seconds_to_10pct": reach[0.1][1],
            "transitions_to_1pct": reach[0.01][0], "seconds_to_1pct": reach[0.01][1]}


def table_text(summary: Sequence[dict[str, Any]]) -> str:
    """The text of ``table.md`` from :func:`summarise`'s rows: the tables, then the headline lines."""
    return markdown_table(summary) + "\n" + "\n".join(f"- {line}" for line in headline(summary)) + "\n"


#: the lines between which a document (the docs' benchmark page) holds a copy of a report's ``table.md``
BLOCK_BEGIN, BLOCK_END = "<!-- benchmark table: begin -->", "<!-- benchmark table: end -->"
#: the lines between which a document (the README) holds :func:`summary_text` of a report's ``table.md``
SUMMARY_BEGIN, SUMMARY_END = "<!-- benchmark summary: begin -->", "<!-- benchmark summary: end -->"

#: one of :func:`headline`'s lines, as ``table.md`` lists it
_HEADLINE = re.compile(r"- (?P<env>\S+), (?:equal tuning \((?P<defaults>defaults)\)|gradient agent (?P<tuned>tuned here) "
                       r"\(unequal tuning\)): (?P<verdict>.+?)\. Gradient: (?P<gradient>.+?) \([^()]*\): .*?"
                       r"\. Baseline: (?P<baseline>.+?) \([^()]*\): ")


def _final_gaps(table: str) -> dict[str, str]:
    """``"<environment> <agent>"`` -> its ``gap`` cell, from the first table of ``table``."""
    lines = table.split("\n\n", 1)[0].splitlines()
    gaps = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        gaps[f"{cells[0]} {cells[1]}"] = cells[8]
    return gaps


def summary_text(table: str) -> str:
    """The summary of a report's ``table.md`` text (:func:`table_text`): one row per line of the :func:`headline`.

    Each row names the environment, the gradient agent (its ``settings``) and the best baseline
    that the headline compares, their final gaps (the first table's ``gap`` cells) and the verdict.
    Raises ``ValueError`` if a headline line does not read as :func:`headline` writes it.
    """
    gaps = _final_gaps(table)
    lines = ["| environment | gradient agent | its final gap | best baseline | its final gap | verdict at 1% |",
             "|---|---|---|---|---|---|"]
    for line in table.splitlines():
        if not line.startswith("- "):
            continue
        match = _HEADLINE.match(line)
        if match is None:
            raise ValueError(f"table.md has a headline line that does not read as a verdict: {line[:80]!r}")
        gradient, baseline = match["gradient"], match["baseline"]
        settings = match["defaults"] or match["tuned"]
        lines.append(f"| {match['env']} | {gradient.rsplit(' ', 1)[1]} ({settings}) | {gaps.get(gradient, '–')} | "
                     f"{baseline.rsplit(' ', 1)[1]} | {gaps.get(baseline, '–')} | {match['verdict']} |")
    notes = ["", "Per environment, the gradient agent and the baseline (RL or zeroth order) that reach 1% of the "
             "reference with the fewest transitions (else 10%, else that end closest), first at equal tuning (gradient "
             "agents on their defaults), then the best gradient agent of all where it is one tuned here. gap: "
             "interquartile mean over seeds of (cost − reference) / |reference| on the test starts, with its 95% "
             "bootstrap interval; verdict: who reaches 1% of the reference first on the validation learning curves "
             "(the gradient agent wins with ≥10× fewer transitions and less wall time)."]
    return "\n".join(lines + notes) + "\n"


def block(document: str, begin_marker: str = BLOCK_BEGIN, end_marker: str = BLOCK_END) -> str:
    """The text between ``begin_marker`` and ``end_marker`` (default :data:`BLOCK_BEGIN`, :data:`BLOCK_END`)."""
    begin, end = document.find(begin_marker), document.find(end_marker)
    if begin < 0 or end < begin:
        raise ValueError(f"the document has no block between {begin_marker!r} and {end_marker!r}")
    return document[begin + len(begin_marker):end].strip("\n") + "\n"


def _replace(document: str, text: str, begin_marker: str, end_marker: str) -> str:
    begin, end = document.find(begin_marker) + len(begin_marker), document.find(end_marker)
    return document[:begin] + "\n" + text.strip("\n") + "\n" + document[end:]


def _has(document: str, begin_marker: str, end_marker: str) -> bool:
    return 0 <= document.find(begin_marker) <= document.find(end_marker)


def check_document(document: str, name: str = "the document") -> tuple[bool, bool]:
    """Whether ``document`` holds the table block and the summary block; ``ValueError`` naming ``name`` if neither."""
    has_table, has_summary = _has(document, BLOCK_BEGIN, BLOCK_END), _has(document, SUMMARY_BEGIN, SUMMARY_END)
    if not (has_table or has_summary):
        raise ValueError(f"{name} has no block between {BLOCK_BEGIN!r} and {BLOCK_END!r}, "
                         f"nor between {SUMMARY_BEGIN!r} and {SUMMARY_END!r}")
    return has_table, has_summary


def splice(document: str, text: str) -> str:
    """``document`` with its table block (see :func:`block`) replaced by ``text``, a report's ``table.md``, and its
    summary block (:data:`SUMMARY_BEGIN`, :data:`SUMMARY_END`) by :func:`summary_text` of it.

    A document may hold either block or both (the docs' benchmark page holds the table, the README
    the summary); one with neither is refused with a ``ValueError``.
    """
    has_table, has_summary = check_document(document)
    if has_table:
        document = _replace(document, text, BLOCK_BEGIN, BLOCK_END)
    if has_summary:
        document = _replace(document, summary_text(text), SUMMARY_BEGIN, SUMMARY_END)
    return document


def report(results: Sequence[RunRecord], refs: dict[str, dict[str, Any]], out: str | os.PathLike,
           plots: bool = True) -> dict[str, Path]:
    """Write ``results.csv``, ``results.json``, ``table.md`` (and ``curves.png``, ``final.png``, ``profile.png``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = [_csv_row(r, refs.get(r["env_id"], {"optimum": None})) for r in results]
    paths = {"csv": out / "results.csv", "json": out / "results.json", "table": out / "table.md"}

    def write_csv(file: Any) -> None:
        writer = csv.DictWriter(file, CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)

    atomic_write(paths["csv"], write_csv, newline="")
    summary = summarise(results, refs)
    write_json(paths["json"], jsonable({"references": refs, "summary": summary, "runs": list(results)}))
    write_text(paths["table"], table_text(summary))
    if plots and results:
        paths["curves"] = plot_curves(results, refs, out / "curves.png")
        paths["final"] = plot_final(results, refs, out / "final.png")
        paths["profile"] = plot_profile(results, refs, out / "profile.png")
    return paths
