"""Head-to-head benchmark: every agent on every environment under one evaluation protocol.

    python scripts/benchmark.py --quick --out bench/
    python scripts/benchmark.py --envs DiffCartpole-v0 --agents neural-ode ppo sac --seeds 5
    python scripts/benchmark.py --report-only --out bench/   # rebuild the report from bench/runs
    python scripts/benchmark.py --report-only --out results/benchmark --readme docs/benchmark.md README.md

--readme names the documents whose marked blocks the report's table.md is spliced into: the docs'
benchmark page holds the whole table (between the benchmark-table markers), the README its summary
(between the benchmark-summary markers). They are checked before anything runs.

A sweep into an existing folder resumes: finished runs are kept, the others are run. A run file
of another spec (e.g. the same run under another budget) is never overwritten: the sweep stops
first, naming it, unless --replace is given. The report covers every run file of the mode in
<out>/runs with the present spec, whichever sweep wrote it; a run file that is not a whole run (a
NaN or infinite number included) is named and left out. One sweep or report at a time writes into a
folder (<out>/sweep.lock, --report-only included), and --report-only of a folder with no run of the
mode is an error. A killed sweep's worker processes end with it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from agents import cli
from agents.benchmark import BenchmarkConfig, run_benchmark


def main(argv: Sequence[str] | None = None) -> int:
    """Parse (one option per field of :class:`BenchmarkConfig`), sweep, print the table; the exit status."""
    config = cli.parse(BenchmarkConfig, argv, description=__doc__)
    try:
        cli.check_out_folder(config.out)
        outcome = run_benchmark(config)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(outcome["paths"]["table"].read_text())
    return 1 if outcome["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
