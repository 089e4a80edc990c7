r"""Zermelo's river crossing with minimum deviation (report §4.2).

Description
    A boat of speed :math:`v` in still water crosses a river of width :math:`\ell` from
    :math:`(0, 0)`. The wind (current) :math:`w(y) > v` pushes it downstream; the pilot
    chooses the heading :math:`u` (angle to the shore):

    .. math::
        \dot x = v\cos u + w(y), \qquad \dot y = v \sin u, \qquad
        w(y) = w_{\min} + (w_{\max} - w_{\min})\exp\!\Big(-\frac{(y - \ell/2)^2}{(\ell/10)^2}\Big).

    The objective is the downstream deviation :math:`x - x_0` (from the start's
    :math:`x_0`) when the far bank :math:`y = \ell` is reached. Pontryagin's principle gives :math:`\cos u = -v / w(y)` (see
    ``agents.cards.zermelo``); it minimises :math:`dx/dy` at every height, so no crossing ends
    further upstream. An episode the time limit cuts short is scored as if the boat then
    headed straight across (see Rewards), so not crossing never pays.

Action Space
    ``Box(-1, 1, (1,), float32)``: heading :math:`u = \tfrac{\pi}{2}(a + 1) \in [0, \pi]`
    (rad); actions outside ``[-1, 1]`` are clipped.

Observation Space
    ``Box((3,), float32)``: ``(x, y, t/T)``, the position in metres (unbounded) and the
    time as a fraction of the time limit :math:`T` (in ``[0, 1]``): the time limit is part of
    the task (it prices the crossing still to do), so a learner sees how much time is left,
    as rl-baselines3-zoo's ``TimeFeatureWrapper`` gives it. The physical state
    ``env.unwrapped.state`` is ``(x, y)``.

Rewards
    :math:`-(x_{k+1} - x_k)` per step, so the return is :math:`-(x - x_0)` at the crossing. If the
    time limit comes first, its last step also pays the deviation :math:`\Delta x(y_T)` of
    a fixed feasible completion, heading straight across (:math:`u = \pi/2`:
    :math:`\dot x = w(y)`, :math:`\dot y = v`) from :math:`(x_T, y_T)` to the far bank:

    .. math::
        \Delta x(y) = \int_y^{\ell} \frac{w(s)}{v}\,ds
        = \frac{1}{v}\Big[w_{\min}(\ell - y) + (w_{\max} - w_{\min})\,\sigma\,\frac{\sqrt\pi}{2}
          \Big(\operatorname{erf}\frac{\ell - c}{\sigma} - \operatorname{erf}\frac{y - c}{\sigma}\Big)\Big]

    with the wind's centre :math:`c = \ell/2` and width :math:`\sigma = \ell/10`
    (:meth:`Zermelo.timeout_cost`). The cost (minus the return) is therefore :math:`x - x_0` at
    the crossing, or :math:`x_T - x_0 + \Delta x(y_T)` at the time limit: the deviation of a
    complete crossing either way, never below Pontryagin's optimum (1.4126 m from
    :math:`y_0 = 0` with the default parameters).

    ``cost="completion-shaped"`` (a training reward; the default is ``cost="deviation"``, the
    above) pays the same cost as the potential-based shaping with the completed crossing
    :math:`C(x, y) = x + \Delta x(y)` (the deviation if the boat headed straight across from
    here) as potential: :math:`r_k = C(s_k) - C(s_{k+1})`, and nothing more at the time limit
    (:math:`C` already holds the completion). At the crossing :math:`C = x`
    (:math:`\Delta x(\ell) = 0`), at the time limit :math:`C = x_T + \Delta x(y_T)`, so the
    undiscounted return is :math:`C(s_0)` minus the cost above, for every policy: the same
    optimum, with a dense signal. Per second the boat pays
    :math:`\dot C = v\cos u + w(y)(1 - \sin u)`: heading upstream costs
    :math:`w - v > 0`, straight across 0, Pontryagin's heading gains
    (:math:`\dot C = -\sqrt{w^2 - v^2}\,(1 - \sqrt{w^2 - v^2}/w) < 0`), where the default
    reward pays upstream drift least per step and the crossing's deviation only later.

Starting State
    :math:`(x_0, y_0) = (s_x (2 d_1 - 1),\; s_y d_2)` with :math:`d_1, d_2 \sim \mathcal U(0, 1)`:
    uniform in the box :math:`[-s_x, s_x] \times [0, s_y]` (m) by the near bank, with
    ``initial_x_spread`` :math:`s_x \ge 0` and ``initial_y_spread`` :math:`0 \le s_y < \ell`;
    both default to 0, the deterministic start :math:`(0, 0)`. Or any state through
    ``reset(options={"state": ...})`` with :math:`y < \ell`. The optimum from
    :math:`(x_0, y_0)` is :math:`\frac{1}{v}\int_{y_0}^{\ell}\sqrt{w(y)^2 - v^2}\,dy`
    (Pontryagin's slope :math:`dx/dy = \sqrt{w^2 - v^2}/v`): the start's height matters; its
    :math:`x_0` changes only what is observed (the problem is the same at every :math:`x`).

Episode End
    Terminates when the boat reaches :math:`y = \ell`; the final state is the state *at*
    the crossing, located inside the step (with the heading held, :math:`y` is linear in
    time, so one secant iteration is exact). Truncates at the time limit ``max_steps * dt``
    (``problem.horizon``; 10 s, 500 steps of 0.02 s), paying the completion
    :math:`\Delta x(y_T)` of the Rewards at that step, or if the state becomes non-finite
    (nothing more is paid).

Arguments
    ``gymnasium.make("DiffZermelo-v0", params=ZermeloParams(), dt=0.02, max_steps=500,
    initial_x_spread=0.0, initial_y_spread=0.0, cost="deviation")``: ``max_steps`` steps of
    ``dt`` seconds each; the start box of Starting State (m); the reward of Rewards. Deprecated: ``time_limit=T`` in seconds
    (``max_steps = T / dt``, which must be a whole number).

Version History
    v0: first release. Changed within v0: an episode truncated by the time limit pays the
    straight-across completion :math:`\Delta x(y_T)`; before, it paid only :math:`x_T`, so
    never crossing (heading upstream, :math:`x_T \approx 1.0`) beat the optimal crossing
    (1.41). Returns of episodes that cross are unchanged; results of truncated episodes
    recorded before the change are not comparable. Changed within v0: the observation is
    ``(x, y, t/T)`` (it was ``(x, y)``), and the start may be drawn from a box
    (``initial_x_spread``, ``initial_y_spread``; the default start is still :math:`(0, 0)`, with
    no random draw). Policies trained on the two-component observation do not run on the new
    one. Costs from a start with :math:`x_0 \ne 0` are the deviation :math:`x - x_0`, as before.
    Changed within v0: ``cost="completion-shaped"`` (added; the default reward is unchanged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from diffenvs.core.horizon import renamed_horizon
from diffenvs.core.numerics import ArrayNamespace, Components, HasExp, columns
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


@dataclass(frozen=True)
class ZermeloParams:
    """Physical constants (SI units); the wind profile's centre and width are derived from the width."""

    boat_speed: float = 1.0  #: v, m/s
    river_width: float = 2.0  #: ℓ, m
    wind_min: float = 1.1  #: w_min, m/s (must exceed v)
    wind_max: float = 2.0  #: w_max, m/s

    @property
    def wind_centre(self) -> Any:
        return self.river_width / 2

    @property
    def wind_width(self) -> Any:
        return self.river_width / 10


