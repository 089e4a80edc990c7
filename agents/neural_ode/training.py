"""The neural-ODE agent's training loop: Adam on fresh (or fixed) batches of rollouts, then L-BFGS.

One :class:`_Run` holds what a run carries between iterations (network, optimisers, random
generator, history) and what a checkpoint saves of it; :func:`train` drives it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from agents.episodes import TrainedNetwork
from agents.files import CheckpointError, differences, load_checkpoint, save_checkpoint
from agents.neural_ode.config import LBFGS_EVALUATIONS, Callback, NeuralOdeConfig, default_config
from agents.neural_ode.network import PolicyNetwork, initial_states
from diffenvs import problem_of, rollout
from diffenvs.core.problem import Problem
from diffenvs.core.rollout import time_limited


class NonFiniteError(RuntimeError):
    """Training met a non-finite loss or gradient and stopped (the model keeps its last finite weights)."""


@dataclass
class NeuralOdeResult(TrainedNetwork):
    """What :func:`train` returns: the trained ``policy`` (torch path), its ``problem`` and the learning ``history``.

    ``history`` holds one dict per iteration (``iteration``, ``loss``, ``grad_norm``,
    ``learning_rate``, ``transitions``, ``backward_transitions``, ``seconds``); ``transitions`` counts every
    simulated transition of the gradient path (batch x steps per rollout), ``backward_transitions`` those a backward
    pass went through (every rollout here is backpropagated once, through the solver or by the adjoint's backward
    solve over the same steps, so the two are equal), ``seconds`` the training
    wall time (summed over the runs a checkpoint resumed); ``stopped`` says a callback stopped it early.
    """

    env_id: str
    env_kwargs: dict[str, Any]
    config: NeuralOdeConfig
    problem: Problem
    policy: PolicyNetwork
    history: list[dict[str, float]] = field(default_factory=list)
    stopped: bool = False


def _grad_norm(parameters: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in parameters]))


def _to(device: str | torch.device, x0: torch.Tensor, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch ``(x0, noise)`` on ``device``."""
    return x0.to(device), None if noise is None else noise.to(device)


