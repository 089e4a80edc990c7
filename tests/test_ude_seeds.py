"""The UDE's symbolic recovery holds on more than one seed: the recipe's candidates, fit and choice on two datasets.

Seeds 1 and 5 are the ones the earlier recipe (STLSQ at threshold 0.1 on the network along its trajectory) lost:
seed 1's orbit is large and fast (u1 from 0.3 to 7.6), seed 5's small, near the equilibrium (2.25, 1.44), where the
orbit is close to an ellipse and the degree-2 library's columns nearly dependent. Each test stands a network by the
true missing terms with a smooth error of 5% of their mean (a trained network's error is smooth along the orbit, not
independent from point to point), and recovers from it and the seed's noisy data. On these inputs the earlier recipe
keeps 1 and u1u2 in dU1 and 1, u1, u2 and u1u2 in dU2 on seed 5 (checked when this test was written)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from studies import ude

pytest.importorskip("pysindy", reason="the optional extra 'ude'")

SEEDS = (1, 5)


def network_like(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """States along the true trajectory on [0, 5] (101), the true missing terms there with a smooth 5% error, and the
    seed's noisy data."""
    _, clean, data = ude.make_data(seed)
    states = ude.true_trajectory(clean[0], torch.linspace(0, 5, 101, dtype=torch.float64))
    truth = ude.missing_terms(states)
    u1, u2 = states[:, 0], states[:, 1]
    error = 0.05 * truth.abs().mean(0) * torch.stack([torch.sin(u1 + u2), torch.cos(u1 - u2)], -1)
    return states, truth + error, data


@pytest.mark.parametrize("seed", SEEDS)
def test_the_recovery_keeps_u1u2_alone_and_beta_gamma_within_5_percent_on_each_seed(seed: int) -> None:
    states, targets, data = network_like(seed)
    chosen, candidates = ude.select_equations(states, targets, data, max_terms=2)
    terms = chosen.model.terms()
    assert [list(t) for t in terms] == [["u1 u2"], ["u1 u2"]], terms
    assert -terms[0]["u1 u2"] == pytest.approx(0.9, rel=0.05) and terms[1]["u1 u2"] == pytest.approx(0.8, rel=0.05)
    assert len(candidates) == 4 and chosen.bic == min(c.bic for c in candidates)


def test_fit_to_data_finds_the_true_coefficients_and_start_and_refuses_a_blow_up() -> None:
    _, clean, _ = ude.make_data(0)
    names = ("1", "u1", "u2", "u1^2", "u1 u2", "u2^2")
    near, exploding = np.zeros((2, 6)), np.zeros((2, 6))
    near[0, 4], near[1, 4] = -0.8, 0.9
    exploding[0, 5], exploding[1, 5] = 3.0, 3.0
    models = [ude.SparseModel(names, near, 2), ude.SparseModel(names, exploding, 2)]
    fitted, starts, rss = ude.fit_to_data(models, clean)
    assert fitted[0].terms() == [{"u1 u2": pytest.approx(-0.9, abs=1e-4)}, {"u1 u2": pytest.approx(0.8, abs=1e-4)}]
    assert torch.allclose(starts[0], clean[0], atol=1e-4) and rss[0] < 1e-7
    assert math.isinf(rss[1]) and np.array_equal(fitted[1].coefficients, exploding)
    shifted = clean.clone()
    shifted[0] += 0.05  # the first point off the trajectory: the start is fitted to all points, not taken from it
    _, starts, _ = ude.fit_to_data(models[:1], shifted)
    assert (starts[0] - clean[0]).abs().max() < 0.01


def test_best_supports_tries_every_support() -> None:
    generator = np.random.default_rng(0)
    states = generator.uniform(0.2, 6.0, size=(200, 2))
    u1, u2 = states[:, 0], states[:, 1]
    targets = np.stack([-0.9 * u1 * u2, 0.5 - 0.3 * u2**2 + 0.8 * u1 * u2], 1)
    first, second = ude.best_supports(states, targets, degree=2)
    assert len(first) == len(second) == 6
    assert np.flatnonzero(first[0]).tolist() == [4] and first[0][4] == pytest.approx(-0.9)
    assert np.flatnonzero(second[2]).tolist() == [0, 4, 5]
    assert second[2][[0, 4, 5]] == pytest.approx([0.5, 0.8, -0.3])
    assert all(np.count_nonzero(c) <= k for k, c in enumerate(second, 1))
    with pytest.raises(ValueError, match="max_terms must be at most"):
        ude.best_supports(states, targets, max_terms=7)
