r"""Short-horizon actor-critic (SHAC) through the differentiable rollout.

Xu et al., "Accelerated Policy Learning with Parallel Differentiable Simulation" (ICLR 2022),
with the choices of its code (``algorithms/shac.py`` and ``examples/cfg/shac/cartpole_swing_up.yaml``
of its repository). ``num_envs`` episodes advance in lockstep through the gradient path
(:func:`diffenvs.rollout`) in windows of :math:`h` steps. Each iteration:

1. **actor**: roll the window from where the episodes stand, the Gaussian actor
   (:class:`agents.shac_networks.Actor`) sampling its controls by reparameterisation, and
   ascend, by backpropagation through the window only, the short-horizon objective

   .. math:: J(\theta) = \frac{1}{N h} \sum_{i=1}^{N} \Bigl[\sum_{t=0}^{h-1} \gamma^t r^i_t
             + \gamma^h V_{\bar\phi}(\bar o^i_h)\Bigr],

   where :math:`\bar o` is the observation normalised by the running statistics as they stood
   at the window's start, :math:`V_{\bar\phi}` the target critic, and the bootstrap is dropped
   for an episode that ended in the window. There is no entropy term (the paper's objective):
   :math:`\log\sigma` moves only through the reparameterised samples. The gradient's norm is
   clipped (``clip_norm``).
2. **critic**: regress :math:`V_\phi(\bar o_t)` on the TD(:math:`\lambda`) targets of the
   window (:func:`lambda_returns`; states and rewards detached, values from the target critic),
   in ``critic_iterations`` passes over ``critic_minibatches`` contiguous minibatches (the
   window's pairs in time order, not shuffled, as the paper's code), each gradient's norm
   clipped at ``clip_norm``; then :math:`\bar\phi \leftarrow \alpha \bar\phi + (1 - \alpha)\phi`.
3. the running observation statistics (:class:`agents.shac_networks.RunningMeanStd`) merge
   the window's observations (its start and every step's, as the paper's code); the episodes
   move to the window's end; when they reach ``max_steps`` all restart from fresh starts.

Both learning rates decay linearly from their initial values towards ``final_learning_rate``
(the paper's 1e-5) over the ``iterations``. The trained actor evaluates with the mean
:math:`\tanh\mu(\bar o)` (the paper's deterministic player) and carries its normaliser's
statistics in its ``state_dict``.

The defaults are the paper's for its cartpole swing-up: 64 environments, windows of 32 steps,
:math:`\gamma = 0.99`, :math:`\lambda = 0.95`, actor Adam at 1e-2 and critic Adam at 1e-3
(betas 0.7, 0.95), 16 critic passes of 4 minibatches, :math:`\alpha = 0.2`, gradient norm 1,
actor and critic of two ELU + LayerNorm layers of 64 units, :math:`\log\sigma = -1` at the
start, running observation normalisation on, no reward scaling or return normalisation.

**Differences from the paper**, every one that remains:

- *Episode boundaries.* The paper's environments reset each episode as it ends and its
  windows run across the reset (240-step cartpole episodes, windows of 32); here the episodes
  advance in lockstep, the window that reaches ``max_steps`` is shorter (100-step episodes:
  windows of 32, 32, 32, 4) and all episodes restart together. An episode that ends earlier,
  at an event, earns nothing and trains nothing (critic pairs, statistics) until then, where
  the paper's environment restarts it at once.
- *The horizon.* At its time limit the paper's code bootstraps the target critic's value of
  the last observation (a truncated infinite-horizon task); here an episode's return ends at
  :math:`T` (the objectives are finite-horizon costs, a terminal cost is a reward of the last
  step): no bootstrap after :math:`T`, in the actor's objective or the critic's targets.
- *Non-finite values.* The paper's code zeroes NaN critic gradients and values of non-finite
  observations, and stops on a non-finite actor gradient; here nothing is patched (a
  non-finite value propagates into the history).
- *The policy handed back* is the last one; the paper's code also saves the policy of the best
  stochastic training episodes.
- *Numbers and devices.* One CPU process in float32 (``dtype``) where the paper runs its
  simulator on a GPU; the actor's initialisation and noise draws come from ``seed`` through
  torch's generators, not the paper's seeding.
- *Options the paper's code also has*: ``stochastic=False`` (its deterministic actor, here the
  mean network of the stochastic one with its initialisation, where the paper's is orthogonal
  with gain :math:`\sqrt 2`) and ``normalise=False`` (its ``obs_rms: False``), kept for
  ablations. The windows' compiled code (``compile``) traces a policy of parameters alone, so
  it runs only with both off; the defaults run the eager rollout.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from agents.cards import card
from agents.episodes import TrainedNetwork, gym_policy
from agents.neural_ode.config import training_solver
from agents.neural_ode.network import initial_states
from agents.objectives import TrainingObjective, training_objective
from agents.registry import Agent, Budget, CurveCost, Trained, register
from agents.shac_networks import Actor, Critic
from diffenvs import RK4, Trajectory, problem_of, rollout
from diffenvs.core.numerics import TORCH, stack
from diffenvs.core.problem import Problem, check_integer


@dataclass(frozen=True)
class ShacConfig:
    """Hyperparameters of SHAC (the defaults: the paper's cartpole swing-up; see the module docstring)."""

    iterations: int = 500
    """Windows rolled (one actor step and one critic fit each)."""
    num_envs: int = 64
    """Episodes advanced in lockstep through the gradient path."""
    horizon: int = 32
    """Steps per window h (the last window of an episode may be shorter)."""
    gamma: float = 0.99
    """Discount per step."""
    lam: float = 0.95
    """TD(lambda) mixing of the critic's targets."""
    actor_learning_rate: float = 1e-2
    critic_learning_rate: float = 1e-3
    final_learning_rate: float = 1e-5
    """Both learning rates decay linearly towards it over the ``iterations`` (the paper's code: 1e-5)."""
    betas: tuple[float, float] = (0.7, 0.95)
    """Adam's betas, for both networks."""
    critic_iterations: int = 16
    critic_minibatches: int = 4
    target_alpha: float = 0.2
    """Target critic update: target <- alpha * target + (1 - alpha) * critic."""
    clip_norm: float = 1.0
    """Gradient norm clipping of the actor's step and of every critic step (0: none)."""
    width: int = 64
    depth: int = 2
    stochastic: bool = True
    """Gaussian actor sampled by reparameterisation (False: its mean alone, the paper's deterministic alternative)."""
    log_std_init: float = -1.0
    """Starting log standard deviation of the Gaussian actor's pre-activation (the paper's -1)."""
    normalise: bool = True
    """Running observation normalisation for actor and critic (the paper's ``obs_rms``)."""
    dtype: str = "float32"
    seed: int = 0
    threads: int = 1
    compile: str = "auto"
    """'on', 'off' or 'auto' (on from ``COMPILE_FROM`` steps of windows or where the windows' compiled code is already
    cached, as the neural-ODE agent: :func:`agents.neural_ode.config.training_solver`). The compiled windows trace a
    policy of parameters alone: with ``stochastic`` or ``normalise``, 'auto' runs eagerly and 'on' is refused."""

    def __post_init__(self) -> None:
        for name in ("iterations", "num_envs", "horizon", "critic_iterations", "critic_minibatches", "width", "depth",
                     "threads"):
            check_integer(name, getattr(self, name))
        check_integer("seed", self.seed, least=0)
        for name in ("gamma", "lam", "target_alpha"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        for name in ("actor_learning_rate", "critic_learning_rate", "final_learning_rate"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite positive number, got {value!r}")
        if not (isinstance(self.clip_norm, (int, float)) and math.isfinite(self.clip_norm) and self.clip_norm >= 0):
            raise ValueError(f"clip_norm must be a finite non-negative number, got {self.clip_norm!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}")
        if self.compile not in ("auto", "on", "off"):
            raise ValueError(f"compile must be 'auto', 'on' or 'off', got {self.compile!r}")
        for name in ("stochastic", "normalise"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} must be a bool, got {getattr(self, name)!r}")
        if self.compile == "on" and (self.stochastic or self.normalise):
            raise ValueError("compile='on' needs stochastic=False and normalise=False: the compiled windows trace a "
                             f"policy of parameters alone (got stochastic={self.stochastic}, normalise={self.normalise})")
        if not (isinstance(self.log_std_init, (int, float)) and math.isfinite(self.log_std_init)):
            raise ValueError(f"log_std_init must be a finite number, got {self.log_std_init!r}")
        if not (len(self.betas) == 2 and all(0.0 <= b < 1.0 for b in self.betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas!r}")


def lambda_returns(rewards: torch.Tensor, next_values: torch.Tensor, ended: torch.Tensor, gamma: float,
                   lam: float) -> torch.Tensor:
    r"""TD(:math:`\lambda`) targets of a window, ``(h, N)``.

    ``rewards[t]`` is :math:`r_t`, ``next_values[t]`` :math:`V(o_{t+1})` and ``ended[t]`` whether
    the episode had ended by step :math:`t + 1` (then nothing follows: no value, no return).
    Backwards from the window's end,

    .. math:: G_{h-1} = r_{h-1} + \gamma c_{h-1} V_h, \qquad
              G_t = r_t + \gamma c_t \bigl[(1 - \lambda) V_{t+1} + \lambda G_{t+1}\bigr],

    with :math:`c_t = 1 - \text{ended}_t`: the truncated :math:`\lambda`-return, which mixes the
    :math:`n`-step returns with weights :math:`(1-\lambda)\lambda^{n-1}` and gives the window's
    full return the rest.
    """
    steps = rewards.shape[0]
    targets = torch.empty_like(rewards)
    following = next_values[-1]
    for t in reversed(range(steps)):
        carry = (1.0 - ended[t].to(rewards.dtype)) * gamma
        mixed = next_values[t] if t == steps - 1 else (1.0 - lam) * next_values[t] + lam * following
        targets[t] = rewards[t] + carry * mixed
        following = targets[t]
    return targets


def observations(problem: Problem, states: torch.Tensor, times: torch.Tensor) -> torch.Tensor:
    """Observations ``(..., obs)`` of physical ``states`` ``(..., n)`` at ``times`` (broadcast against ``states[..., 0]``)."""
    params = problem.params_like(problem.params, states)
    x = problem.state_from_physical(states.unbind(-1), params, TORCH)
    return stack(problem.observation(times, x, params, TORCH), like=states)


@dataclass
class ShacResult(TrainedNetwork):
    """The trained actor (``policy``), its critic and the history of its training (one entry per window)."""

    problem: Problem
    policy: Actor
    critic: Critic
    history: list[dict[str, float]]


ActorCallback = Callable[[int, dict[str, float], torch.nn.Module], bool]
"""``callback(iteration, metrics, actor) -> bool``: called after each window; returning True stops training."""


def train(env_id: str, config: ShacConfig | None = None, env_kwargs: dict[str, Any] | None = None,
          callback: ActorCallback | None = None, progress: bool = True) -> ShacResult:
    """Train SHAC on ``env_id``; ``callback(iteration, metrics, actor)`` after each window may stop it (True)."""
    config = ShacConfig() if config is None else config
    if not isinstance(config, ShacConfig):
        raise TypeError(f"config must be a ShacConfig, got {type(config).__name__}")
    problem = problem_of(env_id, **dict(env_kwargs or {}))
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _train(problem, config, dtype, callback, progress, env_id)
    finally:
        torch.set_num_threads(threads)


@dataclass
class _Networks:
    """The networks SHAC trains and their optimisers."""

    actor: Actor
    critic: Critic
    target: Critic
    actor_optimizer: torch.optim.Adam
    critic_optimizer: torch.optim.Adam

    def decay(self, config: ShacConfig, iteration: int) -> None:
        """Both learning rates decayed linearly towards ``final_learning_rate`` over the ``iterations``."""
        fraction = iteration / config.iterations
        for optimizer, rate in ((self.actor_optimizer, config.actor_learning_rate),
                                (self.critic_optimizer, config.critic_learning_rate)):
            for group in optimizer.param_groups:
                group["lr"] = rate + (config.final_learning_rate - rate) * fraction


def _networks(problem: Problem, config: ShacConfig, dtype: torch.dtype) -> _Networks:
    actor = Actor(problem, config.width, config.depth, config.stochastic, config.normalise, config.log_std_init, dtype)
    critic = Critic(len(problem.observation_names), config.width, config.depth, dtype)
    target = copy.deepcopy(critic).requires_grad_(False)
    return _Networks(actor, critic, target,
                     torch.optim.Adam(actor.parameters(), lr=config.actor_learning_rate, betas=config.betas),
                     torch.optim.Adam(critic.parameters(), lr=config.critic_learning_rate, betas=config.betas))


def _solver(config: ShacConfig) -> RK4:
    """The windows' solver: compiled only for an actor of parameters alone (see ``ShacConfig.compile``)."""
    if config.stochastic or config.normalise:
        return RK4()
    return training_solver(config.compile, config.iterations * config.horizon)


def _clip(parameters: Any, config: ShacConfig) -> float:
    """Clip the gradients' norm at ``clip_norm`` (0: none); the norm before clipping."""
    return float(torch.nn.utils.clip_grad_norm_(list(parameters), config.clip_norm if config.clip_norm > 0 else math.inf))


def _window(problem: Problem, nets: _Networks, config: ShacConfig, solver: RK4, x: torch.Tensor, k: int, h: int,
            start: torch.Tensor, alive: torch.Tensor, generator: torch.Generator,
            dtype: torch.dtype) -> tuple[Trajectory, float, float, float]:
    """One window of ``h`` steps from step ``k``: the actor's step, the critic's fit, the target's and the
    normaliser's updates.

    Returns the trajectory, the actor's loss, the critic's loss and the actor's gradient norm (before clipping).
    """
    def roll() -> Trajectory:
        return rollout(problem, nets.actor, x, steps=h, first_step=k, episode_start=start, solver=solver, check=False)

    if config.stochastic:
        with nets.actor.sampling(generator):
            trajectory = roll()
    else:
        trajectory = roll()
    live = alive.to(dtype)
    rewards = trajectory.rewards * live  # an episode that ended in an earlier window earns nothing more
    ended = trajectory.done[1:] | ~alive  # (h, N): ended by step t + 1
    raw = observations(problem, trajectory.states, trajectory.times[:, None])  # (h + 1, N, obs)
    obs = nets.actor.normalised(raw)  # the statistics as they stood at the window's start
    discounts = config.gamma ** torch.arange(h, dtype=dtype)
    bootstrap = nets.target(obs[-1]) * (~ended[-1]).to(dtype)
    objective = (discounts[:, None] * rewards).sum(0) + config.gamma ** h * bootstrap
    actor_loss = -objective.mean() / h
    nets.actor_optimizer.zero_grad()
    actor_loss.backward()
    grad_norm = _clip(nets.actor.parameters(), config)
    nets.actor_optimizer.step()

    with torch.no_grad():
        obs = obs.detach()
        targets = lambda_returns(rewards.detach(), nets.target(obs[1:]), ended, config.gamma, config.lam)
    # the pairs of live episodes: a state reached before the episode ended (done[t]: ended by step t)
    counted = alive & ~trajectory.done[:-1]
    critic_loss = _fit_critic(nets.critic, nets.critic_optimizer, obs[:-1], targets, counted, config)
    with torch.no_grad():
        for p_target, p in zip(nets.target.parameters(), nets.critic.parameters()):
            p_target.mul_(config.target_alpha).add_((1.0 - config.target_alpha) * p)
    if nets.actor.normaliser is not None:  # the window's start and every state its live episodes reached
        nets.actor.normaliser.update(raw.detach()[torch.cat([alive[None], counted])])
    return trajectory, actor_loss.item(), critic_loss, grad_norm


def _train(problem: Problem, config: ShacConfig, dtype: torch.dtype, callback: ActorCallback | None, progress: bool,
           env_id: str) -> ShacResult:
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    nets = _networks(problem, config, dtype)
    solver = _solver(config)
    n = config.num_envs
    start = initial_states(problem, n, generator, dtype)
    x, k, alive = start, 0, torch.ones(n, dtype=torch.bool)
    history: list[dict[str, float]] = []
    transitions, backward, seconds = 0, 0, 0.0
    bar = tqdm(range(config.iterations), disable=not progress, desc=f"shac {env_id}", dynamic_ncols=True)
    for iteration in bar:
        began = time.perf_counter()
        nets.decay(config, iteration)
        h = min(config.horizon, problem.max_steps - k)
        trajectory, actor_loss, critic_loss, grad_norm = _window(problem, nets, config, solver, x, k, h, start, alive,
                                                                 generator, dtype)
        transitions += n * h
        backward += n * h  # the actor's loss is backpropagated once through the window's N x h steps
        k += h
        if k >= problem.max_steps:  # every episode is over: fresh starts
            start = initial_states(problem, n, generator, dtype)
            x, k, alive = start, 0, torch.ones(n, dtype=torch.bool)
        else:
            x, alive = trajectory.states[-1].detach(), alive & ~trajectory.done[-1]
        seconds += time.perf_counter() - began
        metrics = {"iteration": iteration, "actor_loss": actor_loss, "critic_loss": critic_loss,
                   "grad_norm": grad_norm, "transitions": transitions, "backward_transitions": backward,
                   "seconds": seconds}
        if nets.actor.log_std is not None:
            metrics["log_std"] = float(nets.actor.log_std.detach().mean())
        history.append(metrics)
        bar.set_postfix(actor=f"{actor_loss:.4g}", critic=f"{critic_loss:.3g}")
        if callback is not None and callback(iteration, dict(metrics), nets.actor):
            break
    bar.close()
    return ShacResult(problem, nets.actor, nets.critic, history)


def _fit_critic(critic: Critic, optimizer: torch.optim.Optimizer, obs: torch.Tensor, targets: torch.Tensor,
                counted: torch.Tensor, config: ShacConfig) -> float:
    """``critic_iterations`` passes over ``critic_minibatches`` contiguous minibatches (time order, not shuffled, as
    the paper's code) of squared error on the counted pairs, each step's gradient norm clipped at ``clip_norm``."""
    inputs, outputs = obs[counted], targets[counted]
    if inputs.shape[0] == 0:
        return 0.0
    size = max(1, math.ceil(inputs.shape[0] / config.critic_minibatches))
    total = 0.0
    for _ in range(config.critic_iterations):
        total = 0.0
        for first in range(0, inputs.shape[0], size):
            loss = (critic(inputs[first:first + size]) - outputs[first:first + size]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            _clip(critic.parameters(), config)
            optimizer.step()
            total += loss.item() * outputs[first:first + size].numel()
    return total / inputs.shape[0]


def budget_config(budget: Budget, seed: int, max_steps: int, config: ShacConfig | None = None) -> ShacConfig:
    """``config`` (default: the paper's) with as many windows as ``budget.transitions`` allows (at least one).

    An episode of ``max_steps`` steps takes ``ceil(max_steps / horizon)`` windows (the last one
    shorter), so a window averages ``max_steps / ceil(max_steps / horizon)`` steps of every environment.
    """
    config = ShacConfig() if config is None else config
    windows = math.ceil(max_steps / config.horizon)
    iterations = max(1, int(budget.transitions * windows // (config.num_envs * max_steps)))
    return dataclasses.replace(config, iterations=iterations, seed=seed)


#: the agent's name, and the keys of its card section: ``objective`` (replacing the ``"rl"`` section's, see
#: :mod:`agents.objectives`) and :class:`ShacConfig` fields but ``iterations`` and ``seed`` (the budget's and the run's)
NAME = "shac"
SETTINGS = ("objective", *(f.name for f in dataclasses.fields(ShacConfig) if f.name not in ("iterations", "seed")))


def card_config(env_id: str, env_kwargs: dict[str, Any] | None = None) -> ShacConfig:
    """The paper's settings with the card's deviations (its ``"shac"`` section on ``env_kwargs``, e.g.
    ``{"gamma": 0.999}`` for the discount per step; a key outside :data:`SETTINGS` is a ``ValueError``)."""
    values = card(env_id).settings(NAME, env_kwargs=env_kwargs, known=SETTINGS)
    values.pop("objective", None)
    return ShacConfig(**values)


def train_on_budget(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost,
                    objective: TrainingObjective | None = None) -> Trained:
    """Train SHAC with the card's settings within ``budget``, a curve point every ``budget.eval_every`` transitions
    (``curve_cost`` of the policy). It trains on the card's objective for critic learners (a critic learns what the RL
    baselines' critics learn), or on ``objective`` when given; the policy is scored on ``env_kwargs`` as given."""
    settings = card_config(env_id, env_kwargs)  # the card's section on the variant's own arguments
    objective = training_objective(env_id, NAME) if objective is None else objective
    env_kwargs = {**env_kwargs, **objective.env_kwargs}
    problem = problem_of(env_id, **env_kwargs)
    config = budget_config(budget, seed, problem.max_steps, settings)
    curve: list[dict[str, float]] = []
    next_point: list[float] = [0.0]  # transitions of the next curve point

    def on_step(iteration: int, metrics: dict[str, float], actor: torch.nn.Module) -> bool:
        transitions, seconds = metrics["transitions"], metrics["seconds"]
        stop = seconds >= budget.seconds
        if transitions >= next_point[0] or iteration + 1 == config.iterations or stop:
            next_point[0] = transitions + budget.eval_every
            curve.append({"transitions": float(transitions), "seconds": float(seconds),
                          "cost": float(curve_cost(gym_policy(actor, problem))),
                          "backward_transitions": float(metrics["backward_transitions"])})
        return stop

    result = train(env_id, config, env_kwargs, callback=on_step, progress=False)
    details = {"iterations": len(result.history), "num_envs": config.num_envs, "horizon": config.horizon,
               "gamma": config.gamma, "trained_on": objective.label,
               "backward_transitions": int(result.history[-1]["backward_transitions"]) if result.history else 0}
    return Trained(result.gym_policy(), curve, result.transitions, result.seconds, details)


#: In the benchmark SHAC trains on the objective its card gives critic-based learners (the ``"rl"`` section's
#: ``objective``: e.g. the swing-up's terminal cost shaped for SHAC's discount), and is scored, like every agent, on
#: the card's evaluation objective.
AGENT = register(Agent("shac", "gradient", "short-horizon actor-critic through the differentiable rollout, the SHAC "
                       "paper's settings (agents.shac)", train_on_budget, cost=3.0))
