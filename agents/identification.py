r"""The adaptive identification experiment (report Algorithm 1, §5) and its agents in the benchmark.

:func:`identify` runs the report's experiment on a batch of independent runs: a first
experiment with Gaussian input, then epochs of geometrically growing length
:math:`T_i = T_0 g^i`; each epoch estimates :math:`\hat A` from all data so far, plans on it
(:func:`agents.planning.plan`), plays the plan on the true system and appends the data.
Baselines: Gaussian input :math:`u_t \sim \mathcal N(0, \gamma^2 I / d)` and the oracle,
which plans on the true :math:`A` with the same optimiser. As in the report, the Gaussian inputs
are played as drawn: their mean energy is the planner's bound, :math:`\mathbb E\|u_t\|^2 = \gamma^2`,
but their norm is unbounded (at d = 4 it exceeds :math:`\gamma` at 41% of the steps).
``SysIDConfig(baseline="clipped")`` moves them into the control set instead (the box, then the
ball :math:`\|u_t\| \le \gamma`, what ``env.step`` does to any input): a weaker baseline (mean energy
0.73 :math:`\gamma^2` at d = 4, errors about 18% larger) that flatters the planner.

On the Gymnasium face of system identification the same loop is three benchmark agents
(registered here): ``planning`` (Algorithm 1, the last plan as the policy), ``oracle`` (the
planner on the true matrix) and ``gaussian`` (a fixed draw of Gaussian inputs). They apply to
any :class:`~diffenvs.envs.linear_sysid.LinearSysID` problem with one fixed true matrix
(:func:`fixed_truth`), whatever its id.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from agents.cards import card
from agents.cards.linear_sysid import fixed_truth, open_loop_policy, plan_controls, true_matrix
from agents.planning import Callback, PlannerConfig, check_design, estimate, plan, play
from agents.references import problem_as
from agents.registry import Agent, Budget, CurveCost, Trained, constant_curve, register
from diffenvs import problem_of
from diffenvs.core.problem import check_integer
from diffenvs.envs.linear_sysid import LinearSysID, estimation_error, random_matrix

AGENTS = ("random", "active", "oracle")
#: the longest experiment :class:`SysIDConfig` accepts (its runs' states are held in memory at once)
MAX_SAMPLES = 10**7
#: how the Gaussian inputs are played: as drawn (the report's baseline) or moved into the control set
BASELINES = ("unbounded", "clipped")


# ---- the adaptive experiment ---------------------------------------------------------
@dataclass(frozen=True)
class SysIDConfig:
    """An adaptive identification experiment: active agent, Gaussian baseline and oracle."""

    matrix: str = "jordan"
    """true A: "jordan" (0.9 on the diagonal, 1 above) or "random" (Gaussian, spectral radius 1, one per run)"""
    d: int = 4
    """state dimension"""
    noise_std: float = 0.1
    """sigma, standard deviation of the process noise"""
    gamma: float = 1.0
    """bound on the input norm |u_t| (the Gaussian baseline's mean energy E|u_t|^2 = gamma^2)"""
    runs: int = 100
    """independent realisations, batched"""
    epochs: int = 6
    """experiments in total: the first with Gaussian input, then planned ones"""
    first_epoch: int = 20
    """samples of the first experiment (at least d + 1)"""
    growth: float = 2.0
    """factor by which each experiment is longer than the previous one"""
    baseline: str = "unbounded"
    """the Gaussian inputs (the baseline's, and the active agent's first experiment): "unbounded" (the report's,
    played as drawn, mean energy gamma^2) or "clipped" (moved into the control set: box, then ball |u| <= gamma)"""
    seed: int = 0
    """seed of the true matrices, the noise, the baseline's inputs and the planners"""
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    """the planner of the active agent and the oracle"""

    def __post_init__(self) -> None:
        if self.matrix not in ("jordan", "random"):
            raise ValueError(f"matrix must be 'jordan' or 'random', got {self.matrix!r}")
        for name in ("d", "runs", "epochs"):
            check_integer(name, getattr(self, name))
        if not (isinstance(self.first_epoch, int) and self.first_epoch >= self.d + 1):
            raise ValueError(f"first_epoch must be an integer >= d + 1 = {self.d + 1} (x_0 = 0 adds nothing to G), "
                             f"got {self.first_epoch!r}")
        if not (isinstance(self.growth, (int, float)) and not isinstance(self.growth, bool)
                and math.isfinite(self.growth) and self.growth >= 1):
            raise ValueError(f"growth must be a finite number >= 1, got {self.growth!r}")
        longest = math.log(self.first_epoch) + (self.epochs - 1) * math.log(self.growth)  # no overflow on the way
        if longest > math.log(MAX_SAMPLES + 0.5):
            raise ValueError(f"growth and epochs must keep every experiment within {MAX_SAMPLES:,} samples: "
                             f"first_epoch * growth ** (epochs - 1) = {self.first_epoch} * {self.growth!r} ** "
                             f"{self.epochs - 1} exceeds it; lower growth or epochs")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if not isinstance(self.planner, PlannerConfig):
            raise TypeError(f"planner must be a PlannerConfig, got {type(self.planner).__name__}")
        LinearSysID(d=self.d, noise_std=self.noise_std, gamma=self.gamma, max_steps=self.first_epoch)  # validates σ, γ

    @property
    def lengths(self) -> list[int]:
        r"""Samples of each experiment, :math:`T_i = \operatorname{round}(T_0 g^i)`."""
        return [int(round(self.first_epoch * self.growth**i)) for i in range(self.epochs)]


@dataclass(frozen=True)
class SysIDResult:
    """Errors :math:`\\|\\hat A - A\\|_F` of each agent after each experiment."""

    config: SysIDConfig
    samples: np.ndarray
    """cumulative samples after each experiment, shape (epochs,)"""
    errors: dict[str, np.ndarray]
    """agent -> errors of shape (epochs, runs)"""
    seconds: dict[str, float]
    """agent -> wall time (planning and playing)"""
    gains: dict[str, np.ndarray]
    """planning agent -> mean over runs of (best - start) / |start| of the planning criterion, per planned experiment"""

    def mean(self, agent: str) -> np.ndarray:
        return self.errors[agent].mean(1)

    def standard_error(self, agent: str) -> np.ndarray:
        errors = self.errors[agent]
        return errors.std(1, ddof=1) / math.sqrt(errors.shape[1]) if errors.shape[1] > 1 else np.zeros(errors.shape[0])


def gaussian_inputs(steps: int, runs: int, d: int, gamma: float, generator: torch.Generator) -> torch.Tensor:
    r"""Baseline inputs :math:`u_t \sim \mathcal N(0, \gamma^2 I / d)` ``(steps, runs, d)``.

    Their mean energy is the planner's: :math:`\mathbb E\|u_t\|^2 = \gamma^2` (but :math:`\|u_t\|` is unbounded).
    """
    return torch.randn(steps, runs, d, generator=generator, dtype=torch.float64) * (gamma / math.sqrt(d))


def containing(problem: LinearSysID, controls: torch.Tensor) -> LinearSysID:
    r"""``problem`` with a bound :math:`\gamma' \ge 2 \max_t \|u_t\|` on the inputs, a power of two (at least its own
    :math:`\gamma`): its control set holds every input of ``controls`` ``(..., d)``, and the clip of the rollout is
    then the identity to the last bit (:math:`\gamma'^2` and its square root are exact), so the inputs are played as
    drawn. The bound enters nothing else: the dynamics, noise and statistics are ``problem``'s."""
    largest = float(torch.linalg.vector_norm(controls.detach(), dim=-1).max()) if controls.numel() else 0.0
    if not math.isfinite(largest):
        raise ValueError("controls must be finite")
    bound = 2.0 ** math.ceil(math.log2(max(2.0 * largest, problem.gamma, 1e-300)))
    return problem if bound <= problem.gamma else dataclasses.replace(problem, gamma=bound)


def true_matrices(config: SysIDConfig, generator: torch.Generator) -> torch.Tensor:
    """The true A of every run, ``(runs, d, d)`` float64."""
    d = config.d
    if config.matrix == "jordan":
        one = torch.as_tensor(LinearSysID(d=d, matrix="jordan").params.A, dtype=torch.float64)
        return one.expand(config.runs, d, d).clone()
    return random_matrix(torch.randn(config.runs, d * d, generator=generator, dtype=torch.float64), d)


def identify(config: SysIDConfig, agents: tuple[str, ...] = AGENTS, progress: bool = True,
             callback: Callback | None = None) -> SysIDResult:
    """Run the adaptive experiment of ``config`` for ``agents`` (a subset of ``("random", "active", "oracle")``).

    ``callback(epoch, {"<agent>": mean error, ...})`` is called after each experiment; returning
    ``True`` stops after it.
    """
    unknown = set(agents) - set(AGENTS)
    if unknown or not agents:
        raise ValueError(f"agents must be a non-empty subset of {AGENTS}, got {agents!r}")
    generator = torch.Generator().manual_seed(config.seed)
    problem = LinearSysID(d=config.d, noise_std=config.noise_std, gamma=config.gamma, max_steps=config.first_epoch)
    d, runs = config.d, config.runs
    truth = true_matrices(config, generator)
    zeros = torch.zeros(runs, d, d, dtype=torch.float64)
    stats = {agent: (zeros, zeros) for agent in agents}
    errors: dict[str, list[np.ndarray]] = {agent: [] for agent in agents}
    seconds = dict.fromkeys(agents, 0.0)
    gains: dict[str, list[float]] = {agent: [] for agent in agents if agent != "random"}
    samples = np.cumsum(config.lengths)
    bar = tqdm(total=len(config.lengths) * len(agents), desc=f"sysid {config.matrix}", disable=not progress)
    for epoch, steps in enumerate(config.lengths):
        play_noise = torch.randn(steps, runs, d, generator=generator, dtype=torch.float64)
        gaussian = gaussian_inputs(steps, runs, d, config.gamma, generator)
        planning_seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        for agent in agents:
            start = time.perf_counter()
            gram, cross = stats[agent]
            played_on = problem
            if agent == "random" or (agent == "active" and epoch == 0):
                controls: Any = gaussian  # the first experiment is shared by the baseline and the active agent
                if config.baseline == "unbounded":
                    played_on = containing(problem, gaussian)
            else:
                matrix = truth if agent == "oracle" else estimate(gram, cross)
                controls, history = plan(problem, matrix, gram, steps, config.planner,
                                         torch.Generator().manual_seed(planning_seed), progress=progress)
                gains[agent].append(float(((history.amax(0) - history[0]) / history[0].abs()).mean()))
            new_gram, new_cross = play(played_on, truth, controls, play_noise)
            stats[agent] = (gram + new_gram, cross + new_cross)
            check_design(stats[agent][0])
            errors[agent].append(estimation_error(*stats[agent], truth).numpy())
            seconds[agent] += time.perf_counter() - start
            bar.update()
        if callback is not None and callback(epoch, {a: float(errors[a][-1].mean()) for a in agents}):
            samples = samples[:epoch + 1]
            break
    bar.close()
    return SysIDResult(config, samples, {a: np.stack(e) for a, e in errors.items()}, seconds,
                       {a: np.asarray(g) for a, g in gains.items()})


def results_table(result: SysIDResult) -> str:
    """Markdown table: mean error ± standard error per agent and the ratios of the means."""
    agents = list(result.errors)
    header = ["samples"] + [f"{a} ‖Â − A‖_F" for a in agents]
    ratios = [(a, b) for a, b in (("active", "random"), ("active", "oracle")) if a in agents and b in agents]
    header += [f"{a}/{b}" for a, b in ratios]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, n in enumerate(result.samples):
        cells = [str(int(n))]
        cells += [f"{result.mean(a)[i]:.4f} ± {result.standard_error(a)[i]:.4f}" for a in agents]
        cells += [f"{result.mean(a)[i] / result.mean(b)[i]:.2f}" for a, b in ratios]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- the benchmark's agents ----------------------------------------------------------------
#: the keys of the planning agents' card sections (``"planning"``, ``"oracle"``): :class:`PlannerConfig` fields
PLANNER_SETTINGS = tuple(f.name for f in dataclasses.fields(PlannerConfig))


def planner_config(env_id: str, agent: str) -> PlannerConfig:
    """The planner of ``agent`` on ``env_id``: :class:`PlannerConfig`'s defaults with its card section's settings
    (a key outside :data:`PLANNER_SETTINGS` is a ``ValueError``)."""
    return PlannerConfig(**card(env_id).settings(agent, known=PLANNER_SETTINGS))


def _applies(env_id: str, env_kwargs: dict[str, Any]) -> bool:
    return fixed_truth(problem_of(env_id, **env_kwargs))


def _gaussian_controls(problem: LinearSysID, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, problem.gamma / math.sqrt(problem.d), (problem.max_steps, problem.d))


def _train_oracle(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost) -> Trained:
    problem = problem_as(LinearSysID, env_id, env_kwargs)
    config = planner_config(env_id, "oracle")
    start = time.perf_counter()
    controls, simulated, backward = plan_controls(problem, true_matrix(problem), torch.Generator().manual_seed(seed),
                                                  config)
    seconds = time.perf_counter() - start
    policy = open_loop_policy(problem, controls)
    return Trained(policy, [{"transitions": float(simulated), "seconds": seconds, "cost": float(curve_cost(policy)),
                             "backward_transitions": float(backward)}],
                   simulated, seconds, {"trained_on": "–", "planned_on": "the true A", "backward_transitions": backward})


def _train_gaussian(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost) -> Trained:
    card(env_id).settings("gaussian", known=())  # it has no settings
    problem = problem_as(LinearSysID, env_id, env_kwargs)
    return constant_curve(open_loop_policy(problem, _gaussian_controls(problem, seed)), curve_cost,
                          {"inputs": "one fixed draw of N(0, gamma^2 I / d), projected onto |u| <= gamma"})


def _train_planning(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost) -> Trained:
    """Report Algorithm 1: Gaussian first experiment, then plan on the estimate, play, re-estimate.

    Each experiment is as long as the episode; the transitions are those played plus those
    simulated by the planner. The policy is the plan of one episode on the final estimate.
    """
    problem = problem_as(LinearSysID, env_id, env_kwargs)
    config = planner_config(env_id, "planning")
    truth = true_matrix(problem)[None]
    generator = torch.Generator().manual_seed(seed)
    d, steps = problem.d, problem.max_steps
    gram = torch.zeros(1, d, d, dtype=torch.float64)
    cross = torch.zeros_like(gram)
    curve: list[dict[str, float]] = []
    transitions, backward, seconds = 0, 0, 0.0
    controls = torch.as_tensor(_gaussian_controls(problem, seed))[:, None]
    while True:
        start = time.perf_counter()
        noise = torch.randn(steps, 1, d, generator=generator, dtype=torch.float64)
        new_gram, new_cross = play(problem, truth, controls, noise)
        gram, cross = gram + new_gram, cross + new_cross
        transitions += steps
        planned, simulated, differentiated = plan_controls(problem, estimate(gram, cross)[0], generator, config)
        transitions += simulated
        backward += differentiated
        seconds += time.perf_counter() - start
        policy = open_loop_policy(problem, planned)
        curve.append({"transitions": float(transitions), "seconds": seconds, "cost": float(curve_cost(policy)),
                      "backward_transitions": float(backward)})
        if transitions + steps + simulated > budget.transitions or seconds >= budget.seconds:
            break
        controls = torch.as_tensor(planned)[:, None]
    return Trained(policy, curve, transitions, seconds,
                   {"trained_on": "default", "experiments": len(curve), "backward_transitions": backward})


register(Agent("planning", "gradient", "adaptive differentiable planning, report Algorithm 1 (agents.identification)",
               _train_planning, _applies, cost=1.5,
               uses="exact gradients of the model, on the estimated matrix"))
register(Agent("oracle", "reference", "differentiable planning on the true matrix (agents.planning)", _train_oracle,
               _applies, cost=0.1, uses="the true matrix (planned on it)"))
register(Agent("gaussian", "reference", "a fixed draw of Gaussian inputs N(0, gamma^2 I / d)", _train_gaussian, _applies,
               cost=0.1))
