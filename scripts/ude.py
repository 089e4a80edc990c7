r"""A universal differential equation for the forum post's Lotka--Volterra problem (:mod:`studies.ude`).

The model :math:`\dot u_1 = \alpha u_1 + \hat U_1(u)`, :math:`\dot u_2 = -\delta u_2 + \hat U_2(u)` with a
2-5-5-5-2 network :math:`\hat U` learns the missing terms :math:`(-\beta u_1 u_2, \gamma u_1 u_2)` from noisy data
on :math:`t \in [0, 5]`; the loss adds :math:`\lambda \sum_i \|\partial\hat U/\partial u\,(x_i, 1)\|_F^2` over the
post's grid. The script

1. checks the regulariser's gradient in the weights three ways (forward-over-reverse, reverse-over-reverse, central
   differences over every weight) and times one loss+gradient evaluation per way (``--no-checks`` skips this);
2. sweeps :math:`\lambda` (0 and several decades): one model per value, all from the same initial weights, trained
   (Adam, then L-BFGS, on multiple shooting) without every fifth data point, and scores each on those
   held-out points (validation), on the learned terms against the true ones, and on the extrapolation to
   :math:`t \in [5, 10]`;
3. refits the model on all the data with the :math:`\lambda` of least validation error (never the true terms);
4. recovers equations from the trained :math:`\hat U` over the polynomials of degree 2: candidate supports from the
   network along its trajectory, each fitted to the data, the one of least extended BIC kept
   (:func:`studies.ude.select_equations`; STLSQ, the earlier recipe, is recorded beside it), and solves them to
   :math:`t = 10`;
5. writes ``table.md``, ``results.json``, ``ude.png`` (fit, terms, training) and ``ude_sweep.png`` (the sweep).

With ``--seeds`` it runs steps 2-4 once per seed and writes one table row each to ``seeds.md``, with the fraction of
seeds that keep u1u2 alone in both components and the median and worst errors.

    python scripts/ude.py                                    # a few minutes on one core
    python scripts/ude.py --lambdas 0 1e-6 --adam-iterations 200 --lbfgs-iterations 20 --no-checks
    python scripts/ude.py --seeds 0 1 2 3 4 5 6 7 8 9 --out runs/ude-seeds
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from agents import cli
from agents.files import write_text
from agents.plots import pyplot, save
from agents.training import write_results
from diffenvs.core.problem import check_integer, check_positive
from diffenvs.core.rollout import RK4
from diffenvs.derivatives import solve
from studies.ude import (
    DATA_POINTS,
    SAVE_EVERY,
    TRUE_PARAMETERS,
    Ensemble,
    HistoryRecord,
    RecipeConfig,
    choose,
    evaluate,
    fit,
    holdout_mask,
    make_data,
    make_network,
    missing_terms,
    regulariser,
    regulariser_points,
    relative_rms,
    select_equations,
    simulate_sparse,
    sparse_regression,
    sweep,
    true_regulariser,
    true_trajectory,
)

DEFAULT_LAMBDAS = (0.0, 1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-2, 1.0)


@dataclass(frozen=True)
class UdeConfig:
    """The experiment."""

    out: str = "runs/ude"
    """Folder for results.json, table.md and the plots."""
    seed: int = 0
    """Seed of the start state, the noise and the network's initial weights."""
    seeds: tuple[int, ...] = ()
    """Run the sweep, the refit and the recovery once per seed and print one table row each (no checks, no plots;
    writes seeds.md and results.json); empty: the one seed of --seed, with checks and plots."""
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS
    """λ values of the sweep, the weight of the derivative regulariser (the post uses 1)."""
    holdout_every: int = 5
    """Every this-th data point is held out of the sweep's training, for validation."""
    extrapolate_to: float = 10.0
    """End of the extrapolation (data end at 5)."""
    degree: int = 2
    """Degree of the polynomial library of the recovery."""
    max_terms: int | None = None
    """Most terms per component among the recovery's candidates (default: the library's size)."""
    threshold: float = 0.1
    """Threshold of the earlier recipe's STLSQ, recorded beside the recovery for comparison: coefficients smaller in
    magnitude are cut."""
    checks: bool = True
    """Check the regulariser's gradient and time the ways of computing it before training."""
    input_step: float = 1e-4
    """Step of the central differences in the inputs (the "differences" regulariser of the timing)."""
    weight_step: float = 1e-6
    """Step of the central differences over the weights (the gradient check)."""
    repeats: int = 5
    """Timing repeats per way (the fastest counts: the least disturbed by other load)."""
    threads: int = 1
    """torch intra-op threads (tiny tensors: more threads only add contention on a busy machine)."""

    def __post_init__(self) -> None:
        for name in ("input_step", "weight_step", "threshold"):
            check_positive(name, getattr(self, name))
        if not self.lambdas or any(not (math.isfinite(v) and v >= 0) for v in self.lambdas):
            raise ValueError(f"lambdas must be finite non-negative numbers, at least one, got {self.lambdas!r}")
        if not (math.isfinite(self.extrapolate_to) and self.extrapolate_to > 5):
            raise ValueError(f"extrapolate_to must be a finite time after 5, got {self.extrapolate_to!r}")
        for name in ("repeats", "threads", "degree"):
            check_integer(name, getattr(self, name))
        if self.max_terms is not None:
            check_integer("max_terms", self.max_terms)
        check_integer("holdout_every", self.holdout_every, least=2)
        if self.holdout_every > DATA_POINTS:
            raise ValueError(f"holdout_every must be at most {DATA_POINTS}, the number of data points (else no point is "
                             f"held out and the sweep has nothing to validate on), got {self.holdout_every}")
        for seed in self.seeds:
            if not (isinstance(seed, int) and 0 <= seed <= cli.MAX_SEED):
                raise ValueError(f"seeds must be integers from 0 to {cli.MAX_SEED}, got {self.seeds!r}")


