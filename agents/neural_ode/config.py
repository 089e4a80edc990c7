"""The neural-ODE agent's hyperparameters, and its tuned defaults read from the environment's card.

The card's section ``"neural-ode"`` (:meth:`agents.cards.Card.settings`) holds
:class:`NeuralOdeConfig` fields, e.g. ``{"iterations": 200, "steps": 300}``; any other key is an error.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from agents.cards import card
from agents.neural_ode.network import initial_states
from diffenvs import RK4, Adaptive, Adjoint, problem_of
from diffenvs.core.problem import check_integer
from diffenvs.core.rollout import METHODS

#: loss evaluations (rollouts) per L-BFGS step, torch's ``max_eval``; its strong-Wolfe line search
#: can take one more, so a step costs at most LBFGS_EVALUATIONS + 1 rollouts (all of them counted)
LBFGS_EVALUATIONS = 20

#: ``on_step(step, metrics, policy) -> bool``: called after every iteration with the network being
#: trained; return True to stop
Callback = Callable[[int, dict[str, float], torch.nn.Module], bool]


#: steps of training rollouts (loss evaluations x rollout steps) from which ``compile='auto'`` compiles: the
#: compiled chunks save most of a step's eager time (cartpole 276 -> 40 ms per Adam iteration of 8 x 100 steps),
#: but compiling took 40 s to 12 min on a loaded 2-core CPU
#: (``scripts/bench_envs.py``, ``scripts/train.py``): from 100,000 steps the saving outweighs the worst compile seen.
#: Below it, 'auto' still runs compiled chunks where their compiled code is already in the on-disk cache (loading it
#: is nearly free: ``scripts/bench_compile.py``), eagerly elsewhere
COMPILE_FROM = 100_000


def training_solver(compile: str, training_steps: int) -> RK4:
    """The fixed-step solver of training rollouts for ``compile`` ('on', 'off', 'auto') and ``training_steps`` steps of
    them: 'auto' compiles from COMPILE_FROM steps; below, it reuses compiled code already on disk for the same
    rollout (``RK4(reuse_compiled=True)``: it never compiles) and runs eagerly where there is none."""
    if compile == "on" or (compile == "auto" and training_steps >= COMPILE_FROM):
        return RK4(compile=True)
    return RK4(reuse_compiled=compile == "auto")


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
    device: str = "cpu"
    """torch device of the network and the training rollouts ('cpu', 'cuda', 'cuda:1', ...); the trained policy comes
    back on the CPU, and the starts are drawn on the CPU whatever the device (the same run on every device)."""
    compile: str = "auto"
    """'on': training rollouts in compiled chunks (RK4(compile=True): tens of seconds to compile the first time on a
    machine, seconds to load it from the on-disk cache after, then several times faster); 'off': eager; 'auto': on
    where it pays, with the fixed-step solver and backpropagation and at least COMPILE_FROM (100,000) steps of
    training rollouts (loss evaluations x rollout steps), or where the rollout's compiled code is already cached."""
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
                   "solver": ("rk4", *[m for m in METHODS if m != "rk4"]), "compile": ("auto", "on", "off")}
        try:
            device = torch.device(self.device)
        except (RuntimeError, TypeError) as error:
            raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got {self.device!r}") from error
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device is {self.device!r}, but torch sees no CUDA device here")
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

    def solver_object(self, rollout_steps: int = 0) -> RK4 | Adaptive | Adjoint:
        """The rollout's solver: ``RK4(compile=...)``, ``Adaptive(...)`` or ``Adjoint(...)``.

        With ``adjoint`` and ``solver='rk4'`` the adjoint runs torchdiffeq's fixed-grid
        ``rk4`` (its 3/8-rule step), one step per environment step. ``rollout_steps`` (the
        training rollouts' length) decides ``compile='auto'``.
        """
        if self.adjoint:
            return Adjoint(self.solver, self.rtol, self.atol)
        if self.solver == "rk4":
            evaluations = self.iterations + self.lbfgs_steps * LBFGS_EVALUATIONS
            return training_solver(self.compile, evaluations * rollout_steps)
        return Adaptive(self.solver, self.rtol, self.atol)



#: the agent whose section of a card holds the neural-ODE agent's tuned settings
AGENT_NAME = "neural-ode"


def card_settings(env_id: str, env_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The card's tuned settings of the neural-ODE agent on ``env_kwargs``: :class:`NeuralOdeConfig` fields (empty:
    none tuned); a key that is not a field is a ``ValueError``."""
    fields = [f.name for f in dataclasses.fields(NeuralOdeConfig)]
    return card(env_id).settings(AGENT_NAME, env_kwargs=env_kwargs, known=fields)


def default_config(env_id: str, env_kwargs: dict[str, Any] | None = None) -> NeuralOdeConfig:
    """The tuned defaults for ``env_id``: the report's network, with the iterations, batch and schedule of
    the environment's card (its ``"neural-ode"`` section, :func:`card_settings`).

    Where the start is deterministic and the steps noise-free (e.g. Cartpole with
    ``initial_noise=0``) every trajectory of a batch is the same, so the batch is one.
    """
    values = card_settings(env_id, env_kwargs)
    problem = problem_of(env_id, **(env_kwargs or {}))
    starts = initial_states(problem, 2, torch.Generator().manual_seed(0))
    if not problem.step_noise and torch.equal(starts[0], starts[1]):
        values["batch_size"] = 1
    return NeuralOdeConfig(**values)


def tuned_run_transitions(overrides: dict[str, Any], rollout_steps: int) -> int:
    r"""The transitions a run of the tuned ``overrides`` simulates at most (what a card's gradient budget gives).

    Adam's iterations plus the L-BFGS finish's worst case (:data:`LBFGS_EVALUATIONS` rollouts a
    step), each rollout ``batch_size`` trajectories of ``rollout_steps`` steps:
    :math:`(K_{Adam} + K_{L-BFGS} E)\, B\, T`.
    """
    config = NeuralOdeConfig(**overrides)
    return (config.iterations + config.lbfgs_steps * LBFGS_EVALUATIONS) * config.batch_size * rollout_steps
