"""Reproduce the report's figures: each experiment run by its own script, the figures gathered in one folder.

    python scripts/figures.py --out figures/               # the README's settings: about 15 minutes on 2 cores
    python scripts/figures.py --quick --out figures-quick/  # tiny budgets: checks the pipeline, not the numbers

Each experiment is a call of ``scripts/train.py``, ``scripts/sysid.py`` or
``scripts/design.py`` (their ``main``), writing into ``<out>/runs/<name>``; its figures are
copied to ``<out>/figure<N>-<what>.png`` under the report's figure numbers, and
``<out>/index.md`` lists each figure with the command that made it and the run's headline
number. ``--only`` runs a subset (``--only zermelo sysid-jordan``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts

import design  # noqa: E402
import sysid  # noqa: E402
import train  # noqa: E402

from agents import cli  # noqa: E402
from agents.files import atomic_write, write_text  # noqa: E402


@dataclass(frozen=True)
class Experiment:
    """One experiment: the script it runs, its arguments (full and quick) and the figures it gives."""

    name: str
    script: Any
    arguments: tuple[str, ...]
    quick: tuple[str, ...]
    figures: tuple[tuple[str, str, str], ...]
    """(report figure, file written by the script, what it shows)."""


TRAIN_QUICK = ("--iterations", "2", "--lbfgs-steps", "0", "--episodes", "2", "--quiet")

EXPERIMENTS = (
    Experiment("isochronism", train, ("DiffIsochronism-v0", "--quiet"),
               ("DiffIsochronism-v0", "--env-kwargs", '{"max_steps": 50}', "--batch-size", "4", *TRAIN_QUICK),
               (("5", "trajectory.png", "phase portrait of the learned field against the harmonic one"),
                ("5", "control.png", "learned force field against f = -x"),
                ("6", "loss.png", "training loss"))),
    Experiment("zermelo", train, ("DiffZermelo-v0", "--quiet"), ("DiffZermelo-v0", *TRAIN_QUICK),
               (("8a", "trajectory.png", "learned crossing against Pontryagin's"),
                ("8b", "control.png", "learned heading against Pontryagin's"),
                ("9", "loss.png", "training loss minus the optimum"))),
    Experiment("swingup", train, ("DiffCartpole-v0", "--preset", "swingup", "--quiet"),
               ("DiffCartpole-v0", "--preset", "swingup", "--env-kwargs", '{"max_steps": 10}', *TRAIN_QUICK),
               (("12", "loss.png", "swing-up training loss"),
                ("11", "trajectory.png", "swing-up trajectory"))),
    Experiment("upright", train, ("DiffCartpole-v0", "--preset", "upright", "--quiet"),
               ("DiffCartpole-v0", "--preset", "upright", "--env-kwargs", '{"max_steps": 10}', *TRAIN_QUICK),
               (("13", "control.png", "neural control against the LQR control -Kx"),)),
    Experiment("sysid-jordan", sysid, ("--matrix", "jordan", "--runs", "100", "--progress", "0"),
               ("--matrix", "jordan", "--runs", "3", "--epochs", "2", "--iterations", "3", "--progress", "0"),
               (("15a", "sysid_jordan_sequence.png", "estimation error against samples, Jordan A"),)),
    Experiment("sysid-random", sysid, ("--matrix", "random", "--runs", "100", "--progress", "0"),
               ("--matrix", "random", "--runs", "3", "--epochs", "2", "--iterations", "3", "--progress", "0"),
               (("15b", "sysid_random_sequence.png", "estimation error against samples, random A"),)),
    Experiment("design", design, ("--episodes", "20"), ("--measurements", "3", "--max-iterations", "20"),
               (("17", "design.png", "sequential design: posterior, designs against 1/theta_hat, error"),)),
)
NAMES = tuple(e.name for e in EXPERIMENTS)
ExperimentName = Literal[NAMES]  # type: ignore[valid-type]


def headline(experiment: Experiment, outcome: Any) -> str:
    """The run's main number, from what its script returned."""
    if experiment.script is train:
        text = f"final cost {outcome['final_cost']:.4g}"
        if outcome.get("optimum") is not None:
            text += f", analytic optimum {outcome['optimum']:.4g}"
        if outcome.get("reference_cost") is not None:
            text += f", {outcome['reference']} controller {outcome['reference_cost']:.4g}"
        return text
    if experiment.script is sysid:
        ratios = {a: outcome.mean("active")[-1] / outcome.mean(a)[-1] for a in ("random", "oracle")}
        return f"last epoch: active/random {ratios['random']:.2f}, active/oracle {ratios['oracle']:.2f}"
    return f"final error of theta_hat {outcome['final_abs_error']:.3g} (posterior std {outcome['final_std']:.3g})"


@dataclass(frozen=True)
class FiguresConfig:
    """Which of the report's experiments to run, and where."""

    out: Path = Path("figures")
    """output folder"""
    quick: cli.Switch = False
    """tiny budgets: checks the pipeline, not the numbers"""
    only: tuple[ExperimentName, ...] = NAMES
    """experiments to run (default: all)"""


def _copy(source: Path, file: IO[bytes]) -> None:
    file.write(source.read_bytes())


def main(argv: Sequence[str] | None = None) -> Path:
    args = cli.parse(FiguresConfig, argv, description=__doc__)
    lines = ["# The report's figures", "", "| figure | file | shows | command | result | wall |", "|---|---|---|---|---|---|"]
    for experiment in (e for e in EXPERIMENTS if e.name in args.only):
        folder = args.out / "runs" / experiment.name
        arguments = [*(experiment.quick if args.quick else experiment.arguments), "--out", str(folder)]
        if experiment.script is train:
            arguments.append("--overwrite")  # made afresh: train.py refuses a folder holding a run otherwise
        print(f"== {experiment.name}: {Path(experiment.script.__file__).name} {' '.join(arguments)}", flush=True)
        began = time.perf_counter()
        outcome = experiment.script.main(arguments)
        seconds = time.perf_counter() - began
        command = f"`python scripts/{Path(experiment.script.__file__).name} {' '.join(arguments)}`"
        for number, source, shows in experiment.figures:
            target = args.out / f"figure{number}-{experiment.name}-{Path(source).stem}.png"
            atomic_write(target, partial(_copy, folder / source), binary=True)
            lines.append(f"| {number} | {target.name} | {shows} | {command} | {headline(experiment, outcome)} | "
                         f"{seconds:.0f} s |")
    index = args.out / "index.md"
    write_text(index, "\n".join(lines) + "\n")
    print(f"figures and {index.name} in {args.out}")
    return index


if __name__ == "__main__":
    main()
