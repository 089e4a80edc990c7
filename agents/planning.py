r"""Differentiable planning for active identification of a linear system (report §2.5 and §5).

The system is :class:`diffenvs.envs.linear_sysid.LinearSysID`,

.. math:: x_{t+1} = A x_t + B u_t + \sigma w_t, \qquad x_0 = 0, \qquad \|u_t\| \le \gamma,

and :math:`A` is estimated by least squares from the statistics
:math:`G = \sum_t x_t x_t^\top` (the design matrix) and
:math:`C = \sum_t (x_{t+1} - B u_t) x_t^\top`: :math:`\hat A = C G^{-1}`.

**Planning** chooses the inputs of an experiment of :math:`T` steps by gradient ascent on an
information criterion :math:`\mathcal I` of the design matrix the experiment would collect on
a planning matrix :math:`\tilde A` (the estimate :math:`\hat A`, or the true :math:`A` for the
oracle), added to the design :math:`G_{\text{prior}}` of the data already in hand:

.. math:: \max_\theta\; \frac1K \sum_{k=1}^K \mathcal I\Big(G_{\text{prior}}
          + \sum_{t=0}^{T-1} x_t^{(k)} x_t^{(k)\top}\Big), \qquad
          x^{(k)}_{t+1} = \tilde A x^{(k)}_t + B u_t + \sigma w^{(k)}_t,

with :math:`K` fixed noise draws :math:`w^{(k)}` (the reparametrisation trick: the noise is
an input of the computation, not a function of :math:`\theta`). The trajectories come from
:func:`diffenvs.rollout` on the environment's own step. The criterion is
:func:`diffenvs.envs.linear_sysid.information` of the singular values :math:`s_i` of the data
matrix :math:`X = (x_0, \dots, x_{T-1})^\top` (report §5.1), read off a square root of
:math:`G = X^\top X` (its Cholesky factor :math:`L`, :math:`s_i(L) = s_i(X) = \sqrt{s_i(G)}`);
their gradient is the report's §2.5 adjoint :math:`\bar L = U \bar S V^\top`, which uses
no singular-vector gradients, so nothing divides by :math:`s_i - s_j` where singular values
meet. ``"E"``: :math:`s_{\min}(X)`, the report's (5.20); ``"A"``:
:math:`-\sum_i s_i^{-2} = -\operatorname{tr} G^{-1}` (5.11), which is, up to the factor
:math:`\sigma^2 d`, the expected squared error :math:`\mathbb E\|\hat A - A\|_F^2` of least
squares on a fixed design (the default); ``"D"``: :math:`\log\det X = \tfrac12\log\det G`.

The bound :math:`\|u_t\| \le \gamma` holds by construction: :math:`u_t = \gamma\, v_t / \|v_t\|`
(full energy, on the sphere), where :math:`v_t` is either a free parameter per step
(``form="sequence"``) or the output of the report's network :math:`v_t = \pi_\theta(x_t / s,
t / T)` (``form="network"``: two tanh layers of width 16, the state scaled by the RMS
:math:`s` of the planning rollout at initialisation, time as the fraction of the experiment).

**The adaptive algorithm** (report Algorithm 1, after Wagenmaker and Jamieson): a first
experiment with Gaussian input, then epochs of geometrically growing length
:math:`T_i = T_0 g^i`; each epoch estimates :math:`\hat A` from all data so far, plans on it,
plays the plan on the true system and appends the data. Baselines: Gaussian input
:math:`u_t \sim \mathcal N(0, \gamma^2 I / d)` (mean energy :math:`\mathbb E\|u_t\|^2 = \gamma^2`,
the planner's energy) and the oracle, which plans on the true :math:`A` with the same
optimiser. All agents see the same true matrices and the same process noise (common random
numbers); every tensor has a leading batch dimension of independent runs.

Numerical health: a design with :math:`s_{\min}(G) \le` :data:`RANK_TOLERANCE`
:math:`\cdot\, s_{\max}(G)`, or with non-finite entries, raises
:class:`RankDeficientDesignError` (never a NaN estimate or gradient); criteria are evaluated
on :math:`G + \epsilon\,(\operatorname{tr} G / d) I` with :math:`\epsilon =` :data:`RIDGE`,
which bounds :math:`1/s^2` and :math:`\log s` (and keeps the Cholesky factor defined) near the
tolerance.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

import diffenvs
from diffenvs.core.problem import check_integer
from diffenvs.envs.linear_sysid import LinearSysID, LinearSysIDParams, information, least_squares

#: relative tolerance of rank: a design with s_min(G) <= RANK_TOLERANCE * s_max(G) carries no
#: usable information in some direction (float64 singular values are accurate to about
#: d * 2.2e-16 * s_max, so this leaves four orders of margin) and is refused
RANK_TOLERANCE = 1e-12

#: relative ridge of the criteria: information is evaluated on G + RIDGE * (tr G / d) I, so that
#: 1/s^2 and log s stay bounded (and their gradients finite) for designs near the tolerance;
#: it changes a design of condition number c by a relative RIDGE * c, negligible below 1e6
RIDGE = 1e-12

FORMS = ("sequence", "network")
CRITERIA = ("E", "A", "D")

#: one planning or playing callback: ``(iteration, metrics) -> stop``
Callback = Callable[[int, dict[str, float]], bool]


class RankDeficientDesignError(ValueError):
    """The design matrix does not excite every direction of the state: no estimate, no criterion."""


# ---- the design matrix and its health ---------------------------------------------------
def design_matrix(states: torch.Tensor) -> torch.Tensor:
    r""":math:`G = \sum_{t=0}^{T-1} x_t x_t^\top` from states ``(T + 1, batch, d)``; shape ``(batch, d, d)``."""
    regressors = states[:-1]
    return torch.einsum("tbi,tbj->bij", regressors, regressors)


def cross_matrix(states: torch.Tensor, controls: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    r""":math:`C = \sum_{t=0}^{T-1} (x_{t+1} - B u_t) x_t^\top` from states ``(T + 1, batch, d)``, controls ``(T, batch, m)``."""
    responses = states[1:] - controls @ b.transpose(-1, -2)
    return torch.einsum("tbi,tbj->bij", responses, states[:-1])


def check_design(gram: torch.Tensor) -> torch.Tensor:
    r"""Singular values of the design matrices ``gram`` ``(..., d, d)``, or :class:`RankDeficientDesignError`.

    Refuses non-finite entries and :math:`s_{\min} \le` :data:`RANK_TOLERANCE` :math:`s_{\max}`,
    naming the offending runs (indices of the leading batch dimension).
    """
    gram = gram.detach()
    finite = torch.isfinite(gram).flatten(-2).all(-1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite.reshape(-1)).flatten().tolist()
        raise RankDeficientDesignError(
            f"design matrix G = sum_t x_t x_t^T has non-finite entries in runs {bad[:10]}: the trajectory "
            "diverged (the planning matrix may have spectral radius > 1, or the learning rate is too large)")
    s = torch.linalg.svdvals(gram)
    ratio = s[..., -1] / s[..., 0].clamp_min(torch.finfo(s.dtype).tiny)
    deficient = ratio <= RANK_TOLERANCE
    if bool(deficient.any()):
        bad = torch.nonzero(deficient.reshape(-1)).flatten().tolist()
        worst = float(ratio.min())
        raise RankDeficientDesignError(
            f"design matrix G = sum_t x_t x_t^T is rank-deficient in runs {bad[:10]} (s_min / s_max = {worst:.3g} "
            f"<= RANK_TOLERANCE = {RANK_TOLERANCE:g}): the data do not excite every direction of the state, so A "
            f"cannot be estimated; use at least d + 1 = {gram.shape[-1] + 1} samples per experiment and inputs or "
            "noise that span the state space")
    return s


def design_information(gram: torch.Tensor, criterion: str) -> torch.Tensor:
    r"""Criterion of the design :math:`G = X^\top X` through the singular values of the data matrix :math:`X` (larger: better).

    :math:`X = (x_0, \dots, x_{T-1})^\top` has the singular values of the Cholesky factor
    :math:`L` of :math:`G = L L^\top`, :math:`s_i(X) = s_i(L) = \sqrt{s_i(G)}`, so
    :func:`~diffenvs.envs.linear_sysid.information` of :math:`L^\top` is the report's criterion (§5.1):
    ``"E"`` :math:`s_{\min}(X)`, ``"A"`` :math:`-\sum_i s_i(X)^{-2} = -\operatorname{tr} G^{-1}`,
    ``"D"`` :math:`\log\det X = \tfrac12 \log\det G`. The factor is taken of
    :math:`G + \epsilon (\operatorname{tr}G/d) I` (:data:`RIDGE`). The design is checked first
    (:func:`check_design`): a rank-deficient or non-finite ``gram`` raises
    :class:`RankDeficientDesignError` instead of returning ``-inf`` or NaN.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")
    check_design(gram)
    d = gram.shape[-1]
    eye = torch.eye(d, dtype=gram.dtype, device=gram.device)
    trace = gram.diagonal(dim1=-2, dim2=-1).sum(-1)
    factor = torch.linalg.cholesky(gram + (RIDGE * trace / d)[..., None, None] * eye)
    return information(factor.transpose(-1, -2), criterion)


