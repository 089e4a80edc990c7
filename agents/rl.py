"""Reinforcement-learning baselines: stable-baselines3 PPO, SAC and TD3, unmodified, set up as rl-baselines3-zoo runs them.

The algorithms are SB3's own; this module chooses their settings, the reward they train on
(:func:`training_objective`) and records a learning curve with the project's one evaluation
protocol (:func:`agents.episodes.evaluate`, deterministic policy, fixed starts, Gymnasium face).

Hyperparameters. Each card (:mod:`agents.cards`) gives, in its ``"rl"`` section (every
algorithm) updated by the algorithm's own (``"ppo"``, ``"sac"``, ``"td3"``), the zoo's task
nearest to its environment (``"zoo": "Pendulum-v1"``, read by :func:`agents.rl_zoo.from_zoo`;
the card says why) and any stated deviation (any other :class:`~agents.rl_zoo.Hyperparameters`
field, e.g. ``"gamma": 0.999``); an environment without one gets the zoo's ``default`` entry
(SB3's defaults). Training runs on ``n_envs`` environments of the vector face in one batched step
(:mod:`agents.sb3_vec`), wrapped in SB3's ``VecNormalize`` where the entry normalises.

Training reward. Each baseline trains on the environment's default objective except where its
card names another (the section's ``"objective"``, :mod:`agents.objectives`), with the reason
(e.g. the cartpole's dense quadratic cost where the default pays only at T). Whatever a
baseline trains on, its learning curve and final cost are evaluated on the objective the
caller asks for (``env_kwargs``; the default objective in the benchmark), with the policy's
observation normalisation frozen at its training values.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.running_mean_std import RunningMeanStd
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

import diffenvs  # noqa: F401  (registers the ids)
from agents.cards import card
from agents.episodes import BatchPolicy, GymPolicy, batch_policy, evaluate
from agents.objectives import TrainingObjective as TrainingObjective  # the objective's type, also this module's
from agents.objectives import training_objective
from agents.registry import Agent, Budget, CurveCost, Trained, register
from agents.rl_zoo import ALGORITHMS as SB3_CLASSES
from agents.rl_zoo import Hyperparameters, from_zoo
from agents.sb3_vec import make_vec_env

ALGORITHMS = ("ppo", "sac", "td3")

StepCallback = Callable[[int, dict[str, float]], bool]
"""``on_step(step, metrics) -> bool``: called at every learning-curve point; returning True stops training."""


#: the keys an algorithm reads from its card's sections: the objective, the zoo's task, and Hyperparameters fields
SETTINGS = ("objective", "zoo", *(f.name for f in dataclasses.fields(Hyperparameters) if f.name != "zoo"))

def hyperparameters(env_id: str, algorithm: str) -> Hyperparameters:
    """The hyperparameters of ``algorithm`` on ``env_id``: the zoo's entry for the task its card names (``"zoo"``,
    else the zoo's ``default`` entry) with the card's deviations (:data:`SETTINGS`; another key is a ``ValueError``)."""
    _check_algorithm(algorithm)
    values = card(env_id).settings(algorithm, "rl", known=SETTINGS)
    values.pop("objective", None)
    return from_zoo(algorithm, values.pop("zoo", "default"), **values)


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


def make_model(algorithm: str, env: VecEnv, hp: Hyperparameters, seed: int) -> BaseAlgorithm:
    """The SB3 model for ``algorithm`` on ``env`` with the hyperparameters ``hp`` (CPU, silent)."""
    _check_algorithm(algorithm)
    shape = env.action_space.shape
    if not shape:
        raise ValueError(f"the action space must be a Box, got {env.action_space}")
    arguments = hp.sb3_arguments(algorithm, shape[0])
    return SB3_CLASSES[algorithm]("MlpPolicy", env, seed=seed, device="cpu", verbose=0, **arguments)


def observation_normaliser(model: BaseAlgorithm) -> Callable[[np.ndarray], np.ndarray]:
    """The model's observation normalisation, frozen now: ``VecNormalize``'s, or the identity.

    With running mean :math:`\\mu` and variance :math:`\\sigma^2` of the training observations,
    :math:`\\hat o = \\mathrm{clip}((o - \\mu) / \\sqrt{\\sigma^2 + \\epsilon}, -c, c)`
    (``VecNormalize.normalize_obs`` with its statistics copied, so that further training does not move them).
    """
    normaliser = model.get_vec_normalize_env()
    if normaliser is None or not normaliser.norm_obs:
        return lambda observation: observation
    statistics = normaliser.obs_rms
    if not isinstance(statistics, RunningMeanStd):
        raise TypeError("only array observations are normalised here, not dictionaries of them")
    mean, var = statistics.mean.copy(), statistics.var.copy()
    epsilon, clip = normaliser.epsilon, normaliser.clip_obs

    def normalise(observation: np.ndarray) -> np.ndarray:
        return np.clip((observation - mean) / np.sqrt(var + epsilon), -clip, clip).astype(np.float32)

    return normalise


def deterministic_policy(model: BaseAlgorithm) -> BatchPolicy:
    """The model's deterministic action as a Gymnasium policy, its observation normalisation frozen now.

    It takes one observation or a batch ``(B, obs)`` (SB3's ``predict`` and the frozen normaliser work row by row),
    so that evaluation plays its episodes at once on the vector face (:func:`agents.episodes.run_episodes`).
    """
    normalise = observation_normaliser(model)

    def policy(observation: np.ndarray) -> np.ndarray:
        return model.predict(normalise(np.asarray(observation)), deterministic=True)[0]

    return batch_policy(policy)


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
          curve_cost: Callable[[GymPolicy], float] | None = None, eval_episodes: int = 5,
          objective: TrainingObjective | None = None) -> RLResult:
    """Train ``algorithm`` on ``env_id`` for ``budget.transitions`` transitions (at most ``budget.seconds``).

    Training uses ``env_kwargs`` updated with the card's training objective
    (:func:`training_objective`); every ``budget.eval_every`` transitions a learning-curve point
    is the mean cost of ``eval_episodes`` deterministic episodes of
    :func:`agents.episodes.evaluate` on ``env_kwargs`` as given, or ``curve_cost(policy)`` when
    given (the benchmark's protocol). ``hp`` replaces the card's hyperparameters and ``objective``
    its training objective when given;
    ``seed`` seeds the algorithm and the training environments' resets (environment ``i``:
    ``seed + i``). Training steps ``hp.n_envs`` environments at once, so it may end up to
    ``n_envs - 1`` transitions (PPO: up to one rollout) past ``budget.transitions``.
    """
    _check_algorithm(algorithm)
    if env_id not in gym.registry:
        raise ValueError(f"env_id must be a registered id, got {env_id!r}")
    if not isinstance(budget, Budget):
        raise TypeError(f"budget must be an agents.registry.Budget, got {type(budget).__name__}")
    env_kwargs = dict(env_kwargs or {})
    hp = hyperparameters(env_id, algorithm) if hp is None else hp
    objective = training_objective(env_id, algorithm) if objective is None else objective
    train_env = make_vec_env(env_id, hp.n_envs, seed, {**env_kwargs, **objective.env_kwargs})
    if hp.norm_obs or hp.norm_reward:  # the zoo's normalisation: its gamma for the return's scale
        train_env = VecNormalize(train_env, norm_obs=hp.norm_obs, norm_reward=hp.norm_reward,
                                 gamma=0.99 if hp.gamma is None else hp.gamma)
    model = make_model(algorithm, train_env, hp, seed)

    def evaluate_cost(policy: GymPolicy) -> float:
        return float(evaluate(env_id, policy, eval_episodes, env_kwargs).mean())

    curve = LearningCurve(evaluate_cost if curve_cost is None else curve_cost, budget.eval_every, callback, budget.seconds)
    model.learn(budget.transitions, callback=curve)
    train_env.close()
    return RLResult(model, deterministic_policy(model), curve.curve, int(model.num_timesteps), curve.seconds)


def describe(env_id: str, algorithm: str) -> dict[str, Any]:
    """The training objective, the zoo entry and the hyperparameters of ``algorithm`` in ``env_id`` (for reports).

    Only the settings the entry sets are listed; the others are SB3's defaults.
    """
    hp = hyperparameters(env_id, algorithm)
    defaults = Hyperparameters()
    settings = {name: value for name, value in dataclasses.asdict(hp).items()
                if name != "zoo" and (value != getattr(defaults, name) or (name == "noise_std" and hp.noise_type))}
    # no backward pass goes through the simulator: SB3's gradients are of its networks on stored transitions
    return {"trained_on": training_objective(env_id, algorithm).label, "zoo": hp.zoo, **settings,
            "backward_transitions": 0}


def _benchmark_train(algorithm: str) -> Callable[..., Trained]:
    def train_for_benchmark(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget,
                            curve_cost: CurveCost) -> Trained:
        result = train(env_id, algorithm, budget, seed, env_kwargs, curve_cost=curve_cost)
        return Trained(result.policy, result.curve, result.transitions, result.seconds, describe(env_id, algorithm))

    return train_for_benchmark


for _algorithm, _cost in (("ppo", 1.0), ("sac", 4.0), ("td3", 2.0)):
    register(Agent(_algorithm, "rl", f"stable-baselines3 {_algorithm.upper()} on the vector face (hyperparameters: "
                   "rl-baselines3-zoo's entry for the nearest task, from the environment's card)",
                   _benchmark_train(_algorithm), cost=_cost))
