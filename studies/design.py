r"""Sequential Bayesian experimental design by differentiating the model sensitivity (report §6, Algorithm 2).

The model is the decay :math:`\dot u = -\theta u`, :math:`u(0) = 1` of the decay-design
environment (:mod:`diffenvs.envs.decay_design`), integrated by an ODE solver. At the current belief
:math:`\theta \sim \mathcal N(\hat\theta_n, C_n)` the agent chooses the measurement time
maximising the expected information gain of the model
linearised at :math:`\hat\theta_n` (report eq. 6.13)

.. math:: U(t) = \tfrac12 \log\big(1 + g(t)^2 C_n / \sigma^2\big), \qquad
          g(t) = \frac{\partial u}{\partial\theta}(t; \hat\theta_n),

by Adam on :math:`t`. :math:`g` is a derivative through the solver and :math:`dU/dt` needs its
derivative in :math:`t`: either by autograd through the solver (``derivative="autograd"``,
:func:`diffenvs.derivatives.sensitivity`) or by Schwarz's trick
:math:`dg/dt = \tfrac{d}{d\theta} f(u(t; \theta), \theta)` (``derivative="schwarz"``,
:func:`diffenvs.derivatives.sensitivity_schwarz`). The analytic optimum is :math:`t = 1/\hat\theta_n`.

Algorithm 2 runs on the Gymnasium face (or, for many episodes at once, on the vector
face): the agent reads the belief from the observation, acts with the designed time, and
the environment measures and applies the Gaussian update (6.15)
(:func:`diffenvs.envs.decay_design.linearised_update`, written once and shared: the criterion
:math:`U` here is the same update's information term).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import VectorEnv

import diffenvs  # noqa: F401  (registers the ids)
from diffenvs.core.problem import check_choice, check_integer, check_positive
from diffenvs.core.rollout import RK4, Adaptive
from diffenvs.derivatives import sensitivity, sensitivity_schwarz
from diffenvs.envs.decay_design import DecayDesign, linearised_update, rate

#: ``on_step(n, metrics) -> bool``: called after each measurement; ``True`` stops the run
Callback = Callable[[int, dict], bool]


@dataclass(frozen=True)
class DesignConfig:
    """Hyperparameters of the design agent."""

    lr: float = 0.1
    """Adam learning rate on the measurement time (s), as in the report."""
    max_iterations: int = 400
    """Most Adam steps per design."""
    tolerance: float = 1e-4
    """Stop a design once patience Adam steps in a row each move t by less than tolerance * t."""
    patience: int = 10
    """Consecutive small steps that stop a design (one small step is also what a turning point looks like)."""
    initial_time: float = 1.0
    """Starting time (s) of the first design's ascent."""
    warm_start: bool = True
    """Start each later ascent from the previous design (else from initial_time)."""
    derivative: str = "autograd"
    """How dg/dt is obtained: "autograd" (through the solver) or "schwarz" (dg/dt = d/dθ f(u(t; θ), θ))."""
    solver: str = "rk4"
    """ODE solver of the model: "rk4" (fixed step) or "dopri5" (adaptive, torchdiffeq)."""
    steps: int = 10
    """RK4 steps over [0, t]."""
    rtol: float = 1e-8
    """dopri5 relative tolerance."""
    atol: float = 1e-10
    """dopri5 absolute tolerance."""

    def __post_init__(self) -> None:
        check_positive("lr", self.lr)
        check_positive("tolerance", self.tolerance)
        check_positive("initial_time", self.initial_time)
        check_choice("derivative", self.derivative, ("autograd", "schwarz"))
        check_choice("solver", self.solver, ("rk4", "dopri5"))
        for name in ("max_iterations", "steps", "patience"):
            check_integer(name, getattr(self, name))

    @property
    def ode_solver(self) -> RK4 | Adaptive:
        return RK4() if self.solver == "rk4" else Adaptive("dopri5", self.rtol, self.atol)


