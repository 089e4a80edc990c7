"""SHAC as its paper runs it, against PPO, on the cartpole swing-up: transitions to a stated cost.

    python scripts/shac_paper.py --seeds 0 1 2

Xu et al. 2022 claim SHAC learns their cartpole swing-up faster than PPO in samples and in
wall time. This check trains both on ``DiffCartpole-v0`` by the code the benchmark runs
(``agents.shac``, ``agents.rl``): SHAC with the paper's cartpole settings
(:class:`agents.shac.ShacConfig`'s defaults: 64 environments, windows of 32 steps, 500 windows,
i.e. 800k transitions of 100-step episodes) and PPO with the card's settings (rl-baselines3-zoo's
for Pendulum-v1, with the card's gamma 0.99 on the swing-up). Both train on the paper's form of
reward, a quadratic cost paid every step (a negative quadratic of the wrapped pole angle and the
cart's position; its weights are the report's LQR weights, without the paper's velocity
penalties), not on the benchmark's objective for critic learners (the scored terminal cost shaped
for their discount), and both are scored on the swing-up's own objective, :math:`\\phi(T)^2 + \\dot\\phi(T)^2`, by their
deterministic policies over the evaluation episodes: the gap is the cost over the zero-force
cost (the benchmark's normalisation where the reference is 0). Writes ``<out>/shac_paper.json``
(every curve point: transitions, training seconds, the swing-up and the dense cost) and
``<out>/shac_paper.md`` (per agent and seed: transitions to the gaps of 10% and 1%, and the final
gap). Training seconds are printed but mean something only on a quiet machine.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from agents import cli, rl, shac
from agents.benchmark.backends import in_processes
from agents.benchmark.report import first_kept
from agents.episodes import GymPolicy, evaluate
from agents.files import folder_lock, write_json, write_text
from agents.objectives import TrainingObjective
from agents.registry import Budget

ENV_ID = "DiffCartpole-v0"
TARGETS = (0.10, 0.01)
#: the paper's form of reward, a quadratic paid every step, with the report's LQR weights; both agents train on it
#: (the benchmark's critic learners train on the scored terminal cost instead, shaped for their discount)
DENSE = TrainingObjective({"cost": "quadratic"}, "quadratic (dense), the paper's form",
                          "the SHAC paper's cartpole reward is a negative quadratic paid every step")


@dataclass(frozen=True)
class PaperCheckConfig:
    """Which agents and seeds run, their budgets, and where the results go."""

    agents: tuple[str, ...] = ("shac", "ppo")
    """agents to train, among shac and ppo"""
    seeds: tuple[int, ...] = (0,)
    """seeds, each a run of every agent"""
    shac_transitions: int = 800_000
    """SHAC's budget (the paper's 500 windows of 64 environments: 800k transitions of 100-step episodes)"""
    ppo_transitions: int = 320_000
    """PPO's budget (the benchmark's on this card)"""
    eval_every: int = 8_000
    """transitions between learning-curve points"""
    episodes: int = 20
    """evaluation episodes per curve point (the benchmark plays 100 on its own starts)"""
    threads: int = 1
    """torch CPU threads (of this process; each worker process has one)"""
    workers: int = 1
    """processes that train runs at once, each on one core (1: in this process)"""
    out: str = "runs/shac_paper"
    """folder of shac_paper.json and shac_paper.md"""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.agents) - {"shac", "ppo"})
        if not self.agents or unknown:
            raise ValueError(f"agents must be among ('shac', 'ppo'), got {self.agents!r}")
        if not self.seeds or any(s < 0 for s in self.seeds):
            raise ValueError(f"seeds must be non-negative integers, got {self.seeds!r}")
        for name in ("shac_transitions", "ppo_transitions", "eval_every", "episodes", "threads", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")


def zero_force_cost(episodes: int) -> float:
    """The swing-up's mean cost of the zero force over the evaluation episodes."""
    return float(evaluate(ENV_ID, lambda observation: np.zeros(1, np.float32), episodes).mean())


def run(config: PaperCheckConfig, agent: str, seed: int, zero_cost: float) -> dict[str, Any]:
    """One training run: its curve of (transitions, seconds, swing-up cost, dense cost, gap)."""
    dense = DENSE.env_kwargs
    points: list[dict[str, float]] = []

    def curve_cost(policy: GymPolicy) -> float:
        cost = float(evaluate(ENV_ID, policy, config.episodes).mean())
        points.append({"cost": cost, "gap": cost / zero_cost,
                       "dense_cost": float(evaluate(ENV_ID, policy, config.episodes, dense).mean())})
        return cost

    transitions = config.shac_transitions if agent == "shac" else config.ppo_transitions
    budget = Budget(transitions, eval_every=config.eval_every)
    trained = (shac.train_on_budget(ENV_ID, {}, seed, budget, curve_cost, objective=DENSE) if agent == "shac"
               else rl.train(ENV_ID, "ppo", budget, seed, curve_cost=curve_cost, objective=DENSE))
    curve = [{**point, "transitions": c["transitions"], "seconds": c["seconds"]} for point, c in zip(points, trained.curve)]
    return {"agent": agent, "seed": seed, "trained_on": DENSE.label, "transitions": trained.transitions, "curve": curve}


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """:func:`run` of one ``{"config", "agent", "seed", "zero_cost"}`` job (importable by name: worker processes)."""
    return run(PaperCheckConfig(**job["config"]), job["agent"], job["seed"], job["zero_cost"])


