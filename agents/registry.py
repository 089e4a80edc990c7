"""The agents a benchmark can run, by name: how each trains under a budget and what it hands back.

Every agent, whatever it is, is reduced to the same contract: given an environment, a
seed and a :class:`Budget`, train, and return a :class:`Trained` — a deterministic
Gymnasium policy (observation -> action in [-1, 1]) and a learning curve. The benchmark
then evaluates every policy with the one protocol (:func:`agents.evaluation.evaluate`).

=============  =========  ======================================================================
agent          family     what it is
=============  =========  ======================================================================
neural-ode     gradient   policy network trained through the differentiable rollout
                          (:mod:`agents.neural_ode`); every simulated transition counts
ppo, sac, td3  rl         stable-baselines3, unmodified, on the Gymnasium face (:mod:`agents.rl`)
analytic       reference  the closed-form controller where one is the optimum
                          (:func:`agents.analytic.reference`: Pontryagin, harmonic field, LQR)
planning       gradient   adaptive differentiable planning for system identification
                          (:mod:`agents.planning`, report Algorithm 1), the last plan as the policy
oracle         reference  the same planner on the true matrix (system identification)
gaussian       reference  a fixed draw of Gaussian inputs u ~ N(0, gamma^2 I / d) (system identification)
=============  =========  ======================================================================

Budgets are in environment transitions (simulated transitions of the gradient path for
gradient agents), with an optional cap on training seconds. Learning-curve points are
stamped with the transitions and the training seconds spent so far; the time spent
evaluating them is excluded.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from agents.evaluation import GymPolicy
from diffenvs.core.problem import check_integer

#: a learning-curve evaluator the benchmark hands to an agent: policy -> mean cost on fixed starts
CurveCost = Callable[[GymPolicy], float]


@dataclass(frozen=True)
class Budget:
    """What one training run may spend, and how often its learning curve is sampled."""

    transitions: int
    """Environment transitions (for gradient agents: simulated transitions of the gradient path)."""
    seconds: float = math.inf
    """Cap on training wall time (learning-curve evaluation excluded)."""
    eval_every: int = 1_000
    """Transitions between learning-curve points."""

    def __post_init__(self) -> None:
        for name in ("transitions", "eval_every"):
            check_integer(name, getattr(self, name))
        if not self.seconds > 0:
            raise ValueError(f"seconds must be positive, got {self.seconds!r}")


@dataclass
class Trained:
    """What an agent hands back: a policy, its learning curve and what training used."""

    policy: GymPolicy
    """Deterministic Gymnasium policy: observation -> action in [-1, 1]."""
    curve: list[dict[str, float]]
    """Points ``{"transitions", "seconds", "cost"}`` (cost: mean over the benchmark's curve starts)."""
    transitions: int
    """Transitions used in training."""
    seconds: float
    """Training wall time, learning-curve evaluation excluded."""
    details: dict[str, Any] = field(default_factory=dict)
    """JSON-able facts for the report (e.g. the reward trained on)."""


TrainFunction = Callable[[str, dict[str, Any], int, Budget, CurveCost], Trained]
"""``train(env_id, env_kwargs, seed, budget, curve_cost) -> Trained``."""


@dataclass(frozen=True)
class Agent:
    """A named agent of the registry."""

    name: str
    family: str
    """``gradient``, ``rl`` or ``reference``."""
    description: str
    train: TrainFunction
    applies: Callable[[str, dict[str, Any]], bool]
    """Whether the agent can run on ``(env_id, env_kwargs)``."""


AGENTS: dict[str, Agent] = {}


def register(agent: Agent) -> Agent:
    """Add ``agent`` to :data:`AGENTS` (a name is registered once)."""
    if agent.family not in ("gradient", "rl", "reference"):
        raise ValueError(f"agent.family must be 'gradient', 'rl' or 'reference', got {agent.family!r}")
    if agent.name in AGENTS:
        raise ValueError(f"an agent named {agent.name!r} is already registered")
    AGENTS[agent.name] = agent
    return agent


def get(name: str) -> Agent:
    """The registered agent ``name``."""
    if name not in AGENTS:
        raise ValueError(f"agent must be one of {tuple(AGENTS)}, got {name!r}")
    return AGENTS[name]


def applicable(env_id: str, env_kwargs: dict[str, Any] | None = None) -> list[str]:
    """Names of the registered agents that run on ``env_id``."""
    return [name for name, agent in AGENTS.items() if agent.applies(env_id, dict(env_kwargs or {}))]


def _constant_curve(policy: GymPolicy, curve_cost: CurveCost, details: dict[str, Any]) -> Trained:
    """A policy that needs no training: one curve point at zero transitions."""
    return Trained(policy, [{"transitions": 0.0, "seconds": 0.0, "cost": float(curve_cost(policy))}], 0, 0.0,
                   {"trained_on": "–", **details})


# ---- RL baselines ---------------------------------------------------------------------------
def _rl(algorithm: str) -> TrainFunction:
    def train(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost) -> Trained:
        from agents import rl

        config = rl.RLConfig(algorithm=algorithm, timesteps=budget.transitions, seed=seed, eval_every=budget.eval_every,
                             max_seconds=budget.seconds)
        result = rl.train(env_id, config, env_kwargs, curve_cost=curve_cost)
        return Trained(result.policy, result.curve, result.transitions, result.seconds, rl.describe(env_id, algorithm))

    return train


for _algorithm, _text in (("ppo", "stable-baselines3 PPO"), ("sac", "stable-baselines3 SAC"), ("td3", "stable-baselines3 TD3")):
    register(Agent(_algorithm, "rl", f"{_text} on the Gymnasium face (hyperparameters: agents.rl)", _rl(_algorithm),
                   lambda env_id, env_kwargs: True))


# ---- neural-ODE control ---------------------------------------------------------------------
class _PolicyCapture:
    """Holds the policy network ``neural_ode.train`` builds, caught by a global forward pre-hook.

    ``neural_ode.train``'s callback receives ``(step, metrics)`` only; the learning curve
    needs the network itself at each point, so the first forward call of a
    ``PolicyNetwork`` during training is recorded here.
    """

    def __init__(self, network_type: type):
        self.network_type, self.network = network_type, None
        self._handle: Any = None

    def __enter__(self) -> _PolicyCapture:
        def hook(module: torch.nn.Module, args: Any) -> None:
            if self.network is None and isinstance(module, self.network_type):
                self.network = module

        self._handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()


def neural_ode_config(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget) -> Any:
    """The neural-ODE agent's tuned config for ``env_id`` with as many iterations as ``budget`` allows.

    The L-BFGS finish is kept only as far as the budget affords it after the tuned Adam
    iterations (``LBFGS_EVALUATIONS`` rollouts a step; the line search may take one more, so a
    run can exceed its budget by up to ``lbfgs_steps`` rollouts, all counted); Adam gets the rest,
    ``transitions // (batch_size x rollout steps)`` iterations (at least one), so the
    learning-rate schedule runs to its end within the budget.
    """
    from agents import neural_ode

    config = neural_ode.default_config(env_id, env_kwargs)
    rollout = config.batch_size * (config.steps or _problem(env_id, env_kwargs).max_steps)
    worst = neural_ode.LBFGS_EVALUATIONS * rollout  # one L-BFGS step at most
    lbfgs_steps = min(config.lbfgs_steps, max(0, (budget.transitions - config.iterations * rollout) // worst))
    iterations = max(1, (budget.transitions - lbfgs_steps * worst) // rollout)
    return dataclasses.replace(config, iterations=iterations, lbfgs_steps=lbfgs_steps, seed=seed)


def _train_neural_ode(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost) -> Trained:
    from agents import neural_ode
    from agents.training import gym_policy

    config = neural_ode_config(env_id, env_kwargs, seed, budget)
    problem = _problem(env_id, env_kwargs)
    curve: list[dict[str, float]] = []
    next_point = [0]

    with _PolicyCapture(neural_ode.PolicyNetwork) as capture:
        def on_step(step: int, metrics: dict[str, float]) -> bool:
            transitions, seconds = metrics["transitions"], metrics["seconds"]
            last = step + 1 == config.iterations
            stop = seconds >= budget.seconds
            if transitions >= next_point[0] or last or stop:
                next_point[0] = transitions + budget.eval_every
                cost = float(curve_cost(gym_policy(capture.network, problem)))
                curve.append({"transitions": float(transitions), "seconds": float(seconds), "cost": cost})
            return stop

        result = neural_ode.train(env_id, config, env_kwargs, callback=on_step, progress=False)
    details = {"iterations": len(result.history), "batch_size": config.batch_size,
               "rollout_steps": config.steps or problem.max_steps, "trained_on": "default"}
    return Trained(result.gym_policy(), curve, result.transitions, result.seconds, details)


def _problem(env_id: str, env_kwargs: dict[str, Any]) -> Any:
    import diffenvs

    return diffenvs.problem_of(env_id, **env_kwargs)


register(Agent("neural-ode", "gradient", "policy network trained through the differentiable rollout (agents.neural_ode)",
               _train_neural_ode, lambda env_id, env_kwargs: True))


# ---- analytic references ----------------------------------------------------------------------
def _analytic_policy(env_id: str, env_kwargs: dict[str, Any]) -> Any:
    from agents import analytic

    reference = analytic.reference(env_id, env_kwargs)
    return None if reference is None else reference


def _train_analytic(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost) -> Trained:
    reference = _analytic_policy(env_id, env_kwargs)
    return _constant_curve(reference.gym_policy, curve_cost, {"controller": reference.name})


def _has_analytic_policy(env_id: str, env_kwargs: dict[str, Any]) -> bool:
    reference = _analytic_policy(env_id, env_kwargs)
    return reference is not None and reference.policy is not None


register(Agent("analytic", "reference", "closed-form optimal controller (agents.analytic: Pontryagin, harmonic, LQR)",
               _train_analytic, _has_analytic_policy))


# ---- system identification: differentiable planning --------------------------------------------
def _fixed_sysid(env_id: str, env_kwargs: dict[str, Any]) -> bool:
    """System identification with one fixed true matrix (the oracle and the plans need it, not ``matrix="random"``)."""
    if env_id != "DiffLinearSysID-v0":
        return False
    matrix = env_kwargs.get("matrix", "jordan")
    return not isinstance(matrix, str) or matrix == "jordan"


def open_loop_policy(problem: Any, controls: np.ndarray) -> GymPolicy:
    """A Gymnasium policy that plays ``controls`` ``(steps, m)`` (physical) in time order.

    The step is read from the observation's last component, the time fraction ``t / T``.
    """
    controls = np.asarray(controls, dtype=np.float64)
    steps = controls.shape[0]

    def policy(observation: np.ndarray) -> np.ndarray:
        k = min(int(round(float(observation[-1]) * steps)), steps - 1)
        return np.asarray(problem.action_from_control(controls[k]), dtype=np.float32)

    return policy


def planner_config() -> Any:
    """The planner of the ``planning`` and ``oracle`` agents: ``agents.planning``'s defaults (open-loop sequence)."""
    from agents import planning

    return planning.PlannerConfig()


def _plan_controls(problem: Any, matrix: torch.Tensor, generator: torch.Generator) -> tuple[np.ndarray, int]:
    """Inputs ``(steps, d)`` of one experiment planned on ``matrix`` ``(d, d)``, and the transitions simulated."""
    from agents import planning

    config = planner_config()
    prior = torch.zeros(1, problem.d, problem.d, dtype=torch.float64)
    controller, _ = planning.plan(problem, matrix[None], prior, problem.steps, config, generator)
    with torch.no_grad():
        if isinstance(controller, planning.InputSequence):
            controls = controller.controls()[:, 0].numpy()
        else:
            raise TypeError("only the 'sequence' planner form gives an open-loop plan")
    return controls, (config.iterations + 1) * problem.steps * config.noise_samples


def _gaussian_controls(problem: Any, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, problem.gamma / math.sqrt(problem.d), (problem.steps, problem.d))


def _train_oracle(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost) -> Trained:
    problem = _problem(env_id, env_kwargs)
    start = time.perf_counter()
    truth = torch.as_tensor(problem.params.A, dtype=torch.float64)
    controls, simulated = _plan_controls(problem, truth, torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - start
    policy = open_loop_policy(problem, controls)
    return Trained(policy, [{"transitions": float(simulated), "seconds": seconds, "cost": float(curve_cost(policy))}],
                   simulated, seconds, {"trained_on": "–", "planned_on": "the true A"})


def _train_gaussian(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost) -> Trained:
    problem = _problem(env_id, env_kwargs)
    return _constant_curve(open_loop_policy(problem, _gaussian_controls(problem, seed)), curve_cost,
                           {"inputs": "one fixed draw of N(0, gamma^2 I / d), projected onto |u| <= gamma"})


def _train_planning(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost) -> Trained:
    """Report Algorithm 1: Gaussian first experiment, then plan on the estimate, play, re-estimate.

    Each experiment is as long as the episode; the transitions are those played plus those
    simulated by the planner. The policy is the plan of one episode on the final estimate.
    """
    from agents import planning

    problem = _problem(env_id, env_kwargs)
    truth = torch.as_tensor(problem.params.A, dtype=torch.float64)[None]
    generator = torch.Generator().manual_seed(seed)
    d, steps = problem.d, problem.steps
    gram = torch.zeros(1, d, d, dtype=torch.float64)
    cross = torch.zeros_like(gram)
    curve: list[dict[str, float]] = []
    transitions, seconds = 0, 0.0
    controls = torch.as_tensor(_gaussian_controls(problem, seed))[:, None]
    while True:
        start = time.perf_counter()
        noise = torch.randn(steps, 1, d, generator=generator, dtype=torch.float64)
        new_gram, new_cross = planning.play(problem, truth, controls, noise)
        gram, cross = gram + new_gram, cross + new_cross
        transitions += steps
        estimate = planning.estimate(gram, cross)[0]
        planned, simulated = _plan_controls(problem, estimate, generator)
        transitions += simulated
        seconds += time.perf_counter() - start
        policy = open_loop_policy(problem, planned)
        curve.append({"transitions": float(transitions), "seconds": seconds, "cost": float(curve_cost(policy))})
        if transitions + steps + simulated > budget.transitions or seconds >= budget.seconds:
            break
        controls = torch.as_tensor(planned)[:, None]
    return Trained(policy, curve, transitions, seconds, {"trained_on": "default", "experiments": len(curve)})


for _name, _text, _train in (
        ("planning", "adaptive differentiable planning, report Algorithm 1 (agents.planning)", _train_planning),
        ("oracle", "differentiable planning on the true matrix (agents.planning)", _train_oracle),
        ("gaussian", "a fixed draw of Gaussian inputs N(0, gamma^2 I / d)", _train_gaussian)):
    register(Agent(_name, "gradient" if _name == "planning" else "reference", _text, _train, _fixed_sysid))
