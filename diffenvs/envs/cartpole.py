r"""Cartpole swing-up with the full nonlinear dynamics (report §4.3).

Description
    A pole of mass :math:`m` and length :math:`L` (a point mass at its tip) is hinged on a
    cart of mass :math:`M` that a horizontal force :math:`f` pushes along a frictionless
    track. The pole starts hanging (:math:`\phi = \pi`) and must be upright and still at
    :math:`T`. The Euler--Lagrange equations of the Lagrangian (4.9) are

    .. math::
        \ddot x = \frac{f + m \sin\phi\,(L\dot\phi^2 - g\cos\phi)}{M + m\sin^2\phi}, \qquad
        \ddot\phi = \frac{-f\cos\phi - mL\dot\phi^2\sin\phi\cos\phi + (M+m)g\sin\phi}{L\,(M + m\sin^2\phi)},

    with :math:`\phi = 0` upright.

Action Space
    ``Box(-1, 1, (1,), float32)``: the force :math:`f = a \cdot` ``max_force`` (N),
    actions outside ``[-1, 1]`` are clipped. Physical control bounds ``±max_force``.

Observation Space
    ``Box((6,), float32)``:

    ===  =================  ======  ============
    idx  observation        unit    range
    ===  =================  ======  ============
    0    cart position x    m       (-inf, inf)
    1    cart velocity ẋ    m/s     (-inf, inf)
    2    cos φ              --      [-1, 1]
    3    sin φ              --      [-1, 1]
    4    pole velocity φ̇    rad/s   (-inf, inf)
    5    time t / T         --      [0, 1]
    ===  =================  ======  ============

    The physical state ``env.unwrapped.state`` is ``(x, ẋ, φ, φ̇)`` in (m, m/s, rad, rad/s).

Rewards
    ``cost="terminal"`` (default, the report's objective (4.10)): zero until the last step,
    then :math:`-(\bar\phi(T)^2 + \dot\phi(T)^2)` with :math:`\bar\phi` the angle wrapped to
    :math:`(-\pi, \pi]`. ``cost="quadratic"``: each step pays
    :math:`-\int (s^\top Q s + R f^2)\,dt` over the step with :math:`s = (x, \dot x, \bar\phi, \dot\phi)`,
    :math:`Q = \mathrm{diag}(10^{-4}, 0, 100, 0)`, :math:`R = 10^{-2}` (the report's LQR weights).
    ``cost="terminal-shaped"`` (a training reward for learners that discount by
    :math:`\gamma` = ``discount``): the terminal cost :math:`c(s) = \bar\phi^2 + \dot\phi^2`
    paid as the potential-based shaping with :math:`\Phi = -c`,

    .. math::
        r_k = c(s_k) - \gamma\, c(s_{k+1}) \quad (k < K - 1), \qquad
        r_{K-1} = c(s_{K-1}) - c(s_K)

    (:func:`terminal_shaped_reward`; :math:`K` = ``max_steps``). Its discounted return
    telescopes, :math:`\sum_{k<K} \gamma^k r_k = c(s_0) - \gamma^{K-1} c(s_K)`, for every
    policy and start: the start's cost (which no action changes) minus :math:`\gamma^{K-1} > 0`
    times the report's terminal cost. The horizon is fixed (no event ends an episode early)
    and :math:`t/T` is observed, so a policy maximises this discounted return exactly when it
    minimises :math:`c(s_K)`: the optimum is the report's, for any :math:`\gamma \in (0, 1]`.
    With ``discount=1`` the return is :math:`c(s_0) - c(s_K)`.

Starting State
    :math:`(x, \dot x, \phi, \dot\phi) = (0, 0, \phi_0, 0) + \mathcal U(-\epsilon, \epsilon)^4`
    with ``initial_angle`` :math:`\phi_0 = \pi` and ``initial_noise`` :math:`\epsilon = 0.05`;
    or any state through ``reset(options={"state": ...})``.

Episode End
    Terminates at :math:`T` = ``max_steps * dt`` (``problem.horizon``; 2 s, 100 steps of
    0.02 s): the objective is defined there. Truncates early if the state becomes non-finite.

Arguments
    ``gymnasium.make("DiffCartpole-v0", params=CartpoleParams(), cost="terminal",
    max_force=50.0, max_steps=100, dt=0.02, initial_angle=math.pi, initial_noise=0.05,
    discount=1.0)``: ``max_steps`` steps per episode of ``dt`` seconds each; ``discount``
    in (0, 1] is read by ``cost="terminal-shaped"`` only. Deprecated: ``horizon=T`` in
    seconds (``max_steps = T / dt``, which must be a whole number). Numpy scalars are accepted
    as numbers, bools are not; ``initial_noise`` is at most the largest float32.

Version History
    v0: first release. Changed within v0: ``cost="terminal-shaped"`` and ``discount``
    (added; the other objectives are unchanged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from diffenvs.core.horizon import renamed_horizon
from diffenvs.core.numerics import ArrayNamespace, Components, columns, wrap_angle
from diffenvs.core.problem import (
    FLOAT32_MAX,
    OdeProblem,
    check_choice,
    check_episode,
    check_finite,
    check_positive,
    check_positive_fields,
    plain_constants,
)
from diffenvs.core.registration import register_problem
from diffenvs.core.render import Canvas


def check_discount(discount: Any) -> None:
    """Raise ``ValueError`` unless ``discount`` is a number in (0, 1]."""
    check_finite("discount", discount, least=0.0)
    if not 0.0 < discount <= 1.0:
        raise ValueError(f"discount must be in (0, 1], got {discount!r}")


@dataclass(frozen=True)
class CartpoleParams:
    """Physical constants (SI units)."""

    cart_mass: float = 1.0  #: M, kg
    pole_mass: float = 1.0  #: m, kg (a point mass at the tip)
    pole_length: float = 1.0  #: L, m
    gravity: float = 9.8  #: g, m/s²


#: the report's LQR weights on (x, ẋ, φ, φ̇) and on the force
STATE_WEIGHTS = (1e-4, 0.0, 100.0, 0.0)
FORCE_WEIGHT = 1e-2

#: the objectives: the report's terminal cost, the LQR running cost, the terminal cost shaped for a discount
COSTS = ("terminal", "quadratic", "terminal-shaped")


def terminal_shaped_reward(cost: Any, next_cost: Any, last: Any, discount: float, ns: ArrayNamespace) -> Any:
    r"""The step reward of a terminal cost :math:`c` shaped for the discount :math:`\gamma`.

    .. math:: r_k = c(s_k) - \gamma\,c(s_{k+1}) \quad\text{before the last step}, \qquad
              r_{K-1} = c(s_{K-1}) - c(s_K),

    the potential-based shaping :math:`\gamma\Phi(s_{k+1}) - \Phi(s_k)` with :math:`\Phi = -c`
    and :math:`\Phi = 0` after the end, plus the terminal payment :math:`-c(s_K)`. Over a fixed
    horizon of :math:`K` steps, :math:`\sum_{k<K}\gamma^k r_k = c(s_0) - \gamma^{K-1}c(s_K)`: the
    sums of :math:`\gamma^{k+1}c(s_{k+1})` and :math:`\gamma^k c(s_k)` cancel term by term
    except the first and the last. ``cost`` is :math:`c(s_k)`, ``next_cost``
    :math:`c(s_{k+1})`, ``last`` whether the step is the last (a bool or a boolean array);
    shapes broadcast. Shared by the cartpole and the double pendulum.
    """
    if isinstance(last, bool):
        return cost - (next_cost if last else discount * next_cost)
    return cost - ns.where(last, next_cost, discount * next_cost)


class SwingUpCosts:
    """The swing-up's objectives from a problem's terminal cost ``swing_up_cost(x, ns)``: paid at T
    (``cost="terminal"``), or shaped for the learner's ``discount`` (``cost="terminal-shaped"``,
    :func:`terminal_shaped_reward`); any other ``cost`` is the problem's own. Shared by the cartpole and the double
    pendulum, listed before :class:`~diffenvs.core.problem.OdeProblem` among their bases."""

    cost: str
    discount: float

    def swing_up_cost(self, x: Components, ns: ArrayNamespace) -> Any:
        raise NotImplementedError

    def terminal_cost(self, x, x0, params, ns):
        return self.swing_up_cost(x, ns) if self.cost == "terminal" else None

    def step_reward(self, x, x1, cost_increment, x0, terminal_due, params, ns):  # noqa: D102 (see the module)
        if self.cost != "terminal-shaped":
            return super().step_reward(x, x1, cost_increment, x0, terminal_due, params, ns)
        return terminal_shaped_reward(self.swing_up_cost(x, ns), self.swing_up_cost(x1, ns), terminal_due,
                                      self.discount, ns)


@renamed_horizon("horizon", seconds=True)
@dataclass(frozen=True)
class Cartpole(SwingUpCosts, OdeProblem[CartpoleParams]):
    """The cartpole definition; see the module docstring."""

    params: CartpoleParams = field(default_factory=CartpoleParams)
    cost: str = "terminal"
    max_force: float = 50.0
    max_steps: int = 100
    dt: float = 0.02
    initial_angle: float = math.pi
    initial_noise: float = 0.05
    discount: float = 1.0
    r""":math:`\gamma \in (0, 1]` of ``cost="terminal-shaped"``: the discount of the learner trained on it."""

    state_names: ClassVar = ("cart_position", "cart_velocity", "pole_angle", "pole_angle_velocity")
    state_units: ClassVar = ("m", "m/s", "rad", "rad/s")
    observation_names: ClassVar = ("cart_position", "cart_velocity", "cos_pole_angle", "sin_pole_angle",
                                   "pole_angle_velocity", "time_fraction")
    observation_low: ClassVar = (-np.inf, -np.inf, -1.0, -1.0, -np.inf, 0.0)
    observation_high: ClassVar = (np.inf, np.inf, 1.0, 1.0, np.inf, 1.0)
    control_names: ClassVar = ("force",)
    control_units: ClassVar = ("N",)
    initial_draws: ClassVar = ("uniform", 4)

    def __post_init__(self) -> None:
        plain_constants(self, CartpoleParams)
        check_choice("cost", self.cost, COSTS)
        check_discount(self.discount)
        check_positive_fields(self.params, ("cart_mass", "pole_mass", "pole_length", "gravity"))
        for name in ("max_force", "dt"):
            check_positive(name, getattr(self, name))
        check_episode(self)
        check_finite("initial_angle", self.initial_angle)
        # the start's cart position is observed: it must stay inside the float32 range
        check_finite("initial_noise", self.initial_noise, least=0.0, bound=FLOAT32_MAX)

    @property
    def control_low(self) -> tuple[float, ...]:
        return (-self.max_force,)

    @property
    def control_high(self) -> tuple[float, ...]:
        return (self.max_force,)

    def vector_field(self, t: Any, x: Components, u: Components, params: CartpoleParams, ns: ArrayNamespace) -> Components:
        _, cart_velocity, phi, phi_dot = x
        (force,) = u
        m, big_m, length, g = params.pole_mass, params.cart_mass, params.pole_length, params.gravity
        sin, cos = ns.sin(phi), ns.cos(phi)
        m_sin = m * sin
        denominator = big_m + m_sin * sin
        pull = force + m_sin * (length * phi_dot * phi_dot)  # f + m L phi_dot^2 sin phi, in both numerators
        x_acceleration = (pull - (m * g) * sin * cos) / denominator
        phi_acceleration = ((big_m + m) * g * sin - pull * cos) / (length * denominator)
        return cart_velocity, x_acceleration, phi_dot, phi_acceleration

    @property
    def has_running_cost(self) -> bool:  # type: ignore[override]  # per instance (cost), over a class constant
        return self.cost == "quadratic"

    def running_cost(self, t, x, u, params, ns):
        s = (x[0], x[1], wrap_angle(x[2], ns), x[3])
        return sum(q * si * si for q, si in zip(STATE_WEIGHTS, s) if q) + FORCE_WEIGHT * u[0] * u[0]

    def swing_up_cost(self, x: Components, ns: ArrayNamespace) -> Any:
        r"""The report's terminal cost :math:`c(s) = \bar\phi^2 + \dot\phi^2` (rad², rad²/s²) of a state."""
        phi = wrap_angle(x[2], ns)
        return phi * phi + x[3] * x[3]

    def initial_state(self, draws: Any, params: Any, ns: ArrayNamespace) -> Components:
        base = (0.0, 0.0, self.initial_angle, 0.0)
        return tuple(b + self.initial_noise * (2.0 * d - 1.0) for b, d in zip(base, columns(draws)))

    def observation(self, t, x, params, ns):
        return x[0], x[1], ns.cos(x[2]), ns.sin(x[2]), x[3], t / self.horizon

    def render(self, state: np.ndarray) -> np.ndarray:
        x, _, phi, _ = (float(v) for v in state)
        length = self.params.pole_length
        span = 2.5 * length + 0.5
        canvas = Canvas(480, 320, (x - span, x + span), (-1.6 * length, 1.6 * length))
        canvas.rect(x - span, -0.02, x + span, 0.02, (120, 120, 120))
        canvas.rect(x - 0.3, -0.15, x + 0.3, 0.15, (40, 40, 40))
        tip = (x + length * math.sin(phi), length * math.cos(phi))
        canvas.line(x, 0.0, *tip, 0.06, (200, 120, 60))
        canvas.disc(*tip, 0.08, (160, 60, 30))
        return canvas.image


CartpoleEnv, CartpoleVectorEnv = register_problem(Cartpole, "DiffCartpole-v0", __doc__, order=2, namespace="diffenvs")
