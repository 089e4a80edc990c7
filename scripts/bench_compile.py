"""What compiling the gradient path costs, per chunk length: the first compile, a second process, and the speed after.

For each chunk length ``K`` of ``RK4(compile=True, chunk=K)``, on the speed benchmark's rollout
(``scripts/bench_envs.py``: a 100-step cartpole rollout of a batch of 256 under a 2x16 tanh
policy, float32), two fresh Python processes share one new, empty compile cache folder:

1. the first compiles: ``first compile, s`` is its first forward+backward call less a later one;
2. the second builds the same rollout and loads the compiled code: ``second process, s`` is the
   same difference there (tracing and loading), and ``second process start, s`` its whole wall time
   to the end of that first call, the imports included;
3. ``forward+backward, ms``: the fastest of the second process's timed calls.

Each row also says how many graphs each process compiled and how many it loaded from the cache
(the second should compile none). Run it on a quiet machine: the seconds are the figures the
default chunk length is chosen from.

    python scripts/bench_compile.py --threads 1                     # chunks 2, 5, 10
    python scripts/bench_compile.py --chunks 2 --steps 4 --batch 2  # seconds of smoke
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from agents import cli
from agents.files import write_text

#: the body of one measuring process: argv is chunk, batch, steps, repeats, threads; prints one line of JSON
_PROCESS = r"""
import sys, time
began = time.perf_counter()
import json
import torch
import diffenvs
from diffenvs.core.compiler import compile_counts
from diffenvs.envs.cartpole import Cartpole
sys.path.insert(0, sys.argv[6])
from bench_envs import TanhPolicy

chunk, batch, steps, repeats, threads = (int(a) for a in sys.argv[1:6])
torch.set_num_threads(threads)
problem = Cartpole(max_steps=steps)
torch.manual_seed(0)
policy = TanhPolicy(problem)
x0 = torch.zeros(batch, 4)
x0[:, 2] = torch.pi
solver = diffenvs.RK4(compile=True, chunk=chunk)


def forward_backward() -> float:
    start = time.perf_counter()
    policy.zero_grad()
    diffenvs.rollout(problem, policy, x0, solver=solver, check=False).costs.mean().backward()
    return time.perf_counter() - start


first = forward_backward()
started = time.perf_counter() - began
best = min(forward_backward() for _ in range(repeats))
print(json.dumps({"first": first, "started": started, "best": best, "counts": compile_counts()}))
"""


@dataclass(frozen=True)
class CompileConfig:
    """What the compile benchmark measures and where it writes."""

    chunks: tuple[int, ...] = (2, 5, 10)
    """chunk lengths of RK4(compile=True, chunk=...) to measure"""
    batch: int = 256
    """trajectories per rollout"""
    steps: int = 100
    """steps per rollout"""
    repeats: int = 10
    """timed forward+backward calls in the second process (the fastest counts)"""
    threads: int = 1
    """torch intra-op threads of the measuring processes"""
    out: Path | None = None
    """also write the table as markdown to this file"""

    def __post_init__(self) -> None:
        for name in ("batch", "steps", "repeats", "threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.chunks or any(k < 1 or k > self.steps for k in self.chunks):
            raise ValueError(f"chunks must be lengths from 1 to steps ({self.steps}), got {self.chunks}")


def measure(chunk: int, config: CompileConfig, cache: Path) -> dict:
    """One fresh process's first call, start and best forward+backward, and its compile counts, on ``cache``."""
    env = {**os.environ, "DIFFENVS_COMPILE_CACHE": str(cache)}
    arguments = [str(v) for v in (chunk, config.batch, config.steps, config.repeats, config.threads)]
    done = subprocess.run([sys.executable, "-c", _PROCESS, *arguments, str(Path(__file__).resolve().parent)],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the measuring process for chunk {chunk} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> str:
    config = cli.parse(CompileConfig, argv, description=__doc__)
    lines = [f"cartpole, {config.steps} steps, batch {config.batch}, float32, {config.threads} torch threads, "
             f"{os.cpu_count()} CPUs; each chunk length on a new, empty compile cache", "",
             "| chunk | first compile, s | second process, s | second process start, s | forward+backward, ms "
             "| compiled / loaded (first) | compiled / loaded (second) |",
             "|---|---|---|---|---|---|---|"]
    for line in lines:
        print(line, flush=True)
    began = time.perf_counter()
    for chunk in config.chunks:
        with tempfile.TemporaryDirectory() as folder:
            cache = Path(folder) / "compiled"
            first, second = measure(chunk, config, cache), measure(chunk, config, cache)
        counts = [f"{run['counts']['compiled']} / {run['counts']['loaded']}" for run in (first, second)]
        line = (f"| {chunk} | {first['first'] - first['best']:.1f} | {second['first'] - second['best']:.1f} "
                f"| {second['started']:.1f} | {second['best'] * 1e3:.1f} | {counts[0]} | {counts[1]} |")
        print(line, flush=True)
        lines.append(line)
    lines += ["", f"{time.perf_counter() - began:.0f} s in all"]
    print(lines[-1])
    report = "\n".join(lines)
    if config.out is not None:
        write_text(config.out, report + "\n")
    return report


if __name__ == "__main__":
    main()