def estimate(gram: torch.Tensor, cross: torch.Tensor) -> torch.Tensor:
    r"""Least-squares :math:`\hat A = C G^{-1}` after :func:`check_design` (a clear error, not a NaN)."""
    check_design(gram)
    return least_squares(gram, cross)


def spectral_radius_bound(matrix: torch.Tensor, radius: float) -> torch.Tensor:
    r""":math:`\tilde A = A \min(1, r / \rho(A))`: the matrix scaled down to spectral radius at most ``radius``."""
    rho = torch.linalg.eigvals(matrix).abs().amax(-1)
    return matrix * torch.clamp(radius / rho, max=1.0)[..., None, None]


# ---- controllers -----------------------------------------------------------------------
def sphere(v: torch.Tensor, gamma: float) -> torch.Tensor:
    r""":math:`u = \gamma\, v / \|v\|` along the last axis: :math:`\|u\| = \gamma` (and :math:`u = 0` for :math:`v = 0`)."""
    return gamma * v / torch.linalg.vector_norm(v, dim=-1, keepdim=True).clamp_min(torch.finfo(v.dtype).tiny)


class InputSequence(torch.nn.Module):
    r"""A free input sequence per run: :math:`u_t = \gamma\, v_t / \|v_t\|`, parameters ``v`` of shape ``(runs, T, d)``."""

    def __init__(self, runs: int, steps: int, d: int, gamma: float, generator: torch.Generator,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        self.gamma = gamma
        self.v = torch.nn.Parameter(torch.randn(runs, steps, d, generator=generator, dtype=dtype))

    def controls(self) -> torch.Tensor:
        """The inputs ``(T, runs, d)``."""
        return sphere(self.v, self.gamma).transpose(0, 1)

    def policy(self, samples: int = 1) -> torch.Tensor:
        """The rollout's open-loop policy: the inputs repeated for ``samples`` noise draws per run, ``(T, runs * samples, d)``."""
        return self.controls().repeat_interleave(samples, dim=1)


class InputNetwork(torch.nn.Module):
    r"""One tanh network per run, :math:`u_t = \gamma\, v / \|v\|` with :math:`v = \pi_\theta(x_t / s, t / T)`.

    Observations are the environment's ``(x_t, t / T)`` of shape ``(runs * samples, d + 1)``
    (runs major); weights have a leading run dimension and are applied with batched matrix
    products. ``scale`` :math:`s` ``(runs,)`` brings the state to order one.
    """

    scale: torch.Tensor
    """The state's scale per run, ``(runs,)`` (a buffer)."""

    def __init__(self, runs: int, d: int, gamma: float, width: int, depth: int, generator: torch.Generator,
                 dtype: torch.dtype = torch.float64):
        super().__init__()
        self.gamma = gamma
        sizes = [d + 1] + [width] * depth + [d]
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):  # PyTorch's Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            bound = 1.0 / math.sqrt(fan_in)
            for shape, parameters in (((runs, fan_in, fan_out), self.weights), ((runs, 1, fan_out), self.biases)):
                draw = torch.rand(*shape, generator=generator, dtype=dtype)
                parameters.append(torch.nn.Parameter((2.0 * draw - 1.0) * bound))
        self.register_buffer("scale", torch.ones(runs, dtype=dtype))

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        runs = self.scale.shape[0]
        z = observation.reshape(runs, -1, observation.shape[-1])
        z = torch.cat([z[..., :-1] / self.scale[:, None, None], z[..., -1:]], dim=-1)
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = torch.baddbmm(b, z, w)
            z = z if i == last else torch.tanh(z)
        return sphere(z, self.gamma).reshape(observation.shape[0], -1)

    def policy(self, samples: int = 1) -> InputNetwork:
        """The rollout's closed-loop policy (the same for any number of noise draws per run)."""
        return self


