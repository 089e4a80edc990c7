r"""Active identification of a linear system (report §5).

Description
    An unknown matrix :math:`A \in \mathbb R^{d\times d}` drives

    .. math:: x_{t+1} = A x_t + B u_t + w_t, \qquad w_t \sim \mathcal N(0, \sigma^2 I), \qquad x_0 = 0,

    and the agent chooses inputs :math:`\|u_t\| \le \gamma` so that the least-squares
    estimate :math:`\hat A = \arg\min_\beta \sum_t \|x_{t+1} - B u_t - \beta x_t\|^2` is
    close to :math:`A`. The error of :math:`\hat A` is governed by the singular values of
    the design matrix :math:`G = \sum_t x_t x_t^\top`; the optimality criteria
    (:func:`information`) are differentiable functions of them.

Action Space
    ``Box(-1, 1, (d,), float32)``: :math:`u = \gamma \bar a / \max(1, \|\bar a\|)` with
    :math:`\bar a` the action clipped to the box: actions outside ``[-1, 1]`` are clipped,
    then scaled by :math:`\gamma` and projected onto the ball :math:`\|u\| \le \gamma`.

Observation Space
    ``Box((d + 1,), float32)``: the state :math:`x_t` and the time fraction :math:`t/T`.
    :math:`A` is hidden. ``env.unwrapped.state`` is :math:`x_t`.

Rewards
    Zero before the end, then :math:`-\|\hat A - A\|_F` from the episode's data. Where the
    inputs did not excite every direction (:math:`G` singular, e.g. ``noise_std=0``),
    :math:`\hat A = C G^+` is the minimum-norm least-squares estimate.

Starting State
    :math:`x_0 = 0`. ``matrix="jordan"`` (default): the fixed Jordan block, 0.9 on the
    diagonal and 1 above it; ``matrix="random"``: a standard Gaussian matrix drawn at each
    reset and scaled to spectral radius 1; or an explicit ``d x d`` array (fixed).

Episode End
    Terminates after ``max_steps`` (100) samples; truncates early if the state becomes
    non-finite. ``dt`` is 1 (one sample per step), so ``problem.horizon`` counts samples.

Arguments
    ``gymnasium.make("DiffLinearSysID-v0", d=4, matrix="jordan", noise_std=0.1, gamma=1.0, max_steps=100)``:
    ``max_steps`` samples per episode, at least ``d + 1`` (the start :math:`x_0 = 0` adds
    nothing to :math:`G`, so ``d`` samples leave it singular). ``matrix`` is ``"jordan"``,
    ``"random"`` or a finite ``d x d`` array. Deprecated: ``steps=`` for ``max_steps``.

Version History
    v0: first release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from diffenvs.core.horizon import renamed_horizon
from diffenvs.core.numerics import ArrayNamespace, Components
from diffenvs.core.problem import (
    Control,
    Held,
    Problem,
    check_choice,
    check_finite,
    check_integer,
    check_positive,
    plain_constants,
)
from diffenvs.core.registration import register_problem
from diffenvs.core.render import Canvas


def jordan_matrix(d: int, diagonal: float = 0.9) -> np.ndarray:
    """The Jordan block with ``diagonal`` on the diagonal and 1 just above it."""
    return diagonal * np.eye(d) + np.eye(d, k=1)


def random_matrix(normal_draws: Any, d: int) -> Any:
    """Gaussian matrices from standard normal draws ``(..., d*d)``, scaled to spectral radius 1."""
    lib = torch if isinstance(normal_draws, torch.Tensor) else np
    g = normal_draws.reshape(*normal_draws.shape[:-1], d, d)
    radius = lib.abs(lib.linalg.eigvals(g)).max(-1)
    radius = radius.values if lib is torch else radius
    return g / radius[..., None, None].to(g.dtype) if lib is torch else g / radius[..., None, None]


def least_squares(gram: Any, cross: Any) -> Any:
    r"""OLS estimate :math:`\hat A = C G^{+}`, the minimum-norm one where :math:`G` is singular.

    From the design matrix :math:`G = \sum x_t x_t^\top` and :math:`C = \sum (x_{t+1} - Bu_t) x_t^\top`.
    :math:`G^+` is the pseudo-inverse (:math:`G^{-1}` where :math:`G` is invertible), with
    singular values below ``d * eps`` of the largest treated as zero, so a design that does
    not excite every direction gives a finite estimate instead of ``LinAlgError`` (and one
    singular environment of a batch does not stop the others). Differentiable (torch).
    """
    if isinstance(gram, torch.Tensor):
        rtol = gram.shape[-1] * torch.finfo(gram.dtype).eps
        return cross @ torch.linalg.pinv(gram, rtol=rtol, hermitian=True)
    rtol = gram.shape[-1] * np.finfo(np.float64).eps
    return cross @ np.linalg.pinv(gram, rcond=rtol, hermitian=True)  # rcond: numpy 1.x has no rtol


def information(gram: torch.Tensor, criterion: str = "E") -> torch.Tensor:
    r"""Information of a design matrix :math:`G` (larger is better), from its singular values alone.

    ``"E"``: :math:`s_{\min}(G)`; ``"A"``: :math:`-\sum_i 1/s_i^2`; ``"D"``:
    :math:`\log\det G = \sum_i \log s_i`. Singular values (``torch.linalg.svdvals``) have
    gradients even where they coincide, unlike singular vectors.
    """
    check_choice("criterion", criterion, ("E", "A", "D"))
    s = torch.linalg.svdvals(gram)
    if criterion == "E":
        return s[..., -1]
    if criterion == "A":
        return -(1.0 / s.square()).sum(-1)
    return torch.log(s).sum(-1)


@dataclass(frozen=True)
class LinearSysIDParams:
    """Constants: ``A`` (the true matrix when fixed), ``B``, noise ``sigma`` and input bound ``gamma``."""

    A: np.ndarray | torch.Tensor  #: a tensor of the rollout's dtype on the torch faces (params_like)
    B: np.ndarray | torch.Tensor
    noise_std: float = 0.1  #: σ, standard deviation of w_t
    gamma: float = 1.0  #: γ, bound on ‖u_t‖


@renamed_horizon("steps", attribute="max_steps")
@dataclass(frozen=True, eq=False)
class LinearSysID(Problem[LinearSysIDParams]):
    """The system-identification definition; see the module docstring."""

    d: int = 4
    matrix: Any = "jordan"
    noise_std: float = 0.1
    gamma: float = 1.0
    max_steps: int = 100
    params: LinearSysIDParams = field(init=False)

    state_units: ClassVar = ()
    dt: ClassVar[float] = 1.0
    step_noise: ClassVar[int] = 0  # set per instance to d in __post_init__

    def __post_init__(self) -> None:
        plain_constants(self)
        check_integer("d", self.d)
        # x_0 = 0 adds nothing to G: d + 1 samples are the fewest that can make it invertible
        check_integer(f"max_steps (at least d + 1 with d = {self.d})", self.max_steps, least=self.d + 1)
        check_positive("gamma", self.gamma)
        check_finite("noise_std", self.noise_std, least=0.0)
        if isinstance(self.matrix, str):
            check_choice("matrix", self.matrix, ("jordan", "random"))
            a = jordan_matrix(self.d) if self.matrix == "jordan" else np.full((self.d, self.d), np.nan)
        else:
            try:
                a = np.asarray(self.matrix, dtype=np.float64)
            except (TypeError, ValueError) as error:
                raise ValueError(f"matrix must be 'jordan', 'random' or a finite array of shape ({self.d}, {self.d}), "
                                 f"got {self.matrix!r}") from error
            if a.shape != (self.d, self.d) or not np.isfinite(a).all():
                raise ValueError(f"matrix must be 'jordan', 'random' or a finite array of shape ({self.d}, {self.d}), "
                                 f"got shape {a.shape}")
        object.__setattr__(self, "params", LinearSysIDParams(a, np.eye(self.d), self.noise_std, self.gamma))
        object.__setattr__(self, "step_noise", self.d)

    # ---- descriptions ------------------------------------------------------------------
    @property
    def state_names(self) -> tuple[str, ...]:  # type: ignore[override]  # per instance (d), over a class constant
        return tuple(f"x{i}" for i in range(self.d))

    @property
    def observation_names(self) -> tuple[str, ...]:  # type: ignore[override]  # per instance (d), over a class constant
        return (*self.state_names, "time_fraction")

    @property
    def observation_low(self) -> tuple[float, ...]:  # type: ignore[override]  # per instance (d), over a class constant
        return (-np.inf,) * self.d + (0.0,)

    @property
    def observation_high(self) -> tuple[float, ...]:  # type: ignore[override]  # per instance (d), over a class constant
        return (np.inf,) * self.d + (1.0,)

    @property
    def control_names(self) -> tuple[str, ...]:  # type: ignore[override]  # per instance (d), over a class constant
        return tuple(f"u{i}" for i in range(self.d))

    @property
    def random(self) -> bool:
        """Whether the true matrix is drawn at each reset (``matrix="random"``)."""
        return isinstance(self.matrix, str) and self.matrix == "random"

    @property
    def initial_draws(self) -> tuple[str, int]:  # type: ignore[override]  # per instance (d), over a class constant
        return ("normal", self.d * self.d if self.random else 0)

    @property
    def control_low(self) -> tuple[float, ...]:
        return (-self.gamma,) * self.d

    @property
    def control_high(self) -> tuple[float, ...]:
        return (self.gamma,) * self.d

    def control_from_action(self, action: Components, ns: ArrayNamespace) -> Components:
        """``u = gamma a / max(1, |a|)`` with ``a`` clipped to ``[-1, 1]`` first: the ball ``|u| <= gamma``.

        Clipping first makes an action outside the box act as the clipped one (as on every
        environment) and keeps the norm at most ``sqrt(d)``, so huge actions cannot overflow it.
        """
        action = tuple(ns.clip(a, -1.0, 1.0) for a in action)
        norm = ns.sqrt(sum(a * a for a in action))
        scale = self.gamma / ns.clip(norm, 1.0, float("inf"))
        return tuple(a * scale for a in action)

    def clip_control(self, u: torch.Tensor) -> torch.Tensor:
        r"""The rule of :meth:`control_from_action` on physical controls: clamped to the box
        :math:`[-\gamma, \gamma]^d`, then projected onto the ball :math:`\|u\| \le \gamma`. The norm is taken
        of :math:`\max(\|u\|^2, \gamma^2)`, so the gradient stays finite at :math:`u = 0`."""
        u = torch.clamp(u, -self.gamma, self.gamma)
        squared = torch.clamp((u * u).sum(-1, keepdim=True), min=self.gamma ** 2)
        return u * (self.gamma / torch.sqrt(squared))

    def action_from_control(self, control: np.ndarray) -> np.ndarray:
        return np.asarray(control) / self.gamma

    # ---- state: (x, A, G = sum x x^T, C = sum (x' - B u) x^T) ------------------------
    def initial_state(self, draws: Any, params: LinearSysIDParams, ns: ArrayNamespace) -> Components:
        if isinstance(draws, torch.Tensor):
            x = torch.zeros(draws.shape[0], self.d, dtype=draws.dtype, device=draws.device)
            a = random_matrix(draws, self.d) if self.random else None
            return self.state_from_physical(x.unbind(-1), params, ns, a)
        a = random_matrix(np.asarray(draws), self.d) if self.random else None
        return self.state_from_physical((0.0,) * self.d, params, ns, a)

    def state_from_physical(self, state: Components, params: LinearSysIDParams, ns: ArrayNamespace,
                            matrix: Any = None) -> Components:
        """Internal state ``(x, A, G, C)``: the true matrix rides in the state (hidden), the statistics start at zero."""
        if ns.name == "torch":
            x = torch.stack(tuple(state), -1)
            a = torch.as_tensor(params.A if matrix is None else matrix, dtype=x.dtype, device=x.device)
            a = a.expand(x.shape[:-1] + a.shape[-2:])
            zeros = torch.zeros(x.shape + (self.d,), dtype=x.dtype, device=x.device)
            return x, a, zeros, zeros
        zeros_array = np.zeros((self.d, self.d))
        return np.asarray(state, dtype=np.float64), params.A if matrix is None else matrix, zeros_array, zeros_array

    def state_to_physical(self, x: Components) -> Components:
        state = x[0]
        return tuple(state.unbind(-1)) if isinstance(state, torch.Tensor) else tuple(state.tolist())

    def observation(self, t, x, params, ns):
        return (*self.state_to_physical(x), t / self.max_steps)

    def step(self, t: Any, x: Components, control: Control, *, x0: Components, params: LinearSysIDParams,
             ns: ArrayNamespace, terminal_due: Any, noise: Components | None = None,
             integrate: Any = None) -> tuple[Components, Any, Any]:
        """One sample ``x' = A x + B u + w``; the statistics grow and the estimate's error is paid when due."""
        if not isinstance(control, Held):
            raise TypeError(f"{type(self).__name__} is a discrete-time map: its control is Held, got {control!r}")
        state, a, gram, cross = x
        u, last = control.u, terminal_due
        if isinstance(state, torch.Tensor):
            drive: Any = torch.stack(tuple(u), -1)
            w: Any = torch.zeros_like(state) if noise is None else torch.stack(tuple(noise), -1)
            b: Any = torch.as_tensor(params.B, dtype=state.dtype, device=state.device)
        else:
            drive, w, b = np.asarray(u), np.zeros(self.d) if noise is None else np.asarray(noise), params.B
        driven = (drive[..., None, :] * b).sum(-1)  # B u
        response = (a * state[..., None, :]).sum(-1) + params.noise_std * w  # A x + w
        state1 = response + driven
        outer = state[..., :, None] * state[..., None, :]
        gram1 = gram + outer
        cross1 = cross + response[..., :, None] * state[..., None, :]
        if ns.eager:
            reward = -estimation_error(gram1, cross1, a) if last else 0.0
        else:  # the estimate exists only once G is invertible: evaluate it where due, identity elsewhere
            last = torch.as_tensor(last, device=state.device)
            due = last.reshape(last.shape + (1, 1))
            eye = torch.eye(self.d, dtype=gram1.dtype, device=gram1.device)
            error = estimation_error(torch.where(due, gram1, eye), torch.where(due, cross1, eye), torch.where(due, a, eye))
            reward = torch.where(last, -error, torch.zeros_like(error))
        return (state1, a, gram1, cross1), reward, False

    def render(self, state: np.ndarray) -> np.ndarray:
        return self.render_episode(np.asarray(state, np.float64)[None])

    def render_episode(self, states: np.ndarray) -> np.ndarray:
        """The plane of the first two state components (the first against 0 when ``d`` is 1): axes with a tick per
        unit, the origin, the path so far and the current state."""
        states = np.asarray(states, np.float64)
        plane = states[:, :2] if self.d > 1 else np.stack([states[:, 0], np.zeros(len(states))], axis=1)
        finite = plane[np.isfinite(plane).all(axis=1)]
        extent = float(np.abs(finite).max()) if len(finite) else 0.0
        radius = max(2.0, 1.2 * extent)
        canvas = Canvas(320, 320, (-radius, radius), (-radius, radius))
        canvas.axes(1.0 if radius < 12 else 10 ** math.floor(math.log10(radius / 2)))
        canvas.path(plane[:, 0], plane[:, 1], (150, 180, 230))
        canvas.disc(float(plane[-1, 0]), float(plane[-1, 1]), 4 * canvas.pixel, (40, 90, 200))
        return canvas.image


def estimation_error(gram: Any, cross: Any, a: Any) -> Any:
    r""":math:`\|\hat A - A\|_F` of the least-squares estimate from the statistics :math:`G, C`."""
    lib = torch if isinstance(gram, torch.Tensor) else np
    difference = least_squares(gram, cross) - a
    return lib.sqrt((difference * difference).sum((-2, -1)))


LinearSysIDEnv, LinearSysIDVectorEnv = register_problem(LinearSysID, "DiffLinearSysID-v0", __doc__, order=4, namespace="diffenvs")
