"""A throw-away environment defined outside the package, with its card: a forced damped oscillator.

Importing this file registers ``TestDampedOscillator-v0`` (its three faces) and its card, as a
user would from their own code; the tests then run every generic layer on it (conformance,
the neural-ODE and RL agents, the benchmark) with no change to ``diffenvs`` or ``agents``.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from agents.cards import Card, Protocol, TestSettings, register
from agents.registry import Budget
from diffenvs.core import register_problem
from diffenvs.core.numerics import columns
from diffenvs.core.problem import OdeProblem
from diffenvs.core.render import Canvas

ENV_ID = "TestDampedOscillator-v0"


@dataclasses.dataclass(frozen=True)
class OscillatorParams:
    """Constants: natural angular frequency and damping ratio."""

    omega: float = 2.0  #: ω, rad/s
    damping: float = 0.1  #: ζ


@dataclasses.dataclass(frozen=True)
class DampedOscillator(OdeProblem):
    r"""A forced damped oscillator defined outside the package: :math:`\ddot x = -\omega^2 x - 2\zeta\omega \dot x + f`.

    Running cost :math:`x^2 + 0.01 f^2` per second, terminal cost :math:`x^2 + \dot x^2` at the horizon.
    """

    params: OscillatorParams = dataclasses.field(default_factory=OscillatorParams)
    max_steps: int = 40
    dt: float = 0.05

    state_names = ("position", "velocity")
    state_units = ("m", "m/s")
    observation_names = ("position", "velocity")
    observation_low = (-np.inf, -np.inf)
    observation_high = (np.inf, np.inf)
    control_names = ("force",)
    control_units = ("N",)
    initial_draws = ("uniform", 2)
    has_running_cost = True
    control_low = (-1.0,)
    control_high = (1.0,)

    def vector_field(self, t, x, u, params, ns):
        return x[1], -params.omega**2 * x[0] - 2.0 * params.damping * params.omega * x[1] + u[0]

    def running_cost(self, t, x, u, params, ns):
        return x[0] * x[0] + 0.01 * u[0] * u[0]

    def terminal_cost(self, x, x0, params, ns):
        return x[0] * x[0] + x[1] * x[1]

    def initial_state(self, draws, params, ns):
        return tuple(2.0 * d - 1.0 for d in columns(draws))

    def observation(self, t, x, params, ns):
        return x

    def render(self, state: np.ndarray) -> np.ndarray:
        canvas = Canvas(160, 80, (-3.0, 3.0), (-1.0, 1.0))
        canvas.disc(float(np.clip(state[0], -3, 3)), 0.0, 0.2, (40, 90, 200))
        return canvas.image


DampedOscillatorEnv, DampedOscillatorVectorEnv = register_problem(DampedOscillator, ENV_ID, DampedOscillator.__doc__)

CARD = register(Card(
    env_id=ENV_ID,
    agents={"neural-ode": {"batch_size": 4}},
    protocol=Protocol(episodes=2),
    budgets={"quick": {"rl": Budget(200, 30.0, 100), "neural-ode": Budget(160, 30.0, 80)}},
    tests=TestSettings(short={"max_steps": 3}),
))
