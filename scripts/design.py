r"""Sequential Bayesian design of measurement times on DiffDecayDesign-v0 (report §6.5, figure 17).

1. Checks the model derivatives on a grid of times: the sensitivity through the solver
   against the closed form :math:`g = -t e^{-\theta t}`, and :math:`dg/dt` by autograd
   through the solver and by Schwarz's trick against :math:`(\theta t - 1) e^{-\theta t}`.
2. Runs Algorithm 2 on the Gymnasium face: each design maximises
   :math:`U(t) = \tfrac12\log(1 + g^2 C_n/\sigma^2)` by Adam (lr 0.1) and is compared with the
   analytic optimum :math:`1/\hat\theta_n`; the environment measures and updates the belief.
3. Optionally (``--episodes K``) runs K more episodes as one batch on the vector face and
   reports how far the final means are from :math:`\theta_*` in posterior standard deviations.
4. Plots the posterior mean and variance, the designs against :math:`1/\hat\theta_n`, and
   :math:`|\hat\theta_n - \theta_*|` against the iteration.

    python scripts/design.py                               # about half a minute
    python scripts/design.py --measurements 30 --episodes 20
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from agents import cli
from agents.plots import pyplot, save
from agents.training import write_results
from diffenvs.core.problem import check_integer, check_positive
from diffenvs.envs.decay_design import DecayDesignParams
from studies.design import DesignConfig, DesignRun, model_sensitivity, sequential_design

ENV_ID = "DiffDecayDesign-v0"


@dataclass(frozen=True)
class DesignScriptConfig:
    """The experiment."""

    out: str = "runs/design"
    """Folder for results.json and the figure."""
    seed: int = 0
    """Seed of the plotted episode (the extra episodes use seed + 1, ...)."""
    measurements: int = 20
    """N, measurements per episode."""
    theta_true: float = 1.7
    """θ*, the true rate (1/s)."""
    prior_mean: float = 2.0
    """θ̂₀ (1/s)."""
    prior_variance: float = 1.0
    """C₀ (1/s²)."""
    noise_std: float = 0.05
    """σ, measurement noise."""
    t_max: float = 5.0
    """Largest measurement time (s)."""
    episodes: int = 0
    """Extra episodes, run as one batch on the vector face, for the calibration of the final belief."""
    threads: int = 1
    """torch intra-op threads (tiny tensors: more threads only add contention)."""

    def __post_init__(self) -> None:
        for name in ("noise_std", "prior_variance", "t_max"):
            check_positive(name, getattr(self, name))
        for name, least in (("measurements", 1), ("episodes", 0), ("threads", 1)):
            check_integer(name, getattr(self, name), least)

    def env_kwargs(self) -> dict[str, Any]:
        params = DecayDesignParams(self.theta_true, self.noise_std, self.prior_mean, self.prior_variance)
        return {"params": params, "max_steps": self.measurements, "t_max": self.t_max}


def derivative_checks(config: DesignConfig, thetas: tuple[float, ...], t_max: float) -> dict[str, float]:
    """Largest errors over a grid of times in (0, t_max] of g and dg/dt through the solver (both ways)."""
    t = torch.linspace(0.05, t_max, 100, dtype=torch.float64)
    errors = {"sensitivity": 0.0, "dgdt_autograd": 0.0, "dgdt_schwarz": 0.0, "dgdt_autograd_vs_schwarz": 0.0}
    for theta in thetas:
        exact_g = -t * torch.exp(-theta * t)
        exact_dgdt = (theta * t - 1.0) * torch.exp(-theta * t)
        slopes = {}
        for way in ("autograd", "schwarz"):
            times = t.clone().requires_grad_(True)
            g = model_sensitivity(times, theta, config, way)
            (slopes[way],) = torch.autograd.grad(g.sum(), times)
            if way == "autograd":
                errors["sensitivity"] = max(errors["sensitivity"], (g.detach() - exact_g).abs().max().item())
            errors[f"dgdt_{way}"] = max(errors[f"dgdt_{way}"], (slopes[way] - exact_dgdt).abs().max().item())
        errors["dgdt_autograd_vs_schwarz"] = max(errors["dgdt_autograd_vs_schwarz"],
                                                 (slopes["autograd"] - slopes["schwarz"]).abs().max().item())
    return errors


def design_errors(run: DesignRun) -> np.ndarray:
    """Relative differences of the designs from the analytic optimum 1/θ̂ of the belief they were made at."""
    return np.abs(run.designs * run.means[:-1] - 1.0)


def plot(path: Path, run: DesignRun, theta_true: float) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    plt = pyplot()

    means, variances = run.means[:, 0], run.variances[:, 0]
    n = np.arange(len(means))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    ax.plot(n, means, "o-", ms=3, label=r"posterior mean $\hat\theta_n$")
    ax.fill_between(n, means - np.sqrt(variances), means + np.sqrt(variances), alpha=0.2, label=r"$\pm\sqrt{C_n}$")
    ax.axhline(theta_true, color="k", ls="--", lw=1, label=r"$\theta_*$")
    right = ax.twinx()
    right.semilogy(n, variances, "s-", color="tab:red", ms=3, lw=1, label=r"variance $C_n$")
    right.set_ylabel(r"$C_n$ (1/s$^2$)", color="tab:red")
    ax.set_ylabel(r"$\hat\theta_n$ (1/s)")
    lines, labels = ax.get_legend_handles_labels()
    more, more_labels = right.get_legend_handles_labels()
    ax.legend(lines + more, labels + more_labels, fontsize=7, loc="upper center")
    ax.set_title("posterior", fontsize=9)
    ax = axes[1]
    k = np.arange(len(run.designs))
    ax.plot(k, run.designs[:, 0], "o", ms=5, label="design by gradient ascent")
    ax.plot(k, 1.0 / means[:-1], "x-", ms=6, lw=1, label=r"analytic $1/\hat\theta_n$")
    ax.axhline(1.0 / theta_true, color="k", ls="--", lw=1, label=r"$1/\theta_*$")
    ax.set_ylabel("measurement time t (s)")
    ax.legend(fontsize=8)
    ax.set_title("designs", fontsize=9)
    ax = axes[2]
    ax.semilogy(n, np.abs(means - theta_true), "o-", ms=3, label=r"$|\hat\theta_n - \theta_*|$")
    ax.semilogy(n, np.sqrt(variances), "--", lw=1, label=r"$\sqrt{C_n}$")
    ax.legend(fontsize=8)
    ax.set_title("error", fontsize=9)
    for ax in axes:
        ax.set_xlabel("iteration n")
        ax.grid(alpha=0.3)
    return save(fig, path)


def print_checks(checks: dict[str, float], script: DesignScriptConfig, agent: DesignConfig) -> None:
    print(f"derivatives through the {agent.solver} solver on 100 times in [0.05, {script.t_max}] s, "
          f"θ in {{{script.prior_mean}, {script.theta_true}}} (largest absolute errors):")
    print(f"  g vs -t exp(-θt)                         {checks['sensitivity']:.2e}")
    print(f"  dg/dt autograd vs (θt - 1) exp(-θt)      {checks['dgdt_autograd']:.2e}")
    print(f"  dg/dt Schwarz  vs (θt - 1) exp(-θt)      {checks['dgdt_schwarz']:.2e}")
    print(f"  dg/dt autograd vs Schwarz                {checks['dgdt_autograd_vs_schwarz']:.2e}")


def one_episode(script: DesignScriptConfig, agent: DesignConfig) -> DesignRun:
    """Algorithm 2 on the Gymnasium face, seed ``script.seed``, with a progress bar."""
    env = gym.make(ENV_ID, **script.env_kwargs())
    bar = tqdm(total=script.measurements, desc=f"Algorithm 2 ({agent.derivative})", leave=False)

    def progress(n: int, metrics: dict[str, Any]) -> bool:
        bar.update(1)
        bar.set_postfix(mean=f"{float(metrics['mean'][0]):.4f}", t=f"{float(metrics['design'][0]):.4f}")
        return False

    run = sequential_design(env, agent, seed=script.seed, callback=progress)
    bar.close()
    return run


def report_episode(run: DesignRun, script: DesignScriptConfig) -> dict[str, Any]:
    """The episode's table and final belief, printed; returns its results."""
    errors = design_errors(run)
    print(f"\nAlgorithm 2 on the Gymnasium face, seed {script.seed} ({run.seconds:.1f} s):")
    print("   n   mean θ̂_n   variance C_n   design t_n   1/θ̂_n     rel. diff   Adam its   |θ̂_n+1 - θ*|")
    for k in range(len(run.designs)):
        print(f"  {k:2d}  {run.means[k, 0]:9.5f}  {run.variances[k, 0]:12.4e}  {run.designs[k, 0]:10.6f}  "
              f"{1 / run.means[k, 0]:9.6f}  {errors[k, 0]:10.2e}  {run.iterations[k, 0]:8d}  "
              f"{abs(run.means[k + 1, 0] - script.theta_true):12.4e}")
    final_error = abs(run.means[-1, 0] - script.theta_true)
    final_std = math.sqrt(run.variances[-1, 0])
    print(f"final belief: θ̂ = {run.means[-1, 0]:.5f}, C = {run.variances[-1, 0]:.3e} (std {final_std:.4f}); "
          f"|θ̂ - θ*| = {final_error:.4f} (prior: {abs(script.prior_mean - script.theta_true):.4f}) = "
          f"{final_error / final_std:.2f} posterior std")
    print(f"designs vs 1/θ̂: largest relative difference {errors.max():.2e} "
          f"({'within' if errors.max() < 0.01 else 'NOT within'} 1%)")
    return {
        "episode": {"means": run.means[:, 0], "variances": run.variances[:, 0], "designs": run.designs[:, 0],
                    "analytic_designs": 1.0 / run.means[:-1, 0], "relative_design_errors": errors[:, 0],
                    "rewards": run.rewards[:, 0], "adam_iterations": run.iterations[:, 0], "seconds": run.seconds},
        "final_abs_error": final_error, "final_std": final_std, "max_relative_design_error": float(errors.max()),
    }


