"""Reinforcement-learning baselines: stable-baselines3 PPO, SAC and TD3, unmodified, on the Gymnasium face.

The algorithms are SB3's own; this module only chooses their hyperparameters (one table,
:data:`HYPERPARAMETERS`), the reward they train on (:data:`TRAINING_OBJECTIVES`) and
records a learning curve with the project's one evaluation protocol
(:func:`agents.episodes.evaluate`, deterministic policy, fixed starts).

Training reward. Each baseline trains on the environment's default objective except where its
card (:mod:`agents.cards`) names another, with the reason (e.g. the cartpole's dense quadratic
cost where the default pays only at T). Whatever a baseline trains on, its learning curve and
final cost are evaluated on the objective the caller asks for (``env_kwargs``; the default objective in the benchmark).

Hyperparameters. :class:`Hyperparameters` holds every SB3 argument this module sets; its
defaults apply to every (environment, algorithm) pair whose card does not list one. They are
SB3's defaults except: (64, 64) networks for SAC and TD3 (SB3: 256, 256) and replay batches of
128 (SB3: 256), which run 3-5x faster per step on one CPU thread and are ample for
1-6-dimensional observations; a learning rate of 3e-4 for TD3 too (SB3: 1e-3); 1000 random
transitions before SAC and TD3 learn (SB3: 100); PPO rollouts of 1024 transitions in
minibatches of 128 (SB3: 2048 and 64). Where the objective is paid at the end of 100-step
episodes, the card sets ``gamma = 0.999`` (and PPO rollouts of ten whole
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
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.noise import NormalActionNoise

import diffenvs  # noqa: F401  (registers the ids)
from agents.episodes import GymPolicy, evaluate
from agents.registry import Agent, Budget, CurveCost, Trained, register

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


def hyperparameters(env_id: str, algorithm: str) -> Hyperparameters:
    """The hyperparameters of ``algorithm`` on ``env_id``: its card's, else the defaults."""
    from agents.cards import card

    _check_algorithm(algorithm)
    return card(env_id).rl_hyperparameters.get(algorithm, Hyperparameters())


def training_objective(env_id: str) -> TrainingObjective:
    """What a baseline trains on in ``env_id``: its card's objective, else the default."""
    from agents.cards import card

    return card(env_id).rl_objective or TrainingObjective()


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


def train(env_id: str, algorithm: str, budget: Budget, seed: int = 0, env_kwargs: dict[str, Any] | None = None,
          callback: StepCallback | None = None, hp: Hyperparameters | None = None,
          curve_cost: Callable[[GymPolicy], float] | None = None, eval_episodes: int = 5) -> RLResult:
    """Train ``algorithm`` on ``env_id`` for ``budget.transitions`` transitions (at most ``budget.seconds``).

    Training uses ``env_kwargs`` updated with the card's training objective
    (:func:`training_objective`); every ``budget.eval_every`` transitions a learning-curve point
    is the mean cost of ``eval_episodes`` deterministic episodes of
    :func:`agents.episodes.evaluate` on ``env_kwargs`` as given, or ``curve_cost(policy)`` when
    given (the benchmark's protocol). ``hp`` replaces the card's hyperparameters when given;
    ``seed`` seeds the algorithm and the training environment's resets.
    """
    _check_algorithm(algorithm)
    if env_id not in gym.registry:
        raise ValueError(f"env_id must be a registered id, got {env_id!r}")
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be an agents.registry.Budget, got {type(budget).__name__}")
    env_kwargs = dict(env_kwargs or {})
    train_env = gym.make(env_id, **{**env_kwargs, **training_objective(env_id).env_kwargs})
    train_env.reset(seed=seed)
    hp = hyperparameters(env_id, algorithm) if hp is None else hp
    model = make_model(algorithm, train_env, hp, seed)

    def evaluate_cost(policy: GymPolicy) -> float:
        return float(evaluate(env_id, policy, eval_episodes, env_kwargs).mean())

    curve = LearningCurve(evaluate_cost if curve_cost is None else curve_cost, budget.eval_every, callback, budget.seconds)
    model.learn(budget.transitions, callback=curve)
    train_env.close()
    return RLResult(model, deterministic_policy(model), curve.curve, int(model.num_timesteps), curve.seconds)


def describe(env_id: str, algorithm: str) -> dict[str, Any]:
    """The training objective and the hyperparameters of ``algorithm`` in ``env_id`` (for reports)."""
    return {"trained_on": training_objective(env_id).label, **dataclasses.asdict(hyperparameters(env_id, algorithm))}


def _benchmark_train(algorithm: str) -> Callable[..., Trained]:
    def train_for_benchmark(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget,
                            curve_cost: CurveCost) -> Trained:
        result = train(env_id, algorithm, budget, seed, env_kwargs, curve_cost=curve_cost)
        return Trained(result.policy, result.curve, result.transitions, result.seconds, describe(env_id, algorithm))

    return train_for_benchmark


for _algorithm, _cost in (("ppo", 1.0), ("sac", 4.0), ("td3", 2.0)):
    register(Agent(_algorithm, "rl", f"stable-baselines3 {_algorithm.upper()} on the Gymnasium face (hyperparameters: "
                   "the environment's card, else agents.rl.Hyperparameters)", _benchmark_train(_algorithm), cost=_cost))