def wind(y: Any, params: ZermeloParams, ns: HasExp) -> Any:
    r""":math:`w(y)` in m/s."""
    z = (y - params.wind_centre) / params.wind_width
    return params.wind_min + (params.wind_max - params.wind_min) * ns.exp(-z * z)


def straight_across_deviation(y: Any, params: ZermeloParams, ns: ArrayNamespace) -> Any:
    r"""Downstream travel (m) from height ``y`` to the far bank heading straight across (:math:`u = \pi/2`).

    .. math::
        \Delta x(y) = \int_y^{\ell} \frac{w(s)}{v}\,ds
        = \frac{w_{\min}(\ell - y) + (w_{\max} - w_{\min})\,\sigma\,\tfrac{\sqrt\pi}{2}
          \big(\operatorname{erf}\frac{\ell - c}{\sigma} - \operatorname{erf}\frac{y - c}{\sigma}\big)}{v}

    with :math:`c` the wind's centre and :math:`\sigma` its width; differentiable in ``y``
    and in tensor fields of ``params`` on :data:`~diffenvs.core.numerics.TORCH`.
    """
    centre, width, far = params.wind_centre, params.wind_width, params.river_width
    gust = (params.wind_max - params.wind_min) * width * (0.5 * math.sqrt(math.pi)) * (
        ns.erf((far - centre) / width + 0.0 * y) - ns.erf((y - centre) / width))  # + 0 y: a tensor on TORCH
    return (params.wind_min * (far - y) + gust) / params.boat_speed


#: the rewards: the deviation (the objective), and its shaping by the straight-across completion
COSTS = ("deviation", "completion-shaped")