def calibration(script: DesignScriptConfig, agent: DesignConfig) -> dict[str, Any]:
    """``script.episodes`` more episodes as one batch on the vector face: how far the final means are from θ* in
    posterior standard deviations; printed and returned."""
    vector = gym.make_vec(ENV_ID, num_envs=script.episodes, vectorization_mode="vector_entry_point",
                          **script.env_kwargs())
    batch = sequential_design(vector, agent, seed=script.seed + 1)
    z = (batch.means[-1] - script.theta_true) / np.sqrt(batch.variances[-1])
    batch_errors = design_errors(batch)
    result = {"episodes": script.episodes, "mean_abs_error": float(np.abs(batch.means[-1] - script.theta_true).mean()),
              "mean_posterior_std": float(np.sqrt(batch.variances[-1]).mean()), "z_mean": float(z.mean()),
              "z_rms": float(np.sqrt((z**2).mean())), "within_2_std": float((np.abs(z) < 2).mean()),
              "max_relative_design_error": float(batch_errors.max()), "seconds": batch.seconds}
    print(f"\n{script.episodes} more episodes on the vector face ({batch.seconds:.1f} s): mean |θ̂_N - θ*| "
          f"{result['mean_abs_error']:.4f}, mean posterior std {result['mean_posterior_std']:.4f}; "
          f"z = (θ̂_N - θ*)/std: mean {result['z_mean']:.2f}, RMS {result['z_rms']:.2f}, "
          f"{100 * result['within_2_std']:.0f}% within 2 std; designs vs 1/θ̂ within "
          f"{result['max_relative_design_error']:.2e}")
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    script, agent = cli.parse_pair(DesignScriptConfig, DesignConfig, argv, titles=("experiment", "agent"),
                                   description=__doc__)
    if agent.initial_time > script.t_max:  # before any work: the first design's ascent starts there
        raise ValueError(f"--initial-time must be at most --t-max = {script.t_max:g} s (a design is a measurement "
                         f"time in (0, t_max]), got {agent.initial_time!r}")
    cli.check_out_folder(script.out)
    torch.set_num_threads(script.threads)
    began = time.perf_counter()
    out = Path(script.out)
    out.mkdir(parents=True, exist_ok=True)

    checks = derivative_checks(agent, (script.prior_mean, script.theta_true), script.t_max)
    print_checks(checks, script, agent)
    run = one_episode(script, agent)
    results: dict[str, Any] = {"script": script, "agent": agent, "derivative_checks": checks,
                               **report_episode(run, script)}
    if script.episodes:
        results["calibration"] = calibration(script, agent)
    figure = plot(out / "design.png", run, script.theta_true)
    results.update(wall_time=time.perf_counter() - began, plots=[figure.name])
    path = write_results(out, results)
    print(f"wrote {path} and {figure} in {results['wall_time']:.1f} s")
    return results


if __name__ == "__main__":
    main()
