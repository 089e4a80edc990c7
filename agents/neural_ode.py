r"""Neural-ODE control: a policy network trained by backpropagating a trajectory loss (report §2.6, §3, §4).

The controlled system :math:`\dot x = f(x, u_\theta(o(x)))` with a network :math:`u_\theta`
is itself a neural ODE (report eq. 4.4), so the policy is trained like one: roll a batch of
trajectories out of the environment's own definition with :func:`diffenvs.rollout`, take
the loss

.. math:: L(\theta) = \frac{1}{B}\sum_{i=1}^{B} J(x^i_0; \theta), \qquad J = -\sum_k r_k

(the batch's mean cost, ``rollout(...).costs.mean()``) and descend its gradient with Adam.
The gradient comes from backpropagation through the solver (direct) or from the adjoint ODE
:math:`\dot{\bar x} = -\bar x\, \partial f/\partial x`,
:math:`\bar\theta = \int_0^T \bar x\, \partial f/\partial\theta\, dt` (report eqs. 2.40, 2.47;
``adjoint=True``); the control is held over each environment step (``control="sampled"``,
what the Gymnasium face does) or evaluated inside the ODE (``"feedback"``).

The agent is generic: it uses only the definition behind an id
(:func:`diffenvs.problem_of`): its dynamics, cost, start distribution
(``problem.initial_state`` on torch draws) and control map. The network's output layer is
:math:`a = \tanh(z) \in (-1, 1)` followed by the problem's own action-to-control map
``problem.control_from_action``: for a box :math:`[u_{lo}, u_{hi}]` this is
:math:`u = u_{lo} + (u_{hi} - u_{lo})\,\sigma(2z)` — sigmoid-affine onto :math:`[0, \pi]` for
Zermelo's heading, :math:`u = F \tanh z` for a force bounded by :math:`\pm F`.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from agents.evaluation import GymPolicy
from agents.training import gym_policy, load_checkpoint, save_checkpoint
from diffenvs import RK4, Adaptive, Adjoint, problem_of, rollout
from diffenvs.core.numerics import TORCH, stack
from diffenvs.core.problem import Problem, check_integer
from diffenvs.core.rollout import _METHODS

#: loss evaluations (rollouts) per L-BFGS step, torch's ``max_eval``; its strong-Wolfe line search
#: can take one more, so a step costs at most LBFGS_EVALUATIONS + 1 rollouts (all of them counted)
LBFGS_EVALUATIONS = 20

#: ``on_step(step, metrics) -> bool``: called after every iteration; return True to stop
Callback = Callable[[int, dict[str, float]], bool]


@dataclass(frozen=True)
class NeuralOdeConfig:
    """Hyperparameters of neural-ODE control (the defaults are the report's network and optimiser)."""

    iterations: int = 300
    """Adam steps (one batch of rollouts each)."""
    lbfgs_steps: int = 0
    """L-BFGS steps after Adam (each up to 20 loss evaluations, strong-Wolfe line search, one fixed batch)."""
    learning_rate: float = 0.05
    """Adam's initial learning rate (the report's 0.05)."""
    final_learning_rate: float = 0.05
    """Learning rate at the last iteration; between the two it decays geometrically (equal: constant)."""
    beta2: float = 0.999
    """Adam's second-moment decay: lower forgets the large gradients of an early unstable phase sooner."""
    batch_size: int = 1
    """Trajectories per iteration; with a deterministic start one is enough."""
    starts: str = "drawn"
    """'drawn': fresh starts from the problem's start distribution every iteration; 'fixed': one batch drawn once (a data set)."""
    width: int = 16
    """Units per hidden layer (the report's 16)."""
    depth: int = 2
    """Hidden layers, tanh activations (the report's 2)."""
    init_scale: float = 0.1
    """Scale of the output layer's initial weights: small starts near the centre of the control range."""
    symmetric: bool = False
    """Odd network, z(-o) = -z(o): the control is odd about the centre of its range (Isochronism: a symmetric potential)."""
    clip_norm: float = 10.0
    """Gradient norm clipping threshold (0: no clipping)."""
    control: str = "sampled"
    """'sampled': control held over each step, as the Gymnasium face; 'feedback': evaluated inside the ODE."""
    solver: str = "rk4"
    """'rk4' (the faces' own fixed step) or a torchdiffeq method (e.g. 'dopri5', adaptive with rtol/atol)."""
    adjoint: bool = False
    """Gradients from the adjoint ODE (torchdiffeq odeint_adjoint) instead of backpropagation through the solver."""
    rtol: float = 1e-6
    """Relative tolerance of adaptive torchdiffeq methods."""
    atol: float = 1e-8
    """Absolute tolerance of adaptive torchdiffeq methods."""
    steps: int = 0
    """Environment steps per training rollout (0: the problem's horizon); a shorter rollout is a prefix of the episode."""
    dtype: str = "float64"
    """Floating-point type of the network and the rollouts: 'float64' or 'float32'."""
    seed: int = 0
    """Seed of the network's initial weights and of the training starts."""
    threads: int = 1
    """torch CPU threads while training (tiny tensors: one thread is fastest)."""
    checkpoint_every: int = 25
    """Iterations between checkpoints (when a checkpoint path is given)."""

    def __post_init__(self) -> None:
        for name in ("iterations", "batch_size", "width", "depth", "threads", "checkpoint_every"):
            check_integer(name, getattr(self, name))
        check_integer("lbfgs_steps", self.lbfgs_steps, least=0)
        if not (isinstance(self.steps, int) and self.steps >= 0):
            raise ValueError(f"steps must be a non-negative integer (0: the horizon), got {self.steps!r}")
        for name in ("learning_rate", "final_learning_rate", "init_scale", "rtol", "atol"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite positive number, got {value!r}")
        if not (isinstance(self.beta2, (int, float)) and 0.0 <= self.beta2 < 1.0):
            raise ValueError(f"beta2 must be in [0, 1), got {self.beta2!r}")
        if not (isinstance(self.clip_norm, (int, float)) and math.isfinite(self.clip_norm) and self.clip_norm >= 0):
            raise ValueError(f"clip_norm must be a finite non-negative number (0: no clipping), got {self.clip_norm!r}")
        choices = {"starts": ("drawn", "fixed"), "control": ("sampled", "feedback"), "dtype": ("float64", "float32"),
                   "solver": ("rk4", *[m for m in _METHODS if m != "rk4"])}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")

    @property
    def torch_dtype(self) -> torch.dtype:
        return getattr(torch, self.dtype)

    def learning_rate_at(self, iteration: int) -> float:
        r"""Geometric decay :math:`\eta_k = \eta_0 (\eta_{end}/\eta_0)^{k/(K-1)}` over the ``iterations`` :math:`K`."""
        fraction = iteration / max(self.iterations - 1, 1)
        return self.learning_rate * (self.final_learning_rate / self.learning_rate) ** fraction

    def solver_object(self) -> RK4 | Adaptive | Adjoint:
        """The rollout's solver: ``RK4()``, ``Adaptive(...)`` or ``Adjoint(...)``.

        With ``adjoint`` and ``solver='rk4'`` the adjoint runs torchdiffeq's fixed-grid
        ``rk4`` (its 3/8-rule step), one step per environment step.
        """
        if self.adjoint:
            return Adjoint(self.solver, self.rtol, self.atol)
        if self.solver == "rk4":
            return RK4()
        return Adaptive(self.solver, self.rtol, self.atol)


#: tuned defaults per environment (see the README's results table for what they reach)
TUNED: dict[str, dict[str, Any]] = {
    "DiffZermelo-v0": dict(iterations=200, learning_rate=0.05, final_learning_rate=0.002, steps=300),
    "DiffCartpole-v0/terminal": dict(iterations=300, lbfgs_steps=5, learning_rate=0.05, final_learning_rate=0.001, batch_size=8),
    "DiffCartpole-v0/quadratic": dict(iterations=400, learning_rate=0.05, final_learning_rate=0.001, beta2=0.9, batch_size=8),
    "DiffIsochronism-v0": dict(iterations=150, lbfgs_steps=5, learning_rate=0.01, final_learning_rate=0.0005, batch_size=256,
                               symmetric=True),
    "DiffLinearSysID-v0": dict(iterations=100, learning_rate=0.01, final_learning_rate=0.001, batch_size=16),
}


def default_config(env_id: str, env_kwargs: dict[str, Any] | None = None) -> NeuralOdeConfig:
    """The tuned defaults for ``env_id`` (the report's network; iterations, batch and schedule per task).

    Where the start is deterministic and the steps noise-free (e.g. Cartpole with
    ``initial_noise=0``) every trajectory of a batch is the same, so the batch is one.
    """
    key = env_id
    if env_id == "DiffCartpole-v0":
        key = f"{env_id}/{(env_kwargs or {}).get('cost', 'terminal')}"
    values = dict(TUNED.get(key, {}))
    problem = problem_of(env_id, **(env_kwargs or {}))
    starts = initial_states(problem, 2, torch.Generator().manual_seed(0))
    if not problem.step_noise and torch.equal(starts[0], starts[1]):
        values["batch_size"] = 1
    return NeuralOdeConfig(**values)


# ---- the policy network --------------------------------------------------------------------
class PolicyNetwork(torch.nn.Module):
    r"""Observations ``(B, obs)`` -> physical controls ``(B, m)`` inside the problem's control set.

    ``depth`` tanh layers of ``width`` units, a linear layer to :math:`z \in \mathbb R^m`,
    :math:`a = \tanh z`, then ``problem.control_from_action(a)`` (see the module docstring).
    With ``symmetric`` the pre-activation is made odd, :math:`z(o) = (h(o) - h(-o))/2`, so the
    control is odd about the centre of its range.
    """

    def __init__(self, problem: Problem, width: int = 16, depth: int = 2, init_scale: float = 0.1, symmetric: bool = False):
        super().__init__()
        self.problem = problem
        self.symmetric = symmetric
        sizes = [len(problem.observation_names), *[width] * depth]
        layers: list[torch.nn.Module] = []
        for fan_in, fan_out in zip(sizes, sizes[1:]):
            layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.Tanh()]
        self.hidden = torch.nn.Sequential(*layers)
        self.output = torch.nn.Linear(sizes[-1], problem.control_dim)
        with torch.no_grad():
            self.output.weight.mul_(init_scale)
            self.output.bias.zero_()

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        z = self.output(self.hidden(observation))
        if self.symmetric:
            z = 0.5 * (z - self.output(self.hidden(-observation)))
        action = torch.tanh(z)
        return stack(self.problem.control_from_action(action.unbind(-1), TORCH), like=observation)


# ---- starts -------------------------------------------------------------------------------
def initial_states(problem: Problem, batch: int, generator: torch.Generator, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Physical start states ``(batch, n)`` from the problem's own ``initial_state`` on torch draws.

    The draws (``problem.initial_draws``: uniform on [0, 1) or standard normal) come from
    ``generator``; they are not the Gymnasium face's counter-based draws, so training and
    evaluation starts differ while following the same distribution.
    """
    kind, count = problem.initial_draws
    shape = (batch, count)
    draws = (torch.rand if kind == "uniform" else torch.randn)(shape, generator=generator, dtype=dtype)
    params = problem.params_like(problem.params, draws)
    x = problem.state_to_physical(problem.initial_state(draws, params, TORCH))
    return torch.stack([torch.as_tensor(c, dtype=dtype).expand(batch) for c in x], -1)


# ---- training ------------------------------------------------------------------------------
class NonFiniteError(RuntimeError):
    """Training met a non-finite loss or gradient and stopped (the model keeps its last finite weights)."""


@dataclass
class NeuralOdeResult:
    """What :func:`train` returns: the trained ``policy`` (torch path), its ``problem`` and the learning ``history``.

    ``history`` holds one dict per iteration (``iteration``, ``loss``, ``grad_norm``,
    ``learning_rate``, ``transitions``, ``seconds``); ``transitions`` counts every simulated
    transition of the gradient path (batch x steps per iteration), ``seconds`` the training
    wall time (summed over the runs a checkpoint resumed); ``stopped`` says a callback stopped it early.
    """

    env_id: str
    env_kwargs: dict[str, Any]
    config: NeuralOdeConfig
    problem: Problem
    policy: PolicyNetwork
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: bool = False

    @property
    def transitions(self) -> int:
        return int(self.history[-1]["transitions"]) if self.history else 0

    @property
    def seconds(self) -> float:
        return float(self.history[-1]["seconds"]) if self.history else 0.0

    def gym_policy(self) -> GymPolicy:
        """The trained network as a Gymnasium policy: numpy observation -> action in [-1, 1]."""
        return gym_policy(self.policy, self.problem)


def train(env_id: str, config: NeuralOdeConfig | None = None, env_kwargs: dict[str, Any] | None = None,
          callback: Callback | None = None, checkpoint: str | Path | None = None, resume: bool = False,
          progress: bool = True) -> NeuralOdeResult:
    """Train a policy network on ``env_id`` (built with ``env_kwargs``) by gradient descent through rollouts.

    Args:
        env_id: a registered id; the agent uses the definition behind it.
        config: hyperparameters (default :func:`default_config` for the id).
        env_kwargs: keyword arguments of the environment (as ``gymnasium.make``).
        callback: ``on_step(step, metrics) -> bool`` (a callable, or an object with that
            method) called after every iteration with the history entry; True stops training.
        checkpoint: file to save the run to every ``config.checkpoint_every`` iterations and at
            the end (weights, Adam's state, the RNG state, the history).
        resume: continue from ``checkpoint`` if it exists; the continued run gives the same
            result as an uninterrupted one. The checkpoint's config and env must match.
        progress: show a progress bar with the loss.

    Raises:
        NonFiniteError: the loss or the gradient became non-finite (the weights are left at
            their last finite values and no checkpoint is written for that iteration).
    """
    env_kwargs = dict(env_kwargs or {})
    config = default_config(env_id, env_kwargs) if config is None else config
    if not isinstance(config, NeuralOdeConfig):
        raise TypeError(f"config must be a NeuralOdeConfig, got {type(config).__name__}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    on_step = getattr(callback, "on_step", callback)
    problem = problem_of(env_id, **env_kwargs)
    dtype = config.torch_dtype
    steps = config.steps or problem.max_steps
    if steps > problem.max_steps:
        raise ValueError(f"config.steps must be at most the horizon {problem.max_steps}, got {steps}")

    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            policy = PolicyNetwork(problem, config.width, config.depth, config.init_scale, config.symmetric).to(dtype)
        optimizer = torch.optim.Adam(policy.parameters(), lr=config.learning_rate, betas=(0.9, config.beta2))
        generator = torch.Generator().manual_seed(config.seed)
        history: list[dict[str, float]] = []
        fixed: tuple[torch.Tensor, torch.Tensor | None] | None = None
        lbfgs_state: dict[str, Any] | None = None
        if resume and Path(checkpoint).exists():
            state = load_checkpoint(checkpoint)
            if state["env_id"] != env_id or state["env_kwargs"] != env_kwargs or state["config"] != dataclasses.asdict(config):
                raise ValueError(f"the checkpoint {checkpoint} is of another run: {state['env_id']} {state['env_kwargs']} "
                                 f"{state['config']}")
            policy.load_state_dict(state["policy"])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            history, fixed, lbfgs_state = state["history"], state["fixed"], state.get("lbfgs")
        result = NeuralOdeResult(env_id, env_kwargs, config, problem, policy, history)

        def save() -> None:
            if checkpoint is not None:
                save_checkpoint(checkpoint, {"env_id": env_id, "env_kwargs": env_kwargs, "config": dataclasses.asdict(config),
                                             "policy": policy.state_dict(), "optimizer": optimizer.state_dict(),
                                             "generator": generator.get_state(), "history": history, "fixed": fixed,
                                             "lbfgs": None if lbfgs is None else lbfgs.state_dict()})

        def batch() -> tuple[torch.Tensor, torch.Tensor | None]:
            x0 = initial_states(problem, config.batch_size, generator, dtype)
            noise = None
            if problem.step_noise:
                noise = torch.randn((steps, config.batch_size, problem.step_noise), generator=generator, dtype=dtype)
            return x0, noise

        if config.starts == "fixed" and fixed is None:
            fixed = batch()
        solver = config.solver_object()
        total = config.iterations + config.lbfgs_steps
        start = len(history)
        seconds = history[-1]["seconds"] if history else 0.0
        transitions = history[-1]["transitions"] if history else 0
        lbfgs: torch.optim.LBFGS | None = None

        def loss_of(x0: torch.Tensor, noise: torch.Tensor | None, iteration: int) -> torch.Tensor:
            trajectory = rollout(problem, policy, x0, steps=steps, control=config.control, solver=solver, noise=noise)
            loss = trajectory.costs.mean()
            if not torch.isfinite(loss):
                raise NonFiniteError(f"training stopped at iteration {iteration}: the loss is {loss.item()} (non-finite); "
                                     "the weights are those of the previous iteration. Lower learning_rate, or check "
                                     "the environment's parameters")
            return loss

        def nonfinite_gradient(iteration: int, grad_norm: torch.Tensor, loss: torch.Tensor) -> NonFiniteError:
            return NonFiniteError(f"training stopped at iteration {iteration}: the gradient norm is {grad_norm.item()} "
                                  f"(non-finite) at loss {loss.item():.6g}; the weights are those of the previous "
                                  "iteration. Lower learning_rate, set clip_norm, or use control/solver options that "
                                  "keep the rollout finite")

        bar = tqdm(range(start, total), initial=start, total=total, disable=not progress,
                   desc=f"neural-ode {env_id}", dynamic_ncols=True)
        for iteration in bar:
            began = time.perf_counter()
            parameters = list(policy.parameters())
            if iteration < config.iterations:  # Adam
                learning_rate = config.learning_rate_at(iteration)
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate
                loss = loss_of(*(fixed if fixed is not None else batch()), iteration)
                optimizer.zero_grad()
                loss.backward()
                if config.clip_norm > 0:
                    grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.clip_norm)
                else:
                    grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters]))
                if not torch.isfinite(grad_norm):
                    raise nonfinite_gradient(iteration, grad_norm, loss)
                optimizer.step()
                evaluations = 1
            else:  # L-BFGS on one fixed batch; the history's loss is the loss at the step's start, as for Adam
                learning_rate = 1.0
                if fixed is None:
                    fixed = batch()
                if lbfgs is None:
                    lbfgs = torch.optim.LBFGS(parameters, lr=learning_rate, max_iter=LBFGS_EVALUATIONS,
                                              max_eval=LBFGS_EVALUATIONS, history_size=50,
                                              line_search_fn="strong_wolfe")
                    if lbfgs_state is not None:
                        lbfgs.load_state_dict(lbfgs_state)
                previous = [p.detach().clone() for p in parameters]
                counter = [0]

                def closure(iteration: int = iteration, counter: list[int] = counter, optimiser: torch.optim.LBFGS = lbfgs,
                            data: tuple[torch.Tensor, torch.Tensor | None] = fixed) -> torch.Tensor:
                    counter[0] += 1
                    optimiser.zero_grad()
                    value = loss_of(*data, iteration)
                    value.backward()
                    return value

                try:
                    loss = lbfgs.step(closure)
                    grad_norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters]))
                    if not (torch.isfinite(grad_norm) and all(bool(torch.isfinite(p).all()) for p in parameters)):
                        raise nonfinite_gradient(iteration, grad_norm, loss)
                except NonFiniteError:
                    with torch.no_grad():
                        for p, q in zip(parameters, previous):
                            p.copy_(q)
                    raise
                evaluations = counter[0]
            seconds += time.perf_counter() - began
            transitions += evaluations * config.batch_size * steps
            metrics = {"iteration": iteration, "loss": loss.item(), "grad_norm": grad_norm.item(),
                       "learning_rate": learning_rate, "transitions": transitions, "seconds": seconds}
            history.append(metrics)
            bar.set_postfix(loss=f"{metrics['loss']:.4g}", grad=f"{metrics['grad_norm']:.2g}")
            last = iteration + 1 == total
            stop = bool(on_step(iteration, dict(metrics))) if on_step is not None else False
            if last or stop or (iteration + 1) % config.checkpoint_every == 0:
                save()
            if stop:
                result.stopped = True
                break
        bar.close()
        if start >= total:
            save()
        return result
    finally:
        torch.set_num_threads(threads)


def load_policy(checkpoint: str | Path) -> NeuralOdeResult:
    """The run saved in ``checkpoint`` (policy, problem, config and history), without training further."""
    state = load_checkpoint(checkpoint)
    config = NeuralOdeConfig(**state["config"])
    problem = problem_of(state["env_id"], **state["env_kwargs"])
    policy = PolicyNetwork(problem, config.width, config.depth, config.init_scale, config.symmetric).to(config.torch_dtype)
    policy.load_state_dict(state["policy"])
    return NeuralOdeResult(state["env_id"], state["env_kwargs"], config, problem, policy, state["history"])

