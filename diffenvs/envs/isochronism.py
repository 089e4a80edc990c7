r"""Isochronism: learn a force field whose every trajectory has period T (report §3).

Description
    A unit mass on a line moves under a force that depends on its position only,
    :math:`\ddot x = f(x)`. Which fields make *every* trajectory :math:`T`-periodic,
    :math:`X(T) = X(0)` with :math:`X = (x, \dot x)`? The symmetric answer is the harmonic
    field :math:`f(x) = -(2\pi/T)^2 x` (report §3.3). The state is :math:`(x, \dot x)` and

    .. math:: \dot x = v, \qquad \dot v = f.

Action Space
    ``Box(-1, 1, (1,), float32)``: the force :math:`f = a \cdot` ``max_force`` (N, unit
    mass); actions outside ``[-1, 1]`` are clipped.

Observation Space
    Set by ``observe``. The physical state ``env.unwrapped.state`` is ``(x, v)`` in (m, m/s).

    ============  ================  =======================  ==========  =====================
    ``observe``   index             observation              unit        range
    ============  ================  =======================  ==========  =====================
    "position"    0                 position :math:`x`       m           (-inf, inf)
    "full"        0                 position :math:`x`       m           (-inf, inf)
    "full"        1                 velocity :math:`\dot x`  m/s         (-inf, inf)
    "full"        2                 time fraction t / T      1           [0, 1]
    ============  ================  =======================  ==========  =====================

    ``"position"`` (the default, the report's observation) makes a policy a force field
    :math:`f(x)`; ``"full"`` gives a policy the whole state and the time, as a model-free
    learner needs to act on the Markov state. The reward is the same under both.

Rewards
    Zero before the end, then :math:`-\|X(T) - X(0)\|^2` at :math:`T`.

Starting State
    :math:`X(0) \sim \mathcal N(0, I)` (seeded), or any state through
    ``reset(options={"state": ...})``.

Episode End
    Terminates at :math:`T` = ``params.period`` (2π s), after ``max_steps`` (1000) steps of
    ``dt`` = T / ``max_steps`` (6.3 ms): the horizon is the period by definition. Truncates
    early if the state becomes non-finite. The Gymnasium face holds the force over each
    step, under which no field is exactly isochronous (the one-step map of a held force has
    Jacobian determinant :math:`1 - h^2 f'(x)/2 \ne 1`); with 1000 steps the harmonic
    field's cost is about 2e-4 on starts from :math:`\mathcal N(0, I)`. In the gradient path,
    ``rollout(..., control="feedback")`` evaluates the field inside the ODE, where the harmonic
    field is exact.

Arguments
    ``gymnasium.make("DiffIsochronism-v0", params=IsochronismParams(), max_steps=1000, max_force=10.0,
    observe="position")``: ``max_steps`` steps per period (``dt`` is derived); ``observe`` is
    ``"position"`` or ``"full"`` (see Observation Space). Deprecated: ``steps=`` for ``max_steps``.

Version History
    v0: first release; ``observe="full"`` added (the default observation is unchanged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from diffenvs.core.horizon import renamed_horizon
from diffenvs.core.numerics import columns
from diffenvs.core.problem import OdeProblem, check_choice, check_episode, check_positive, plain_constants
from diffenvs.core.registration import register_problem
from diffenvs.core.render import Canvas

#: what the Gymnasium face observes: the position alone (a force field), or the state and the time
OBSERVE = ("position", "full")


@dataclass(frozen=True)
class IsochronismParams:
    """Constants (SI units)."""

    period: float = 2 * math.pi  #: T, s: the horizon and the period asked of every trajectory


@renamed_horizon("steps", attribute="max_steps")
@dataclass(frozen=True)
class Isochronism(OdeProblem[IsochronismParams]):
    """The isochronism definition; see the module docstring."""

    params: IsochronismParams = field(default_factory=IsochronismParams)
    max_steps: int = 1000
    max_force: float = 10.0
    observe: str = "position"

    state_names: ClassVar = ("position", "velocity")
    state_units: ClassVar = ("m", "m/s")
    control_names: ClassVar = ("force",)
    control_units: ClassVar = ("N",)
    initial_draws: ClassVar = ("normal", 2)

    def __post_init__(self) -> None:
        plain_constants(self, IsochronismParams)
        check_positive("params.period", self.params.period)
        check_positive("max_force", self.max_force)
        check_choice("observe", self.observe, OBSERVE)
        check_episode(self)  # dt = period / max_steps

    @property
    def dt(self) -> float:
        """Seconds per step, T / ``max_steps``."""
        return self.params.period / self.max_steps

    @property
    def horizon(self) -> float:
        """The period T (``max_steps * dt`` up to rounding): the horizon by definition."""
        return self.params.period

    @property
    def observation_names(self) -> tuple[str, ...]:  # type: ignore[override]  # per instance (observe), over a class constant
        return ("position",) if self.observe == "position" else ("position", "velocity", "time_fraction")

    @property
    def observation_low(self) -> tuple[float, ...]:  # type: ignore[override]  # per instance (observe), over a class constant
        return (-np.inf,) if self.observe == "position" else (-np.inf, -np.inf, 0.0)

    @property
    def observation_high(self) -> tuple[float, ...]:  # type: ignore[override]  # per instance (observe), over a class constant
        return (np.inf,) if self.observe == "position" else (np.inf, np.inf, 1.0)

    @property
    def control_low(self) -> tuple[float, ...]:
        return (-self.max_force,)

    @property
    def control_high(self) -> tuple[float, ...]:
        return (self.max_force,)

    def vector_field(self, t, x, u, params, ns):
        return x[1], u[0]

    def terminal_cost(self, x, x0, params, ns):
        return sum((a - b) * (a - b) for a, b in zip(x, x0))

    def initial_state(self, draws, params, ns):
        return columns(draws)

    def observation(self, t, x, params, ns):
        return (x[0],) if self.observe == "position" else (x[0], x[1], t / self.horizon)

    def render(self, state: np.ndarray) -> np.ndarray:
        return self.render_episode(np.asarray(state, np.float64)[None])

    def render_episode(self, states: np.ndarray) -> np.ndarray:
        """The phase plane :math:`(x, \\dot x)`: axes with a tick per unit, the origin, the start :math:`X(0)` (the
        ring every trajectory must come back to at :math:`T`), the path so far and the current state."""
        states = np.asarray(states, np.float64)
        finite = states[np.isfinite(states).all(axis=1)]
        extent = float(np.abs(finite).max()) if len(finite) else 0.0
        radius = max(3.0, 1.2 * extent)
        canvas = Canvas(320, 320, (-radius, radius), (-radius, radius))
        canvas.axes(1.0 if radius < 12 else 10 ** math.floor(math.log10(radius / 2)))
        canvas.path(states[:, 0], states[:, 1], (150, 180, 230))
        canvas.ring(float(states[0, 0]), float(states[0, 1]), 6 * canvas.pixel, 2 * canvas.pixel, (220, 120, 40))
        x, v = (float(s) for s in states[-1])
        canvas.disc(x, v, 4 * canvas.pixel, (40, 90, 200))
        return canvas.image


def harmonic_force(x: Any, params: IsochronismParams = IsochronismParams()) -> Any:
    r"""The isochronous field :math:`f(x) = -(2\pi/T)^2 x` (N per unit mass)."""
    return -((2 * math.pi / params.period) ** 2) * x


IsochronismEnv, IsochronismVectorEnv = register_problem(Isochronism, "DiffIsochronism-v0", __doc__, order=3, namespace="diffenvs")
