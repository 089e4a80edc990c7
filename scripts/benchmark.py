"""Head-to-head benchmark: every agent on every environment under one evaluation protocol.

    python scripts/benchmark.py --quick --out bench/
    python scripts/benchmark.py --envs DiffCartpole-v0 --agents neural-ode ppo sac --seeds 5

A sweep into an existing folder resumes: finished runs are kept, the others are run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from agents.benchmark import BenchmarkConfig, run_benchmark
from agents.training import add_config_arguments, config_from_arguments


def parser() -> argparse.ArgumentParser:
    """The command line, one option per field of :class:`BenchmarkConfig`."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_arguments(parser, BenchmarkConfig, "benchmark options")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = parser().parse_args(argv)
    try:
        config = config_from_arguments(arguments, BenchmarkConfig())
        outcome = run_benchmark(config)
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(outcome["paths"]["table"].read_text())
    return 1 if outcome["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