@renamed_horizon("time_limit", seconds=True, attribute="horizon")
@dataclass(frozen=True)
class Zermelo(OdeProblem[ZermeloParams]):
    """The river-crossing definition; see the module docstring."""

    params: ZermeloParams = field(default_factory=ZermeloParams)
    dt: float = 0.02
    max_steps: int = 500
    initial_x_spread: float = 0.0
    """:math:`s_x` (m): the start's :math:`x_0` is uniform on :math:`[-s_x, s_x]` (0: :math:`x_0 = 0`)."""
    initial_y_spread: float = 0.0
    """:math:`s_y` (m), below the far bank: the start's :math:`y_0` is uniform on :math:`[0, s_y]` (0: :math:`y_0 = 0`)."""
    cost: str = "deviation"
    """The reward: ``"deviation"`` (the objective) or ``"completion-shaped"`` (its shaping, see Rewards)."""

    state_names: ClassVar = ("x", "y")
    state_units: ClassVar = ("m", "m")
    observation_names: ClassVar = ("x", "y", "time_fraction")
    observation_low: ClassVar = (-np.inf, -np.inf, 0.0)
    observation_high: ClassVar = (np.inf, np.inf, 1.0)
    control_names: ClassVar = ("heading",)
    control_units: ClassVar = ("rad",)
    horizon_ends: ClassVar = "truncated"
    whole_horizon_solve: ClassVar = False  # the crossing (an event) ends the episode inside the horizon

    def __post_init__(self) -> None:
        plain_constants(self, ZermeloParams)
        check_positive("dt", self.dt)
        check_choice("cost", self.cost, COSTS)
        check_episode(self)
        check_positive_fields(self.params, ("boat_speed", "river_width", "wind_min", "wind_max"))
        p = self.params
        if all(isinstance(v, (int, float)) for v in (p.boat_speed, p.wind_min, p.wind_max)) and not (
                p.boat_speed < p.wind_min <= p.wind_max):
            raise ValueError("params must have boat_speed < wind_min <= wind_max (the wind everywhere stronger than the "
                             f"boat, as in the report), got {p!r}")
        # the start's x is observed: it must stay inside the float32 range
        check_finite("initial_x_spread", self.initial_x_spread, least=0.0, bound=FLOAT32_MAX)
        check_finite("initial_y_spread", self.initial_y_spread, least=0.0)
        if isinstance(p.river_width, (int, float)) and not self.initial_y_spread < p.river_width:
            raise ValueError(f"initial_y_spread must be below the river width {p.river_width} (a start before the far "
                             f"bank), got {self.initial_y_spread}")

    @property
    def control_low(self) -> tuple[float, ...]:
        return (0.0,)

    @property
    def control_high(self) -> tuple[float, ...]:
        return (math.pi,)

    def vector_field(self, t: Any, x: Components, u: Components, params: ZermeloParams, ns: ArrayNamespace) -> Components:
        (heading,) = u
        return params.boat_speed * ns.cos(heading) + wind(x[1], params, ns), params.boat_speed * ns.sin(heading)

    def potential(self, x, params, ns):
        r""":math:`x` (m), or the completed crossing :math:`x + \Delta x(y)` (m) for ``cost="completion-shaped"``."""
        if self.cost == "completion-shaped":
            return x[0] + straight_across_deviation(x[1], params, ns)
        return x[0]

    def event(self, x, params, ns):
        return x[1] - params.river_width

    def timeout_cost(self, x: Components, params: ZermeloParams, ns: ArrayNamespace) -> Any:
        r"""The straight-across completion :math:`\Delta x(y)` (m) of the module docstring's Rewards (``None`` for
        ``cost="completion-shaped"``, whose potential holds it)."""
        if self.cost == "completion-shaped":
            return None
        return straight_across_deviation(x[1], params, ns)

    @property
    def initial_draws(self) -> tuple[str, int]:  # type: ignore[override]  # per instance (the box), over a class constant
        """Two uniform draws where the start box is not a point, none for the deterministic start."""
        return ("uniform", 2) if self.initial_x_spread or self.initial_y_spread else ("uniform", 0)

    def initial_state(self, draws, params, ns):
        r""":math:`(s_x (2 d_1 - 1), s_y d_2)` (m) from the uniform draws :math:`d_1, d_2`; :math:`(0, 0)` without."""
        if not self.initial_draws[1]:
            return 0.0, 0.0
        d1, d2 = columns(draws)
        return self.initial_x_spread * (2.0 * d1 - 1.0) + 0.0, self.initial_y_spread * d2  # + 0: no -0.0

    def observation(self, t, x, params, ns):
        return x[0], x[1], t / self.horizon

    def check_state(self, state: np.ndarray) -> None:
        if not state[1] < self.params.river_width:
            raise ValueError(f"state y must be below the far bank y = {self.params.river_width}, got {state[1]}")

    def render(self, state: np.ndarray) -> np.ndarray:
        p = self.params
        x, y = (float(v) for v in state)
        canvas = Canvas(480, 240, (min(-0.5, x - 2.0), max(4.0, x + 1.0)), (-0.3, p.river_width + 0.3))
        ys = np.linspace(0.0, p.river_width, 80)
        strength = (wind(ys, p, np) - p.wind_min) / (p.wind_max - p.wind_min)
        for yi, s in zip(ys, strength):
            canvas.rect(canvas.xlim[0], yi, canvas.xlim[1], yi + p.river_width / 80,
                        (int(200 - 120 * s), int(220 - 80 * s), 255))
        canvas.disc(x, y, 0.08, (200, 40, 40))
        return canvas.image


ZermeloEnv, ZermeloVectorEnv = register_problem(Zermelo, "DiffZermelo-v0", __doc__, order=1, namespace="diffenvs")
