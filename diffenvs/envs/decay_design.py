r"""Sequential Bayesian design of measurement times for an exponential decay (report §6).

Description
    A quantity decays as

    .. math:: \frac{du}{dt} = -\theta u, \qquad u(0) = 1, \qquad u(t; \theta) = e^{-\theta t},

    with an unknown rate :math:`\theta_*` (``params.theta_true``). Each step the agent
    chooses a measurement time :math:`t` and the environment measures

    .. math:: y = u(t; \theta_*) + \sigma \varepsilon, \qquad \varepsilon \sim \mathcal N(0, 1),

    then updates a Gaussian belief :math:`\theta \sim \mathcal N(\hat\theta_n, C_n)` by the
    linearised Gaussian update (report eq. 6.15) around the current mean, with the model
    sensitivity :math:`g = \partial u / \partial \theta\,(t; \hat\theta_n) = -t e^{-\hat\theta_n t}`:

    .. math::
        C_{n+1} = C_n - \frac{C_n g g C_n}{\sigma^2 + g C_n g}, \qquad
        \hat\theta_{n+1} = \hat\theta_n + \frac{C_{n+1} g}{\sigma^2}\,\big(y - u(t; \hat\theta_n)\big).

    This is the exact conjugate posterior of the model linearised at :math:`\hat\theta_n`
    (the gain :math:`C_{n+1} g / \sigma^2 = C_n g / (\sigma^2 + g C_n g)`; the report prints
    :math:`C_n` in 6.15b, a typo that overshoots by the factor :math:`1 + g C_n g / \sigma^2`).
    The environment is the experiment: it uses the closed-form solution of the ODE; an agent
    (``studies.design``) computes the sensitivity through an ODE solver. The information of a
    measurement at :math:`t` is largest where :math:`g^2` is, at :math:`t = 1/\hat\theta_n`.

Action Space
    ``Box(-1, 1, (1,), float32)``: the measurement time :math:`t = \tfrac{t_{\max}}{2}(a + 1)
    \in [0, t_{\max}]` (s); actions outside ``[-1, 1]`` are clipped.

Observation Space
    ``Box((2,), float32)``, the current belief (also ``env.unwrapped.state``):

    =====  ======================  ==============  ======  =====
    index  name                    unit            low     high
    =====  ======================  ==============  ======  =====
    0      ``posterior_mean``      1/s             -inf    inf
    1      ``posterior_variance``  1/s\ :sup:`2`   0       inf
    =====  ======================  ==============  ======  =====

Rewards
    The information gain of the measurement, the entropy reduction of the belief,
    :math:`r_n = \tfrac12 \log(C_n / C_{n+1}) = \tfrac12 \log(1 + g^2 C_n / \sigma^2)`; it
    does not depend on the measured value, and the return is :math:`\tfrac12\log(C_0/C_N)`.

Starting State
    The prior :math:`(\hat\theta_0, C_0)` = (``params.prior_mean``, ``params.prior_variance``)
    = (2.0 1/s, 1.0 1/s²), deterministic; or any belief with positive variance through
    ``reset(options={"state": ...})``. The measurement noise is drawn per step from the
    seeded counter-based generator (one standard normal per step).

Episode End
    Terminates after ``max_steps`` (10) measurements; ``dt`` = 1 counts measurements, it is
    not physical time (``problem.horizon`` is the number of measurements). Truncates early if
    the belief becomes non-finite.

Arguments
    ``gymnasium.make("DiffDecayDesign-v0", params=DecayDesignParams(), max_steps=10, t_max=5.0)``:
    ``max_steps`` measurements per episode. Deprecated: ``measurements=`` for ``max_steps``.
    ``params.prior_mean`` and ``params.prior_variance`` are the first observation: finite and
    at most the largest float32, checked when the environment is built.

Version History
    v0: first release.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from diffenvs.core.horizon import renamed_horizon
from diffenvs.core.numerics import ArrayNamespace, Components, HasExp
from diffenvs.core.problem import (
    FLOAT32_MAX,
    Control,
    Held,
    Problem,
    check_episode,
    check_finite,
    check_positive,
    plain_constants,
)
from diffenvs.core.registration import register_problem
from diffenvs.core.render import Canvas


@dataclass(frozen=True)
class DecayDesignParams:
    """Constants: the true rate, the measurement noise and the prior belief."""

    theta_true: float = 1.7  #: θ*, 1/s, the rate the experiment measures
    noise_std: float = 0.05  #: σ, standard deviation of a measurement of u (dimensionless, u(0) = 1)
    prior_mean: float = 2.0  #: θ̂₀, 1/s
    prior_variance: float = 1.0  #: C₀, 1/s²


def rate(t: Any, u: Any, theta: Any) -> Any:
    r"""The vector field :math:`f(t, u; \theta) = -\theta u` (batched, any array type)."""
    return -theta * u


def solution(t: Any, theta: Any, ns: HasExp) -> Any:
    r"""The closed-form solution :math:`u(t; \theta) = e^{-\theta t}`."""
    return ns.exp(-theta * t)


def solution_sensitivity(t: Any, theta: Any, ns: HasExp) -> Any:
    r"""The closed-form sensitivity :math:`g = \partial u/\partial\theta = -t e^{-\theta t}`."""
    return -t * ns.exp(-theta * t)


def linearised_update(mean: Any, variance: Any, g: Any, innovation: Any, noise_std: Any) -> tuple[Any, Any, Any]:
    r"""Gaussian update of the belief on a model linear in :math:`\theta` with slope ``g`` (eq. 6.15).

    Returns :math:`(\hat\theta_{n+1}, C_{n+1}, \tfrac12\log(C_n/C_{n+1}))` from the prior
    :math:`(\hat\theta_n, C_n)` = (``mean``, ``variance``), the sensitivity :math:`g`, the
    innovation :math:`y - u(t; \hat\theta_n)` and :math:`\sigma` = ``noise_std``:
    :math:`s = \sigma^2 + g^2 C_n`, :math:`C_{n+1} = C_n \sigma^2 / s`,
    :math:`\hat\theta_{n+1} = \hat\theta_n + C_n g\,(y - u)/s`. Works on floats and tensors.
    """
    noise_variance = noise_std * noise_std
    information = g * g * variance / noise_variance  # g^2 C_n / sigma^2
    gain = variance * g / (noise_variance + g * g * variance)
    next_variance = variance / (1.0 + information)
    return mean + gain * innovation, next_variance, information


@renamed_horizon("measurements", attribute="max_steps")
@dataclass(frozen=True)
class DecayDesign(Problem[DecayDesignParams]):
    """The decay-design definition; see the module docstring."""

    params: DecayDesignParams = field(default_factory=DecayDesignParams)
    max_steps: int = 10
    t_max: float = 5.0

    state_names: ClassVar = ("posterior_mean", "posterior_variance")
    state_units: ClassVar = ("1/s", "1/s^2")
    observation_names: ClassVar = ("posterior_mean", "posterior_variance")
    observation_low: ClassVar = (-np.inf, 0.0)
    observation_high: ClassVar = (np.inf, np.inf)
    control_names: ClassVar = ("measurement_time",)
    control_units: ClassVar = ("s",)
    dt: ClassVar[float] = 1.0
    step_noise: ClassVar[int] = 1

    def __post_init__(self) -> None:
        plain_constants(self, DecayDesignParams)
        check_episode(self)
        check_positive("t_max", self.t_max)
        check_positive("params.noise_std", self.params.noise_std)
        # the prior is the first observation: inside the float32 range
        check_positive("params.prior_variance", self.params.prior_variance)
        check_finite("params.prior_variance", self.params.prior_variance, bound=FLOAT32_MAX)
        check_finite("params.prior_mean", self.params.prior_mean, bound=FLOAT32_MAX)
        check_finite("params.theta_true", self.params.theta_true)

    @property
    def control_low(self) -> tuple[float, ...]:
        return (0.0,)

    @property
    def control_high(self) -> tuple[float, ...]:
        return (self.t_max,)

    def initial_state(self, draws: Any, params: DecayDesignParams, ns: ArrayNamespace) -> Components:
        return params.prior_mean, params.prior_variance

    def observation(self, t: Any, x: Components, params: DecayDesignParams, ns: ArrayNamespace) -> Components:
        return x

    def check_state(self, state: np.ndarray) -> None:
        if not state[1] > 0.0:
            raise ValueError(f"state posterior_variance must be positive, got {state[1]}")

    def step(self, t: Any, x: Components, control: Control, *, x0: Components, params: DecayDesignParams,
             ns: ArrayNamespace, terminal_due: Any, noise: Components | None = None,
             integrate: Any = None) -> tuple[Components, Any, Any]:
        """One measurement at the held time and the belief's update; the reward is its information gain."""
        if not isinstance(control, Held):
            raise TypeError(f"{type(self).__name__} is a discrete-time map: its control is Held, got {control!r}")
        mean, variance = x
        (time,) = control.u
        epsilon = 0.0 if noise is None else noise[0]
        y = solution(time, params.theta_true, ns) + params.noise_std * epsilon
        innovation = y - solution(time, mean, ns)
        g = solution_sensitivity(time, mean, ns)
        mean1, variance1, information = linearised_update(mean, variance, g, innovation, params.noise_std)
        return (mean1, variance1), 0.5 * ns.log1p(information), False

    def render(self, state: np.ndarray) -> np.ndarray:
        mean, variance = (float(v) for v in state)
        std = math.sqrt(max(variance, 1e-12))
        low, high = min(0.0, mean - 4 * std), max(4.0, mean + 4 * std)
        thetas = np.linspace(low, high, 120)
        density = np.exp(-0.5 * ((thetas - mean) / std) ** 2)  # peak scaled to 1
        canvas = Canvas(360, 200, (low, high), (-0.1, 1.1))
        canvas.line(low, 0.0, high, 0.0, canvas.pixel, (150, 150, 150))
        truth = self.params.theta_true
        canvas.line(truth, 0.0, truth, 1.05, 2 * canvas.pixel, (200, 40, 40))
        canvas.polyline(thetas, density, 2 * canvas.pixel, (40, 90, 200))
        return canvas.image


DecayDesignEnv, DecayDesignVectorEnv = register_problem(DecayDesign, "DiffDecayDesign-v0", __doc__, order=5, namespace="diffenvs")