# ---- planning ------------------------------------------------------------------------
@dataclass(frozen=True)
class PlannerConfig:
    """Hyperparameters of differentiable planning (shared by the active agent and the oracle)."""

    form: str = "sequence"
    """control form: "sequence" (a free input per step) or "network" (u = pi(x_t, t/T), the report's)"""
    criterion: str = "A"
    """criterion on the singular values s of the data matrix X (X^T X = G): "E" s_min, "A" -sum 1/s^2 = -tr G^-1, "D" log det"""
    iterations: int = 100
    """Adam steps per planning problem"""
    lr: float | None = None
    """Adam learning rate; None: 0.3 for the sequence (parameters of order one per step), 0.01 for the network"""
    noise_samples: int = 1
    """fixed process-noise draws per run averaged in the planning objective (reparametrisation)"""
    width: int = 16
    """hidden width of the network form"""
    depth: int = 2
    """hidden tanh layers of the network form"""
    radius: float = 1.0
    """plan on the estimate scaled to spectral radius <= radius (the report assumes rho(A) <= 1); 0 disables"""

    def __post_init__(self) -> None:
        if self.form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}, got {self.form!r}")
        if self.criterion not in CRITERIA:
            raise ValueError(f"criterion must be one of {CRITERIA}, got {self.criterion!r}")
        for name in ("iterations", "noise_samples", "width", "depth"):
            check_integer(name, getattr(self, name), least=0 if name == "iterations" else 1)
        if self.lr is not None and not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite positive number or None, got {self.lr!r}")
        if not (isinstance(self.radius, (int, float)) and math.isfinite(self.radius) and self.radius >= 0):
            raise ValueError(f"radius must be a finite non-negative number (0 disables), got {self.radius!r}")


    @property
    def learning_rate(self) -> float:
        """The Adam learning rate in use (``lr``, or the form's default)."""
        if self.lr is not None:
            return float(self.lr)
        return 0.3 if self.form == "sequence" else 0.01


