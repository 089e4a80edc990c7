"""Where first-order gradients help or fail: backpropagation against Gaussian smoothing, by horizon.

For each environment and horizon T (the problem cut to T seconds, its terminal cost at T), a
fixed random 2x16 tanh policy, and starts from the problem's start distribution:

* the first-order estimate (backpropagation through the rollout) and the zeroth-order one
  (antithetic Gaussian smoothing, ``--sigma``) from the same ``--batch`` rollouts, ``--estimates``
  times; their per-rollout norm, their variance, their signal-to-noise ratio, and a statistic of the
  first-order mean's bias against a reference, the zeroth-order estimate from ``--reference``
  rollouts (unbiased for the gradient of the smoothed objective);
* the adjoint's first-order estimate (torchdiffeq, fixed-grid RK4, one estimate), against
  backpropagation's on the same starts: the same number unless the adjoint's own error shows;
* the largest Lyapunov exponent of the closed loop over the longest horizon.

The estimators are :mod:`studies.gradients`. Writes ``results.json``, ``table.md`` and
``gradients.png`` into ``--out``.

    python scripts/gradients.py --out runs/gradients
    python scripts/gradients.py --quick --out runs/gradients-quick
"""

from __future__ import annotations

import math
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

import diffenvs
from agents import cli, plots
from agents.files import folder_lock, write_json, write_text
from agents.neural_ode.network import initial_states
from diffenvs import problem_of
from diffenvs.core.problem import Problem, check_integer
from diffenvs.core.validation import is_real
from studies.gradients import BatchedMlp, episode_cost, first_order, lyapunov_exponent, zeroth_order


@dataclass(frozen=True)
class GradientStudyConfig:
    """What the gradient study measures and where it writes."""

    out: str = "runs/gradients"
    """Output folder (results.json, table.md, gradients.png); one run at a time writes into it."""
    envs: tuple[str, ...] = ()
    """Environment ids (default: DiffCartpole-v0, and DiffDoublePendulum-v0 where registered)."""
    env_kwargs: str = ""
    """JSON of environment settings applied to every environment, e.g. '{"initial_angle": 0.5}' (starts near upright)."""
    horizons: tuple[float, ...] = (0.5, 1.0, 2.0, 5.0, 10.0)
    """Horizons T in seconds."""
    batch: int = 32
    """Rollouts per estimate (the zeroth-order estimate uses them as batch / 2 antithetic pairs)."""
    estimates: int = 16
    """Independent estimates per estimator and horizon (their spread is the estimator's variance)."""
    reference: int = 2048
    """Rollouts of the reference (a zeroth-order estimate)."""
    sigma: float = 0.02
    """Standard deviation of the weights' Gaussian perturbation."""
    adjoint: cli.Switch = True
    """also the adjoint's first-order estimate (one per horizon)"""
    quick: cli.Switch = False
    """a smoke run: small batches, and two horizons (0.5 s, 2 s) unless --horizons is given"""
    seed: int = 0
    threads: int = 1
    sizes: tuple[int, ...] = field(default=(16, 16))
    """Hidden layer sizes of the policy."""

    def __post_init__(self) -> None:
        for name in ("batch", "estimates", "reference", "threads"):
            check_integer(name, getattr(self, name))
        if self.batch < 2:
            raise ValueError(f"batch must be at least 2 (one antithetic pair), got {self.batch}")
        if not self.horizons or not all(is_real(h) and math.isfinite(h) and h > 0 for h in self.horizons):
            raise ValueError(f"horizons must be finite positive numbers of seconds, got {self.horizons!r}")
        if not (is_real(self.sigma) and math.isfinite(self.sigma) and self.sigma > 0):
            raise ValueError(f"sigma must be a finite positive number, got {self.sigma!r}")
        if not all(isinstance(size, int) and not isinstance(size, bool) and size >= 1 for size in self.sizes):
            raise ValueError(f"sizes must be positive integers (the hidden layers' widths), got {self.sizes!r}")
        for env_id in self.env_ids:
            for horizon in self.horizons:
                problem_at(self, env_id, horizon)  # every problem of the study is built (and checked) before any work

    @property
    def env_ids(self) -> tuple[str, ...]:
        """The environments studied: ``envs``, or the default ones."""
        return self.envs or tuple(e for e in ("DiffCartpole-v0", "DiffDoublePendulum-v0") if e in diffenvs.ENV_IDS)


#: the longest rollout the study accepts, in steps (a rollout's graph is kept for the backward pass)
MAX_STEPS = 100_000


