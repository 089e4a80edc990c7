"""The benchmark's report: per-seed rows, IQM summaries over seeds with bootstrap intervals, the markdown tables."""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents import registry
from agents.benchmark.config import PROTOCOL_VERSION, TARGETS
from agents.benchmark.plots import plot_curves, plot_final, plot_profile
from agents.benchmark.records import RunRecord
from agents.benchmark.reference import env_label, normalised_gap, on_validation
from agents.benchmark.stats import Estimate, iqm, iqm_ci, probability_of_improvement
from agents.files import atomic_write, jsonable, write_json, write_text


def curve_gaps(result: RunRecord, reference: dict[str, Any]) -> list[tuple[float, float, float | None]]:
    """The run's learning curve as ``(transitions, seconds, gap)`` on the validation reference; the gap of a point
    with episodes that did not reach the objective is ``None`` (it never counts as within a target)."""
    reference = on_validation(reference)
    return [(point["transitions"], point["seconds"],
             None if point.get("incomplete", 0) else normalised_gap(point["cost"], reference))
            for point in result["curve"]]


def time_to_target(result: RunRecord, reference: dict[str, Any], target: float) -> tuple[float, float] | None:
    """(transitions, seconds) at the first validation curve point from which every later point, to the end of
    training, stays within ``target`` of the reference; ``None`` if the run does not end there.

    A curve that touches the target and leaves it again has not reached it: only a target kept counts.
    """
    return first_kept(curve_gaps(result, reference), target)


def first_kept(points: Iterable[tuple[float, float, float | None]], target: float) -> tuple[float, float] | None:
    """(transitions, seconds) of the first of the ``(transitions, seconds, gap)`` points from which every later gap
    stays within ``target`` (a gap of ``None`` never does); ``None`` if the last point is not within it."""
    reached: tuple[float, float] | None = None
    for transitions, seconds, gap in points:
        if gap is not None and gap <= target:
            reached = reached or (transitions, seconds)
        else:
            reached = None
    return reached


def censored_time(result: RunRecord, reference: dict[str, Any], target: float) -> tuple[float, float, bool]:
    """``(transitions, seconds, reached)``: :func:`time_to_target`, or, where the run did not keep the target, its
    budget of transitions (or what it spent, if more) and the seconds it trained: censored, never dropped."""
    reached = time_to_target(result, reference, target)
    if reached is None:
        budget = result.get("spec", {}).get("budget", {}).get("transitions", 0)
        return float(max(budget, result["transitions"])), float(result["seconds"]), False
    return float(reached[0]), float(reached[1]), True


def best_gap(result: RunRecord, reference: dict[str, Any]) -> float | None:
    """The smallest normalised gap over the run's complete learning-curve points (validation starts only)."""
    gaps = [gap for _, _, gap in curve_gaps(result, reference) if gap is not None]
    return min(gaps) if gaps else None


def last_gap(result: RunRecord, reference: dict[str, Any]) -> float | None:
    """The normalised gap of the run's last learning-curve point (validation starts), what the headline selects on:
    its cost as evaluated, a priced completion included (``None`` without a point or a reference)."""
    if not result["curve"]:
        return None
    return normalised_gap(result["curve"][-1]["cost"], on_validation(reference))


