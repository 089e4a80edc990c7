"""The gradient study's estimators: unbiased where the gradient is known in closed form; the study runs end to end."""

from __future__ import annotations

import sys
from math import comb
from pathlib import Path

import pytest
import torch

from studies.gradients import first_order, zeroth_order

A, B = 0.9, 0.5


def linear_quadratic(steps: int):
    """x_{k+1} = a x_k + b u_k, u_k = theta_0 x_k; cost x_K^2 + theta_1^2 (each row its own theta)."""

    def cost(thetas: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        x = starts[:, 0]
        for _ in range(steps):
            x = A * x + B * thetas[:, 0] * x
        return x * x + thetas[:, 1] ** 2

    return cost


def within(samples: torch.Tensor, expected: torch.Tensor, deviations: float = 4.0) -> None:
    """The mean of ``samples`` (rows) equals ``expected`` to ``deviations`` standard errors, component by component."""
    error = samples.std(0) / samples.shape[0] ** 0.5
    assert torch.all((samples.mean(0) - expected).abs() <= deviations * error + 1e-12), (samples.mean(0), expected, error)


@pytest.mark.parametrize("steps", [1, 3])
def test_estimators_are_unbiased_on_a_linear_quadratic_problem(steps: int) -> None:
    """With x_0 ~ N(0, 1): J = (a + b theta_0)^(2K) + theta_1^2, and J's Gaussian smoothing by moments."""
    theta = torch.tensor([0.3, -0.7], dtype=torch.float64)
    sigma = 0.1
    generator = torch.Generator().manual_seed(0)
    starts = torch.randn(40_000, 1, generator=generator, dtype=torch.float64)
    c, power = A + B * theta[0], 2 * steps
    exact = torch.stack([power * B * c ** (power - 1), 2 * theta[1]])
    # d/dtheta_0 E[(c + b sigma e)^(2K)] = 2K b sum_j C(2K - 1, j) c^(2K - 1 - j) (b sigma)^j E[e^j], E[e^j] = (j - 1)!!
    moments = {0: 1.0, 2: 1.0, 4: 3.0, 6: 15.0}
    smoothed = power * B * sum(comb(power - 1, j) * c ** (power - 1 - j) * (B * sigma) ** j * moments[j]
                               for j in range(0, power, 2))
    within(first_order(linear_quadratic(steps), theta, starts), exact)
    within(zeroth_order(linear_quadratic(steps), theta, starts, sigma, generator), torch.stack([smoothed, 2 * theta[1]]))
    if steps == 1:  # a quadratic: smoothing leaves its gradient alone
        torch.testing.assert_close(smoothed, exact[0])


def test_estimators_refuse_bad_input() -> None:
    theta = torch.zeros(2, dtype=torch.float64)
    starts = torch.zeros(4, 1, dtype=torch.float64)
    with pytest.raises(ValueError, match="sigma"):
        zeroth_order(linear_quadratic(1), theta, starts, 0.0, torch.Generator())
    with pytest.raises(ValueError, match="starts"):
        zeroth_order(linear_quadratic(1), theta, starts[:1], 0.1, torch.Generator())


def test_the_study_runs_end_to_end(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import gradients

    results = gradients.main(["--quick", "--no-adjoint", "--envs", "DiffCartpole-v0", "--horizons", "0.1", "0.2",
                              "--out", str(tmp_path / "study")])
    assert [row["steps"] for row in results["rows"]] == [5, 10]
    for name in ("results.json", "table.md", "gradients.png"):
        assert (tmp_path / "study" / name).exists()
    assert all(row["first_order_variance"] >= 0 for row in results["rows"])
