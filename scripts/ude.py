r"""A universal differential equation trained with a regulariser on the network's input derivative.

The Lotka--Volterra problem of the forum post: data from

.. math:: \dot u_1 = \alpha u_1 - \beta u_1 u_2, \qquad \dot u_2 = \gamma u_1 u_2 - \delta u_2,
          \qquad (\alpha, \beta, \gamma, \delta) = (1.3, 0.9, 0.8, 1.8),

on :math:`t \in [0, 5]` saved every 0.25 with noise of 0.5% of each component's mean, and
the model :math:`\dot u_1 = \alpha u_1 + \hat U_1(u)`, :math:`\dot u_2 = -\delta u_2 + \hat U_2(u)`
with a 2-5-5-5-2 network :math:`\hat U` (activations :math:`e^{-x^2}`). The loss is

.. math:: L(w) = \operatorname{mean}\,(X_n - \hat X(w))^2
          + \lambda \sum_{x \in \{0, 0.1, \dots, 10\}} \big\|\partial \hat U/\partial u\,(x, 1)\big\|_F^2 ,

a derivative inside the loss: its gradient in the weights :math:`w` is a second derivative.
The script

1. generates the data (reference solve by dopri5 at rtol 1e-10, seeded noise; no downloads);
2. checks the regulariser's gradient in :math:`w` three ways and prints the differences:
   forward-over-reverse (``vmap(jacfwd)``, then backward), reverse-over-reverse
   (``vmap(jacrev)``), and central finite differences over every weight;
3. times one loss+gradient evaluation per way of getting :math:`\partial\hat U/\partial u`
   (also a Python loop over the points, as the post's ``map``, and finite differences in the
   inputs), interleaved in one run, as ratios to forward-over-reverse;
4. trains the model with Adam and plots the fit, the losses and the learned terms.

    python scripts/ude.py                      # about a minute on a 2-core CPU
    python scripts/ude.py --iterations 2000 --reg-weight 0.001
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from agents import cli
from agents.plots import pyplot, save
from agents.training import write_results
from diffenvs.core.problem import check_choice, check_integer, check_positive
from diffenvs.core.rollout import RK4, Adaptive, Adjoint
from diffenvs.derivatives import input_jacobian, solve

TRUE_PARAMETERS = (1.3, 0.9, 0.8, 1.8)  # α, β, γ, δ


@dataclass(frozen=True)
class UdeConfig:
    """Settings of the reproduction."""

    out: str = "runs/ude"
    """Folder for results.json and the plots."""
    seed: int = 0
    """Seed of the start state, the noise and the network's initial weights."""
    iterations: int = 150
    """Adam iterations of training."""
    lr: float = 0.05
    """Adam learning rate (the post uses ADAM() with its default 0.001, and 500 iterations)."""
    reg_weight: float = 1.0
    """λ, the weight of the derivative regulariser (the post adds it with weight 1)."""
    reg_mode: str = "forward"
    """How training gets ∂U/∂u: "forward" (vmap jacfwd), "reverse" (vmap jacrev) or "differences" (central, in the inputs)."""
    solver: str = "rk4"
    """ODE solver of the model: "rk4", "dopri5" (rtol 1e-6, as the post) or "adjoint" (dopri5 with the adjoint)."""
    steps: int = 2
    """RK4 steps per 0.25 s between saved times."""
    input_step: float = 1e-4
    """Step of the central differences in the inputs (the "differences" regulariser)."""
    weight_step: float = 1e-6
    """Step of the central differences over the weights (the gradient check)."""
    repeats: int = 5
    """Timing repeats per way (the fastest counts: the least disturbed by other load)."""
    threads: int = 1
    """torch intra-op threads (tiny tensors: more threads only add contention on a busy machine)."""

    def __post_init__(self) -> None:
        check_choice("reg_mode", self.reg_mode, ("forward", "reverse", "differences"))
        check_choice("solver", self.solver, ("rk4", "dopri5", "adjoint"))
        for name in ("lr", "input_step", "weight_step"):
            check_positive(name, getattr(self, name))
        if not (math.isfinite(self.reg_weight) and self.reg_weight >= 0):
            raise ValueError(f"reg_weight must be finite and non-negative, got {self.reg_weight!r}")
        for name in ("iterations", "steps", "repeats", "threads"):
            check_integer(name, getattr(self, name), least=0 if name == "iterations" else 1)