def problem_at(config: GradientStudyConfig, env_id: str, horizon: float) -> Problem[Any]:
    """``env_id`` with ``config.env_kwargs``, cut to ``horizon`` seconds (rounded to whole steps); a ``ValueError``
    naming the argument for an unknown id, settings the environment refuses, a horizon shorter than half a step or
    longer than :data:`MAX_STEPS`, and an environment that starts from one state."""
    if env_id not in diffenvs.ENV_IDS:
        raise ValueError(f"envs must be environment ids of {sorted(diffenvs.ENV_IDS)}, got {env_id!r}")
    settings = cli.parse_env_kwargs(config.env_kwargs or None, None, env_id)
    if "max_steps" in settings:
        raise ValueError("env_kwargs must not set max_steps: --horizons sets each rollout's length")
    try:
        base = problem_of(env_id, **settings)
    except (TypeError, ValueError) as error:
        raise ValueError(f"env_kwargs {config.env_kwargs!r} are refused by {env_id}: {error}") from error
    kind, draws = base.initial_draws
    if draws == 0:
        raise ValueError(
            f"envs: {env_id} starts every episode from one state, so the first-order estimate has no spread over starts "
            "(its variance is 0 and its signal-to-noise ratio undefined); the study compares the estimators over a "
            "start distribution: use an environment with random starts (DiffCartpole-v0, DiffDoublePendulum-v0, "
            "DiffIsochronism-v0)")
    steps = round(horizon / base.dt)
    if not 1 <= steps <= MAX_STEPS:
        raise ValueError(f"horizons must be from half a step to {MAX_STEPS:,} steps of {env_id} (dt = {base.dt:g} s), "
                         f"got {horizon!r} s ({steps} steps)")
    try:
        return problem_of(env_id, **{**settings, "max_steps": steps})
    except (TypeError, ValueError) as error:
        raise ValueError(f"horizons: {env_id} refuses {horizon!r} s ({steps} steps): {error}") from error