def model_sensitivity(t: torch.Tensor, theta: torch.Tensor | float, config: DesignConfig,
                      derivative: str | None = None) -> torch.Tensor:
    r"""Sensitivity :math:`g(t) = \partial u(t; \theta)/\partial\theta` of the decay model through the solver.

    ``t`` has shape ``(batch,)``, ``theta`` is a float or a tensor ``(batch,)`` (one rate per
    time); the result, shape ``(batch,)``, is differentiable in ``t`` by ``derivative``
    (default ``config.derivative``). The closed form is :math:`-t e^{-\theta t}`.
    """
    derivative = config.derivative if derivative is None else derivative
    check_choice("derivative", derivative, ("autograd", "schwarz"))
    x0 = torch.ones(t.shape[0], 1, dtype=t.dtype)
    rows = torch.as_tensor(theta, dtype=t.dtype).reshape(-1, 1).expand(t.shape[0], 1)
    if derivative == "schwarz":
        return sensitivity_schwarz(rate, x0, t, rows, solver=config.ode_solver, steps=config.steps)[:, 0, 0]
    times = torch.stack([torch.zeros_like(t), t])
    return sensitivity(rate, x0, times, rows, solver=config.ode_solver, steps=config.steps)[-1, :, 0, 0]


def information_gain(g: torch.Tensor, variance: torch.Tensor | float, noise_std: float) -> torch.Tensor:
    r""":math:`U = \tfrac12 \log(1 + g^2 C / \sigma^2)` (eq. 6.13): the entropy reduction of the update (6.15)."""
    _, _, information = linearised_update(0.0, variance, g, 0.0, noise_std)
    return 0.5 * torch.log1p(information)


@dataclass
class Design:
    """Designs of a batch of beliefs: times ``(batch,)``, Adam iterations used, the summed criterion along the ascent."""

    times: np.ndarray
    iterations: int
    criterion: list[float] = field(default_factory=list)


def optimal_design(means: np.ndarray | float, variances: np.ndarray | float, noise_std: float, config: DesignConfig,
                   start: np.ndarray | float | None = None, t_max: float = float("inf")) -> Design:
    r"""Maximise :math:`U(t)` by Adam on :math:`t` for each belief of a batch.

    ``means``/``variances`` are the beliefs :math:`(\hat\theta_n, C_n)`, floats or arrays
    ``(batch,)``; ``noise_std`` is :math:`\sigma`; the ascent starts at ``start`` (default
    ``config.initial_time``) and keeps :math:`t \in [0, t_{\max}]`. Adam acts element-wise,
    so a batch is the same as separate runs; the batch stops when every element has been
    quiet for ``config.patience`` steps.
    """
    means, variances = np.atleast_1d(np.asarray(means, np.float64)), np.atleast_1d(np.asarray(variances, np.float64))
    if means.shape != variances.shape or means.ndim != 1:
        raise ValueError(f"means and variances must be floats or arrays of the same shape (batch,), got "
                         f"{means.shape} and {variances.shape}")
    if not (np.isfinite(variances).all() and (variances > 0).all()):
        raise ValueError(f"variances must be finite and positive, got {variances.tolist()}")
    check_positive("noise_std", noise_std)
    if not (isinstance(t_max, (int, float)) and t_max > 0):
        raise ValueError(f"t_max must be a positive number of seconds, got {t_max!r}")
    initial = np.broadcast_to(config.initial_time if start is None else np.asarray(start, np.float64), means.shape)
    if not (np.isfinite(initial).all() and (initial >= 0).all() and (initial <= t_max).all()):
        name = "config.initial_time" if start is None else "start"
        raise ValueError(f"{name} must lie in [0, t_max] = [0, {t_max:g}] s (the ascent's times stay there), "
                         f"got {np.unique(initial).tolist()[:5]}")
    t = torch.tensor(initial, dtype=torch.float64, requires_grad=True)
    theta, variance = torch.as_tensor(means), torch.as_tensor(variances)
    optimiser = torch.optim.Adam([t], lr=config.lr)
    history: list[float] = []
    quiet = torch.zeros(means.shape, dtype=torch.long)
    iterations = 0
    while iterations < config.max_iterations:
        iterations += 1
        criterion = information_gain(model_sensitivity(t, theta, config), variance, noise_std).sum()
        if not torch.isfinite(criterion):
            raise ValueError(f"the information gain is not finite at t = {t.detach().tolist()[:5]} s (beliefs "
                             f"{means.tolist()[:5]}): the solver's {config.steps} steps over [0, t] diverge there; "
                             "raise config.steps or lower t_max")
        optimiser.zero_grad()
        (-criterion).backward()
        before = t.detach().clone()
        optimiser.step()
        with torch.no_grad():
            t.clamp_(0.0, t_max)
        history.append(criterion.item())
        small = (t.detach() - before).abs() < config.tolerance * before.abs().clamp_min(1e-12)
        quiet = torch.where(small, quiet + 1, torch.zeros_like(quiet))
        if bool((quiet >= config.patience).all()):
            break
    return Design(t.detach().numpy().copy(), iterations, history)


