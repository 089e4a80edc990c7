"""Reinforcement-learning baselines: stable-baselines3 PPO, SAC and TD3, unmodified, on the Gymnasium face.

The algorithms are SB3's own; this module only chooses their hyperparameters (one table,
:data:`HYPERPARAMETERS`), the reward they train on (:data:`TRAINING_OBJECTIVES`) and
records a learning curve with the project's one evaluation protocol
(:func:`agents.evaluation.evaluate`, deterministic policy, fixed starts).

Training reward. Each baseline trains on the environment's default objective except where
that objective is too sparse for it to learn from within a benchmark budget:

===================  ====================================  ===========================================
environment          trains on                             why
===================  ====================================  ===========================================
DiffZermelo-v0       default (-dx each step)               already dense: the return is -x at the bank
DiffCartpole-v0      ``cost="quadratic"`` (dense)          the default pays only -(phi(T)^2 + phidot(T)^2)
                                                           at T; the report's LQR running cost
                                                           rewards being upright at every step
DiffIsochronism-v0   ``steps=100`` (same T, 10x coarser)   the objective is paid once, at T; at the
                                                           default 1000 steps an episode is 1000
                                                           transitions, so a budget holds 10x fewer
                                                           of them. The policy f(x) is the same
                                                           function at either step
DiffLinearSysID-v0   default (terminal)                    no dense option exists
DiffDecayDesign-v0   default (dense)                       information gain at every measurement
===================  ====================================  ===========================================

Whatever a baseline trains on, its learning curve and final cost are evaluated on the
objective the caller asks for (``env_kwargs``; the default objective in the benchmark).

Hyperparameters. :class:`Hyperparameters` holds every SB3 argument this module sets; its
defaults apply to every (environment, algorithm) pair that :data:`HYPERPARAMETERS` does not
list. They are SB3's defaults except: (64, 64) networks for SAC and TD3 (SB3: 256, 256) and
replay batches of 128 (SB3: 256), which run 3-5x faster per step on one CPU thread and are
ample for 1-6-dimensional observations; a learning rate of 3e-4 for TD3 too (SB3: 1e-3);
1000 random transitions before SAC and TD3 learn (SB3: 100); PPO rollouts of 1024
transitions in minibatches of 128 (SB3: 2048 and 64). Where the objective is paid at the
end of 100-step episodes, the table sets ``gamma = 0.999`` (and PPO rollouts of ten whole
episodes), so that the discount does not hide the terminal cost.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import NormalActionNoise

import diffenvs  # noqa: F401  (registers the ids)
from agents.evaluation import GymPolicy, evaluate
from diffenvs.core.problem import check_integer

ALGORITHMS = ("ppo", "sac", "td3")

StepCallback = Callable[[int, dict[str, float]], bool]
"""``on_step(step, metrics) -> bool``: called at every learning-curve point; returning True stops training."""


@dataclass(frozen=True)
class Hyperparameters:
    """The SB3 constructor arguments a table row sets; each maps to one SB3 argument of the same name."""

    learning_rate: float = 3e-4
    """Adam step size (all algorithms)."""
    hidden: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the actor and of the critic (SB3 ``net_arch``)."""
    gamma: float = 0.99
    """Discount factor."""
    batch_size: int = 128
    """Minibatch size (PPO) or replay batch size (SAC, TD3)."""
    n_steps: int = 1024
    """PPO: transitions collected per update."""
    n_epochs: int = 10
    """PPO: passes over each rollout."""
    gae_lambda: float = 0.95
    """PPO: GAE lambda."""
    ent_coef: float = 0.0
    """PPO: entropy bonus coefficient (SAC tunes its own entropy automatically)."""
    learning_starts: int = 1000
    """SAC, TD3: uniformly random transitions collected before learning."""
    buffer_size: int = 1_000_000
    """SAC, TD3: replay buffer capacity."""
    train_freq: int = 1
    """SAC, TD3: environment steps between updates."""
    gradient_steps: int = 1
    """SAC, TD3: gradient steps per update."""
    action_noise: float = 0.1
    """TD3: standard deviation of the Gaussian exploration noise, in action units ([-1, 1])."""

    def __post_init__(self) -> None:
        for name in ("learning_rate", "batch_size", "n_steps", "n_epochs", "buffer_size", "train_freq", "gradient_steps"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")


@dataclass(frozen=True)
class TrainingObjective:
    """The environment keyword arguments a baseline trains with, and why."""

    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """Overrides of the caller's ``env_kwargs`` for training (never for evaluation)."""
    label: str = "default"
    """Short name for tables."""
    why: str = ""
    """Reason for the choice."""


#: the reward each baseline trains on, per environment (absent: the default objective)
TRAINING_OBJECTIVES: dict[str, TrainingObjective] = {
    "DiffCartpole-v0": TrainingObjective(
        {"cost": "quadratic"}, "quadratic (dense)",
        "the default pays -(phi(T)^2 + phidot(T)^2) only at T; the LQR running cost rewards uprightness each step"),
    "DiffIsochronism-v0": TrainingObjective(
        {"steps": 100}, "default, steps=100",
        "the objective is paid only at T: 100-step episodes give 10x more of them per budget than the default 1000"),
}

_PPO_HORIZON = Hyperparameters(gamma=0.999, n_steps=1000, batch_size=100)

#: hyperparameters per (environment, algorithm); a pair not listed uses ``Hyperparameters()``
HYPERPARAMETERS: dict[tuple[str, str], Hyperparameters] = {
    # Zermelo: ~100-step episodes with a dense reward: the defaults.
    # Cartpole: 100-step episodes (fixed horizon, time in the observation); dense training cost.
    ("DiffCartpole-v0", "ppo"): _PPO_HORIZON,
    # Isochronism (trained at steps=100) and system identification: the whole objective is paid at step 100.
    ("DiffIsochronism-v0", "ppo"): _PPO_HORIZON,
    ("DiffIsochronism-v0", "sac"): Hyperparameters(gamma=0.999),
    ("DiffIsochronism-v0", "td3"): Hyperparameters(gamma=0.999),
    ("DiffLinearSysID-v0", "ppo"): _PPO_HORIZON,
    ("DiffLinearSysID-v0", "sac"): Hyperparameters(gamma=0.999),
    ("DiffLinearSysID-v0", "td3"): Hyperparameters(gamma=0.999),
}


def hyperparameters(env_id: str, algorithm: str) -> Hyperparameters:
    """The table's row for ``(env_id, algorithm)``."""
    _check_algorithm(algorithm)
    return HYPERPARAMETERS.get((env_id, algorithm), Hyperparameters())


def training_objective(env_id: str) -> TrainingObjective:
    """What a baseline trains on in ``env_id``."""
    return TRAINING_OBJECTIVES.get(env_id, TrainingObjective())


@dataclass(frozen=True)
class RLConfig:
    """One baseline run."""

    algorithm: str = "sac"
    """One of ``ppo``, ``sac``, ``td3``."""
    timesteps: int = 20_000
    """Environment transitions to train for."""
    seed: int = 0
    """Seed of the algorithm and of the training environment's resets."""
    eval_every: int = 2_000
    """Transitions between learning-curve points."""
    eval_episodes: int = 5
    """Evaluation episodes per learning-curve point (fixed starts)."""
    max_seconds: float = float("inf")
    """Stop once training (curve evaluation excluded) has taken this long."""

    def __post_init__(self) -> None:
        _check_algorithm(self.algorithm)
        for name in ("timesteps", "eval_every", "eval_episodes"):
            check_integer(name, getattr(self, name))
        if not self.max_seconds > 0:
            raise ValueError(f"max_seconds must be positive, got {self.max_seconds!r}")


@dataclass
class RLResult:
    """A trained baseline and its learning curve."""

    model: BaseAlgorithm
    policy: GymPolicy
    """Deterministic Gymnasium policy (observation -> action in [-1, 1])."""
    curve: list[dict[str, float]]
    """Learning-curve points ``{"transitions", "seconds", "cost"}`` (mean evaluation cost)."""
    transitions: int
    """Environment transitions used in training."""
    seconds: float
    """Training wall time, curve evaluation excluded."""


def _check_algorithm(algorithm: str) -> None:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")


def make_model(algorithm: str, env: gym.Env, hp: Hyperparameters, seed: int) -> BaseAlgorithm:
    """The SB3 model for ``algorithm`` on ``env`` with the hyperparameters ``hp``."""
    _check_algorithm(algorithm)
    common = dict(learning_rate=hp.learning_rate, gamma=hp.gamma, batch_size=hp.batch_size, seed=seed,
                  device="cpu", verbose=0, policy_kwargs=dict(net_arch=list(hp.hidden)))
    if algorithm == "ppo":
        return PPO("MlpPolicy", env, n_steps=hp.n_steps, n_epochs=hp.n_epochs, gae_lambda=hp.gae_lambda,
                   ent_coef=hp.ent_coef, **common)
    off_policy = dict(learning_starts=hp.learning_starts, buffer_size=hp.buffer_size, train_freq=hp.train_freq,
                      gradient_steps=hp.gradient_steps, **common)
    if algorithm == "sac":
        return SAC("MlpPolicy", env, **off_policy)
    dim = env.action_space.shape[0]
    noise = NormalActionNoise(np.zeros(dim), hp.action_noise * np.ones(dim))
    return TD3("MlpPolicy", env, action_noise=noise, **off_policy)


def deterministic_policy(model: BaseAlgorithm) -> GymPolicy:
    """The model's deterministic action as a Gymnasium policy."""

    def policy(observation: np.ndarray) -> np.ndarray:
        return model.predict(observation, deterministic=True)[0]

    return policy


class LearningCurve(BaseCallback):
    """SB3 callback: every ``every`` transitions, evaluate the deterministic policy and maybe stop.

    The clock that stamps each point excludes the evaluations themselves. ``on_step`` gets
    ``(transitions, {"transitions", "seconds", "cost"})``; returning True stops training,
    as does exceeding ``max_seconds``.
    """

    def __init__(self, evaluate_cost: Callable[[GymPolicy], float], every: int, on_step: StepCallback | None = None,
                 max_seconds: float = float("inf")):
        super().__init__()
        self.evaluate_cost, self.every, self.user_callback, self.max_seconds = evaluate_cost, every, on_step, max_seconds
        self.curve: list[dict[str, float]] = []
        self.seconds = 0.0
        self._resumed = 0.0
        self._next = 0

    def _on_training_start(self) -> None:
        self._resumed = time.perf_counter()
        self._next = self.every

    def _on_step(self) -> bool:
        elapsed = self.seconds + time.perf_counter() - self._resumed
        if self.num_timesteps < self._next and elapsed < self.max_seconds:
            return True
        self.seconds = elapsed
        self._next += self.every
        keep_going = self.point() and elapsed < self.max_seconds
        self._resumed = time.perf_counter()
        return keep_going

    def point(self, notify: bool = True) -> bool:
        """Record a curve point now (the clock must be stopped) and pass it to ``on_step``; False means stop."""
        cost = float(self.evaluate_cost(deterministic_policy(self.model)))
        metrics = {"transitions": float(self.num_timesteps), "seconds": self.seconds, "cost": cost}
        self.curve.append(metrics)
        return not (notify and self.user_callback is not None and self.user_callback(self.num_timesteps, dict(metrics)))

    def _on_training_end(self) -> None:
        # the final policy (PPO updates after its last collection step): the last point is its evaluation
        self.seconds += time.perf_counter() - self._resumed
        self._resumed = time.perf_counter()
        replace = bool(self.curve) and self.curve[-1]["transitions"] == self.num_timesteps
        if replace:  # already reported to on_step: re-evaluated, not reported again
            self.curve.pop()
        self.point(notify=not replace)


def train(env_id: str, config: RLConfig, env_kwargs: dict[str, Any] | None = None,
          callback: StepCallback | None = None, hp: Hyperparameters | None = None,
          curve_cost: Callable[[GymPolicy], float] | None = None) -> RLResult:
    """Train ``config.algorithm`` on ``env_id``; the curve is evaluated on ``env_kwargs``' objective.

    Training uses ``env_kwargs`` updated with :data:`TRAINING_OBJECTIVES`; every
    learning-curve point is the mean cost of ``config.eval_episodes`` deterministic
    episodes of :func:`agents.evaluation.evaluate` on ``env_kwargs`` as given, or
    ``curve_cost(policy)`` when given (the benchmark's protocol). ``hp`` replaces the
    table's row (:func:`hyperparameters`) when given.
    """
    if env_id not in gym.registry:
        raise ValueError(f"env_id must be a registered id, got {env_id!r}")
    env_kwargs = dict(env_kwargs or {})
    train_env = gym.make(env_id, **{**env_kwargs, **training_objective(env_id).env_kwargs})
    train_env.reset(seed=config.seed)
    hp = hyperparameters(env_id, config.algorithm) if hp is None else hp
    model = make_model(config.algorithm, train_env, hp, config.seed)

    def evaluate_cost(policy: GymPolicy) -> float:
        return float(evaluate(env_id, policy, config.eval_episodes, env_kwargs).mean())

    curve = LearningCurve(evaluate_cost if curve_cost is None else curve_cost, config.eval_every, callback, config.max_seconds)
    model.learn(config.timesteps, callback=curve)
    train_env.close()
    return RLResult(model, deterministic_policy(model), curve.curve, int(model.num_timesteps), curve.seconds)


def describe(env_id: str, algorithm: str) -> dict[str, Any]:
    """The training objective and the hyperparameters of ``algorithm`` in ``env_id`` (for reports)."""
    return {"trained_on": training_objective(env_id).label, **dataclasses.asdict(hyperparameters(env_id, algorithm))}


def set_threads(threads: int = 1) -> None:
    """Use ``threads`` torch threads (one per worker process in a sweep)."""
    torch.set_num_threads(threads)
