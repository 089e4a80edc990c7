"""RL hyperparameters as rl-baselines3-zoo writes them, and their conversion to SB3 constructor arguments.

The zoo (package ``rl_zoo3``) keeps, per algorithm, a YAML file of tuned entries per task
(``rl_zoo3/hyperparams/{ppo,sac,td3}.yml``). An entry lists only what differs from SB3's
defaults, in the zoo's own spelling: ``n_timesteps`` (its budget), ``n_envs``, ``normalize``
(``VecNormalize``), ``lin_<x>`` (a learning rate decaying linearly to 0), ``policy_kwargs``
as a Python string, ``noise_type``/``noise_std`` (TD3's action noise). :func:`from_zoo` turns
one entry into a :class:`Hyperparameters`, which :meth:`Hyperparameters.sb3_arguments` turns
into SB3 constructor arguments.

The entries the cards use are copied below verbatim from ``rl_zoo3`` 2.9.2 (:data:`ZOO`, keyed
``(algorithm, task)``): the package itself pulls in optuna, moviepy, huggingface_hub and
sqlalchemy, too much to install to read three YAML files.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
from stable_baselines3 import PPO, SAC, TD3
from stable_baselines3.common.noise import NormalActionNoise, OrnsteinUhlenbeckActionNoise
from stable_baselines3.common.utils import LinearSchedule

ALGORITHMS = {"ppo": PPO, "sac": SAC, "td3": TD3}

#: rl_zoo3 2.9.2, hyperparams/<algorithm>.yml, the entries the cards cite (verbatim, ``policy`` dropped)
ZOO: dict[tuple[str, str], dict[str, Any]] = {
    ("ppo", "Pendulum-v1"): dict(n_envs=4, n_timesteps=1e5, n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10,
                                 ent_coef=0.0, learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4),
    ("sac", "Pendulum-v1"): dict(n_timesteps=20000, learning_rate=1e-3),
    ("td3", "Pendulum-v1"): dict(n_timesteps=20000, gamma=0.98, buffer_size=200000, learning_starts=10000,
                                 noise_type="normal", noise_std=0.1, gradient_steps=1, train_freq=1, learning_rate=1e-3,
                                 policy_kwargs="dict(net_arch=[400, 300])"),
    ("ppo", "InvertedPendulumSwingupBulletEnv-v0"): dict(
        normalize=True, n_envs=8, n_timesteps=2e6, n_steps=2048, batch_size=64, gae_lambda=0.95, gamma=0.99, n_epochs=10,
        ent_coef=0.0, learning_rate=2.5e-4, clip_range=0.2),
    ("ppo", "default"): dict(n_timesteps=1e6),
    ("sac", "default"): dict(n_timesteps=1e6),
    ("td3", "default"): dict(n_timesteps=1e6, train_freq=1, gradient_steps=1, noise_type="normal", noise_std=0.1),
}


@dataclass(frozen=True)
class Hyperparameters:
    """The SB3 settings of one (environment, algorithm); ``None`` leaves SB3's default for the algorithm."""

    zoo: str = ""
    """The zoo entry these come from, ``"<algorithm>.yml:<task>"`` (empty: none), for reports."""
    n_timesteps: int | None = None
    """The zoo entry's training budget in transitions (for reports; the run's budget is the caller's)."""
    n_envs: int = 1
    """Environments stepped together (SB3 ``VecEnv``)."""
    norm_obs: bool = False
    """Normalise observations by their running mean and variance (SB3 ``VecNormalize``)."""
    norm_reward: bool = False
    """Scale rewards by the running standard deviation of the discounted return (SB3 ``VecNormalize``)."""
    learning_rate: float | None = None
    """Adam step size."""
    linear_decay: bool = False
    """Decay the learning rate linearly to 0 over training (the zoo's ``lin_`` prefix)."""
    net_arch: tuple[int, ...] | None = None
    """Hidden layer widths of the actor and of the critic (SB3 ``policy_kwargs["net_arch"]``)."""
    log_std_init: float | None = None
    """Initial log standard deviation of a stochastic policy (SB3 ``policy_kwargs["log_std_init"]``)."""
    gamma: float | None = None
    """Discount factor."""
    batch_size: int | None = None
    """Minibatch size (PPO) or replay batch size (SAC, TD3)."""
    n_steps: int | None = None
    """PPO: transitions collected per environment per update."""
    n_epochs: int | None = None
    """PPO: passes over each rollout."""
    gae_lambda: float | None = None
    """PPO: GAE lambda."""
    clip_range: float | None = None
    """PPO: clipping of the probability ratio."""
    vf_coef: float | None = None
    """PPO: value loss coefficient."""
    max_grad_norm: float | None = None
    """PPO: gradient norm clip."""
    ent_coef: float | str | None = None
    """PPO: entropy bonus; SAC: entropy coefficient (``"auto"``: tuned)."""
    use_sde: bool | None = None
    """PPO, SAC: generalised state-dependent exploration (gSDE)."""
    sde_sample_freq: int | None = None
    """PPO, SAC: steps between gSDE noise samples (-1: once per rollout)."""
    learning_starts: int | None = None
    """SAC, TD3: uniformly random transitions collected before learning."""
    buffer_size: int | None = None
    """SAC, TD3: replay buffer capacity."""
    train_freq: int | None = None
    """SAC, TD3: environment steps between updates."""
    gradient_steps: int | None = None
    """SAC, TD3: gradient steps per update."""
    tau: float | None = None
    """SAC, TD3: soft update coefficient of the target networks."""
    noise_type: str | None = None
    """TD3 (SAC): exploration noise added to the action, ``"normal"`` or ``"ornstein-uhlenbeck"``."""
    noise_std: float = 0.1
    """Standard deviation of that noise, in action units ([-1, 1])."""

    def __post_init__(self) -> None:
        for name in ("n_envs", "learning_rate", "batch_size", "n_steps", "n_epochs", "buffer_size", "train_freq",
                     "gradient_steps", "noise_std"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")
        if self.gamma is not None and not 0.0 < self.gamma <= 1.0:
            raise ValueError(f"gamma must be in (0, 1], got {self.gamma!r}")
        if self.noise_type not in (None, "normal", "ornstein-uhlenbeck"):
            raise ValueError(f"noise_type must be None, 'normal' or 'ornstein-uhlenbeck', got {self.noise_type!r}")

    def sb3_arguments(self, algorithm: str, action_dim: int) -> dict[str, Any]:
        """The keyword arguments of the SB3 constructor of ``algorithm`` these set (policy and env aside).

        A setting the algorithm does not take (e.g. ``n_epochs`` for SAC) is a ``ValueError``.
        """
        cls = ALGORITHMS[algorithm]
        accepted = inspect.signature(cls).parameters
        own = {"zoo", "n_timesteps", "n_envs", "norm_obs", "norm_reward", "linear_decay", "net_arch", "log_std_init",
               "noise_type", "noise_std"}
        arguments = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                     if f.name not in own and getattr(self, f.name) is not None}
        for name in arguments:
            if name not in accepted:
                raise ValueError(f"{name} is not an argument of SB3 {cls.__name__}")
        if self.linear_decay:
            if self.learning_rate is None:
                raise ValueError("linear_decay needs a learning_rate")
            arguments["learning_rate"] = LinearSchedule(self.learning_rate, 0.0, 1.0)
        policy_kwargs = {k: v for k, v in (("net_arch", None if self.net_arch is None else list(self.net_arch)),
                                           ("log_std_init", self.log_std_init)) if v is not None}
        if policy_kwargs:
            arguments["policy_kwargs"] = policy_kwargs
        if self.noise_type is not None:
            if "action_noise" not in accepted:
                raise ValueError(f"noise_type is not an argument of SB3 {cls.__name__}")
            noise = NormalActionNoise if self.noise_type == "normal" else OrnsteinUhlenbeckActionNoise
            arguments["action_noise"] = noise(np.zeros(action_dim), self.noise_std * np.ones(action_dim))
        return arguments


