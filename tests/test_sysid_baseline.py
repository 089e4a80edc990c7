"""The Gaussian baseline of the identification experiment against an independent simulation of the report's.

The report (§5) compares the planner with "normally distributed controls of mean energy gamma^2:
u_t ~ N(0, gamma^2 I / d)", unbounded. The simulation here is written from that sentence alone (numpy, no
project code): x_{t+1} = A x_t + u_t + sigma w_t from x_0 = 0 in each experiment, least squares on all data so
far. Moving the inputs into the control set (box, then ball |u| <= gamma) shrinks their mean energy to 0.73
gamma^2 at d = 4 and raises the errors by about 18%; the tolerances below fail at half of that.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from agents.identification import SysIDConfig, containing, gaussian_inputs, identify
from agents.planning import play
from diffenvs.envs.linear_sysid import LinearSysID

D, SIGMA, GAMMA = 4, 0.1, 1.0
LENGTHS = (100, 200, 400)  # first experiment of 100 samples, doubling: 100, 300, 700 samples in all
JORDAN = 0.9 * np.eye(D) + np.eye(D, k=1)


def independent_errors(runs: int, clipped: bool, seed: int = 0) -> np.ndarray:
    """Mean ||A_hat - A||_F after each experiment, simulated from the report's definition."""
    rng = np.random.default_rng(seed)
    gram, cross, errors = np.zeros((runs, D, D)), np.zeros((runs, D, D)), []
    for steps in LENGTHS:
        x = np.zeros((runs, D))
        for _ in range(steps):
            u = rng.standard_normal((runs, D)) * GAMMA / np.sqrt(D)
            if clipped:  # the box, then the ball
                u = np.clip(u, -GAMMA, GAMMA)
                u = u * GAMMA / np.sqrt(np.maximum((u * u).sum(-1, keepdims=True), GAMMA**2))
            following = x @ JORDAN.T + u + SIGMA * rng.standard_normal((runs, D))
            gram += x[:, :, None] * x[:, None, :]
            cross += (following - u)[:, :, None] * x[:, None, :]
            x = following
        estimate = np.linalg.solve(gram, cross.transpose(0, 2, 1)).transpose(0, 2, 1)  # C G^-1 (G symmetric)
        errors.append(np.sqrt(((estimate - JORDAN) ** 2).sum((1, 2))).mean())
    return np.asarray(errors)


@pytest.mark.parametrize("baseline", ["unbounded", "clipped"])
def test_baseline_error_curve_matches_an_independent_simulation(baseline):
    """200 runs of the project's baseline within 7% of 4000 independent ones on average over the curve (standard error
    of the project's mean about 2%), each point within 12%: an 18% bias, the clip's, fails."""
    reference = independent_errors(4000, clipped=baseline == "clipped")
    config = SysIDConfig(matrix="jordan", d=D, noise_std=SIGMA, gamma=GAMMA, runs=200, epochs=len(LENGTHS),
                         first_epoch=LENGTHS[0], growth=2.0, seed=3, baseline=baseline)
    result = identify(config, agents=("random",), progress=False)
    assert list(result.samples) == list(np.cumsum(LENGTHS))
    ratio = result.mean("random") / reference
    assert abs(ratio.mean() - 1) < 0.07 and (abs(ratio - 1) < 0.12).all(), (result.mean("random"), reference)


def test_the_clip_costs_the_baseline_about_a_fifth():
    """The two independent curves differ by more than the tolerances above (the test above can tell them apart)."""
    ratio = independent_errors(4000, clipped=True) / independent_errors(4000, clipped=False, seed=1)
    assert (ratio > 1.12).all() and (ratio < 1.25).all(), ratio


def test_unbounded_inputs_are_played_as_drawn():
    """The statistics of the unbounded baseline equal those of the recursion on the drawn inputs, to rounding."""
    runs, steps = 5, 60
    generator = torch.Generator().manual_seed(0)
    u = gaussian_inputs(steps, runs, D, GAMMA, generator) * 3  # norms far beyond gamma
    w = torch.randn(steps, runs, D, generator=generator, dtype=torch.float64)
    problem = LinearSysID(d=D, noise_std=SIGMA, gamma=GAMMA, max_steps=steps)
    a = torch.as_tensor(JORDAN)[None].expand(runs, D, D)
    gram, cross = play(containing(problem, u), a, u, w)
    x, expected_gram, expected_cross = np.zeros((runs, D)), np.zeros((runs, D, D)), np.zeros((runs, D, D))
    for t in range(steps):
        following = x @ JORDAN.T + u[t].numpy() + SIGMA * w[t].numpy()
        expected_gram += x[:, :, None] * x[:, None, :]
        expected_cross += (following - u[t].numpy())[:, :, None] * x[:, None, :]
        x = following
    np.testing.assert_allclose(gram.numpy(), expected_gram, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cross.numpy(), expected_cross, rtol=1e-12, atol=1e-12)
    clipped, _ = play(problem, a, u, w)  # the problem's own control set clips them
    assert not np.allclose(clipped.numpy(), expected_gram, rtol=1e-3)


def test_baseline_must_be_named():
    with pytest.raises(ValueError, match="baseline"):
        SysIDConfig(baseline="bounded")
