"""Active identification of a linear system: adaptive differentiable planning vs Gaussian input vs oracle.

    python scripts/sysid.py --matrix jordan --runs 100

writes to ``--out``: ``sysid_<matrix>_<form>.md`` (the table of the error ‖Â − A‖_F against the
number of samples, mean ± standard error over the runs), ``.csv`` (every run's error) and
``.png`` (the plot of report figure 15). Every option comes from the config dataclasses of
:mod:`agents.planning` (``--help`` lists them with their docstrings). The Gaussian baseline plays
its inputs as drawn, the report's baseline of mean energy γ²; ``--baseline clipped`` moves them into
the control set (the ball ‖u‖ ≤ γ) instead, a weaker baseline.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from agents import cli  # noqa: E402
from agents.files import write_text  # noqa: E402
from agents.identification import SysIDConfig, SysIDResult, identify, results_table  # noqa: E402
from agents.plots import save  # noqa: E402
from diffenvs.core.problem import check_integer  # noqa: E402


@dataclass(frozen=True)
class Options:
    """Where the results go and how the process runs."""

    out: str = "runs/sysid"
    """folder of the table (markdown), the errors (csv) and the plot (png)"""
    threads: int = 1
    """torch CPU threads: one is fastest here (the batched operations are tiny; threads only add synchronisation)"""
    progress: int = 1
    """show progress bars (1) or not (0)"""

    def __post_init__(self) -> None:
        check_integer("threads", self.threads)
        if self.progress not in (0, 1) or isinstance(self.progress, bool):
            raise ValueError(f"progress must be 0 or 1, got {self.progress!r}")


# ---- the command line, generated from the dataclasses ----------------------------------
def parse(argv: list[str] | None) -> tuple[SysIDConfig, Options]:
    """The experiment and the options of the command line ``argv`` (defaults where not given)."""
    return cli.parse_pair(SysIDConfig, Options, argv, titles=("experiment", "output"), description=__doc__)


# ---- outputs -------------------------------------------------------------------------
def plot(result: SysIDResult, path: Path) -> None:
    """Error against samples, mean ± standard error, log-log (report figure 15)."""
    figure, axes = plt.subplots(figsize=(5.5, 4.0))
    for agent, style in zip(result.errors, ("o--", "s-", "^:")):
        axes.errorbar(result.samples, result.mean(agent), yerr=result.standard_error(agent), fmt=style,
                      capsize=3, label=agent)
    config = result.config
    title = (f"A: {config.matrix}, {config.planner.form} planner\n"
             f"d = {config.d}, σ = {config.noise_std}, γ = {config.gamma}, {config.runs} runs")
    axes.set(xscale="log", yscale="log", xlabel="samples", ylabel=r"$\|\hat A - A\|_F$", title=title)
    axes.legend()
    axes.grid(True, which="both", alpha=0.3)
    save(figure, path)


def write_csv(result: SysIDResult, path: Path) -> None:
    header = "agent,epoch,samples," + ",".join(f"run{i}" for i in range(result.config.runs))
    rows = [header]
    for agent, errors in result.errors.items():
        for epoch, (n, row) in enumerate(zip(result.samples, errors)):
            rows.append(f"{agent},{epoch},{int(n)}," + ",".join(f"{e:.8g}" for e in row))
    write_text(path, "\n".join(rows) + "\n")


def report(result: SysIDResult, argv: list[str], seconds: float, cpu_seconds: float) -> str:
    config, planner = result.config, result.config.planner
    last = -1
    lines = [
        f"## Active identification, A = {config.matrix}, {planner.form} planner",
        "",
        "`python scripts/sysid.py " + " ".join(argv) + "`",
        "",
        f"d = {config.d}, σ = {config.noise_std}, γ = {config.gamma}, {config.runs} runs, experiments of "
        f"{config.lengths} samples; planner: criterion {planner.criterion}, {planner.iterations} Adam steps, "
        f"lr {planner.learning_rate}, {planner.noise_samples} noise draw(s), radius bound {planner.radius}.",
        "",
        results_table(result),
        "",
        f"Last experiment: active / random = {result.mean('active')[last] / result.mean('random')[last]:.2f}, "
        f"active / oracle = {result.mean('active')[last] / result.mean('oracle')[last]:.2f}.",
        "",
        "Planning gain over the random start, mean of (best − start) / |start| of the criterion per planned experiment: "
        + "; ".join(f"{a} " + ", ".join(f"{g:.2f}" for g in gains) for a, gains in result.gains.items()) + ".",
        "",
        f"Wall time {seconds:.0f} s (" + ", ".join(f"{a} {s:.0f} s" for a, s in result.seconds.items())
        + f"), CPU time of the process {cpu_seconds:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> SysIDResult:
    argv = sys.argv[1:] if argv is None else list(argv)
    config, options = parse(argv)
    cli.check_out_folder(options.out)
    torch.set_num_threads(options.threads)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = identify(config, progress=bool(options.progress))
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"sysid_{config.matrix}_{config.planner.form}"
    text = report(result, argv, seconds, cpu_seconds)
    write_text(stem.with_suffix(".md"), text)
    write_csv(result, stem.with_suffix(".csv"))
    plot(result, stem.with_suffix(".png"))
    print(text)
    print(f"wrote {stem}.md, .csv, .png")
    return result


if __name__ == "__main__":
    main()