def _epoch_problem(problem: LinearSysID, steps: int) -> LinearSysID:
    """The definition with a horizon of ``steps`` (the observation's time fraction is ``t / steps``)."""
    return problem if problem.max_steps == steps else dataclasses.replace(problem, max_steps=steps)


def _rollout(problem: LinearSysID, policy: Callable[[torch.Tensor], torch.Tensor] | torch.Tensor, params: LinearSysIDParams,
             noise: torch.Tensor) -> diffenvs.Trajectory:
    """:func:`diffenvs.rollout` from :math:`x_0 = 0`, with a singular experiment reported as such.

    The definition's terminal reward is the least-squares error on the experiment's own data; where
    that design is exactly singular the environment pays the minimum-norm estimate's error, which
    says nothing about the inputs' information, so such an experiment is refused here.
    """
    x0 = torch.zeros(noise.shape[1], problem.d, dtype=noise.dtype)
    trajectory = diffenvs.rollout(problem, policy, x0, params=params, noise=noise)
    with torch.no_grad():
        info = torch.linalg.inv_ex(design_matrix(trajectory.states.detach())).info
    if bool((info != 0).any()):
        runs = torch.nonzero(info.reshape(-1)).flatten().tolist()
        raise RankDeficientDesignError(
            f"the design matrix of an experiment of {problem.max_steps} samples is singular in runs {runs[:10]}: the "
            f"data do not excite every direction of the state; use at least d + 1 = {problem.d + 1} samples per "
            "experiment and inputs or noise that span the state space")
    return trajectory