def backward_transitions(result: RunRecord) -> float | None:
    """The transitions the run's backward passes went through (``details["backward_transitions"]``; ``None`` where
    the run does not say)."""
    value = result.get("details", {}).get("backward_transitions")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


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

    ``gap`` is the final score (test starts), with ``final_gaps`` per seed; the times to each target kept to the
    end of training come from the learning curves (validation starts), over *all* seeds, a seed that does not keep
    the target counted at its budget and training seconds (censored; ``reached_<target>`` says how many kept it);
    ``last_gap`` (the IQM of the last validation point's gap) is what the headline selects rows on.
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
        row["final_gaps"] = gaps if len(gaps) == len(runs) else None
        row["gap"] = _estimate(gaps) if len(gaps) == len(runs) else None
        row["transitions"] = iqm([r["transitions"] for r in runs])
        row["cap"] = runs[0].get("spec", {}).get("budget", {}).get("cap", "")
        row["seconds"] = iqm([r["seconds"] for r in runs])
        backward = [b for r in runs if (b := backward_transitions(r)) is not None]
        row["backward_transitions"] = iqm(backward) if len(backward) == len(runs) else None
        row["budget"] = runs[0].get("spec", {}).get("budget", {}).get("transitions")
        for target in TARGETS:
            times = [censored_time(r, reference, target) for r in runs] if row["gap"] is not None else []
            row[f"reached_{target}"] = sum(reached for _, _, reached in times)
            row[f"transitions_{target}"] = _estimate([t for t, _, _ in times]) if times else None
            row[f"seconds_{target}"] = _estimate([t for _, t, _ in times]) if times else None
        best = [b for r in runs if (b := best_gap(r, reference)) is not None]
        row["best_gap"] = iqm(best) if best else None
        last = [b for r in runs if (b := last_gap(r, reference)) is not None]
        row["last_gap"] = iqm(last) if len(last) == len(runs) else None
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
    """The benchmark's tables in markdown: final results, then time to the 10% and 1% targets kept to the end."""
    lines = ["| environment | agent | may use | settings | trained on | seeds | final cost | reference | gap | "
             "transitions | backward transitions | training s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    flagged = False
    caps: dict[str, str] = {}
    for row in rows:
        spent = count(row["transitions"])
        if row.get("cap"):
            caps[f"{row['environment']} {row['agent']}"] = row["cap"]
            spent += " ‡"
        cost = number(row["cost"])
        if row["incomplete_runs"]:
            cost += f" † ({row['incomplete_runs']}/{row['seeds']})"
            flagged = True
        lines.append(f"| {row['environment']} | {row['agent']} | {row['uses']} | {row['settings']} | {row['trained_on']} | "
                     f"{row['seeds']} | "
                     f"{cost} | {number(row['optimum'])} | {interval(row['gap'], percent)} | "
                     f"{spent} | {count(row.get('backward_transitions'))} | {seconds(row['seconds'])} |")
    lines += ["", "| environment | agent | kept 10% | transitions to 10% | seconds to 10% | kept 1% | transitions to 1% | "
              "seconds to 1% | last validation gap |", "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        cells = []
        for target in TARGETS:
            kept = row[f"reached_{target}"]
            cells += [f"{kept}/{row['seeds']}", interval(row[f"transitions_{target}"], count) if kept else "–",
                      interval(row[f"seconds_{target}"], seconds) if kept else "–"]
        lines.append(f"| {row['environment']} | {row['agent']} | {' | '.join(cells)} | {percent(row.get('last_gap'))} |")
    notes = ["", "Interquartile mean (IQM) over seeds, with its 95% stratified-bootstrap interval [low, high] where it "
             "has width (rliable). gap = (cost − reference) / (zero-action cost − reference), one normalisation for "
             "every environment (0: the reference, 1: doing nothing), on the test starts, which serve the final score "
             "only. backward transitions: environment transitions that a backward pass went through (gradient agents; "
             "– where a run does not count them). Targets: on the validation learning curves, disjoint from the test "
             "starts, a target counts only from the first point after which the curve stays within it to the end of "
             "training (the last point included; kept k/n: seeds that do); the times are IQMs over all seeds, a seed "
             "that does not keep the target counted at its budget and its training seconds (censored); – where no "
             "seed keeps it. PPO spends whole rollouts, so it may end up to one rollout past its budget. may use: "
             "what the agent may use. settings: "
             "the agent's published defaults (RL: rl-baselines3-zoo's for the nearest task), or tuned here by hand on "
             "this environment; the verdict compares agents of equal tuning. [label]: a variant of the environment "
             "under the same objective."]
    if caps:
        notes.append("‡ a budget below the one every other learner gets on the environment, and why: "
                     + "; ".join(f"{name}: {why}" for name, why in caps.items()) + ".")
    if flagged:
        notes.append("† (k/n): in k of n runs some evaluation episodes ended at the time limit without reaching the "
                     "objective (an arrival the episode never made, such as a river crossing); their cost is not that of "
                     "reaching it.")
    return "\n".join(lines + notes) + "\n"


#: the families a gradient agent is compared against in the headline
BASELINES = ("rl", "zeroth-order")
#: the target of the verdict's speed comparison
VERDICT_TARGET = min(TARGETS)


def _best(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The row with the smallest IQM of its last validation gap (selected on validation, never on the test starts)."""
    return min(rows, key=lambda row: math.inf if row.get("last_gap") is None else row["last_gap"])


def improvement(gradient: dict[str, Any], baseline: dict[str, Any]) -> Estimate | None:
    """P(a gradient run's final test gap is below a baseline run's), with its 95% interval; ``None`` without gaps."""
    if not gradient.get("final_gaps") or not baseline.get("final_gaps"):
        return None
    return probability_of_improvement(-np.asarray(gradient["final_gaps"]), -np.asarray(baseline["final_gaps"]))


def _apart(low_side: Sequence[float], high_side: Sequence[float], factor: float = 1.0) -> bool:
    """Whether ``factor`` × the upper end of ``low_side``'s interval is below the lower end of ``high_side``'s."""
    return factor * low_side[2] < high_side[1]


def _speed(gradient: dict[str, Any], baseline: dict[str, Any], target: float) -> tuple[int, str]:
    """Who is faster to ``target`` kept (1: the gradient agent, -1: the baseline, 0: undecided), and why."""
    goal = f"{100 * target:g}%"
    kept = (f"kept {goal}: {gradient[f'reached_{target}']}/{gradient['seeds']} against "
            f"{baseline[f'reached_{target}']}/{baseline['seeds']} seeds")
    if not gradient[f"reached_{target}"] and not baseline[f"reached_{target}"]:
        return 0, f"speed undecided: neither keeps {goal}"
    if gradient.get("budget") != baseline.get("budget"):
        return 0, (f"speed not compared: the budgets differ ({count(gradient.get('budget'))} against "
                   f"{count(baseline.get('budget'))} transitions), so are the censored times; {kept}")
    steps = (gradient[f"transitions_{target}"], baseline[f"transitions_{target}"])
    time = (gradient[f"seconds_{target}"], baseline[f"seconds_{target}"])
    if steps[0] is None or steps[1] is None or time[0] is None or time[1] is None:
        return 0, f"speed undecided: no times to compare; {kept}"
    if _apart(steps[0], steps[1], 10.0) and _apart(time[0], time[1]):
        speed, outcome = 1, "the gradient agent is faster"
    elif _apart(steps[1], steps[0]) and _apart(time[1], time[0]):
        speed, outcome = -1, "the baseline is faster"
    else:
        speed, outcome = 0, "speed undecided"
    ratio, seconds_ratio = steps[1][0] / max(steps[0][0], 1.0), time[1][0] / max(time[0][0], 1e-9)
    return speed, (f"{outcome}: to {goal} kept the baseline needs {ratio:.3g}× the transitions and "
                   f"{seconds_ratio:.3g}× the wall time of the gradient agent (censored IQMs; {kept})")


def verdict(gradient: dict[str, Any], baseline: dict[str, Any], target: float = VERDICT_TARGET,
            p: Estimate | None = None) -> str:
    """Who wins, and why: the final score and the speed to ``target`` kept, each decided only outside the intervals.

    * Score: the probability of improvement :math:`P` that a gradient run ends with a smaller test gap than a
      baseline run; a side ends closer if the 95% interval of :math:`P` lies wholly above (or below) 1/2.
    * Speed, between rows of equal budgets of which at least one keeps the target on some seed: the IQMs over all
      seeds of the transitions and seconds to the target kept, a seed that does not keep it censored at its budget
      (:func:`censored_time`). The gradient agent is faster with ≥10× fewer transitions and less wall time, the
      baseline with fewer transitions and less wall time, 95% intervals apart; otherwise speed is undecided.
    * The verdict: a side wins if it is better on one and not worse on the other; otherwise it is mixed or unclear.

    ``p``: :func:`improvement` of the two rows where the caller has it already (a bootstrap), else computed here.
    """
    p = improvement(gradient, baseline) if p is None else p
    if p is None:
        score, score_reason = 0, "no final gaps to compare"
    else:
        score = 1 if p.low > 0.5 else -1 if p.high < 0.5 else 0
        score_reason = f"P(gradient run ends closer) = {interval(p, lambda v: f'{v:.2f}')}"
    speed, speed_reason = _speed(gradient, baseline, target)
    if score >= 0 and speed >= 0 and score + speed > 0:
        outcome = "the gradient agent wins"
    elif score <= 0 and speed <= 0 and score + speed < 0:
        outcome = "the baseline wins"
    elif score * speed < 0:
        outcome = "mixed: " + ("the gradient agent ends closer, the baseline is faster" if score > 0
                               else "the baseline ends closer, the gradient agent is faster")
    else:
        outcome = "no clear winner"
    return f"{outcome} ({score_reason}; {speed_reason})"


def headline(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per environment: the best gradient agent against the best baseline (:data:`BASELINES`, every variant).

    "Best" is the smallest IQM of the last validation gap (:func:`_best`): the rows are chosen on the validation
    starts. The comparison is at equal tuning: the best gradient agent on its defaults against the baselines, which
    run theirs. Where an agent tuned here does better, a second comparison gives its verdict, labelled as unequal
    tuning. Each comparison: ``env_id``, ``tuning``, the two rows, the probability of improvement and the
    :func:`verdict`.
    """
    comparisons = []
    for env_id in dict.fromkeys(row["env_id"] for row in rows):
        mine = [r for r in rows if r["env_id"] == env_id and r["optimum"] is not None]
        gradients = [r for r in mine if r["family"] == "gradient"]
        baselines = [r for r in mine if r["family"] in BASELINES]
        if not gradients or not baselines:
            continue
        baseline = _best(baselines)
        untuned = [r for r in gradients if r["settings"] == "defaults"]
        best = _best(gradients)
        pairs = [("equal (defaults)", _best(untuned))] if untuned else []
        if best["settings"] != "defaults":
            pairs.append(("unequal (gradient agent tuned here)", best))
        for tuning, gradient in pairs:
            p = improvement(gradient, baseline)
            comparisons.append({"env_id": env_id, "tuning": tuning, "gradient": gradient, "baseline": baseline,
                                "improvement": p, "verdict": verdict(gradient, baseline, p=p)})
    return comparisons


CSV_FIELDS = ("env_id", "variant", "mode", "agent", "family", "uses", "seed", "final_cost", "incomplete", "gap",
              "transitions", "backward_transitions", "seconds", "total_seconds", "trained_on", "transitions_to_10pct",
              "seconds_to_10pct", "kept_10pct", "transitions_to_1pct", "seconds_to_1pct", "kept_1pct")


def _csv_row(result: RunRecord, reference: dict[str, Any]) -> dict[str, Any]:
    reach = {t: censored_time(result, reference, t) for t in TARGETS}
    return {"env_id": result["env_id"], "variant": result.get("variant", ""), "mode": result.get("mode", ""),
            "agent": result["agent"], "family": result["family"], "uses": disclosure(result["agent"], result["family"]),
            "seed": result["seed"], "final_cost": result["final_cost"], "incomplete": result["incomplete"],
            "gap": normalised_gap(result["final_cost"], reference), "transitions": result["transitions"],
            "backward_transitions": backward_transitions(result),
            "seconds": result["seconds"], "total_seconds": result["total_seconds"],
            "trained_on": result.get("details", {}).get("trained_on", "default"),
            "transitions_to_10pct": reach[0.1][0], "seconds_to_10pct": reach[0.1][1], "kept_10pct": reach[0.1][2],
            "transitions_to_1pct": reach[0.01][0], "seconds_to_1pct": reach[0.01][1], "kept_1pct": reach[0.01][2]}


#: the line of ``table.md`` after which its verdicts (:func:`verdict_table`) follow: the README's summary
VERDICTS = "Verdicts, one per environment and tuning:"


def verdict_table(comparisons: Sequence[dict[str, Any]]) -> str:
    """The :func:`headline`'s comparisons as a markdown table, with the rule that decides them."""
    lines = ["| environment | tuning | gradient agent | its final gap | best baseline | its final gap | "
             "P(gradient ends closer) | verdict |", "|---|---|---|---|---|---|---|---|"]
    for c in comparisons:
        gradient, baseline = c["gradient"], c["baseline"]
        lines.append(f"| {c['env_id']} | {c['tuning']} | {gradient['agent']} | {interval(gradient['gap'], percent)} | "
                     f"{baseline['agent']} | {interval(baseline['gap'], percent)} | "
                     f"{interval(c['improvement'], lambda v: f'{v:.2f}')} | {c['verdict']} |")
    notes = ["", "Per environment, the gradient agent and the baseline (RL or zeroth order) with the smallest last "
             "validation gap (IQM over seeds), first at equal tuning (gradient agents on their defaults), then the "
             "best gradient agent of all where it is one tuned here. gap: IQM over seeds of the final test gap, with "
             "its 95% bootstrap interval. P(gradient ends closer): the probability of improvement (rliable), that a "
             "gradient run's test gap is below a baseline run's, with its 95% interval. Verdict: a side ends closer if "
             "that interval lies wholly above (or below) 1/2; between rows of equal budgets, a side is faster to 1% "
             "kept to the end of training with ≥10× fewer transitions and less wall time (the gradient agent) or "
             "fewer transitions and less wall time (the baseline), the intervals of the censored IQMs apart; a side "
             "wins if it is better on one and not worse on the other."]
    return "\n".join(lines + notes) + "\n"


def cost_table(results: Sequence[RunRecord]) -> str:
    """Where a sweep's time goes: per environment and agent, its runs' training and evaluation seconds (summed), and
    their share of the whole; evaluation is what a run spent beyond training (``total_seconds - seconds``)."""
    groups: dict[tuple[str, str], list[RunRecord]] = {}
    for result in results:
        groups.setdefault((env_label(result), result["agent"]), []).append(result)
    total = sum(r["total_seconds"] for r in results) or 1.0
    lines = ["| environment | agent | runs | training s | evaluation s | share of the sweep |", "|---|---|---|---|---|---|"]
    for (env, agent), runs in groups.items():
        training = sum(r["seconds"] for r in runs)
        evaluation = sum(max(r["total_seconds"] - r["seconds"], 0.0) for r in runs)
        lines.append(f"| {env} | {agent} | {len(runs)} | {seconds(training)} | {seconds(evaluation)} | "
                     f"{percent((training + evaluation) / total)} |")
    return "\n".join(lines) + f"\n\nIn all {seconds(total)} s of run time (one core each), {len(results)} runs.\n"


def table_text(summary: Sequence[dict[str, Any]], results: Sequence[RunRecord] = (),
               comparisons: Sequence[dict[str, Any]] | None = None) -> str:
    """The text of ``table.md`` from :func:`summarise`'s rows: the tables, where the time went (:func:`cost_table`, if
    ``results`` are given), then the verdicts (:func:`verdict_table` of ``comparisons``, by default
    :func:`headline` of ``summary``)."""
    spent = f"Where the sweep's time went:\n\n{cost_table(results)}\n" if results else ""
    comparisons = headline(summary) if comparisons is None else comparisons
    return markdown_table(summary) + "\n" + spent + VERDICTS + "\n\n" + verdict_table(comparisons)


#: the lines between which a document (the docs' benchmark page) holds a copy of a report's ``table.md``
BLOCK_BEGIN, BLOCK_END = "<!-- benchmark table: begin -->", "<!-- benchmark table: end -->"
#: the lines between which a document (the README) holds :func:`summary_text` of a report's ``table.md``
SUMMARY_BEGIN, SUMMARY_END = "<!-- benchmark summary: begin -->", "<!-- benchmark summary: end -->"


def summary_text(table: str) -> str:
    """The summary of a report's ``table.md`` text (:func:`table_text`): its verdict table, after :data:`VERDICTS`.

    Raises ``ValueError`` if the text has no verdicts.
    """
    begin = table.find(VERDICTS)
    if begin < 0:
        raise ValueError(f"table.md has no verdicts (no line {VERDICTS!r})")
    return table[begin + len(VERDICTS):].strip("\n") + "\n"


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


def _versions(results: Sequence[RunRecord]) -> list[int]:
    """The protocol versions of ``results`` (a run whose spec names none is of version 1); none: the present one."""
    return sorted({int(r.get("spec", {}).get("version", 1)) for r in results}) or [PROTOCOL_VERSION]


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
    comparisons = headline(summary)
    verdicts = [{"env_id": c["env_id"], "tuning": c["tuning"], "gradient": c["gradient"]["agent"],
                 "baseline": c["baseline"]["agent"], "improvement": c["improvement"], "verdict": c["verdict"]}
                for c in comparisons]
    write_json(paths["json"], jsonable({"protocol": _versions(results), "references": refs, "summary": summary,
                                        "verdicts": verdicts, "runs": list(results)}))
    write_text(paths["table"], table_text(summary, results, comparisons))
    if plots and results:
        paths["curves"] = plot_curves(results, refs, out / "curves.png")
        paths["final"] = plot_final(results, refs, out / "final.png")
        paths["profile"] = plot_profile(results, refs, out / "profile.png")
    return paths