class Ude:
    """One hybrid model and its loss as functions of a dict of weights, for the gradient check and the timings."""

    def __init__(self, network: torch.nn.Module, times: torch.Tensor, data: torch.Tensor, steps: int = 2,
                 reg_weight: float = 1.0, input_step: float = 1e-4, weight_step: float = 1e-6):
        self.network, self.times, self.data, self.steps = network, times, data, steps
        self.reg_weight, self.input_step, self.weight_step = reg_weight, input_step, weight_step
        self.points = regulariser_points()

    def vector_field(self, t: torch.Tensor, x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        alpha, _, _, delta = TRUE_PARAMETERS
        learned = torch.func.functional_call(self.network, weights, (x,))
        return torch.stack([alpha * x[..., 0], -delta * x[..., 1]], -1) + learned

    def predict(self, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        return solve(self.vector_field, self.data[:1], self.times, weights, solver=RK4(), steps=self.steps)[:, 0]

    def loss(self, weights: dict[str, torch.Tensor], mode: str = "forward") -> torch.Tensor:
        misfit = (self.predict(weights) - self.data).square().mean()
        return misfit + self.reg_weight * regulariser(self.network, weights, self.points, mode, self.input_step)


# ---- checks and timings --------------------------------------------------------------------
def flat(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def gradient(value: torch.Tensor, leaves: list[torch.Tensor]) -> torch.Tensor:
    """The flat gradient; a weight the value does not depend on (the last bias, for R) gets 0."""
    return flat(torch.autograd.grad(value, leaves, allow_unused=True, materialize_grads=True))


def gradient_check(model: Ude, weights: dict[str, torch.Tensor]) -> dict[str, float]:
    """The regulariser's gradient in the weights by forward-over-reverse, reverse-over-reverse and central differences."""
    names = list(weights)
    leaves = [weights[n] for n in names]
    reg = lambda w, mode: regulariser(model.network, w, model.points, mode, model.input_step)
    forward = gradient(reg(weights, "forward"), leaves)
    reverse = gradient(reg(weights, "reverse"), leaves)
    loop = gradient(reg(weights, "loop"), leaves)
    differences_in_inputs = gradient(reg(weights, "differences"), leaves)
    h = model.weight_step
    with torch.no_grad():
        base = {n: w.detach().clone() for n, w in weights.items()}
        columns = []
        for name in tqdm(names, desc="finite differences over the weights", leave=False):
            for index in range(base[name].numel()):
                shifted = []
                for sign in (1.0, -1.0):
                    w = dict(base)
                    w[name] = base[name].clone()
                    w[name].view(-1)[index] += sign * h
                    shifted.append(reg(w, "forward"))
                columns.append((shifted[0] - shifted[1]) / (2 * h))
        by_weights = torch.stack(columns)
    scale = forward.abs().max().item()
    return {
        "weights": forward.numel(),
        "gradient_max_abs": scale,
        "forward_vs_reverse": (forward - reverse).abs().max().item(),
        "forward_vs_loop": (forward - loop).abs().max().item(),
        "forward_vs_weight_differences": (forward - by_weights).abs().max().item(),
        "forward_vs_input_differences": (forward - differences_in_inputs).abs().max().item(),
        "regulariser_forward": reg(weights, "forward").item(),
        "regulariser_reverse": reg(weights, "reverse").item(),
    }


def time_ways(model: Ude, weights: dict[str, torch.Tensor], repeats: int) -> dict[str, dict[str, float]]:
    """Seconds per loss+gradient evaluation for each way, the fastest of ``repeats``, ways interleaved."""
    names = list(weights)
    leaves = [weights[n] for n in names]

    def exact(mode: str, full: bool) -> Callable[[], None]:
        def run() -> None:
            value = model.loss(weights, mode) if full else regulariser(model.network, weights, model.points, mode)
            gradient(value, leaves)
        return run

    def weight_differences() -> None:
        h = model.weight_step
        with torch.no_grad():
            for name in names:
                for index in range(weights[name].numel()):
                    for sign in (1.0, -1.0):
                        w = dict(weights)
                        w[name] = weights[name].detach().clone()
                        w[name].view(-1)[index] += sign * h
                        regulariser(model.network, w, model.points, "forward")

    ways = {
        "forward-over-reverse (vmap jacfwd)": "forward",
        "reverse-over-reverse (vmap jacrev)": "reverse",
        "reverse-over-reverse, Python loop over points": "loop",
        "central differences in the inputs, then reverse": "differences",
    }
    results: dict[str, dict[str, float]] = {}
    for full in (False, True):
        part = "loss" if full else "regulariser"
        runs = {label: exact(mode, full) for label, mode in ways.items()}
        if not full:  # over the whole loss this is 2 x 87 ODE solves per gradient: left out of the timing
            runs[f"central differences over the {sum(w.numel() for w in leaves)} weights (no backward)"] = weight_differences
        for run in runs.values():  # warm-up: first calls build caches
            run()
        best = {label: math.inf for label in runs}
        for _ in tqdm(range(repeats), desc=f"timing the {part}", leave=False):
            for label, run in runs.items():
                start = time.perf_counter()
                run()
                best[label] = min(best[label], time.perf_counter() - start)
        results[part] = best
    return results


# ---- plots, table, main ----------------------------------------------------------------------
def plot_fit(path: Path, times: torch.Tensor, clean: torch.Tensor, data: torch.Tensor, fit: torch.Tensor,
             recovered: torch.Tensor, learned: torch.Tensor, states: torch.Tensor, history: list[HistoryRecord]) -> Path:
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    data_times = times[: len(data)]
    for i, colour in enumerate(("tab:blue", "tab:orange")):
        axes[0].plot(times, clean[:, i], color=colour, lw=1, alpha=0.5, label=f"u{i + 1} true")
        axes[0].plot(data_times, data[:, i], "o", color=colour, ms=3, label=f"u{i + 1} data")
        axes[0].plot(times, fit[:, i], "--", color=colour, lw=1.5, label=f"u{i + 1} UDE")
        axes[0].plot(times, recovered[:, i], ":", color="k", lw=1, label="recovered equations" if i == 0 else None)
    axes[0].axvline(float(data_times[-1]), color="grey", lw=0.8)
    axes[0].set_xlabel("t")
    axes[0].legend(fontsize=7, ncol=2)
    axes[0].set_title("data, the UDE and the recovered equations (extrapolation right of the line)", fontsize=9)
    true_terms = missing_terms(states)
    dense_times = torch.linspace(0, float(data_times[-1]), len(states))
    for i, colour in enumerate(("tab:blue", "tab:orange")):
        axes[1].plot(dense_times, true_terms[:, i], color=colour, lw=1, label=f"true term {i + 1}")
        axes[1].plot(dense_times, learned[:, i], "--", color=colour, lw=1.5, label=f"network {i + 1}")
    axes[1].set_xlabel("t")
    axes[1].legend(fontsize=7)
    axes[1].set_title("missing terms along the true trajectory", fontsize=9)
    adam = [h for h in history if h["phase"] == "adam"]
    lbfgs = [h for h in history if h["phase"] == "lbfgs"]
    axes[2].semilogy([h["misfit"][0] for h in adam] + [h["misfit"] for h in lbfgs], lw=1)
    axes[2].axvline(len(adam), color="grey", lw=0.8)
    axes[2].set_xlabel("Adam iteration, then L-BFGS evaluation")
    axes[2].set_title("misfit of the refit", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
    return save(fig, path)


def plot_sweep(path: Path, rows: list[dict[str, float]], chosen: float) -> Path:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    positive = [r["lambda"] for r in rows if r["lambda"] > 0]
    zero_at = min(positive) / 10 if positive else 1e-9  # λ = 0 drawn a decade left of the smallest λ
    x = [r["lambda"] if r["lambda"] > 0 else zero_at for r in rows]
    for key, label in (("validation_rms", "validation RMS (held-out points)"),
                       ("terms_relative_rms", "learned terms, relative RMS error"),
                       ("extrapolation_relative_rms", "extrapolation to t = 10, relative RMS error")):
        ax.loglog(x, [max(r[key], 1e-6) for r in rows], "o-", label=label)
    ax.axvline(chosen if chosen > 0 else zero_at, color="grey", lw=0.8, ls="--", label="chosen by validation")
    ax.set_xticks(x, ["0" if r["lambda"] == 0 else f"{r['lambda']:.0e}" for r in rows], fontsize=7, rotation=45)
    ax.set_xlabel("λ")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    ax.set_title("the derivative regulariser's weight", fontsize=9)
    return save(fig, path)


def table(rows: list[dict[str, float]], chosen: float) -> str:
    lines = ["| λ | train RMS | validation RMS | terms rel. RMS error (u1, u2) | extrapolation rel. RMS error, t ∈ (5, 10] |",
             "|---|---|---|---|---|"]
    for r in rows:
        mark = " (chosen)" if r["lambda"] == chosen else ""
        lines.append(f"| {r['lambda']:g}{mark} | {r['train_rms']:.4f} | {r['validation_rms']:.4f} | "
                     f"{r['terms_relative_rms']:.3f} ({r['terms_relative_rms_u1']:.3f}, {r['terms_relative_rms_u2']:.3f}) | "
                     f"{r['extrapolation_relative_rms']:.3f} |")
    return "\n".join(lines) + "\n"


def checks_and_timings(config: UdeConfig, recipe: RecipeConfig, times: torch.Tensor, data: torch.Tensor) -> dict[str, Any]:
    """1. The regulariser's gradient three ways, and the time per evaluation of each way; printed and returned."""
    network = make_network(config.seed)
    model = Ude(network, times, data, recipe.steps, 1.0, config.input_step, config.weight_step)
    weights: dict[str, torch.Tensor] = dict(network.named_parameters())
    check = gradient_check(model, weights)
    print(f"\nregulariser R = {check['regulariser_forward']:.10g} (forward), {check['regulariser_reverse']:.10g} (reverse); "
          f"R of the true missing terms = {true_regulariser(model.points):.6g}")
    print(f"gradient dR/dw over {check['weights']} weights, max |dR/dw| = {check['gradient_max_abs']:.4g}; max differences:")
    print(f"  forward-over-reverse vs reverse-over-reverse       {check['forward_vs_reverse']:.2e}")
    print(f"  forward-over-reverse vs loop over points            {check['forward_vs_loop']:.2e}")
    print(f"  forward-over-reverse vs central differences (w)     {check['forward_vs_weight_differences']:.2e}"
          f"  (step {config.weight_step:g})")
    print(f"  forward-over-reverse vs differences in the inputs   {check['forward_vs_input_differences']:.2e}"
          f"  (step {config.input_step:g}: an approximate regulariser)")
    timings = time_ways(model, weights, config.repeats)
    for part, best in timings.items():
        reference = next(iter(best.values()))
        print(f"\ntime per {part} + gradient evaluation (fastest of {config.repeats}, interleaved):")
        for label, seconds in best.items():
            print(f"  {label:<60s} {1e3 * seconds:9.2f} ms   x{seconds / reference:7.2f}")
    return {"gradient_check": check, "true_terms_regulariser": true_regulariser(model.points),
            "seconds_per_evaluation": timings}


def recover(config: UdeConfig, final: Ensemble, data: torch.Tensor, all_clean: torch.Tensor,
            all_times: torch.Tensor, quiet: bool = False) -> tuple[dict[str, Any], torch.Tensor]:
    """4. Equations from the trained network along the model's own trajectory on the data's range: candidates from the
    network, the choice and the coefficients from the data (:func:`studies.ude.select_equations`); their solve from
    the fitted start state. The earlier recipe (STLSQ on the same states) is recorded beside it. Printed unless
    ``quiet``, and returned with the solve."""
    with torch.no_grad():
        states = final.solve(data[0], 101, dt=SAVE_EVERY * (len(data) - 1) / 100, steps=1)[:, 0, 0]
        targets, _ = final.network(states[None])
    chosen, candidates = select_equations(states, targets[0], data, config.degree, config.max_terms)
    terms = chosen.model.terms()
    beta, gamma = -terms[0].get("u1 u2", 0.0), terms[1].get("u1 u2", 0.0)
    beta_error, gamma_error = abs(beta / 0.9 - 1), abs(gamma / 0.8 - 1)
    recovered = simulate_sparse(chosen.model, torch.tensor(chosen.start, dtype=torch.float64), all_times)
    n = len(data)
    fit_error = relative_rms(recovered[:n], all_clean[:n], (0, 1)).item()
    extrapolation_error = relative_rms(recovered[n:], all_clean[n:], (0, 1)).item()
    stlsq = sparse_regression(states, targets[0], config.degree, config.threshold).terms()
    symbolic = {"terms": terms, "beta": beta, "gamma": gamma, "beta_relative_error": beta_error,
                "gamma_relative_error": gamma_error, "structure_recovered": structure_recovered(terms),
                "start": list(chosen.start), "rss": chosen.rss, "bic": chosen.bic,
                "fit_relative_rms": fit_error, "extrapolation_relative_rms": extrapolation_error,
                "candidates": [{"terms": list(c.terms), "kept": [list(t) for t in c.model.terms()], "rss": c.rss,
                                "bic": c.bic} for c in candidates],
                "stlsq_terms": stlsq, "stlsq_structure_recovered": structure_recovered(stlsq)}
    if not quiet:
        print(f"equations (candidates from the network, degree {config.degree}; chosen by extended BIC of their solve, "
              f"fitted to the data, among {len(candidates)}): dU1 = {terms[0]}, dU2 = {terms[1]}; beta = {beta:.4f} "
              f"({100 * beta_error:.2f}% off 0.9), gamma = {gamma:.4f} ({100 * gamma_error:.2f}% off 0.8); its solve: "
              f"relative RMS error {fit_error:.4f} on [0, 5], {extrapolation_error:.4f} on (5, {all_times[-1].item():g}]"
              f"\nthe earlier recipe (STLSQ, threshold {config.threshold:g}) keeps dU1: {', '.join(stlsq[0]) or 'nothing'}; "
              f"dU2: {', '.join(stlsq[1]) or 'nothing'}")
    return symbolic, recovered


def structure_recovered(terms: list[dict[str, float]]) -> bool:
    """Whether each component keeps u1 u2 and nothing else."""
    return all(list(t) == ["u1 u2"] for t in terms)


def train_and_recover(config: UdeConfig, recipe: RecipeConfig, seed: int, data: torch.Tensor, all_clean: torch.Tensor,
                      all_times: torch.Tensor, quiet: bool = False) -> dict[str, Any]:
    """2. The sweep, 3. the refit with the λ of least validation error, 4. the recovery, for one seed's data."""
    rows, _, _ = sweep(data, all_clean, config.lambdas, seed, recipe, config.holdout_every)
    chosen = choose(rows)["lambda"]
    text = table(rows, chosen)
    if not quiet:
        print(f"\nλ sweep (trained without every {config.holdout_every}th point, validated on those):\n{text}")
    final, history = fit(data, [chosen], seed, recipe, desc=f"refit on all data, λ = {chosen:g}")
    scores = {k: v[0] for k, v in evaluate(final, data, all_clean, holdout_mask(len(data), len(data) + 1),
                                            recipe.steps).items() if k != "validation_rms"}
    if not quiet:
        print(f"refit on all {len(data)} points with λ = {chosen:g}: train RMS {scores['train_rms']:.4f}; learned terms "
              f"relative RMS error {scores['terms_relative_rms']:.4f} (u1 {scores['terms_relative_rms_u1']:.4f}, "
              f"u2 {scores['terms_relative_rms_u2']:.4f}); extrapolation to t = {all_times[-1].item():g}, relative RMS "
              f"error {scores['extrapolation_relative_rms']:.4f}")
    symbolic, recovered = recover(config, final, data, all_clean, all_times, quiet)
    return {"rows": rows, "text": text, "chosen": chosen, "final": final, "history": history, "scores": scores,
            "symbolic": symbolic, "recovered": recovered}


def _names(terms: dict[str, float]) -> str:
    return ", ".join(name.replace("u1^2", "u1²").replace("u2^2", "u2²").replace(" ", "") for name in terms) or "none"


def seeds_table(rows: list[dict[str, Any]]) -> str:
    """The per-seed table and its summary, markdown."""
    lines = ["| seed | u(0) | λ | network's terms, rel. RMS error | terms kept in dU1 | terms kept in dU2 | β error | "
             "γ error | recovered solve, rel. RMS on [0, 5] / (5, 10] | STLSQ (earlier recipe) keeps u1u2 alone |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['seed']} | ({r['u0'][0]:.2f}, {r['u0'][1]:.2f}) | {r['lambda']:g} | "
                     f"{r['network_terms_relative_rms']:.3f} | {_names(r['terms'][0])} | {_names(r['terms'][1])} | "
                     f"{100 * r['beta_relative_error']:.2f}% | {100 * r['gamma_relative_error']:.2f}% | "
                     f"{100 * r['fit_relative_rms']:.2f}% / {100 * r['extrapolation_relative_rms']:.2f}% | "
                     f"{'yes' if r['stlsq_structure_recovered'] else 'no'} |")
    summary = seeds_summary(rows)
    good = [r for r in rows if r["structure_recovered"]]
    lines.append("")
    lines.append(f"u1u2 alone in both components on {summary['structure_recovered']} of {len(rows)} seeds "
                 f"(STLSQ, the earlier recipe, on the same networks: {summary['stlsq_structure_recovered']}); "
                 f"β and γ within 5% on {summary['within_5_percent']} of those {len(good)}.")
    for key, label in (("beta_relative_error", "β error"), ("gamma_relative_error", "γ error"),
                       ("fit_relative_rms", "recovered solve's rel. RMS error on [0, 5]"),
                       ("extrapolation_relative_rms", "recovered solve's rel. RMS error on (5, 10]")):
        lines.append(f"{label}: median {100 * summary[key]['median']:.2f}%, worst {100 * summary[key]['worst']:.2f}% "
                     f"(seed {summary[key]['worst_seed']}).")
    return "\n".join(lines) + "\n"


def seeds_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts over the seeds, and the median and worst of each error."""
    summary: dict[str, Any] = {
        "seeds": len(rows), "structure_recovered": sum(r["structure_recovered"] for r in rows),
        "stlsq_structure_recovered": sum(r["stlsq_structure_recovered"] for r in rows),
        "within_5_percent": sum(r["structure_recovered"] and r["beta_relative_error"] < 0.05
                                and r["gamma_relative_error"] < 0.05 for r in rows)}
    for key in ("beta_relative_error", "gamma_relative_error", "fit_relative_rms", "extrapolation_relative_rms"):
        values = [r[key] for r in rows]
        worst = max(range(len(values)), key=values.__getitem__)
        summary[key] = {"median": statistics.median(values), "worst": values[worst], "worst_seed": rows[worst]["seed"]}
    return summary


def run_seeds(config: UdeConfig, recipe: RecipeConfig, all_times: torch.Tensor) -> dict[str, Any]:
    """Steps 2-4 on each of ``config.seeds`` (data, noise and initial weights all from the seed): one table row each."""
    rows = []
    for seed in tqdm(config.seeds, desc="seeds"):
        _, clean, data = make_data(seed)
        all_clean = true_trajectory(clean[0], all_times)
        run = train_and_recover(config, recipe, seed, data, all_clean, all_times, quiet=True)
        symbolic, scores = run["symbolic"], run["scores"]
        row = {"seed": seed, "u0": clean[0].tolist(), "lambda": run["chosen"],
               "network_terms_relative_rms": scores["terms_relative_rms"],
               "network_extrapolation_relative_rms": scores["extrapolation_relative_rms"],
               **{k: symbolic[k] for k in ("terms", "beta_relative_error", "gamma_relative_error", "structure_recovered",
                                           "fit_relative_rms", "extrapolation_relative_rms", "stlsq_terms",
                                           "stlsq_structure_recovered")}}
        rows.append(row)
        tqdm.write(f"seed {seed}: dU1 = {_names(row['terms'][0])}; dU2 = {_names(row['terms'][1])}; β "
                   f"{100 * row['beta_relative_error']:.2f}% off, γ {100 * row['gamma_relative_error']:.2f}% off")
    return {"seeds": rows, "summary": seeds_summary(rows), "text": seeds_table(rows)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config, recipe = cli.parse_pair(UdeConfig, RecipeConfig, argv, titles=("experiment", "training"), description=__doc__)
    cli.check_out_folder(config.out)
    torch.set_num_threads(config.threads)
    began = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    times, clean, data = make_data(config.seed)
    count = int(round(config.extrapolate_to / SAVE_EVERY)) + 1
    all_times = torch.arange(count, dtype=torch.float64) * SAVE_EVERY
    all_clean = true_trajectory(clean[0], all_times)
    print(f"data: u0 = {clean[0].tolist()}, {len(times)} times on [0, 5], noise 5e-3 x mean; "
          f"network 87 weights; extrapolation to t = {all_times[-1].item():g}")
    results: dict[str, Any] = {"config": config, "recipe": recipe}
    if config.seeds:
        report = run_seeds(config, recipe, all_times)
        wall = time.perf_counter() - began
        print(f"\n{report['text']}")
        table_path = write_text(out / "seeds.md", report["text"])
        results.update(seeds=report["seeds"], summary=report["summary"], wall_time=wall)
        path = write_results(out, results)
        print(f"wrote {path} and {table_path} in {wall:.1f} s")
        return results
    if config.checks:
        results.update(checks_and_timings(config, recipe, times, data))

    run = train_and_recover(config, recipe, config.seed, data, all_clean, all_times)
    rows, text, chosen, final, history = run["rows"], run["text"], run["chosen"], run["final"], run["history"]
    scores, symbolic, recovered = run["scores"], run["symbolic"], run["recovered"]

    with torch.no_grad():
        fitted = final.solve(data[0], count, steps=recipe.steps)[:, 0, 0]
        dense = true_trajectory(clean[0], torch.linspace(0, SAVE_EVERY * (len(data) - 1), 201, dtype=torch.float64))
        learned, _ = final.network(dense[None])
    figures = [plot_fit(out / "ude.png", all_times, all_clean, data, fitted, recovered, learned[0], dense, history),
               plot_sweep(out / "ude_sweep.png", rows, chosen)]
    wall = time.perf_counter() - began
    terms = symbolic["terms"]
    summary = (f"{text}\nChosen λ = {chosen:g}; refit on all data: terms relative RMS error "
               f"{scores['terms_relative_rms']:.4f}, extrapolation relative RMS error {scores['extrapolation_relative_rms']:.4f}."
               f"\nRecovered: dU1 = {terms[0]}, dU2 = {terms[1]}; extrapolation relative RMS error "
               f"{symbolic['extrapolation_relative_rms']:.4f}.\nWall time {wall:.0f} s.\n")
    table_path = write_text(out / "table.md", summary)
    results.update(sweep=rows, chosen_lambda=chosen, refit=scores, refit_history=history, symbolic=symbolic,
                   wall_time=wall, plots=[f.name for f in figures])
    path = write_results(out, results)
    print(f"wrote {path}, {table_path} and {', '.join(str(f) for f in figures)} in {wall:.1f} s")
    return results


if __name__ == "__main__":
    main()