class _Run:
    """The state of one training run, its loss and its two kinds of step."""

    def __init__(self, env_id: str, env_kwargs: dict[str, Any], config: NeuralOdeConfig, problem: Problem, steps: int):
        self.env_id, self.env_kwargs, self.config, self.problem, self.steps = env_id, env_kwargs, config, problem, steps
        with torch.random.fork_rng():
            torch.manual_seed(config.seed)
            self.policy = PolicyNetwork(problem, config.width, config.depth, config.init_scale,
                                        config.symmetric).to(config.torch_dtype).to(config.device)
        self.optimizer = torch.optim.Adam(self.policy.parameters(), lr=config.learning_rate, betas=(0.9, config.beta2))
        self.generator = torch.Generator().manual_seed(config.seed)
        self.history: list[dict[str, float]] = []
        self.fixed: tuple[torch.Tensor, torch.Tensor | None] | None = None
        self.lbfgs: torch.optim.LBFGS | None = None
        self.lbfgs_state: dict[str, Any] | None = None
        self.solver = config.solver_object(steps)
        #: what a training rollout of ``steps`` steps is: a prefix of the episode, or a shorter time limit
        self.episode = time_limited(problem, steps)

    # ---- checkpoints ---------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {"env_id": self.env_id, "env_kwargs": self.env_kwargs, "config": dataclasses.asdict(self.config),
                "policy": self.policy.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "history": self.history, "fixed": self.fixed,
                "lbfgs": None if self.lbfgs is None else self.lbfgs.state_dict()}

    def restore(self, checkpoint: str | Path) -> None:
        state = _read(checkpoint)
        mismatch = differences({"env_id": state["env_id"], "env_kwargs": state["env_kwargs"], "config": state["config"]},
                               {"env_id": self.env_id, "env_kwargs": self.env_kwargs, "config": self.config})
        if mismatch:
            raise ValueError(f"the checkpoint {checkpoint} is of another run (checkpoint's value there, this run's "
                             f"here): {'; '.join(mismatch)}")
        with _loading(checkpoint):
            self.policy.load_state_dict(state["policy"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.generator.set_state(state["generator"])
        self.history, self.lbfgs_state = state["history"], state.get("lbfgs")
        self.fixed = None if state["fixed"] is None else _to(self.config.device, *state["fixed"])  # saved on the CPU

    # ---- data and loss -------------------------------------------------------------------
    def batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        config, problem = self.config, self.problem
        x0 = initial_states(problem, config.batch_size, self.generator, config.torch_dtype)
        noise = None
        if problem.step_noise:
            noise = torch.randn((self.steps, config.batch_size, problem.step_noise), generator=self.generator,
                                dtype=config.torch_dtype).to(config.device)
        return x0.to(config.device), noise

    def loss(self, x0: torch.Tensor, noise: torch.Tensor | None, iteration: int) -> torch.Tensor:
        """The batch's mean episode cost, :math:`L = \\frac1B \\sum_i J(x_0^i)`."""
        trajectory = rollout(self.episode, self.policy, x0, steps=self.steps, control=self.config.control,
                             solver=self.solver, noise=noise)
        loss = trajectory.costs.mean()
        if not torch.isfinite(loss):
            raise NonFiniteError(f"training stopped at iteration {iteration}: the loss is {loss.item()} (non-finite); "
                                 "the weights are those of the previous iteration. Lower learning_rate, or check "
                                 "the environment's parameters")
        return loss

    @staticmethod
    def nonfinite_gradient(iteration: int, grad_norm: torch.Tensor, loss: torch.Tensor) -> NonFiniteError:
        return NonFiniteError(f"training stopped at iteration {iteration}: the gradient norm is {grad_norm.item()} "
                              f"(non-finite) at loss {loss.item():.6g}; the weights are those of the previous "
                              "iteration. Lower learning_rate, set clip_norm, or use control/solver options that "
                              "keep the rollout finite")

    # ---- steps ---------------------------------------------------------------------------
    def adam_step(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor, float, int]:
        """One Adam step on a batch; returns (loss, gradient norm, learning rate, rollouts)."""
        config, parameters = self.config, list(self.policy.parameters())
        learning_rate = config.learning_rate_at(iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        loss = self.loss(*(self.fixed if self.fixed is not None else self.batch()), iteration)
        self.optimizer.zero_grad()
        loss.backward()
        if config.clip_norm > 0:
            grad_norm = torch.nn.utils.clip_grad_norm_(parameters, config.clip_norm)
        else:
            grad_norm = _grad_norm(parameters)
        if not torch.isfinite(grad_norm):
            raise self.nonfinite_gradient(iteration, grad_norm, loss)
        self.optimizer.step()
        return loss, grad_norm, learning_rate, 1

    def lbfgs_step(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor, float, int]:
        """One L-BFGS step on one fixed batch; the loss is the loss at the step's start, as for Adam."""
        parameters = list(self.policy.parameters())
        if self.fixed is None:
            self.fixed = self.batch()
        if self.lbfgs is None:
            self.lbfgs = torch.optim.LBFGS(parameters, lr=1.0, max_iter=LBFGS_EVALUATIONS, max_eval=LBFGS_EVALUATIONS,
                                           history_size=50, line_search_fn="strong_wolfe")
            if self.lbfgs_state is not None:
                self.lbfgs.load_state_dict(self.lbfgs_state)
        previous = [p.detach().clone() for p in parameters]
        evaluations = [0]
        optimiser, data = self.lbfgs, self.fixed

        def closure() -> torch.Tensor:
            evaluations[0] += 1
            optimiser.zero_grad()
            value = self.loss(*data, iteration)
            value.backward()
            return value

        try:
            loss = optimiser.step(closure)
            grad_norm = _grad_norm(parameters)
            if not (torch.isfinite(grad_norm) and all(bool(torch.isfinite(p).all()) for p in parameters)):
                raise self.nonfinite_gradient(iteration, grad_norm, loss)
        except NonFiniteError:
            with torch.no_grad():
                for p, q in zip(parameters, previous):
                    p.copy_(q)
            raise
        return loss, grad_norm, 1.0, evaluations[0]


def train(env_id: str, config: NeuralOdeConfig | None = None, env_kwargs: dict[str, Any] | None = None,
          callback: Callback | None = None, checkpoint: str | Path | None = None, resume: bool = False,
          progress: bool = True) -> NeuralOdeResult:
    """Train a policy network on ``env_id`` (built with ``env_kwargs``) by gradient descent through rollouts.

    Args:
        env_id: a registered id; the agent uses the definition behind it.
        config: hyperparameters (default :func:`default_config` for the id).
        env_kwargs: keyword arguments of the environment (as ``gymnasium.make``).
        callback: ``on_step(step, metrics, policy) -> bool`` (a callable, or an object with that
            method) called after every iteration with the history entry and the network being
            trained; True stops training.
        checkpoint: file to save the run to every ``config.checkpoint_every`` iterations and at
            the end (weights, Adam's state, the RNG state, the history).
        resume: continue from ``checkpoint`` if it exists; the continued run gives the same
            result as an uninterrupted one. The checkpoint's config and env must match (a
            ``ValueError`` names each difference).
        progress: show a progress bar with the loss.

    Raises:
        NonFiniteError: the loss or the gradient became non-finite (the weights are left at
            their last finite values and no checkpoint is written for that iteration).
        agents.files.CheckpointError: ``resume`` and the checkpoint is truncated, corrupted or
            foreign (the message names the file and what is wrong).
    """
    env_kwargs = dict(env_kwargs or {})
    config = default_config(env_id, env_kwargs) if config is None else config
    if not isinstance(config, NeuralOdeConfig):
        raise TypeError(f"config must be a NeuralOdeConfig, got {type(config).__name__}")
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    on_step = getattr(callback, "on_step", callback)
    problem = problem_of(env_id, **env_kwargs)
    steps = config.steps or problem.max_steps
    if steps > problem.max_steps:
        raise ValueError(f"config.steps must be at most the horizon {problem.max_steps}, got {steps}")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        run = _Run(env_id, env_kwargs, config, problem, steps)
        if resume and checkpoint is not None and Path(checkpoint).exists():
            run.restore(checkpoint)
        result = NeuralOdeResult(env_id, env_kwargs, config, problem, run.policy, run.history)
        result.stopped = _loop(run, on_step, checkpoint, progress)
        result.policy.to("cpu")  # the faces evaluate it on numpy observations
        return result
    finally:
        torch.set_num_threads(threads)


def _loop(run: _Run, on_step: Callback | None, checkpoint: str | Path | None, progress: bool) -> bool:
    """Iterate from where ``run`` stands to its end; returns whether a callback stopped it."""
    config, history = run.config, run.history

    def save() -> None:
        if checkpoint is not None:
            save_checkpoint(checkpoint, run.state())

    if config.starts == "fixed" and run.fixed is None:
        run.fixed = run.batch()
    total = config.iterations + config.lbfgs_steps
    start = len(history)
    seconds = history[-1]["seconds"] if history else 0.0
    transitions = history[-1]["transitions"] if history else 0
    backward = history[-1].get("backward_transitions", transitions) if history else 0
    bar = tqdm(range(start, total), initial=start, total=total, disable=not progress,
               desc=f"neural-ode {run.env_id}", dynamic_ncols=True)
    stopped = False
    for iteration in bar:
        began = time.perf_counter()
        step = run.adam_step if iteration < config.iterations else run.lbfgs_step
        loss, grad_norm, learning_rate, evaluations = step(iteration)
        seconds += time.perf_counter() - began
        transitions += evaluations * config.batch_size * run.steps
        backward += evaluations * config.batch_size * run.steps  # each loss evaluation is backpropagated once
        metrics = {"iteration": iteration, "loss": loss.item(), "grad_norm": grad_norm.item(),
                   "learning_rate": learning_rate, "transitions": transitions, "backward_transitions": backward,
                   "seconds": seconds}
        history.append(metrics)
        bar.set_postfix(loss=f"{metrics['loss']:.4g}", grad=f"{metrics['grad_norm']:.2g}")
        stopped = bool(on_step(iteration, dict(metrics), run.policy)) if on_step is not None else False
        if iteration + 1 == total or stopped or (iteration + 1) % config.checkpoint_every == 0:
            save()
        if stopped:
            break
    bar.close()
    if start >= total:
        save()
    return stopped


#: what a checkpoint of this agent holds (``lbfgs`` too, None before the L-BFGS phase)
_CHECKPOINT_KEYS = ("env_id", "env_kwargs", "config", "policy", "optimizer", "generator", "history", "fixed")


def _read(checkpoint: str | Path) -> dict[str, Any]:
    """The state saved in ``checkpoint``; :class:`CheckpointError` if it is not a neural-ODE run's."""
    state = load_checkpoint(checkpoint)
    missing = [key for key in _CHECKPOINT_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"checkpoint {checkpoint}: not a neural-ODE run's (it lacks {', '.join(missing)}; "
                              f"it holds {', '.join(map(str, state)) or 'nothing'})")
    return state


@contextlib.contextmanager
def _loading(checkpoint: str | Path) -> Iterator[None]:
    """Turn a failure to build the run from ``checkpoint``'s values into a :class:`CheckpointError` naming it."""
    try:
        yield
    except (TypeError, ValueError, KeyError, RuntimeError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(f"checkpoint {checkpoint}: its values do not make a neural-ODE run of this version "
                              f"({type(error).__name__}: {error})") from error


def load_policy(checkpoint: str | Path) -> NeuralOdeResult:
    """The run saved in ``checkpoint`` (policy, problem, config and history), without training further.

    Raises:
        CheckpointError: the file is not a whole checkpoint (see :func:`agents.files.load_checkpoint`),
            or its values do not make a neural-ODE run (missing keys, unknown config fields,
            weights of another shape); the message names the file.
    """
    state = _read(checkpoint)
    with _loading(checkpoint):
        config = NeuralOdeConfig(**state["config"])
        problem = problem_of(state["env_id"], **state["env_kwargs"])
        policy = PolicyNetwork(problem, config.width, config.depth, config.init_scale, config.symmetric)
        policy = policy.to(config.torch_dtype)
        policy.load_state_dict(state["policy"])
    return NeuralOdeResult(state["env_id"], state["env_kwargs"], config, problem, policy, state["history"])