def plan(problem: LinearSysID, matrix: torch.Tensor, prior: torch.Tensor, steps: int, config: PlannerConfig,
         generator: torch.Generator, callback: Callback | None = None,
         progress: bool = False) -> tuple[InputSequence | InputNetwork, torch.Tensor]:
    r"""Inputs of an experiment of ``steps`` samples maximising the information on ``matrix``.

    Args:
        problem: the definition (its ``d``, ``noise_std`` :math:`\sigma` and ``gamma`` :math:`\gamma` are used;
            its matrix is replaced by ``matrix``).
        matrix: the planning matrices :math:`\tilde A` ``(runs, d, d)``.
        prior: the design :math:`G_{\text{prior}}` ``(runs, d, d)`` of the data in hand (zeros for none).
        steps: the experiment's length :math:`T`, at least ``d + 1``.
        config: the planner's hyperparameters.
        generator: the source of the initial parameters and of the fixed planning noise.
        callback: ``callback(iteration, {"criterion": mean over runs})``; returning ``True`` stops.
        progress: show a progress bar over iterations.

    Returns:
        the controller with, for each run, the iterate of the best criterion met, and the
        criterion per iteration ``(iterations + 1, runs)`` (row 0 is the random start).
    """
    d = problem.d
    _check_plan_inputs(d, matrix, prior, steps)
    runs, dtype, samples = matrix.shape[0], matrix.dtype, config.noise_samples
    epoch = _epoch_problem(problem, steps)
    planning = matrix.detach()
    if config.radius > 0:
        planning = spectral_radius_bound(planning, config.radius)
    params = dataclasses.replace(epoch.params, A=planning.repeat_interleave(samples, dim=0))
    prior = prior.detach().repeat_interleave(samples, dim=0)
    noise = torch.randn(steps, runs * samples, d, generator=generator, dtype=dtype)
    controller = _initial_controller(problem, epoch, params, noise, config, generator)

    def objective() -> torch.Tensor:
        trajectory = _rollout(epoch, controller.policy(samples), params, noise)
        value = design_information(prior + design_matrix(trajectory.states), config.criterion)
        return value.reshape(runs, samples).mean(1)

    return controller, _ascend(controller, objective, runs, config, callback, progress)


def backward_transitions(criteria: torch.Tensor, steps: int, config: PlannerConfig) -> int:
    r"""The environment transitions a backward pass went through in a :func:`plan` that returned ``criteria``
    ``(iterations + 1, runs)``.

    Every iteration but the last evaluates the criterion on ``noise_samples`` rollouts of ``steps`` steps per run and
    backpropagates it once; the last (and the one a callback stopped at) is only evaluated. So :math:`K` completed
    Adam steps on :math:`R` runs with :math:`S` noise draws count :math:`K R S T`, where the forward rollouts count
    :math:`(K + 1) R S T`.
    """
    if criteria.dim() != 2 or criteria.shape[0] < 1:
        raise ValueError(f"criteria must be plan's (iterations + 1, runs) criteria, got shape {tuple(criteria.shape)}")
    check_integer("steps", steps)
    return (criteria.shape[0] - 1) * criteria.shape[1] * config.noise_samples * steps


