"""Counter-based draws: one environment and a batch draw the same numbers."""

import numpy as np
import pytest

from diffenvs.core import random


def test_scalar_and_batched_draws_agree() -> None:
    keys = random.keys_for_seed(5, 3)
    episodes = np.array([0, 2, 7], np.uint64)
    batch_uniform = random.uniform(keys, episodes, 4, 6)
    batch_normal = random.normal(keys, episodes, 4, 5)
    for i in range(3):  # one environment draws as a batch of one (the single face's call)
        np.testing.assert_array_equal(random.uniform(keys[i:i + 1], episodes[i:i + 1], 4, 6)[0], batch_uniform[i])
        np.testing.assert_array_equal(random.normal(keys[i:i + 1], episodes[i:i + 1], 4, 5)[0], batch_normal[i])


def test_draws_look_uniform_and_normal() -> None:
    keys = np.arange(200_000, dtype=np.uint64)
    u = random.uniform(keys, np.zeros_like(keys), 1, 2)
    z = random.normal(keys, np.zeros_like(keys), 1, 2)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert abs(u.mean() - 0.5) < 0.003 and abs(u.var() - 1 / 12) < 0.001
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1.0) < 0.01
    assert abs(np.corrcoef(z[:, 0], z[:, 1])[0, 1]) < 0.01
    assert abs(np.mean(np.abs(z) > 1.96) - 0.05) < 0.003


def test_every_counter_changes_the_draw() -> None:
    base = random.uniform(np.uint64(1), np.uint64(0), 0, 1)
    assert random.uniform(np.uint64(2), np.uint64(0), 0, 1) != pytest.approx(base)
    assert random.uniform(np.uint64(1), np.uint64(1), 0, 1) != pytest.approx(base)
    assert random.uniform(np.uint64(1), np.uint64(0), 1, 1) != pytest.approx(base)
