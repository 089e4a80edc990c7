"""The universal differential equation's library: the batched ensemble, the λ sweep, the sparse regression."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from diffenvs.derivatives import input_jacobian
from studies import ude

TINY = ude.RecipeConfig(adam_iterations=6, lbfgs_iterations=3, horizons=(1, 3), steps=1)


@pytest.fixture(scope="module")
def problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    times, clean, data = ude.make_data(0)
    return times, ude.true_trajectory(clean[0], torch.arange(25, dtype=torch.float64) * ude.SAVE_EVERY), data


def test_ensemble_jacobian_and_its_weight_gradient_match_input_jacobian() -> None:
    network = ude.make_network(3)
    with torch.no_grad():  # biases away from zero, so every term of the Jacobian is exercised
        for layer in network:
            if isinstance(layer, torch.nn.Linear):
                layer.bias.normal_()
    ensemble = ude.Ensemble.from_network(network, 2)
    points = ude.regulariser_points()
    values, jacobian = ensemble.network(points.expand(2, -1, -1), jacobian=True)
    assert torch.allclose(values[1], network(points), atol=1e-14, rtol=0)
    assert torch.allclose(jacobian[0], input_jacobian(network, points), atol=1e-13, rtol=0)
    ours = torch.autograd.grad(ensemble.regulariser(points)[0], ensemble.weights[0][0])[0][0]
    theirs = torch.autograd.grad(input_jacobian(network, points).square().sum(), network[0].weight)[0]
    assert torch.allclose(ours, theirs, atol=1e-11, rtol=0)


def test_members_train_as_if_alone(problem: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    """Adam is elementwise and L-BFGS runs member by member: a member of a sweep is the model trained alone."""
    _, _, data = problem
    together, _ = ude.fit(data, [0.0, 1e-3], 0, TINY)
    alone, _ = ude.fit(data, [1e-3], 0, TINY)
    for (w, b), (w1, b1) in zip(together.weights, alone.weights):
        assert torch.allclose(w[1], w1[0], atol=1e-12, rtol=0) and torch.allclose(b[1], b1[0], atol=1e-12, rtol=0)
    assert not torch.allclose(together.weights[0][0][0], together.weights[0][0][1])  # λ changed the training


@pytest.mark.parametrize("horizon", [None, 1, 4])
def test_held_out_points_do_not_enter_the_misfit(problem: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                                                 horizon: int | None) -> None:
    _, _, data = problem
    ensemble = ude.Ensemble.from_network(ude.make_network(0), 1)
    mask = ude.holdout_mask(len(data), 5)
    assert mask.tolist() == [i % 5 != 4 for i in range(len(data))]
    moved = data.clone()
    moved[~mask] += 10.0
    points = ude.regulariser_points()
    before, _ = ensemble.losses(data, 1, points, horizon, mask)
    after, _ = ensemble.losses(moved, 1, points, horizon, mask)
    changed, _ = ensemble.losses(moved, 1, points, horizon)
    assert torch.equal(before, after) and not torch.allclose(before, changed)


def test_lambda_sweep_on_a_tiny_budget(problem: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    _, clean, data = problem
    rows, ensemble, history = ude.sweep(data, clean, [0.0, 1e-6, 1.0], 0, TINY)
    assert [r["lambda"] for r in rows] == [0.0, 1e-6, 1.0] and ensemble.members == 3
    keys = {"train_rms", "validation_rms", "terms_relative_rms", "terms_relative_rms_u1", "terms_relative_rms_u2",
            "extrapolation_relative_rms"}
    assert all(keys <= set(r) and all(np.isfinite(r[k]) and r[k] > 0 for k in keys) for r in rows)
    assert len([h for h in history if h["phase"] == "adam"]) == 6
    assert {h["member"] for h in history if h["phase"] == "lbfgs"} == {0, 1, 2}
    chosen = ude.choose(rows)
    assert chosen["validation_rms"] == min(r["validation_rms"] for r in rows)
    # λ = 1 (the post's weight) pays for its flat network in the regulariser it minimises
    adam = [h for h in history if h["phase"] == "adam"]
    assert adam[-1]["regulariser"][2] < adam[-1]["regulariser"][0]


def test_choose_prefers_the_larger_lambda_on_a_tie_and_skips_diverged_models() -> None:
    rows = [{"lambda": 0.0, "validation_rms": 0.1}, {"lambda": 1e-4, "validation_rms": 0.1},
            {"lambda": 1.0, "validation_rms": float("nan")}]
    assert ude.choose(rows)["lambda"] == 1e-4
    with pytest.raises(ValueError, match="validation_rms"):
        ude.choose([{"lambda": 0.0, "validation_rms": float("inf")}])


def test_sparse_regression_recovers_known_coefficients() -> None:
    pytest.importorskip("pysindy", reason="the optional extra 'ude'")
    generator = np.random.default_rng(0)
    states = generator.uniform(0.2, 6.0, size=(200, 2))
    u1, u2 = states[:, 0], states[:, 1]
    targets = np.stack([-0.9 * u1 * u2, 0.8 * u1 * u2 - 0.3 * u2**2 + 0.5], 1) + 1e-3 * generator.standard_normal((200, 2))
    model = ude.sparse_regression(states, targets, degree=3, threshold=0.1)
    terms = model.terms()
    assert set(terms[0]) == {"u1 u2"} and set(terms[1]) == {"1", "u1 u2", "u2^2"}
    assert terms[0]["u1 u2"] == pytest.approx(-0.9, abs=1e-3) and terms[1]["u1 u2"] == pytest.approx(0.8, abs=1e-3)
    assert terms[1]["u2^2"] == pytest.approx(-0.3, abs=1e-3) and terms[1]["1"] == pytest.approx(0.5, abs=2e-3)
    assert model.features[:6] == ("1", "u1", "u2", "u1^2", "u1 u2", "u2^2") and len(model.features) == 10
    x = torch.as_tensor(states[:5])
    assert torch.allclose(model(x), torch.as_tensor(model.coefficients @ np.stack(
        [np.ones(5), u1[:5], u2[:5], u1[:5] ** 2, u1[:5] * u2[:5], u2[:5] ** 2, u1[:5] ** 3, u1[:5] ** 2 * u2[:5],
         u1[:5] * u2[:5] ** 2, u2[:5] ** 3]), dtype=torch.float64).T)


def test_the_true_equations_simulate_the_true_trajectory(problem: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> None:
    _, clean, _ = problem
    coefficients = np.zeros((2, 6))
    coefficients[0, 4], coefficients[1, 4] = -0.9, 0.8
    model = ude.SparseModel(("1", "u1", "u2", "u1^2", "u1 u2", "u2^2"), coefficients, 2)
    times = torch.arange(len(clean), dtype=torch.float64) * ude.SAVE_EVERY
    assert torch.allclose(ude.simulate_sparse(model, clean[0], times), clean, atol=1e-6, rtol=0)


def test_bad_inputs_name_the_argument() -> None:
    pytest.importorskip("pysindy", reason="the optional extra 'ude'")
    with pytest.raises(ValueError, match=r"states must have shape \(n, 2\)"):
        ude.sparse_regression(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"targets must have shape \(4, outputs\)"):
        ude.sparse_regression(np.zeros((4, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="horizons must be"):
        ude.RecipeConfig(horizons=(0,))
    with pytest.raises(ValueError, match="lambdas must be"):
        ude.fit(torch.zeros(5, 2), [-1.0], 0, TINY)
    with pytest.raises(ValueError, match="every"):
        ude.holdout_mask(10, 1)
    with pytest.raises(ValueError, match="members must be"):
        ude.Ensemble.from_network(ude.make_network(0), 0)