@dataclass
class DesignRun:
    """Algorithm 2 on an environment: beliefs ``(N + 1, batch)``, designs, rewards and iterations ``(N, batch)``."""

    means: np.ndarray
    variances: np.ndarray
    designs: np.ndarray
    rewards: np.ndarray
    iterations: np.ndarray
    seconds: float


def _decay_design(env: gym.Env | VectorEnv) -> DecayDesign:
    """The definition behind ``env``; a ``TypeError`` for any other environment than the decay design."""
    problem = getattr(env.unwrapped, "problem", None)
    if not isinstance(problem, DecayDesign):
        raise TypeError(f"env must be a face of DiffDecayDesign-v0, got {type(env.unwrapped).__name__}")
    return problem


def sequential_design(env: gym.Env | VectorEnv, config: DesignConfig, seed: int | None = None,
                      callback: Callback | None = None) -> DesignRun:
    """Run one episode of Algorithm 2 on the Gymnasium face of the decay-design environment (or its vector face).

    Each step: design from the observed belief (:func:`optimal_design`), act with it, read the
    updated belief. With a vector environment its ``num_envs`` episodes (seeds ``seed``,
    ``seed + 1``, ...) run as one batch. ``callback(n, metrics)`` after each measurement may
    stop the run.
    """
    vector = isinstance(env, VectorEnv)
    problem = _decay_design(env)
    noise_std, t_max = float(problem.params.noise_std), float(problem.t_max)
    start_clock = time.perf_counter()
    observation, _ = env.reset(seed=seed)
    observation = np.atleast_2d(observation).astype(np.float64)
    means, variances = [observation[:, 0]], [observation[:, 1]]
    designs, rewards, iterations = [], [], []
    start = None
    for n in range(1, problem.max_steps + 1):
        design = optimal_design(means[-1], variances[-1], noise_std, config, start, t_max)
        action = problem.action_from_control(design.times[:, None]).astype(np.float32)
        observation, reward, terminated, truncated, _ = env.step(action if vector else action[0])
        observation = np.atleast_2d(observation).astype(np.float64)
        means.append(observation[:, 0])
        variances.append(observation[:, 1])
        designs.append(design.times)
        rewards.append(np.array(reward, dtype=np.float64, ndmin=1))
        iterations.append(np.full(design.times.shape, design.iterations))
        start = design.times if config.warm_start else None
        metrics = dict(design=design.times, analytic=1.0 / means[-2], mean=means[-1], variance=variances[-1],
                       reward=rewards[-1], iterations=design.iterations)
        if (callback is not None and callback(n, metrics)) or bool(np.all(np.logical_or(terminated, truncated))):
            break
    return DesignRun(np.array(means), np.array(variances), np.array(designs), np.array(rewards),
                     np.array(iterations), time.perf_counter() - start_clock)
