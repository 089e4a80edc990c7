"""Differentiable planning for active system identification: criteria, constraint, estimate, the adaptive loop."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
import sys
from pathlib import Path

import pytest
import torch

import diffenvs
from agents.identification import SysIDConfig, gaussian_inputs, identify, results_table
from agents.planning import (
    RANK_TOLERANCE,
    InputNetwork,
    InputSequence,
    PlannerConfig,
    RankDeficientDesignError,
    check_design,
    design_information,
    design_matrix,
    estimate,
    plan,
    play,
    spectral_radius_bound,
    sphere,
)
from diffenvs.envs.linear_sysid import LinearSysID, jordan_matrix, random_matrix

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "sysid.py"


def load_script():
    spec = importlib.util.spec_from_file_location("sysid_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def well_separated_data(seed: int = 0) -> torch.Tensor:
    """A data matrix X (8 x 3) with singular values 1, 2, 4: well separated."""
    q1, _ = torch.linalg.qr(torch.randn(8, 3, generator=generator(seed), dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(3, 3, generator=generator(seed + 1), dtype=torch.float64))
    return q1 @ torch.diag(torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)) @ q2.T


# ---- criteria --------------------------------------------------------------------------
def test_criteria_are_the_report_criteria_of_the_data_matrix():
    x = well_separated_data()
    gram = (x.T @ x)[None]
    s = torch.linalg.svdvals(x)
    assert torch.allclose(design_information(gram, "E"), s.min()[None], atol=1e-9)
    assert torch.allclose(design_information(gram, "A"), -torch.linalg.inv(gram).diagonal(dim1=-2, dim2=-1).sum(-1),
                          rtol=1e-9)
    assert torch.allclose(design_information(gram, "D"), 0.5 * torch.logdet(gram), atol=1e-9)


@pytest.mark.parametrize("criterion", ["E", "A", "D"])
def test_gradcheck_criteria_on_well_separated_singular_values(criterion):
    x = well_separated_data().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda m: design_information((m.T @ m)[None], criterion), (x,))


def test_gradcheck_planning_objective_through_the_rollout():
    """The criterion of a short planned experiment, differentiated through sphere -> rollout -> G (float64)."""
    problem = LinearSysID(d=2, noise_std=0.1, max_steps=5)
    params = dataclasses.replace(problem.params, A=torch.as_tensor(jordan_matrix(2)))
    noise = torch.randn(5, 1, 2, generator=generator(3), dtype=torch.float64)
    v = torch.randn(5, 1, 2, generator=generator(4), dtype=torch.float64, requires_grad=True)

    def objective(v: torch.Tensor) -> torch.Tensor:
        states = diffenvs.rollout(problem, sphere(v, 1.0), torch.zeros(1, 2, dtype=torch.float64),
                                  params=params, noise=noise).states
        return design_information(design_matrix(states), "A")

    assert torch.autograd.gradcheck(objective, (v,))


def test_unknown_criterion_is_refused():
    with pytest.raises(ValueError, match="criterion"):
        design_information(torch.eye(2)[None].double(), "Z")
    with pytest.raises(ValueError, match="form"):
        PlannerConfig(form="spline")


# ---- numerical health -------------------------------------------------------------------
def test_rank_deficient_design_fails_with_a_clear_message():
    """Noiseless data driven along one axis of a diagonal system span one direction: no estimate, no criterion."""
    d = 3
    a = torch.diag(torch.tensor([0.5, 0.6, 0.7], dtype=torch.float64))[None]
    states = torch.zeros(11, 1, d, dtype=torch.float64)
    for t in range(10):  # x_{t+1} = A x_t + e_1
        states[t + 1, 0] = a[0] @ states[t, 0] + torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    gram = design_matrix(states)
    cross = torch.einsum("tbi,tbj->bij", states[1:] - torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64), states[:-1])
    assert torch.linalg.matrix_rank(gram[0]) == 1
    with pytest.raises(RankDeficientDesignError, match="rank-deficient in runs \\[0\\]"):
        estimate(gram, cross)
    for criterion in ("E", "A", "D"):
        with pytest.raises(RankDeficientDesignError, match="do not excite every direction"):
            design_information(gram, criterion)
    # the same experiment played through the environment; a plan too short to span R^d (x_0 = 0 adds nothing)
    controls = torch.zeros(10, 1, d, dtype=torch.float64)
    controls[..., 0] = 1.0
    with pytest.raises(RankDeficientDesignError, match="singular"):
        play(LinearSysID(d=d, noise_std=0.0), a, controls, torch.zeros(10, 1, d, dtype=torch.float64))
    with pytest.raises(ValueError, match="steps must be an integer >= d \\+ 1"):
        plan(LinearSysID(d=d), a, torch.zeros(1, d, d, dtype=torch.float64), d, PlannerConfig(iterations=1), generator())


def test_non_finite_design_fails_and_tolerance_is_relative():
    with pytest.raises(RankDeficientDesignError, match="non-finite"):
        check_design(torch.full((2, 2, 2), math.nan, dtype=torch.float64))
    scale = 1e30  # a huge but well-conditioned design is fine
    assert torch.isfinite(check_design(scale * torch.eye(3, dtype=torch.float64)[None])).all()
    nearly = torch.diag(torch.tensor([1.0, 0.5 * RANK_TOLERANCE], dtype=torch.float64))[None]
    with pytest.raises(RankDeficientDesignError):
        check_design(nearly)


# ---- energy constraint --------------------------------------------------------------------
def test_energy_constraint_holds_by_construction():
    gamma = 0.7
    magnitudes = torch.logspace(-8, 8, 50, dtype=torch.float64)[:, None, None]
    v = torch.randn(50, 7, 3, generator=generator(), dtype=torch.float64) * magnitudes
    norms = torch.linalg.vector_norm(sphere(v, gamma), dim=-1)
    assert torch.allclose(norms, torch.full_like(norms, gamma), rtol=1e-14, atol=0)
    assert torch.equal(sphere(torch.zeros(2, 3, dtype=torch.float64), gamma), torch.zeros(2, 3, dtype=torch.float64))

    sequence = InputSequence(runs=4, steps=9, d=3, gamma=gamma, generator=generator())
    with torch.no_grad():
        sequence.v.mul_(1e6)
    assert torch.allclose(torch.linalg.vector_norm(sequence.policy(2), dim=-1), torch.tensor(gamma, dtype=torch.float64),
                          rtol=1e-14, atol=0)
    network = InputNetwork(runs=4, d=3, gamma=gamma, width=16, depth=2, generator=generator())
    observations = torch.randn(4 * 5, 4, generator=generator(1), dtype=torch.float64) * 1e3
    assert torch.allclose(torch.linalg.vector_norm(network(observations), dim=-1), torch.tensor(gamma, dtype=torch.float64),
                          rtol=1e-14, atol=0)


@pytest.mark.parametrize("form", ["sequence", "network"])
def test_planned_inputs_played_on_the_system_respect_the_bound(form):
    problem = LinearSysID(d=3, gamma=2.0, max_steps=12)
    a = torch.as_tensor(jordan_matrix(3))[None].expand(2, 3, 3)
    controller, _ = plan(problem, a, torch.zeros(2, 3, 3, dtype=torch.float64), 12,
                         PlannerConfig(form=form, iterations=3), generator())
    steps = diffenvs.rollout(problem, controller.policy(1) if form == "sequence" else controller,
                             torch.zeros(2, 3, dtype=torch.float64), params=dataclasses.replace(problem.params, A=a),
                             noise=torch.randn(12, 2, 3, dtype=torch.float64))
    assert (torch.linalg.vector_norm(steps.controls, dim=-1) <= 2.0 * (1 + 1e-14)).all()


def test_gaussian_baseline_has_the_planners_mean_energy():
    u = gaussian_inputs(2000, 50, 4, 1.5, generator())
    energy = u.square().sum(-1).mean()
    assert abs(float(energy) - 1.5**2) < 0.02 * 1.5**2  # 1e5 draws of a chi-square(4) / 4: relative sd 0.2%


# ---- planning and estimation ---------------------------------------------------------------
@pytest.mark.parametrize("form", ["sequence", "network"])
def test_planning_improves_the_criterion_over_its_random_start(form):
    """Noiseless planning on a known A: the returned inputs reproduce the best criterion, above the random start."""
    problem = LinearSysID(d=3, noise_std=0.0, max_steps=15)
    a = torch.as_tensor(jordan_matrix(3))[None].expand(3, 3, 3)
    config = PlannerConfig(form=form, criterion="A", iterations=25)
    controller, history = plan(problem, a, torch.zeros(3, 3, 3, dtype=torch.float64), 15, config, generator())
    assert history.shape == (26, 3)
    start, best = history[0], history.amax(0)
    assert (best > start + 0.2 * start.abs()).all(), (start, best)
    gram, _ = play(problem, a, controller, torch.zeros(15, 3, 3, dtype=torch.float64))
    assert torch.allclose(design_information(gram, "A"), best, rtol=1e-9)


def test_planning_callback_can_stop():
    problem = LinearSysID(d=2, max_steps=6)
    seen = []
    _, history = plan(problem, torch.eye(2, dtype=torch.float64)[None] * 0.5, torch.zeros(1, 2, 2, dtype=torch.float64), 6,
                      PlannerConfig(iterations=50), generator(), callback=lambda i, m: seen.append(m["criterion"]) or i == 2)
    assert len(history) == len(seen) == 3


def test_least_squares_recovers_a_on_noiseless_data():
    d, runs = 4, 5
    a = random_matrix(torch.randn(runs, d * d, generator=generator(), dtype=torch.float64), d)
    problem = LinearSysID(d=d, noise_std=0.0, max_steps=30)
    gram, cross = play(problem, a, gaussian_inputs(30, runs, d, 1.0, generator(1)), torch.zeros(30, runs, d, dtype=torch.float64))
    assert torch.allclose(estimate(gram, cross), a, atol=1e-9)


def test_spectral_radius_bound_scales_only_larger_matrices():
    a = torch.stack([2.0 * torch.eye(2), 0.5 * torch.eye(2)]).double()
    bounded = spectral_radius_bound(a, 1.0)
    assert torch.allclose(bounded[0], torch.eye(2, dtype=torch.float64)) and torch.equal(bounded[1], a[1])


# ---- the adaptive experiment ----------------------------------------------------------------
@pytest.mark.parametrize("matrix,form,noise_samples", [("jordan", "sequence", 1), ("random", "network", 2)])
def test_tiny_adaptive_run_end_to_end(matrix, form, noise_samples):
    config = SysIDConfig(matrix=matrix, runs=3, epochs=3, first_epoch=6,
                         planner=PlannerConfig(form=form, iterations=3, noise_samples=noise_samples))
    result = identify(config, progress=False)
    assert list(result.samples) == [6, 18, 42]
    for agent in ("random", "active", "oracle"):
        assert result.errors[agent].shape == (3, 3) and (result.errors[agent] > 0).all()
    # the first experiment (Gaussian input, same noise) is shared by the baseline and the active agent
    assert (result.errors["active"][0] == result.errors["random"][0]).all()
    assert len(result.gains["active"]) == 2 and len(result.gains["oracle"]) == 3
    table = results_table(result)
    assert len(table.splitlines()) == 2 + 3 and "active/oracle" in table


def test_config_validation_names_the_argument():
    with pytest.raises(ValueError, match="first_epoch"):
        SysIDConfig(first_epoch=4)
    with pytest.raises(ValueError, match="matrix"):
        SysIDConfig(matrix="hilbert")
    with pytest.raises(ValueError, match="agents"):
        identify(SysIDConfig(runs=1, epochs=1, first_epoch=5), agents=("greedy",), progress=False)


def test_script_writes_table_errors_and_plot(tmp_path, capsys):
    script = load_script()
    result = script.main(["--runs", "2", "--epochs", "2", "--first-epoch", "5", "--iterations", "2",
                          "--matrix", "random", "--out", str(tmp_path), "--progress", "0"])
    stem = tmp_path / "sysid_random_sequence"
    table = stem.with_suffix(".md").read_text()
    assert "| samples |" in table and "| 15 |" in table
    assert len(stem.with_suffix(".csv").read_text().strip().splitlines()) == 1 + 3 * 2
    assert stem.with_suffix(".png").stat().st_size > 0
    assert result.errors["oracle"].shape == (2, 2)
    assert "active / random" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        script.main(["--criterion", "Z", "--out", str(tmp_path)])