def study(env_id: str, horizon: float, config: GradientStudyConfig, generator: torch.Generator) -> dict[str, Any]:
    """Both estimators on ``env_id`` cut to ``horizon`` seconds: norms, variances, errors, adjoint, timings."""
    problem = problem_at(config, env_id, horizon)
    steps = problem.max_steps
    mlp = BatchedMlp(problem, (len(problem.observation_names), *config.sizes, problem.control_dim))
    theta = mlp.initial(torch.Generator().manual_seed(config.seed))
    cost = episode_cost(problem, mlp)
    began = time.perf_counter()
    firsts, zeroths, rollouts = [], [], []
    for _ in range(config.estimates):
        starts = initial_states(problem, config.batch, generator)
        gradients = first_order(cost, theta, starts)
        rollouts.append(gradients)
        firsts.append(gradients.mean(0))
        zeroths.append(zeroth_order(cost, theta, initial_states(problem, config.batch, generator), config.sigma,
                                    generator).mean(0))
    first, zeroth, per_rollout = torch.stack(firsts), torch.stack(zeroths), torch.cat(rollouts)
    pairs = torch.cat([zeroth_order(cost, theta, initial_states(problem, 256, generator), config.sigma, generator)
                       for _ in range(max(1, config.reference // 256))])
    reference, reference_variance = pairs.mean(0), float(pairs.var(0).sum() / pairs.shape[0])
    variance_first, variance_zeroth = float(first.var(0).sum()), float(zeroth.var(0).sum())
    signal = float(reference.norm())
    # squared distance of the first-order mean from the reference over what noise alone gives (about 1 if unbiased)
    bias = float((per_rollout.mean(0) - reference).pow(2).sum()) / (variance_first / config.estimates + reference_variance)
    row = {"env_id": env_id, "horizon": steps * problem.dt, "steps": steps, "parameters": mlp.size,
           "first_order_norm": float(per_rollout.norm(dim=1).median()),
           "first_order_norm_max": float(per_rollout.norm(dim=1).max()),
           "first_order_variance": variance_first, "zeroth_order_variance": variance_zeroth,
           "first_order_snr": signal / variance_first ** 0.5, "zeroth_order_snr": signal / variance_zeroth ** 0.5,
           "first_order_bias_statistic": bias, "reference_norm": signal,
           "reference_standard_error": reference_variance ** 0.5}
    if config.adjoint:
        starts = initial_states(problem, config.batch, generator)
        direct = first_order(cost, theta, starts).mean(0)
        adjoint_cost = lambda thetas, s: diffenvs.rollout(problem, mlp(thetas), s, check=False,  # noqa: E731
                                                          solver=diffenvs.Adjoint("rk4")).costs
        adjoint = first_order(adjoint_cost, theta, starts).mean(0)
        row["adjoint_vs_backprop"] = float((adjoint - direct).norm() / direct.norm().clamp_min(1e-300))
    row["seconds"] = time.perf_counter() - began
    return row


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    import matplotlib.pyplot as plt

    envs = list(dict.fromkeys(r["env_id"] for r in rows))
    fig, axes = plt.subplots(2, len(envs), figsize=(4.6 * len(envs), 6.4), squeeze=False)
    for column, env_id in enumerate(envs):
        mine = [r for r in rows if r["env_id"] == env_id]
        horizons = [r["horizon"] for r in mine]
        top, bottom = axes[0, column], axes[1, column]
        top.loglog(horizons, [r["first_order_variance"] for r in mine], "o-", label="first order (backprop)")
        top.loglog(horizons, [r["zeroth_order_variance"] for r in mine], "s-", label="zeroth order (smoothing)")
        top.set_title(f"{env_id}: variance of an estimate")
        bottom.loglog(horizons, [r["first_order_snr"] for r in mine], "o-", label="first order")
        bottom.loglog(horizons, [r["zeroth_order_snr"] for r in mine], "s-", label="zeroth order")
        bottom.axhline(1.0, color="grey", lw=0.8, ls=":")
        bottom.set_title("signal-to-noise of one estimate")
        bottom.set_xlabel("horizon T (s)")
        for ax in (top, bottom):
            ax.legend(fontsize=8)
            ax.grid(alpha=0.3, which="both")
    return plots.save(fig, path, "Gradient estimates from the same rollouts")


def table(rows: list[dict[str, Any]], lyapunov: dict[str, float]) -> str:
    lines = ["| env | T (s) | median ‖∇c‖ per rollout | max ‖∇c‖ | variance FO | variance ZO | SNR FO | SNR ZO "
             "| FO bias statistic | adjoint vs backprop |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        adjoint = f"{r['adjoint_vs_backprop']:.1e}" if "adjoint_vs_backprop" in r else "–"
        lines.append(f"| {r['env_id']} | {r['horizon']:g} | {r['first_order_norm']:.3g} | {r['first_order_norm_max']:.3g} "
                     f"| {r['first_order_variance']:.3g} | {r['zeroth_order_variance']:.3g} | {r['first_order_snr']:.3g} "
                     f"| {r['zeroth_order_snr']:.3g} | {r['first_order_bias_statistic']:.3g} | {adjoint} |")
    lines.append("")
    lines.append("SNR: the reference's norm over the square root of one estimate's variance (trace). FO bias statistic: "
                 "the squared distance of the first-order mean from the reference over the variance noise alone "
                 "explains (about 1 without bias).")
    lines.append("")
    for env_id, value in lyapunov.items():
        crossing = next((r["horizon"] for r in rows if r["env_id"] == env_id
                         and r["first_order_snr"] < r["zeroth_order_snr"]), None)
        where = f"first order's SNR falls below zeroth order's from T = {crossing:g} s" if crossing is not None else \
            "first order's SNR stays above zeroth order's at every horizon measured"
        lines.append(f"- {env_id}: largest Lyapunov exponent of the closed loop {value:.2f} 1/s; {where}.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config = cli.parse(GradientStudyConfig, argv, description=__doc__)
    if config.quick:  # small batches, and two horizons unless horizons were given
        horizons = (0.5, 2.0) if config.horizons == GradientStudyConfig.horizons else config.horizons
        config = GradientStudyConfig(**{**config.__dict__, "horizons": horizons, "batch": 8, "estimates": 4,
                                        "reference": 256})
    out = cli.check_out_folder(config.out)
    envs = config.env_ids
    torch.set_num_threads(config.threads)
    began = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out):
        generator = torch.Generator().manual_seed(config.seed)
        rows, lyapunov = [], {}
        for env_id, horizon in tqdm([(e, h) for e in envs for h in config.horizons], desc="gradient study"):
            rows.append(study(env_id, horizon, config, generator))
        for env_id in envs:
            problem = problem_at(config, env_id, max(config.horizons))
            mlp = BatchedMlp(problem, (len(problem.observation_names), *config.sizes, problem.control_dim))
            theta = mlp.initial(torch.Generator().manual_seed(config.seed))
            starts = initial_states(problem, 8, generator)
            lyapunov[env_id] = lyapunov_exponent(problem, mlp(theta.expand(16, -1)), starts, problem.max_steps)
        text = table(rows, lyapunov)
        print(text)
        figure = plot(rows, out / "gradients.png")
        wall = time.perf_counter() - began
        results = {"config": config.__dict__, "rows": rows, "lyapunov": lyapunov, "wall_time": wall}
        write_json(out / "results.json", results)
        command = shlex.join(sys.argv[1:] if argv is None else argv)  # quoted: a reader can paste it
        write_text(out / "table.md", text + f"\nWall time {wall:.0f} s: `python scripts/gradients.py {command}`.\n")
    print(f"wrote {out / 'results.json'}, {out / 'table.md'} and {figure} in {wall:.0f} s")
    return results


if __name__ == "__main__":
    main()
