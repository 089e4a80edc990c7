r"""The cartpole rollout of the speed benchmark written in JAX, the alternative a user would pick.

The same problem as :class:`diffenvs.envs.cartpole.Cartpole` with its default constants (masses 1 kg,
length 1 m, g = 9.8 m/s², 100 steps of 0.02 s held-control RK4, terminal cost
:math:`\bar\phi(T)^2 + \dot\phi(T)^2`) under the same 2x16 tanh policy of the six observations
:math:`(x, \dot x, \cos\phi, \sin\phi, \dot\phi, t/T)` scaled to ±50 N: ``lax.scan`` over the
horizon, ``jit`` for the forward and ``jit(value_and_grad)`` for forward+backward. The
policy's weights are copied from a torch module, so both sides evaluate the same loss
(``scripts/bench_envs.py`` prints the two).

Needs the optional extra ``speed`` (``pip install -e ".[speed]"``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import torch

MASS, LENGTH, GRAVITY, FORCE = 1.0, 1.0, 9.8, 50.0


def weights_of(policy: torch.nn.Module) -> list[tuple[jax.Array, jax.Array]]:
    """The (W, b) pairs of the torch policy's linear layers, as JAX arrays (W transposed: x @ W + b)."""
    layers = [m for m in policy.modules() if isinstance(m, torch.nn.Linear)]
    return [(jnp.asarray(layer.weight.detach().numpy().T), jnp.asarray(layer.bias.detach().numpy())) for layer in layers]


def _policy(weights, observation):
    h = observation
    for w, b in weights[:-1]:
        h = jnp.tanh(h @ w + b)
    w, b = weights[-1]
    return FORCE * jnp.tanh(h @ w + b)[:, 0]


def _field(x, u):
    velocity, phi, phi_dot = x[:, 1], x[:, 2], x[:, 3]
    sin, cos = jnp.sin(phi), jnp.cos(phi)
    denominator = MASS + MASS * sin * sin
    x_acceleration = (u + MASS * sin * (LENGTH * phi_dot * phi_dot - GRAVITY * cos)) / denominator
    phi_acceleration = (-u * cos - MASS * LENGTH * phi_dot * phi_dot * sin * cos + 2 * MASS * GRAVITY * sin) / (
        LENGTH * denominator)
    return jnp.stack([velocity, x_acceleration, phi_dot, phi_acceleration], -1)


def loss_function(steps: int = 100, dt: float = 0.02) -> Callable:
    """``loss(weights, x0)``: the mean terminal cost of the batch ``x0`` ``(batch, 4)`` after ``steps`` steps."""
    horizon = steps * dt

    def loss(weights, x0):
        def body(x, k):
            t = jnp.full(x.shape[0], k * dt / horizon, dtype=x.dtype)
            observation = jnp.stack([x[:, 0], x[:, 1], jnp.cos(x[:, 2]), jnp.sin(x[:, 2]), x[:, 3], t], -1)
            u = _policy(weights, observation)
            k1 = _field(x, u)
            k2 = _field(x + 0.5 * dt * k1, u)
            k3 = _field(x + 0.5 * dt * k2, u)
            k4 = _field(x + dt * k3, u)
            return x + dt / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4), None

        x, _ = jax.lax.scan(body, x0, jnp.arange(steps, dtype=x0.dtype))
        phi = x[:, 2] - 2.0 * math.pi * jnp.ceil((x[:, 2] - math.pi) / (2.0 * math.pi))
        return jnp.mean(phi * phi + x[:, 3] * x[:, 3])

    return loss


def compiled(policy: torch.nn.Module, x0: torch.Tensor, steps: int = 100
             ) -> tuple[Callable[[], None], Callable[[], None], float, float]:
    """``(forward, forward_backward, loss, compile_seconds)`` of the JAX rollout from the torch ``policy`` and ``x0``."""
    weights, start = weights_of(policy), jnp.asarray(x0.numpy())
    loss = loss_function(steps)
    forward, both = jax.jit(loss), jax.jit(jax.value_and_grad(loss))
    began = time.perf_counter()
    value = float(np.asarray(jax.block_until_ready(forward(weights, start))))
    jax.block_until_ready(both(weights, start))
    seconds = time.perf_counter() - began
    return (lambda: jax.block_until_ready(forward(weights, start)),
            lambda: jax.block_until_ready(both(weights, start)), value, seconds)