def _check_plan_inputs(d: int, matrix: torch.Tensor, prior: torch.Tensor, steps: int) -> None:
    if not (isinstance(steps, int) and steps >= d + 1):
        raise ValueError(f"steps must be an integer >= d + 1 = {d + 1} (x_0 = 0 adds nothing to G, and the "
                         f"environment's reward solves least squares on the experiment alone), got {steps!r}")
    runs = matrix.shape[0]
    if tuple(matrix.shape[1:]) != (d, d) or tuple(prior.shape) != (runs, d, d):
        raise ValueError(f"matrix and prior must have shape (runs, {d}, {d}), got {tuple(matrix.shape)} and "
                         f"{tuple(prior.shape)}")


def _initial_controller(problem: LinearSysID, epoch: LinearSysID, params: LinearSysIDParams, noise: torch.Tensor,
                        config: PlannerConfig, generator: torch.Generator) -> InputSequence | InputNetwork:
    """The controller of ``config.form`` at its random start; a network's state scale is the RMS of its planning
    rollout (``noise`` ``(T, runs * samples, d)``) there."""
    steps, d, dtype, samples = noise.shape[0], problem.d, noise.dtype, config.noise_samples
    runs = noise.shape[1] // samples
    if config.form == "sequence":
        return InputSequence(runs, steps, d, problem.gamma, generator, dtype)
    controller = InputNetwork(runs, d, problem.gamma, config.width, config.depth, generator, dtype)
    with torch.no_grad():  # the state's scale: RMS of the planning rollout at initialisation
        states = _rollout(epoch, controller.policy(samples), params, noise).states
        rms = states.square().mean(-1).reshape(steps + 1, runs, samples).mean((0, 2)).sqrt()
        controller.scale.copy_(rms.clamp_min(max(problem.noise_std, 1e-6)))
    return controller


def _ascend(controller: torch.nn.Module, objective: Callable[[], torch.Tensor], runs: int, config: PlannerConfig,
            callback: Callback | None, progress: bool) -> torch.Tensor:
    """Adam ascent of ``objective()`` (one criterion per run) over ``controller``'s parameters, leaving each run's
    parameters at the iterate of its best criterion met; returns the criterion per iteration ``(iterations + 1, runs)``."""
    parameters = list(controller.parameters())  # every parameter has the run dimension first
    best = [p.detach().clone() for p in parameters]
    best_value = torch.full((runs,), -math.inf, dtype=parameters[0].dtype)
    optimiser = torch.optim.Adam(parameters, lr=config.learning_rate)
    history = []
    for iteration in tqdm(range(config.iterations + 1), desc="planning", leave=False, disable=not progress):
        value = objective()
        detached = value.detach()
        improved = detached > best_value
        best_value = torch.where(improved, detached, best_value)
        for p, b in zip(parameters, best):
            b.copy_(torch.where(improved.reshape((runs,) + (1,) * (p.dim() - 1)), p.detach(), b))
        history.append(detached)
        stop = callback is not None and callback(iteration, {"criterion": float(detached.mean())})
        if iteration == config.iterations or stop:
            break
        optimiser.zero_grad()
        (-value.sum()).backward()  # runs own disjoint parameters: the sum ascends each run's criterion independently
        optimiser.step()
    with torch.no_grad():
        for p, b in zip(parameters, best):
            p.copy_(b)
    return torch.stack(history)


def play(problem: LinearSysID, matrix: torch.Tensor, controls: torch.Tensor | InputSequence | InputNetwork,
         noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Play inputs on the system ``matrix`` ``(runs, d, d)`` with process noise ``noise`` ``(T, runs, d)``.

    ``controls`` are open-loop inputs ``(T, runs, d)`` or a planned controller (a network
    closes the loop on the true state). Returns the statistics :math:`(G, C)` of the experiment.
    """
    epoch = _epoch_problem(problem, noise.shape[0])
    params = dataclasses.replace(epoch.params, A=matrix.detach())
    policy = controls if isinstance(controls, torch.Tensor) else controls.policy(1)
    with torch.no_grad():
        trajectory = _rollout(epoch, policy, params, noise)
        b = torch.as_tensor(epoch.params.B, dtype=noise.dtype)
        return design_matrix(trajectory.states), cross_matrix(trajectory.states, trajectory.controls, b)
