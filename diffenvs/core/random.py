"""Counter-based random draws: the same numbers for one environment and for N batched.

A draw is a pure function of ``(key, episode, step, index)``: a 64-bit key per
environment (taken from its seeded ``np_random``), the episode counter, the step and the
component. One environment seeded with ``s + i`` and environment ``i`` of a vector env
seeded with ``s`` therefore draw the same bits, and a whole batch draws in one vectorised
call instead of a Python loop over per-environment generators. The mixing function is
SplitMix64 (Steele, Lea & Flood, 2014), which passes BigCrush.
"""

from __future__ import annotations

import numpy as np
import torch
from gymnasium.utils import seeding

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = (np.uint64(s) for s in (30, 27, 31, 11))


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


def _hash(key: np.ndarray, episode: np.ndarray, step: np.ndarray | int, count: int) -> np.ndarray:
    """uint64 hashes of shape ``key.shape + (count,)``."""
    with np.errstate(over="ignore"):
        h = _mix(np.asarray(key, np.uint64) + _GOLDEN)
        h = _mix(h + np.asarray(episode, np.uint64) * _GOLDEN)
        h = _mix(h + np.asarray(step, np.uint64) * _GOLDEN)
        index = np.arange(1, count + 1, dtype=np.uint64) * _GOLDEN
        return _mix(h[..., None] + index)


_MASK = 2**64 - 1


def uniform(key: np.ndarray, episode: np.ndarray, step: np.ndarray | int, count: int) -> np.ndarray:
    """Uniform draws in [0, 1), float64, shape ``key.shape + (count,)``."""
    return (_hash(key, episode, step, count) >> _S11).astype(np.float64) * 2.0**-53


def normal(key: np.ndarray, episode: np.ndarray, step: np.ndarray | int, count: int) -> np.ndarray:
    """Standard normal draws (Box--Muller), float64, shape ``key.shape + (count,)``."""
    pairs = (count + 1) // 2
    u = uniform(key, episode, step, 2 * pairs)
    radius = np.sqrt(-2.0 * np.log1p(-u[..., :pairs]))  # 1 - u in (0, 1]: log is finite
    angle = 2.0 * np.pi * u[..., pairs:]
    return np.concatenate([radius * np.cos(angle), radius * np.sin(angle)], axis=-1)[..., :count]


def _signed(value: int) -> int:
    """A 64-bit pattern as the int64 that has it (torch has no unsigned 64-bit arithmetic)."""
    value &= _MASK
    return value - 2**64 if value >= 2**63 else value


def _shift_right(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 bit patterns (torch's ``>>`` is arithmetic: the sign bits are masked off)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _mix_tensor(z: torch.Tensor) -> torch.Tensor:
    z = (z ^ _shift_right(z, 30)) * _signed(0xBF58476D1CE4E5B9)
    z = (z ^ _shift_right(z, 27)) * _signed(0x94D049BB133111EB)
    return z ^ _shift_right(z, 31)


def uniform_tensor(key: torch.Tensor, episode: torch.Tensor, step: int, count: int) -> torch.Tensor:
    """:func:`uniform` on torch int64 tensors (the keys' and counters' bit patterns): the same numbers, float64,
    shape ``key.shape + (count,)``, on the keys' device.

    Integer products and sums wrap modulo 2**64 in torch and in the kernels TorchInductor generates, as
    numpy's uint64 arithmetic does, so a compiled step draws inside its kernel the numbers of :func:`uniform`.
    """
    golden = _signed(0x9E3779B97F4A7C15)
    h = _mix_tensor(key + golden)
    h = _mix_tensor(h + episode * golden)
    h = _mix_tensor(h + _signed(step * 0x9E3779B97F4A7C15))
    columns = [_shift_right(_mix_tensor(h + _signed(i * 0x9E3779B97F4A7C15)), 11).to(torch.float64) * 2.0**-53
               for i in range(1, count + 1)]
    if not columns:
        return torch.zeros(key.shape + (0,), dtype=torch.float64, device=key.device)
    return torch.stack(columns, -1)


def key_from_generator(generator: np.random.Generator) -> np.uint64:
    """The 64-bit key of one environment, drawn from its seeded generator."""
    return np.uint64(generator.integers(0, 2**63))


def keys_for_seed(seed: int | None, count: int) -> np.ndarray:
    """Keys of ``count`` environments seeded ``seed, seed + 1, ...`` (as N single envs would be)."""
    seeds = [None] * count if seed is None else [seed + i for i in range(count)]
    return np.array([key_from_generator(seeding.np_random(s)[0]) for s in seeds], dtype=np.uint64)
