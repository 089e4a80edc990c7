r"""Double pendulum on a cart: swing-up of two poles in a chain, a chaotic system.

Description
    Two massless rods carry point masses at their tips: the first, of mass :math:`m_1` and
    length :math:`L_1`, is hinged on a cart of mass :math:`M`; the second, of mass
    :math:`m_2` and length :math:`L_2`, is hinged at the first one's tip. A horizontal force
    :math:`f` pushes the cart along a frictionless track (no end stops). The angles
    :math:`\theta_1, \theta_2` are absolute, both measured from the upward vertical
    (:math:`0` upright, :math:`\pi` hanging), positive when the tip is right of its hinge.
    Both poles start hanging and must be upright and still at :math:`T`.

    With :math:`q = (x, \theta_1, \theta_2)`, :math:`\mu = m_1 + m_2`, the tips at
    :math:`(x + L_1\sin\theta_1, L_1\cos\theta_1)` and
    :math:`(x + L_1\sin\theta_1 + L_2\sin\theta_2, L_1\cos\theta_1 + L_2\cos\theta_2)`, the
    Lagrangian :math:`\mathcal L = \tfrac12 \dot q^\top \mathbf M(q)\dot q - V(q)` has

    .. math::
        \mathbf M = \begin{pmatrix} M + \mu & \mu L_1 c_1 & m_2 L_2 c_2 \\
                                    \mu L_1 c_1 & \mu L_1^2 & m_2 L_1 L_2 c_{12} \\
                                    m_2 L_2 c_2 & m_2 L_1 L_2 c_{12} & m_2 L_2^2 \end{pmatrix}, \qquad
        V = \mu g L_1 c_1 + m_2 g L_2 c_2,

    (:math:`c_i = \cos\theta_i`, :math:`s_i = \sin\theta_i`, :math:`c_{12} = \cos(\theta_1 - \theta_2)`,
    :math:`s_{12} = \sin(\theta_1 - \theta_2)`), and the Euler--Lagrange equations are
    :math:`\mathbf M(q)\ddot q = \tau` with

    .. math::
        \tau = \begin{pmatrix} f + \mu L_1 s_1\dot\theta_1^2 + m_2 L_2 s_2 \dot\theta_2^2 \\
                               \mu g L_1 s_1 - m_2 L_1 L_2 s_{12}\dot\theta_2^2 \\
                               m_2 g L_2 s_2 + m_2 L_1 L_2 s_{12}\dot\theta_1^2 \end{pmatrix}.

    The 3 x 3 system is solved in closed form (Cramer's rule),
    :math:`\ddot q = \operatorname{adj}(\mathbf M)\,\tau / \det\mathbf M` with :math:`\det\mathbf M = m_2 L_1^2 L_2^2\,D`,
    :math:`D = M m_1 + M m_2 s_{12}^2 + m_1\mu s_1^2 > 0`, and the cofactors

    .. math::
        \ddot x &= \big[(m_1 + m_2 s_{12}^2)\,\tau_1 - (\mu c_1 - m_2 c_2 c_{12})\,\tau_2/L_1
                   + \mu (c_1 c_{12} - c_2)\,\tau_3/L_2\big] / D, \\
        \ddot\theta_1 &= \big[-(\mu c_1 - m_2 c_2 c_{12})\,\tau_1/L_1 + (M + m_1 + m_2 s_2^2)\,\tau_2/L_1^2
                   + (\mu c_1 c_2 - (M + \mu) c_{12})\,\tau_3/(L_1 L_2)\big] / D, \\
        \ddot\theta_2 &= \big[\mu (c_1 c_{12} - c_2)\,\tau_1/L_2 + (\mu c_1 c_2 - (M + \mu) c_{12})\,\tau_2/(L_1 L_2)
                   + \mu (M + \mu s_1^2)\,\tau_3/(m_2 L_2^2)\big] / D,

    written component-wise, so the same code runs on floats and on batched tensors. With
    :math:`m_2 \to 0` the cart and the first pole obey the cartpole's equations
    (:mod:`diffenvs.envs.cartpole`). Sources: the Lagrangian of the double inverted pendulum on a
    cart with point masses (e.g. Bogdanov, *Optimal control of a double inverted pendulum on a
    cart*, OGI tech. report CSE-04-006, 2004, which uses uniform rods; point masses are its
    limit of zero rod inertia about the centre of mass, with the centre of mass at the tip).
    About upright the linearisation is

    .. math::
        \ddot x = \frac{f - \mu g\theta_1}{M}, \quad
        \ddot\theta_1 = \frac{(M + m_1)\mu g\,\theta_1}{M m_1 L_1} - \frac{m_2 g\,\theta_2}{m_1 L_1} - \frac{f}{M L_1}, \quad
        \ddot\theta_2 = \frac{\mu g\,(\theta_2 - \theta_1)}{m_1 L_2}

    (:meth:`DoublePendulum.linearisation`). The motion without force conserves the energy
    :math:`E = \tfrac12\dot q^\top\mathbf M\dot q + V` (:meth:`DoublePendulum.energy`) and is chaotic.

Action Space
    ``Box(-1, 1, (1,), float32)``: the force :math:`f = a \cdot` ``max_force`` (N),
    actions outside ``[-1, 1]`` are clipped. Physical control bounds ``±max_force``.

Observation Space
    ``Box((9,), float32)``:

    ===  ====================  ======  ============
    idx  observation           unit    range
    ===  ====================  ======  ============
    0    cart position x       m       (-inf, inf)
    1    cos θ1                --      [-1, 1]
    2    sin θ1                --      [-1, 1]
    3    cos θ2                --      [-1, 1]
    4    sin θ2                --      [-1, 1]
    5    cart velocity ẋ       m/s     (-inf, inf)
    6    first pole θ̇1         rad/s   (-inf, inf)
    7    second pole θ̇2        rad/s   (-inf, inf)
    8    time t / T            --      [0, 1]
    ===  ====================  ======  ============

    The physical state ``env.unwrapped.state`` is :math:`(x, \theta_1, \theta_2, \dot x, \dot\theta_1, \dot\theta_2)`
    in (m, rad, rad, m/s, rad/s, rad/s).

Rewards
    ``cost="terminal"`` (default): zero until the last step, then
    :math:`-(\bar\theta_1(T)^2 + \bar\theta_2(T)^2 + \dot\theta_1(T)^2 + \dot\theta_2(T)^2)` with
    :math:`\bar\theta` the angle wrapped to :math:`(-\pi, \pi]` (the cartpole's objective for
    both poles). ``cost="quadratic"``: each step pays :math:`-\int (s^\top Q s + R f^2)\,dt`
    over the step with :math:`s = (x, \bar\theta_1, \bar\theta_2, \dot x, \dot\theta_1, \dot\theta_2)`,
    :math:`Q = \mathrm{diag}(10^{-4}, 100, 100, 0, 0, 0)`, :math:`R = 10^{-2}` (the cartpole's
    LQR weights, on both angles). ``cost="terminal-shaped"`` (a training reward for learners
    that discount by :math:`\gamma` = ``discount``): the terminal cost :math:`c(s)` above paid
    as the cartpole's potential-based shaping
    (:func:`diffenvs.envs.cartpole.terminal_shaped_reward`),
    :math:`r_k = c(s_k) - \gamma c(s_{k+1})` before the last step and
    :math:`c(s_{K-1}) - c(s_K)` at it, whose discounted return is
    :math:`c(s_0) - \gamma^{K-1}c(s_K)` for every policy: over the fixed horizon, with
    :math:`t/T` observed, its optimum is the terminal cost's for any :math:`\gamma \in (0, 1]`.

Starting State
    :math:`(x, \theta_1, \theta_2, \dot x, \dot\theta_1, \dot\theta_2) = (0, \theta_0, \theta_0, 0, 0, 0)
    + \mathcal U(-\epsilon, \epsilon)^6` with ``initial_angle`` :math:`\theta_0 = \pi` (both
    hanging) and ``initial_noise`` :math:`\epsilon = 0.05`; or any state through
    ``reset(options={"state": ...})``.

Episode End
    Terminates at :math:`T` = ``max_steps * dt`` (``problem.horizon``; 4 s, 200 steps of
    0.02 s): the objective is defined there. Truncates early if the state becomes non-finite.
    Why 4 s and 0.02 s: about upright the default poles' linearised modes grow at 8.9 /s and
    4.4 /s, and hanging they swing with periods of 0.71 s and 1.42 s. A swing-up pumps energy
    in over a few swings, then catches both poles; 4 s leaves room for about three swings of
    the slow mode at ``max_force`` = 30 N (three times the poles' weight), and a direct
    shooting of the held forces through :func:`diffenvs.rollout` from the hanging start
    brings the terminal cost from 44 (no force) to about 1 and below (feasible; not a proof
    of the optimum). A step of 0.02 s keeps RK4's :math:`h\lambda` below about 0.4 at the
    angular speeds of a swing-up (up to about 20 rad/s) and matches the cartpole's step;
    without force it conserves the energy of a chaotic tumble over 4 s to 1.6 % (0.02 s)
    and 2e-5 (0.005 s), falling like :math:`h^4`.

Arguments
    ``gymnasium.make("DiffDoublePendulum-v0", params=DoublePendulumParams(), cost="terminal",
    max_force=30.0, max_steps=200, dt=0.02, initial_angle=math.pi, initial_noise=0.05,
    discount=1.0)``: ``max_steps`` steps per episode of ``dt`` seconds each; ``discount`` in
    (0, 1] is read by ``cost="terminal-shaped"`` only. Numpy scalars are accepted as
    numbers, bools are not; ``initial_noise`` is at most the largest float32.

Version History
    v0: first release. Changed within v0: ``cost="terminal-shaped"`` and ``discount``
    (added; the other objectives are unchanged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

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
from diffenvs.envs.cartpole import COSTS, SwingUpCosts, check_discount


@dataclass(frozen=True)
class DoublePendulumParams:
    """Physical constants (SI units); each pole is a massless rod with a point mass at its tip."""

    cart_mass: float = 1.0  #: M, kg
    pole1_mass: float = 0.5  #: m1, kg (at the first pole's tip, the second pole's hinge)
    pole2_mass: float = 0.5  #: m2, kg (at the second pole's tip)
    pole1_length: float = 0.5  #: L1, m
    pole2_length: float = 0.5  #: L2, m
    gravity: float = 9.8  #: g, m/s²


#: LQR weights on (x, θ1, θ2, ẋ, θ̇1, θ̇2) and on the force: the cartpole's, on both angles
STATE_WEIGHTS = (1e-4, 100.0, 100.0, 0.0, 0.0, 0.0)
FORCE_WEIGHT = 1e-2

_PARAM_NAMES = ("cart_mass", "pole1_mass", "pole2_mass", "pole1_length", "pole2_length", "gravity")


@dataclass(frozen=True)
class DoublePendulum(SwingUpCosts, OdeProblem[DoublePendulumParams]):
    """The double pendulum on a cart; see the module docstring."""

    params: DoublePendulumParams = field(default_factory=DoublePendulumParams)
    cost: str = "terminal"
    max_force: float = 30.0
    max_steps: int = 200
    dt: float = 0.02
    initial_angle: float = math.pi
    initial_noise: float = 0.05
    discount: float = 1.0
    r""":math:`\gamma \in (0, 1]` of ``cost="terminal-shaped"``: the discount of the learner trained on it."""

    state_names: ClassVar = ("cart_position", "pole1_angle", "pole2_angle", "cart_velocity", "pole1_angle_velocity",
                             "pole2_angle_velocity")
    state_units: ClassVar = ("m", "rad", "rad", "m/s", "rad/s", "rad/s")
    observation_names: ClassVar = ("cart_position", "cos_pole1_angle", "sin_pole1_angle", "cos_pole2_angle",
                                   "sin_pole2_angle", "cart_velocity", "pole1_angle_velocity", "pole2_angle_velocity",
                                   "time_fraction")
    observation_low: ClassVar = (-np.inf, -1.0, -1.0, -1.0, -1.0, -np.inf, -np.inf, -np.inf, 0.0)
    observation_high: ClassVar = (np.inf, 1.0, 1.0, 1.0, 1.0, np.inf, np.inf, np.inf, 1.0)
    control_names: ClassVar = ("force",)
    control_units: ClassVar = ("N",)
    initial_draws: ClassVar = ("uniform", 6)

    def __post_init__(self) -> None:
        plain_constants(self, DoublePendulumParams)
        check_choice("cost", self.cost, COSTS)
        check_discount(self.discount)
        check_positive_fields(self.params, _PARAM_NAMES)
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

    def vector_field(self, t: Any, x: Components, u: Components, params: DoublePendulumParams,
                     ns: ArrayNamespace) -> Components:
        _, theta1, theta2, cart_velocity, omega1, omega2 = x
        (force,) = u
        big_m, m1, m2 = params.cart_mass, params.pole1_mass, params.pole2_mass
        l1, l2, g = params.pole1_length, params.pole2_length, params.gravity
        mu = m1 + m2
        s1, c1, s2, c2 = ns.sin(theta1), ns.cos(theta1), ns.sin(theta2), ns.cos(theta2)
        s12, c12 = ns.sin(theta1 - theta2), ns.cos(theta1 - theta2)
        # generalised forces: the push, gravity and the centrifugal terms (M(q) q'' = tau)
        tau1 = force + mu * l1 * s1 * omega1 * omega1 + m2 * l2 * s2 * omega2 * omega2
        tau2 = mu * g * l1 * s1 - m2 * l1 * l2 * s12 * omega2 * omega2
        tau3 = m2 * g * l2 * s2 + m2 * l1 * l2 * s12 * omega1 * omega1
        # Cramer's rule: the adjugate of M(q) over det M(q) = m2 L1^2 L2^2 D, D > 0
        denominator = big_m * m1 + big_m * m2 * s12 * s12 + m1 * mu * s1 * s1
        a12 = -(mu * c1 - m2 * c2 * c12) / l1
        a13 = mu * (c1 * c12 - c2) / l2
        a23 = (mu * c1 * c2 - (big_m + mu) * c12) / (l1 * l2)
        x_acceleration = ((m1 + m2 * s12 * s12) * tau1 + a12 * tau2 + a13 * tau3) / denominator
        theta1_acceleration = (a12 * tau1 + (big_m + m1 + m2 * s2 * s2) * tau2 / (l1 * l1) + a23 * tau3) / denominator
        theta2_acceleration = (a13 * tau1 + a23 * tau2
                               + mu * (big_m + mu * s1 * s1) * tau3 / (m2 * l2 * l2)) / denominator
        return cart_velocity, omega1, omega2, x_acceleration, theta1_acceleration, theta2_acceleration

    def energy(self, x: Components, params: DoublePendulumParams, ns: ArrayNamespace) -> Any:
        r"""The mechanical energy :math:`\tfrac12\dot q^\top\mathbf M(q)\dot q + V(q)` (J), conserved without force."""
        _, theta1, theta2, v, omega1, omega2 = x
        big_m, m1, m2 = params.cart_mass, params.pole1_mass, params.pole2_mass
        l1, l2, g = params.pole1_length, params.pole2_length, params.gravity
        mu = m1 + m2
        c1, c2, c12 = ns.cos(theta1), ns.cos(theta2), ns.cos(theta1 - theta2)
        kinetic = 0.5 * ((big_m + mu) * v * v + mu * l1 * l1 * omega1 * omega1 + m2 * l2 * l2 * omega2 * omega2) \
            + mu * l1 * c1 * v * omega1 + m2 * l2 * c2 * v * omega2 + m2 * l1 * l2 * c12 * omega1 * omega2
        return kinetic + mu * g * l1 * c1 + m2 * g * l2 * c2

    def linearisation(self) -> tuple[np.ndarray, np.ndarray]:
        r""":math:`(A, B)` of :math:`\dot s = As + Bf` about upright and still, :math:`s` the state (see the docstring)."""
        p = self.params
        big_m, m1, m2 = p.cart_mass, p.pole1_mass, p.pole2_mass
        l1, l2, g = p.pole1_length, p.pole2_length, p.gravity
        mu = m1 + m2
        a = np.zeros((6, 6))
        a[:3, 3:] = np.eye(3)
        a[3, 1] = -mu * g / big_m
        a[4, 1], a[4, 2] = (big_m + m1) * mu * g / (big_m * m1 * l1), -m2 * g / (m1 * l1)
        a[5, 1], a[5, 2] = -mu * g / (m1 * l2), mu * g / (m1 * l2)
        b = np.zeros((6, 1))
        b[3, 0], b[4, 0] = 1.0 / big_m, -1.0 / (big_m * l1)
        return a, b

    @property
    def has_running_cost(self) -> bool:  # type: ignore[override]  # per instance (cost), over a class constant
        return self.cost == "quadratic"

    def running_cost(self, t, x, u, params, ns):
        s = (x[0], wrap_angle(x[1], ns), wrap_angle(x[2], ns), x[3], x[4], x[5])
        return sum(q * si * si for q, si in zip(STATE_WEIGHTS, s) if q) + FORCE_WEIGHT * u[0] * u[0]

    def swing_up_cost(self, x: Components, ns: ArrayNamespace) -> Any:
        r"""The terminal cost :math:`c(s) = \bar\theta_1^2 + \bar\theta_2^2 + \dot\theta_1^2 + \dot\theta_2^2` of a state."""
        theta1, theta2 = wrap_angle(x[1], ns), wrap_angle(x[2], ns)
        return theta1 * theta1 + theta2 * theta2 + x[4] * x[4] + x[5] * x[5]

    def initial_state(self, draws: Any, params: Any, ns: ArrayNamespace) -> Components:
        base = (0.0, self.initial_angle, self.initial_angle, 0.0, 0.0, 0.0)
        return tuple(b + self.initial_noise * (2.0 * d - 1.0) for b, d in zip(base, columns(draws)))

    def observation(self, t, x, params, ns):
        return (x[0], ns.cos(x[1]), ns.sin(x[1]), ns.cos(x[2]), ns.sin(x[2]), x[3], x[4], x[5],
                t / self.horizon)

    def render(self, state: np.ndarray) -> np.ndarray:
        x, theta1, theta2 = (float(v) for v in state[:3])
        l1, l2 = self.params.pole1_length, self.params.pole2_length
        reach = l1 + l2
        span = 2.5 * reach + 0.5
        canvas = Canvas(480, 320, (x - span, x + span), (-1.6 * reach, 1.6 * reach))
        canvas.rect(x - span, -0.02, x + span, 0.02, (120, 120, 120))
        canvas.rect(x - 0.3, -0.15, x + 0.3, 0.15, (40, 40, 40))
        joint = (x + l1 * math.sin(theta1), l1 * math.cos(theta1))
        tip = (joint[0] + l2 * math.sin(theta2), joint[1] + l2 * math.cos(theta2))
        canvas.line(x, 0.0, *joint, 0.05, (200, 120, 60))
        canvas.line(*joint, *tip, 0.05, (60, 120, 200))
        canvas.disc(*joint, 0.07, (160, 60, 30))
        canvas.disc(*tip, 0.07, (30, 60, 160))
        return canvas.image


DoublePendulumEnv, DoublePendulumVectorEnv = register_problem(DoublePendulum, "DiffDoublePendulum-v0", __doc__, order=6,
                                                              namespace="diffenvs")