# ---- data, model, losses ------------------------------------------------------------------
def lotka_volterra(t: torch.Tensor, x: torch.Tensor, theta: Any) -> torch.Tensor:
    alpha, beta, gamma, delta = TRUE_PARAMETERS
    u1, u2 = x[..., 0], x[..., 1]
    return torch.stack([alpha * u1 - beta * u1 * u2, gamma * u1 * u2 - delta * u2], -1)


def make_data(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Times ``(21,)``, noise-free states ``(21, 2)`` from a dopri5 solve at rtol 1e-10, noisy data ``(21, 2)``."""
    generator = torch.Generator().manual_seed(seed)
    u0 = 5.0 * torch.rand(1, 2, generator=generator, dtype=torch.float64)
    times = torch.arange(21, dtype=torch.float64) * 0.25
    clean = solve(lotka_volterra, u0, times, solver=Adaptive("dopri5", rtol=1e-10, atol=1e-12))[:, 0]
    noise = torch.randn(clean.shape, generator=generator, dtype=torch.float64)
    return times, clean, clean + 5e-3 * clean.mean(0) * noise


class Rbf(torch.nn.Module):
    """The post's activation, :math:`e^{-x^2}`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(-x * x)


def make_network(seed: int) -> torch.nn.Sequential:
    """2-5-5-5-2 with :math:`e^{-x^2}` activations, Glorot-uniform weights and zero biases (Lux's defaults)."""
    torch.manual_seed(seed)
    network = torch.nn.Sequential(torch.nn.Linear(2, 5), Rbf(), torch.nn.Linear(5, 5), Rbf(), torch.nn.Linear(5, 5), Rbf(),
                                  torch.nn.Linear(5, 2)).double()
    for layer in network:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    return network


def true_regulariser(points: torch.Tensor) -> float:
    r"""The regulariser of the true missing terms, whose Jacobian is
    :math:`[[-\beta u_2, -\beta u_1], [\gamma u_2, \gamma u_1]]`."""
    _, beta, gamma, _ = TRUE_PARAMETERS
    u1, u2 = points[:, 0], points[:, 1]
    return float(((beta**2 + gamma**2) * (u1 * u1 + u2 * u2)).sum())


def regulariser_points() -> torch.Tensor:
    """The post's grid: first input 0, 0.1, ..., 10, second input 1.0; shape ``(101, 2)``."""
    x = torch.arange(101, dtype=torch.float64) / 10
    return torch.stack([x, torch.ones_like(x)], -1)


def regulariser(network: torch.nn.Module, weights: dict[str, torch.Tensor], points: torch.Tensor, mode: str,
                input_step: float = 1e-4) -> torch.Tensor:
    r""":math:`\sum_i \|\partial U/\partial u\,(x_i)\|_F^2` by ``mode``.

    ``"forward"``/``"reverse"``: exact, :func:`diffenvs.derivatives.input_jacobian`;
    ``"loop"``: exact, one ``torch.autograd.grad(create_graph=True)`` per point and output (as
    the post's ``map``); ``"differences"``: central differences in each input, step ``input_step``.
    """
    if mode in ("forward", "reverse"):
        return input_jacobian(network, points, params=weights, mode=mode).square().sum()
    call = lambda x: torch.func.functional_call(network, weights, (x,))
    if mode == "loop":
        total = points.new_zeros(())
        for point in points:
            x = point.detach().clone().requires_grad_(True)
            out = call(x[None])[0]
            for i in range(out.shape[0]):
                (row,) = torch.autograd.grad(out[i], x, create_graph=True)
                total = total + row.square().sum()
        return total
    check_choice("mode", mode, ("forward", "reverse", "loop", "differences"))
    eye = torch.eye(points.shape[1], dtype=points.dtype)
    columns = [(call(points + input_step * e) - call(points - input_step * e)) / (2 * input_step) for e in eye]
    return torch.stack(columns, -1).square().sum()


class Ude:
    """The hybrid model and its loss, as functions of a dict of weights (so any path can differentiate them)."""

    def __init__(self, config: UdeConfig, network: torch.nn.Module, times: torch.Tensor, data: torch.Tensor):
        self.config, self.network, self.times, self.data = config, network, times, data
        self.points = regulariser_points()
        self.solver = {"rk4": RK4(), "dopri5": Adaptive("dopri5", rtol=1e-6, atol=1e-6),
                       "adjoint": Adjoint("dopri5", rtol=1e-6, atol=1e-6)}[config.solver]

    def vector_field(self, t: torch.Tensor, x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        alpha, _, _, delta = TRUE_PARAMETERS
        learned = torch.func.functional_call(self.network, weights, (x,))
        return torch.stack([alpha * x[..., 0], -delta * x[..., 1]], -1) + learned

    def predict(self, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        return solve(self.vector_field, self.data[:1], self.times, weights, solver=self.solver, steps=self.config.steps)[:, 0]

    def losses(self, weights: dict[str, torch.Tensor], mode: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(data misfit, regulariser)."""
        misfit = (self.predict(weights) - self.data).square().mean()
        reg = regulariser(self.network, weights, self.points, mode or self.config.reg_mode, self.config.input_step)
        return misfit, reg

    def loss(self, weights: dict[str, torch.Tensor], mode: str | None = None) -> torch.Tensor:
        misfit, reg = self.losses(weights, mode)
        return misfit + self.config.reg_weight * reg


# ---- checks and timings --------------------------------------------------------------------
def flat(tensors: Any) -> torch.Tensor:
    return torch.cat([t.reshape(-1) for t in tensors])


def gradient(value: torch.Tensor, leaves: list[torch.Tensor]) -> torch.Tensor:
    """The flat gradient; a weight the value does not depend on (the last bias, for R) gets 0."""
    return flat(torch.autograd.grad(value, leaves, allow_unused=True, materialize_grads=True))


def gradient_check(model: Ude, weights: dict[str, torch.Tensor]) -> dict[str, float]:
    """The regulariser's gradient in the weights by forward-over-reverse, reverse-over-reverse and central differences."""
    names = list(weights)
    leaves = [weights[n] for n in names]
    reg = lambda w, mode: regulariser(model.network, w, model.points, mode, model.config.input_step)
    forward = gradient(reg(weights, "forward"), leaves)
    reverse = gradient(reg(weights, "reverse"), leaves)
    loop = gradient(reg(weights, "loop"), leaves)
    differences_in_inputs = gradient(reg(weights, "differences"), leaves)
    h = model.config.weight_step
    with torch.no_grad():
        base = {n: w.detach().clone() for n, w in weights.items()}
        by_weights = []
        for name in tqdm(names, desc="finite differences over the weights", leave=False):
            for index in range(base[name].numel()):
                shifted = []
                for sign in (1.0, -1.0):
                    w = dict(base)
                    w[name] = base[name].clone()
                    w[name].view(-1)[index] += sign * h
                    shifted.append(reg(w, "forward"))
                by_weights.append((shifted[0] - shifted[1]) / (2 * h))
        by_weights = torch.stack(by_weights)
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
        h = model.config.weight_step
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


# ---- training, plots, main -----------------------------------------------------------------
def train(model: Ude, weights: dict[str, torch.Tensor], config: UdeConfig) -> list[dict[str, float]]:
    """Adam on the weights; one record per iteration."""
    optimiser = torch.optim.Adam(list(weights.values()), lr=config.lr)
    history = []
    bar = tqdm(range(1, config.iterations + 1), desc=f"training ({config.reg_mode} regulariser, {config.solver})")
    for iteration in bar:
        misfit, reg = model.losses(weights)
        loss = misfit + config.reg_weight * reg
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        history.append({"iteration": iteration, "loss": loss.item(), "misfit": misfit.item(), "regulariser": reg.item()})
        bar.set_postfix(loss=f"{loss.item():.4g}", misfit=f"{misfit.item():.3g}")
    return history


def missing_terms(states: torch.Tensor) -> torch.Tensor:
    r"""The terms the network stands for: :math:`(-\beta u_1 u_2, \gamma u_1 u_2)`."""
    _, beta, gamma, _ = TRUE_PARAMETERS
    product = states[..., 0] * states[..., 1]
    return torch.stack([-beta * product, gamma * product], -1)


def plot(path: Path, times: torch.Tensor, clean: torch.Tensor, data: torch.Tensor, fit: torch.Tensor,
         learned: torch.Tensor, history: list[dict[str, float]]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for i, colour in enumerate(("tab:blue", "tab:orange")):
        axes[0].plot(times, clean[:, i], color=colour, lw=1, alpha=0.5, label=f"u{i + 1} true")
        axes[0].plot(times, data[:, i], "o", color=colour, ms=3, label=f"u{i + 1} data")
        axes[0].plot(times, fit[:, i], "--", color=colour, lw=1.5, label=f"u{i + 1} model")
    axes[0].set_xlabel("t")
    axes[0].legend(fontsize=7, ncol=2)
    axes[0].set_title("data and the trained UDE", fontsize=9)
    true_terms = missing_terms(clean)
    for i, colour in enumerate(("tab:blue", "tab:orange")):
        axes[1].plot(times, true_terms[:, i], color=colour, lw=1, label=f"true term {i + 1}")
        axes[1].plot(times, learned[:, i], "--", color=colour, lw=1.5, label=f"network {i + 1}")
    axes[1].set_xlabel("t")
    axes[1].legend(fontsize=7)
    axes[1].set_title("missing terms along the true trajectory", fontsize=9)
    if history:
        iterations = [h["iteration"] for h in history]
        for key in ("loss", "misfit", "regulariser"):
            axes[2].semilogy(iterations, [h[key] for h in history], lw=1, label=key)
        axes[2].legend(fontsize=8)
    axes[2].set_xlabel("Adam iteration")
    axes[2].set_title("training", fontsize=9)
    for ax in axes:
        ax.grid(alpha=0.3)
    return save(fig, path)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    config = cli.parse(UdeConfig, argv, description=__doc__)
    cli.check_out_folder(config.out)
    torch.set_num_threads(config.threads)
    began = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    times, clean, data = make_data(config.seed)
    network = make_network(config.seed)
    model = Ude(config, network, times, data)
    weights = dict(network.named_parameters())
    print(f"data: u0 = {clean[0].tolist()}, {len(times)} times on [0, 5], noise 5e-3 x mean; "
          f"network {sum(w.numel() for w in weights.values())} weights")

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

    history = train(model, weights, config)
    with torch.no_grad():
        misfit, reg = model.losses(weights, "forward")
        fit = model.predict(weights)
        learned = network(clean)
        term_error = (learned - missing_terms(clean)).square().mean().sqrt().item()
    print(f"\nafter {config.iterations} iterations: misfit {misfit.item():.4g}, regulariser {reg.item():.4g}, "
          f"RMS error of the learned terms along the true trajectory {term_error:.4g}")
    figure = plot(out / "ude.png", times, clean, data, fit, learned, history)
    results = {"config": config, "gradient_check": check, "true_terms_regulariser": true_regulariser(model.points),
               "seconds_per_evaluation": timings, "history": history,
               "final_misfit": misfit.item(), "final_regulariser": reg.item(), "term_rms_error": term_error,
               "wall_time": time.perf_counter() - began, "plots": [figure.name]}
    path = write_results(out, results)
    print(f"wrote {path} and {figure} in {results['wall_time']:.1f} s")
    return results


if __name__ == "__main__":
    main()