def first_within(curve: list[dict[str, float]], target: float) -> float | None:
    """Transitions of the first curve point with a gap within ``target`` (None: never)."""
    return next((p["transitions"] for p in curve if p["gap"] <= target), None)


def summary(runs: list[dict[str, Any]]) -> str:
    """Per agent and target, over its seeds: how many touch the target and the median transitions to the first touch,
    how many keep it to the end of training and the median transitions and training seconds from which they keep it,
    and the median [min, max] final gap. A seed that does not touch (keep) the target counts at its whole run in the
    medians: censored, never dropped."""
    lines = ["| agent | target | seeds | touch it | median transitions to the first touch | keep it | median "
             "transitions to kept | median training s to kept | final gap, median [min, max] |", "|---" * 9 + "|"]
    for agent in dict.fromkeys(r["agent"] for r in runs):
        mine = [r for r in runs if r["agent"] == agent]
        final = [r["curve"][-1]["gap"] for r in mine]
        for target in TARGETS:
            touch = [first_within(r["curve"], target) for r in mine]
            kept = [first_kept([(p["transitions"], p["seconds"], p["gap"]) for p in r["curve"]], target) for r in mine]
            censored = [k or (r["curve"][-1]["transitions"], r["curve"][-1]["seconds"]) for k, r in zip(kept, mine)]
            lines.append(
                f"| {agent} | {target:.0%} | {len(mine)} | {sum(t is not None for t in touch)} | "
                f"{np.median([t or r['curve'][-1]['transitions'] for t, r in zip(touch, mine)]):,.0f} | "
                f"{sum(k is not None for k in kept)} | {np.median([c[0] for c in censored]):,.0f} | "
                f"{np.median([c[1] for c in censored]):.1f} | "
                f"{np.median(final):.3%} [{min(final):.3%}, {max(final):.3%}] |")
    return "\n".join(lines) + "\n"


def table(runs: list[dict[str, Any]]) -> str:
    """Per run: transitions to each target, the best and the final gap."""
    lines = ["| agent | seed | " + " | ".join(f"transitions to {t:.0%}" for t in TARGETS)
             + " | best gap | final gap | final dense cost | transitions |", "|---" * (6 + len(TARGETS)) + "|"]
    for r in runs:
        reached = [first_within(r["curve"], t) for t in TARGETS]
        gaps = [p["gap"] for p in r["curve"]]
        lines.append(f"| {r['agent']} | {r['seed']} | " + " | ".join("–" if t is None else f"{t:,.0f}" for t in reached)
                     + f" | {min(gaps):.3%} | {gaps[-1]:.3%} | {r['curve'][-1]['dense_cost']:.4g} | {r['transitions']:,} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    argv = sys.argv[1:] if argv is None else list(argv)
    config = cli.parse(PaperCheckConfig, argv, description=__doc__)
    torch.set_num_threads(config.threads)
    zero_cost = zero_force_cost(config.episodes)
    runs: list[dict[str, Any]] = []
    order = {(seed, agent): i for i, (seed, agent) in enumerate((s, a) for s in config.seeds for a in config.agents)}
    jobs = [{"config": dataclasses.asdict(config), "agent": agent, "seed": seed, "zero_cost": zero_cost}
            for seed, agent in order]
    with folder_lock(config.out) as out:
        for result in in_processes(run_job, jobs, config.workers):
            runs = sorted([*runs, result], key=lambda r: order[r["seed"], r["agent"]])
            write_json(out / "shac_paper.json", {"argv": argv, "zero_force_cost": zero_cost, "runs": runs})
            print(table([result]).splitlines()[-1], flush=True)
        text = (f"## SHAC with the paper's cartpole settings against PPO on {ENV_ID}\n\n"
                f"`python scripts/shac_paper.py {' '.join(argv)}`\n\nGap: the swing-up cost of the deterministic "
                f"policy over {config.episodes} evaluation episodes divided by the zero-force cost ({zero_cost:.4g}); "
                f"both agents train on {DENSE.label}. Training seconds count from each run's start, evaluation "
                f"excluded, {config.workers} run(s) at a time. Medians over seeds count a seed that does not touch (keep) a "
                f"target at its whole run.\n\n" + summary(runs) + "\n" + table(runs))
        path = write_text(out / "shac_paper.md", text)
    print(text)
    print(f"wrote {path}")
    return runs


if __name__ == "__main__":
    main()