def _policy_kwargs(text: str) -> dict[str, Any]:
    """The zoo's ``policy_kwargs`` string ``"dict(net_arch=[400, 300], log_std_init=-3)"`` as a dict of literals."""
    call = ast.parse(text, mode="eval").body
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "dict" and not call.args):
        raise ValueError(f"policy_kwargs must be a 'dict(key=literal, ...)' string, got {text!r}")
    values = {}
    for keyword in call.keywords:
        if keyword.arg is None:  # dict(**other)
            raise ValueError(f"policy_kwargs must be a 'dict(key=literal, ...)' string, got {text!r}")
        values[keyword.arg] = ast.literal_eval(keyword.value)
    return values


def from_zoo(algorithm: str, task: str, entry: dict[str, Any] | None = None, **overrides: Any) -> Hyperparameters:
    """The zoo's entry for ``task`` in ``<algorithm>.yml`` (``entry``, else :data:`ZOO`), with ``overrides``.

    ``normalize: true`` normalises observations and rewards (the zoo's ``VecNormalize``
    defaults); a ``dict(norm_obs=..., norm_reward=...)`` string sets them one by one.
    """
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {tuple(ALGORITHMS)}, got {algorithm!r}")
    if entry is None:
        if (algorithm, task) not in ZOO:
            raise ValueError(f"task must be one of {sorted(t for a, t in ZOO if a == algorithm)} for {algorithm}, got {task!r}")
        entry = ZOO[algorithm, task]
    values = dict(entry)
    if values.pop("policy", "MlpPolicy") != "MlpPolicy":
        raise ValueError(f"policy must be MlpPolicy, got {entry['policy']!r}")
    fields: dict[str, Any] = {"zoo": f"{algorithm}.yml:{task}"}
    if "n_timesteps" in values:
        fields["n_timesteps"] = int(values.pop("n_timesteps"))
    normalize = values.pop("normalize", False)
    if isinstance(normalize, str):
        normalize = _policy_kwargs(normalize)
    if normalize:
        normalize = {} if normalize is True else dict(normalize)
        fields["norm_obs"], fields["norm_reward"] = normalize.pop("norm_obs", True), normalize.pop("norm_reward", True)
        if normalize:
            raise ValueError(f"normalize: unsupported settings {sorted(normalize)}")
    rate = values.pop("learning_rate", None)
    if isinstance(rate, str):
        if not rate.startswith("lin_"):
            raise ValueError(f"learning_rate must be a number or 'lin_<number>', got {rate!r}")
        rate, fields["linear_decay"] = float(rate[4:]), True
    if rate is not None:
        fields["learning_rate"] = float(rate)
    policy_kwargs = _policy_kwargs(values.pop("policy_kwargs", "dict()"))
    if "net_arch" in policy_kwargs:
        fields["net_arch"] = tuple(policy_kwargs.pop("net_arch"))
    if "log_std_init" in policy_kwargs:
        fields["log_std_init"] = float(policy_kwargs.pop("log_std_init"))
    if policy_kwargs:
        raise ValueError(f"policy_kwargs: unsupported settings {sorted(policy_kwargs)}")
    names = {f.name for f in dataclasses.fields(Hyperparameters)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"entry has settings this module does not convert: {unknown}")
    return Hyperparameters(**{**fields, **values, **overrides})
