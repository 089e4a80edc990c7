"""Sanity run of the RL baselines on a standard task: the project's code with the zoo's settings reaches the zoo's level.

    python scripts/rl_sanity.py --algorithms sac td3 ppo

trains each algorithm on gymnasium's ``Pendulum-v1`` with rl-baselines3-zoo's entry for it
(:data:`agents.rl_zoo.ZOO`) and its budget (``n_timesteps``: 20k for SAC and TD3, 100k for
PPO; ``--transitions`` overrides), by the very code the benchmark runs (:func:`agents.rl.train`),
then scores the final deterministic policy by the project's protocol: episode ``i`` from
``reset(seed=10000 + i)``, the return (:func:`agents.episodes.evaluate` gives its cost). Writes
``<out>/rl_sanity.md``: the mean return ± standard deviation over the episodes and the wall
time, beside the zoo's published score (rl-baselines3-zoo ``benchmark.md``).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from agents import cli, rl
from agents.episodes import evaluate
from agents.files import write_text
from agents.registry import Budget
from agents.rl_zoo import from_zoo


@dataclass(frozen=True)
class SanityConfig:
    """Which algorithms run, how long, and where the table goes."""

    algorithms: tuple[str, ...] = ("sac", "td3", "ppo")
    """algorithms to train, among ppo, sac and td3"""
    env_id: str = "Pendulum-v1"
    """the standard task: an id with a zoo entry in agents.rl_zoo.ZOO"""
    transitions: int = 0
    """training transitions per algorithm (0: the zoo entry's n_timesteps)"""
    seconds: float = math.inf
    """cap on each algorithm's training wall time (s)"""
    eval_every: int = 5_000
    """transitions between learning-curve points"""
    episodes: int = 10
    """evaluation episodes of the final policy"""
    seed: int = 0
    """seed of the algorithm and of the training environments"""
    threads: int = 1
    """torch CPU threads"""
    out: str = "runs/rl_sanity"
    """folder of the table rl_sanity.md"""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.algorithms) - set(rl.ALGORITHMS))
        if not self.algorithms or unknown:
            raise ValueError(f"algorithms must be among {rl.ALGORITHMS}, got {self.algorithms!r}")
        if self.transitions < 0 or self.episodes < 1:
            raise ValueError(f"transitions must be >= 0 and episodes >= 1, got {self.transitions!r}, {self.episodes!r}")


#: rl-baselines3-zoo benchmark.md (one run each, 750 deterministic episodes), Pendulum-v1: mean ± std of the return
PUBLISHED = {"ppo": "-172.2 ± 104.2 (100k)", "sac": "-157.0 ± 88.7 (20k)", "td3": "-151.9 ± 90.2 (20k)"}


def run(config: SanityConfig, algorithm: str) -> dict[str, str]:
    """Train ``algorithm`` and score its final policy; one row of the table."""
    hp = from_zoo(algorithm, config.env_id)
    transitions = config.transitions or hp.n_timesteps
    if transitions is None:
        raise ValueError(f"the zoo's entry {hp.zoo} gives no n_timesteps: give --transitions")
    start = time.perf_counter()
    result = rl.train(config.env_id, algorithm, Budget(transitions, config.seconds, config.eval_every), config.seed,
                      hp=hp, curve_cost=lambda policy: float(evaluate(config.env_id, policy, config.episodes).mean()))
    final = -evaluate(config.env_id, result.policy, config.episodes)  # returns: minus the costs
    return {"algorithm": algorithm, "zoo entry": hp.zoo, "transitions": str(result.transitions),
            "return": f"{final.mean():.1f} ± {final.std():.1f}",
            "zoo's score": PUBLISHED.get(algorithm, "") if config.env_id == "Pendulum-v1" else "",
            "training (s)": f"{result.seconds:.0f}", "wall (s)": f"{time.perf_counter() - start:.0f}"}


def table(rows: list[dict[str, str]]) -> str:
    """The rows as a markdown table."""
    header = list(rows[0])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(row[h] for h in header) + " |" for row in rows]) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, str]]:
    argv = sys.argv[1:] if argv is None else list(argv)
    config = cli.parse(SanityConfig, argv, description=__doc__)
    torch.set_num_threads(config.threads)
    rows = [run(config, algorithm) for algorithm in config.algorithms]
    text = (f"## RL sanity run on {config.env_id}\n\n`python scripts/rl_sanity.py {' '.join(argv)}`\n\n"
            f"Return of the final deterministic policy over {config.episodes} episodes (mean ± std), seed {config.seed}; "
            f"training time excludes the learning-curve evaluations.\n\n" + table(rows))
    path = write_text(Path(config.out) / "rl_sanity.md", text)
    print(text)
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
