"""The benchmark runner: resuming, atomic writes, parallel processes, Ray, the tables and the agent adapters."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import diffenvs
from agents import benchmark, neural_ode, registry
from agents.benchmark import RunSpec, stats
from agents.benchmark import run as benchmark_run
from agents.cards import decay_design as decay_card
from agents.episodes import evaluate
from agents.registry import Agent, Budget, Trained

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import benchmark as benchmark_script  # noqa: E402  (scripts/benchmark.py)


# ---- a fake agent that counts its training runs and can be interrupted ---------------------------
class FakeTrainer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.interrupt_at: int | None = None

    def __call__(self, env_id, env_kwargs, seed, budget, curve_cost) -> Trained:
        if seed == self.interrupt_at:
            raise KeyboardInterrupt  # what Ctrl-C in the middle of a sweep looks like
        self.calls.append((env_id, seed))
        policy = lambda observation: np.full(1, 0.1 * seed, dtype=np.float32)  # noqa: E731
        return Trained(policy, [{"transitions": 10.0, "seconds": 0.01, "cost": curve_cost(policy)}], 10, 0.01,
                       {"trained_on": "default"})


@pytest.fixture
def fake(monkeypatch) -> FakeTrainer:
    trainer = FakeTrainer()
    registry.agents()  # the built-in plug-ins first, then the fake beside them
    monkeypatch.setitem(registry._AGENTS, "fake", Agent("fake", "rl", "counts its runs", trainer, lambda e, k: True))
    return trainer


def mtimes(out: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((out / "runs").glob("*.json"))}


def test_an_interrupted_sweep_resumes_without_redoing_finished_runs(fake: FakeTrainer, tmp_path: Path) -> None:
    specs = benchmark.plan_runs(["DiffZermelo-v0"], ["fake"], [0, 1, 2, 3], "quick")
    fake.interrupt_at = 2
    with pytest.raises(KeyboardInterrupt):
        benchmark.sweep(specs, tmp_path, workers=1, progress=False)
    first = mtimes(tmp_path)
    assert list(first) == ["quick__DiffZermelo-v0__fake__seed0.json", "quick__DiffZermelo-v0__fake__seed1.json"]
    assert not list((tmp_path / "runs").glob(".*partial"))  # nothing half-written

    fake.interrupt_at, fake.calls = None, []
    results, failures = benchmark.sweep(specs, tmp_path, workers=1, progress=False)
    assert fake.calls == [("DiffZermelo-v0", 2), ("DiffZermelo-v0", 3)]  # only the unfinished runs
    assert [r["seed"] for r in results] == [0, 1, 2, 3] and not failures
    assert {k: v for k, v in mtimes(tmp_path).items() if k in first} == first  # finished runs untouched

    fake.calls = []
    again, _ = benchmark.sweep(specs, tmp_path, workers=1, progress=False)
    assert fake.calls == [] and again == results

    # a run whose specification changed (here its budget) is refused, then with replace run again; the others are kept
    changed = [dataclasses.replace(specs[0], budget=Budget(transitions=7))] + specs[1:]
    with pytest.raises(ValueError, match=r"seed0\.json: another spec than planned \(budget\.transitions: 5000"):
        benchmark.sweep(changed, tmp_path, workers=1, progress=False)
    assert fake.calls == []
    benchmark.sweep(changed, tmp_path, workers=1, progress=False, replace=True, warn=lambda message: None)
    assert fake.calls == [("DiffZermelo-v0", 0)]


def test_a_failed_run_is_reported_not_written_and_retried(fake: FakeTrainer, tmp_path: Path, monkeypatch) -> None:
    specs = benchmark.plan_runs(["DiffZermelo-v0"], ["fake"], [0, 1], "quick")

    def broken(*args):
        raise FloatingPointError("diverged")

    monkeypatch.setitem(registry._AGENTS, "fake", dataclasses.replace(registry.get("fake"), train=broken))
    results, failures = benchmark.sweep(specs, tmp_path, workers=1, progress=False)
    assert results == [] and len(failures) == 2 and "FloatingPointError: diverged" in failures[0]["error"]
    assert not (tmp_path / "runs").exists()


def test_write_json_is_atomic(tmp_path: Path) -> None:
    path = tmp_path / "run.json"
    benchmark.write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        benchmark.write_json(path, {"a": object()})  # fails half-way through serialising
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["run.json"]


def test_a_truncated_zermelo_episode_is_flagged_as_not_reaching_the_bank(monkeypatch) -> None:
    # heading u = pi (action 1): the boat drifts along its own bank and never crosses
    upstream = lambda observation: np.ones(1, dtype=np.float32)  # noqa: E731
    straight = lambda observation: np.zeros(1, dtype=np.float32)  # noqa: E731
    assert benchmark.incomplete_episodes("DiffZermelo-v0", upstream, 1) == 1
    assert benchmark.incomplete_episodes("DiffZermelo-v0", straight, 1) == 0
    assert benchmark.incomplete_episodes("DiffCartpole-v0", upstream, 3) == 0

    def stalls_then_crosses(env_id, env_kwargs, seed, budget, curve_cost) -> Trained:
        points = [{"transitions": float(t), "seconds": 0.0, "cost": curve_cost(p)} for t, p in ((1, upstream), (2, straight))]
        curve_cost(straight)  # an evaluation the agent does not keep as a point
        return Trained(upstream, points, 2, 0.0)

    registry.agents()
    monkeypatch.setitem(registry._AGENTS, "staller", Agent("staller", "rl", "", stalls_then_crosses, lambda e, k: True))
    spec = benchmark.plan_runs(["DiffZermelo-v0"], ["staller"], [0], "quick")[0]
    result = benchmark.execute(spec.as_dict())
    episodes = spec.protocol.episodes
    assert [p["incomplete"] for p in result["curve"]] == [episodes, 0] and result["incomplete"] == episodes
    # the time limit pays the straight-across completion: not crossing costs more than Pontryagin's crossing
    optimum = benchmark.compute_reference("DiffZermelo-v0", spec.protocol)["optimum"]
    assert result["final_cost"] > optimum + 1.0


# ---- parallel processes and Ray ---------------------------------------------------------------
def analytic_specs() -> list[RunSpec]:
    return benchmark.plan_runs(["DiffZermelo-v0", "DiffIsochronism-v0"], ["analytic"], [0], "quick")


def check_analytic(results: list[dict]) -> None:
    assert [(r["env_id"], r["agent"]) for r in results] == [("DiffZermelo-v0", "analytic"), ("DiffIsochronism-v0", "analytic")]
    zermelo, isochronism = results
    optimum = benchmark.compute_reference("DiffZermelo-v0", benchmark.protocol("DiffZermelo-v0", "quick"))["optimum"]
    assert zermelo["final_cost"] == pytest.approx(optimum, abs=1e-3)  # Pontryagin's deviation from the test starts
    assert 0 <= isochronism["final_cost"] < 1e-3  # the harmonic field: every start returns


def test_sweep_runs_in_spawned_processes(tmp_path: Path) -> None:
    results, failures = benchmark.sweep(analytic_specs(), tmp_path, workers=2, progress=False)
    assert not failures
    check_analytic(results)
    assert len(list((tmp_path / "runs").glob("*.json"))) == 2


def test_sweep_runs_as_ray_tasks(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        results, failures = benchmark.sweep(analytic_specs(), tmp_path, use_ray=True, progress=False)
    finally:
        ray.shutdown()
    assert not failures
    check_analytic(results)


def test_without_ray_the_ray_option_fails_with_a_clear_message(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    with pytest.raises(RuntimeError, match=r"optional extra 'ray'"):
        benchmark.sweep(analytic_specs(), tmp_path, use_ray=True, progress=False)
    code = benchmark_script.main(["--ray", "--envs", "DiffZermelo-v0", "--agents", "analytic", "--out", str(tmp_path),
                                  "--no-progress"])
    assert code == 2 and "pip install 'diffenvs[ray]'" in capsys.readouterr().err


def test_script_writes_every_output(tmp_path: Path) -> None:
    code = benchmark_script.main(["--quick", "--envs", "DiffZermelo-v0", "--agents", "analytic", "--out", str(tmp_path),
                                  "--workers", "1", "--no-progress"])
    assert code == 0
    for name in ("results.csv", "results.json", "table.md", "curves.png", "final.png", "profile.png", "references.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert "| DiffZermelo-v0 | analytic |" in (tmp_path / "table.md").read_text()
    assert len((tmp_path / "results.csv").read_text().splitlines()) == 2


def test_bad_configs_name_the_argument() -> None:
    with pytest.raises(ValueError, match="agent"):
        benchmark.BenchmarkConfig(agents=("nobody",))
    with pytest.raises(ValueError, match="envs"):
        benchmark.BenchmarkConfig(envs=("Nowhere-v0",))
    with pytest.raises(ValueError, match="mode"):
        benchmark.budget("slow", "DiffZermelo-v0", "ppo")


# ---- the adapters of the real agents ---------------------------------------------------------
def curve_cost(env_id: str):
    return benchmark.CurveCost(env_id, dataclasses.replace(benchmark.protocol(env_id), episodes=3))


def test_neural_ode_adapter_follows_the_budget_and_evaluates_the_network_being_trained() -> None:
    env_id = "DiffLinearSysID-v0"
    config = neural_ode.budget_config(env_id, {}, 0, Budget(1))
    per_iteration = config.batch_size * (config.steps or 100)  # trajectories x steps: every simulated transition
    cost = curve_cost(env_id)
    trained = registry.get("neural-ode").train(env_id, {}, 0, Budget(transitions=2 * per_iteration, eval_every=1), cost)
    assert trained.transitions == 2 * per_iteration and trained.details["iterations"] == 2
    assert [p["transitions"] for p in trained.curve] == [per_iteration, 2.0 * per_iteration]
    assert trained.curve[0]["cost"] != trained.curve[1]["cost"]  # the network moved between the points
    # the last curve point is the returned policy's cost under the same protocol, on the validation starts
    assert trained.curve[-1]["cost"] == pytest.approx(evaluate(env_id, trained.policy, 3, seed=benchmark.VALIDATION_SEED).mean())


def test_planning_adapters_give_open_loop_policies(monkeypatch) -> None:
    from agents import identification, planning

    monkeypatch.setattr(identification, "PlannerConfig", lambda: planning.PlannerConfig(iterations=3))
    cost = curve_cost("DiffLinearSysID-v0")
    per_plan = 4 * 100  # (iterations + 1) planning rollouts of 100 steps
    trained = registry.get("planning").train("DiffLinearSysID-v0", {}, 0, Budget(transitions=2 * (100 + per_plan)), cost)
    assert [p["transitions"] for p in trained.curve] == [500.0, 1000.0] and trained.transitions == 1000
    oracle = registry.get("oracle").train("DiffLinearSysID-v0", {}, 0, Budget(1), cost)
    gaussian = registry.get("gaussian").train("DiffLinearSysID-v0", {}, 0, Budget(1), cost)
    assert oracle.transitions == per_plan and gaussian.transitions == 0
    for agent in (trained, oracle, gaussian):
        assert np.isfinite(agent.curve[-1]["cost"]) and agent.curve[-1]["cost"] > 0
    assert registry.applicable("DiffLinearSysID-v0", {"matrix": "random"}).count("oracle") == 0


# ---- tables from a fixed results file ------------------------------------------------------------
REFERENCES = {"DiffZermelo-v0": {"optimum": 1.0, "zero_action_cost": 2.0, "name": "pontryagin"},
              "DiffCartpole-v0": {"optimum": 0.0, "zero_action_cost": 10.0, "name": "swing-up"}}


def run(env_id, agent, seed, cost, transitions, seconds, curve, incomplete=0, trained_on="default"):
    family = "gradient" if agent == "neural-ode" else "rl"
    return {"env_id": env_id, "agent": agent, "family": family, "seed": seed, "final_cost": cost, "incomplete": incomplete,
            "transitions": transitions, "seconds": seconds, "total_seconds": seconds, "details": {"trained_on": trained_on},
            "curve": [{"transitions": t, "seconds": s, "cost": c, "incomplete": i} for t, s, c, i in curve]}


RESULTS = [
    run("DiffZermelo-v0", "neural-ode", 0, 1.005, 3000, 2.0, [(1000, 0.5, 1.5, 0), (2000, 1.0, 1.05, 0), (3000, 2.0, 1.005, 0)]),
    run("DiffZermelo-v0", "neural-ode", 1, 1.015, 3000, 4.0, [(1000, 1.0, 1.2, 0), (2000, 2.0, 1.08, 0), (3000, 4.0, 1.015, 0)]),
    run("DiffZermelo-v0", "ppo", 0, 0.9, 10000, 10.0, [(5000, 5.0, 1.3, 0), (10000, 10.0, 0.9, 1)], incomplete=1),
    run("DiffZermelo-v0", "ppo", 1, 1.2, 10000, 12.0, [(5000, 6.0, 1.4, 0), (10000, 12.0, 1.2, 0)]),
    run("DiffCartpole-v0", "sac", 0, 0.5, 20000, 100.0, [(10000, 50.0, 2.0, 0), (20000, 100.0, 0.5, 0)],
        trained_on="quadratic (dense)"),
]

FINAL_HEADER = ("| environment | agent | may use | settings | trained on | seeds | final cost | reference | gap | transitions | "
                "backward transitions | training s |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
TARGET_HEADER = ("| environment | agent | kept 10% | transitions to 10% | seconds to 10% | kept 1% | transitions to 1% | "
                 "seconds to 1% | last validation gap |\n|---|---|---|---|---|---|---|---|---|\n")
EXPECTED_TABLE = FINAL_HEADER + """\
| DiffZermelo-v0 | neural-ode | exact model gradients | tuned here | default | 2 | 1.01 | 1 | 1% [0.5%, 1.5%] | 3,000 | – | 3 |
| DiffZermelo-v0 | ppo | model-free samples | defaults | default | 2 | 1.05 † (1/2) | 1 | 5% [-10%, 20%] | 10,000 | – | 11 |
| DiffCartpole-v0 | sac | model-free samples | defaults | quadratic (dense) | 1 | 0.5 | 0 | 5% | 20,000 | – | 100 |

""" + TARGET_HEADER + """\
| DiffZermelo-v0 | neural-ode | 2/2 | 2,000 | 1.5 [1, 2] | 1/2 | 3,000 | 3 [2, 4] | 1% |
| DiffZermelo-v0 | ppo | 0/2 | – | – | 0/2 | – | – | 5% |
| DiffCartpole-v0 | sac | 1/1 | 20,000 | 100 | 0/1 | – | – | 5% |
"""


def test_table_from_a_fixed_results_file(tmp_path: Path) -> None:
    """By hand: the gap is (cost - 1) / (2 - 1) on Zermelo, cost / 10 on the cartpole. neural-ode seed 0's curve
    (0.5, 0.05, 0.005) keeps 10% from 2000 transitions (1 s) and 1% from 3000 (2 s); seed 1's (0.2, 0.08, 0.015)
    keeps 10% from 2000 (2 s) and never 1%: censored at its 3000 transitions and 4 s. PPO never keeps 10%."""
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"references": REFERENCES, "runs": RESULTS}))
    stored = json.loads(path.read_text())
    table = benchmark.markdown_table(benchmark.summarise(stored["runs"], stored["references"]))
    tables, notes = table.split("\nInterquartile mean", 1)
    assert tables == EXPECTED_TABLE
    assert "† (k/n)" in notes
    [comparison] = benchmark.headline(benchmark.summarise(stored["runs"], stored["references"]))
    assert (comparison["env_id"], comparison["tuning"]) == ("DiffZermelo-v0", "unequal (gradient agent tuned here)")
    # test gaps 0.005, 0.015 against -0.1, 0.2: the gradient run ends closer in 2 of 4 pairs. To 1% kept, censored:
    # neural-ode 3000 and 3000 transitions (2 and 4 s), PPO never (10000 and 10000, 10 and 12 s): 3.33x and 3.67x
    assert comparison["improvement"][0] == pytest.approx(0.5)
    assert comparison["verdict"] == (
        "no clear winner (P(gradient run ends closer) = 0.50 [0.00, 1.00]; speed undecided: to 1% kept the baseline "
        "needs 3.33× the transitions and 3.67× the wall time of the gradient agent (censored IQMs; kept 1%: 1/2 "
        "against 0/2 seeds))")


def comparison_of(results: list) -> str:
    [comparison] = benchmark.headline(benchmark.summarise(results, REFERENCES))
    return comparison["verdict"]


def test_the_verdict_compares_agents_of_equal_tuning() -> None:
    untuned = [{**run, "agent": "neural-ode-default", "final_cost": run["final_cost"] + 0.1,
                "curve": [{**point, "cost": point["cost"] + 0.1} for point in run["curve"]]} for run in RESULTS[:2]]
    rows = benchmark.summarise(RESULTS[:4] + untuned, REFERENCES)
    assert [(r["agent"], r["settings"]) for r in rows] == [
        ("neural-ode", "tuned here"), ("ppo", "defaults"), ("neural-ode-default", "defaults")]
    equal, unequal = benchmark.headline(rows)
    assert (equal["tuning"], equal["gradient"]["agent"]) == ("equal (defaults)", "neural-ode-default")
    assert equal["verdict"].startswith("no clear winner (") and "neither keeps 1%" in equal["verdict"]
    assert (unequal["tuning"], unequal["gradient"]["agent"]) == ("unequal (gradient agent tuned here)", "neural-ode")
    assert unequal["verdict"] == comparison_of(RESULTS[:4])
    # where the tuned agent is not the better one on validation, only the equal-tuning comparison is made
    assert len(benchmark.headline(benchmark.summarise(RESULTS[2:4] + untuned, REFERENCES))) == 1


def test_one_normalisation_from_doing_nothing_to_the_optimum() -> None:
    assert benchmark.normalised_gap(1.1, {"optimum": 1.0, "zero_action_cost": 5.0}) == pytest.approx(0.025)
    assert benchmark.normalised_gap(-0.9, {"optimum": -1.0, "zero_action_cost": 0.0}) == pytest.approx(0.1)
    assert benchmark.normalised_gap(1.0, {"optimum": 0.0, "zero_action_cost": 10.0}) == pytest.approx(0.1)
    assert benchmark.normalised_gap(1.0, {"optimum": 2.0, "zero_action_cost": 10.0}) == pytest.approx(-1 / 8)
    assert benchmark.normalised_gap(1.0, {"optimum": 1.0, "zero_action_cost": 1.0}) is None  # no progress to measure
    assert benchmark.normalised_gap(1.0, {"optimum": None}) is None


def test_report_writes_csv_json_and_plots(tmp_path: Path) -> None:
    paths = benchmark.report(RESULTS, REFERENCES, tmp_path)
    lines = paths["csv"].read_text().splitlines()
    assert lines[0].split(",") == list(benchmark.CSV_FIELDS) and len(lines) == 1 + len(RESULTS)
    assert json.loads(paths["json"].read_text())["runs"] == RESULTS
    assert paths["table"].read_text().startswith(EXPECTED_TABLE)
    assert all(paths[name].stat().st_size > 10_000 for name in ("curves", "final", "profile"))


def test_a_budget_of_the_tuned_run_gives_the_tuned_iterations() -> None:
    for env_id in diffenvs.ENV_IDS:
        kwargs = benchmark.protocol(env_id).env_kwargs
        tuned = neural_ode.default_config(env_id, kwargs)
        steps = tuned.steps or benchmark.diffenvs.problem_of(env_id).max_steps
        rollout = tuned.batch_size * steps  # Adam's iterations, then the L-BFGS finish's worst case
        run = Budget((tuned.iterations + tuned.lbfgs_steps * neural_ode.LBFGS_EVALUATIONS) * rollout)
        config = neural_ode.budget_config(env_id, kwargs, 0, run)
        assert (config.iterations, config.lbfgs_steps) == (tuned.iterations, tuned.lbfgs_steps), env_id
        full = neural_ode.budget_config(env_id, kwargs, 0, benchmark.budget("full", env_id, "neural-ode"))
        spent = config.iterations * rollout + config.lbfgs_steps * neural_ode.LBFGS_EVALUATIONS * rollout
        assert spent <= run.transitions and full.iterations >= 1, env_id  # never more than the budget, by construction
    # the untuned agent: the report's settings, whatever the card tunes, with the budget's iterations
    untuned = neural_ode.budget_config("DiffCartpole-v0", {}, 3, Budget(100_000), untuned=True)
    assert untuned == dataclasses.replace(neural_ode.NeuralOdeConfig(), iterations=1_000, seed=3)
    assert registry.get("neural-ode").tuned("DiffCartpole-v0", {}) and not registry.get("es").tuned("DiffCartpole-v0", {})
    assert not registry.get("neural-ode-default").applies("DiffDecayDesign-v0", {})  # nothing tuned there: no second agent
    # a budget too small for the finish drops it rather than overspend
    small = neural_ode.budget_config("DiffIsochronism-v0", {}, 0, Budget(transitions=2_560_000))
    assert (small.iterations, small.lbfgs_steps) == (10, 0)


# ---- validation starts for selection, test starts for the final score ---------------------------
def test_curve_points_use_validation_starts_and_the_final_score_the_test_starts(fake, monkeypatch) -> None:
    seen: list[tuple[int, int]] = []
    played = benchmark_run.run_episodes

    def spy(env_id, policy, episodes, env_kwargs, seed):
        seen.append((seed, episodes))
        return played(env_id, policy, episodes, env_kwargs, seed)

    monkeypatch.setattr(benchmark_run, "run_episodes", spy)
    spec = benchmark.plan_runs(["DiffZermelo-v0"], ["fake"], [0], "quick")[0]
    result = benchmark.execute(spec.as_dict())
    episodes = benchmark.protocol("DiffZermelo-v0", "quick").episodes
    assert episodes == min(benchmark.protocol("DiffZermelo-v0").episodes, benchmark.QUICK_EPISODES) == spec.protocol.episodes
    # the fake agent's one curve point, then the final score
    assert seen == [(benchmark.VALIDATION_SEED, episodes), (benchmark.TEST_SEED, episodes)]
    assert result["starts"] == {"validation": 20_000, "test": benchmark.TEST_SEED, "episodes": episodes}
    assert result["spec"]["mode"] == "quick" and result["spec"]["budget"]["transitions"] == spec.budget.transitions
    # the two sets of starts are different states (on drawn starts), and too many episodes would make them overlap
    from agents.episodes import start_states

    validation = start_states("DiffIsochronism-v0", {}, episodes, benchmark.VALIDATION_SEED)
    test = start_states("DiffIsochronism-v0", {}, episodes, benchmark.TEST_SEED)
    assert not np.any(np.all(np.isclose(validation[:, None], test[None]), axis=-1))
    benchmark.check_starts(episodes)
    with pytest.raises(ValueError, match="episodes"):
        benchmark.check_starts(benchmark.MAX_EPISODES + 1)


def test_the_test_starts_are_fresh_and_every_range_of_starts_is_disjoint() -> None:
    from agents.episodes import EVAL_SEED

    # the training script evaluates (and its settings were tuned) on EVAL_SEED + i: never the test starts
    ranges = [range(first, first + benchmark.MAX_EPISODES)
              for first in (EVAL_SEED, benchmark.VALIDATION_SEED, benchmark.TEST_SEED)]
    assert all(not set(a) & set(b) for i, a in enumerate(ranges) for b in ranges[i + 1:])
    assert benchmark.TEST_SEED not in (EVAL_SEED, 10_000)


def test_best_gap_and_time_to_target_use_the_validation_reference() -> None:
    reference = {"optimum": 1.0, "zero_action_cost": 2.0, "validation": {"optimum": 2.0, "zero_action_cost": 4.0}}
    result = {"curve": [{"transitions": 5, "seconds": 1.0, "cost": 2.1}], "incomplete": 0, "final_cost": 1.0}
    from agents.benchmark.report import best_gap, time_to_target

    assert best_gap(result, reference) == pytest.approx(0.05)  # (2.1 - 2) / (4 - 2), not (2.1 - 1) / 1; the final is not used
    assert time_to_target(result, reference, 0.1) == (5, 1.0)


def test_the_validation_reference_plays_the_validation_episodes_noise_and_all() -> None:
    """The decay design draws its measurement noise from the reset seed: the greedy design's validation cost is its
    cost on the validation episodes, not on the test episodes' noise from the validation starts."""
    from agents.benchmark.reference import compute_reference
    from agents.cards import Protocol
    from agents.episodes import gym_policy

    env_id, episodes = "DiffDecayDesign-v0", 4
    reference = compute_reference(env_id, Protocol(episodes=episodes))
    problem = diffenvs.problem_of(env_id)
    greedy = gym_policy(decay_card.GreedyDesign(problem), problem)
    for split, seed in ((reference, benchmark.TEST_SEED), (reference["validation"], benchmark.VALIDATION_SEED)):
        assert split["optimum"] == pytest.approx(float(evaluate(env_id, greedy, episodes, {}, seed).mean()), rel=1e-12)
    assert reference["validation"]["optimum"] != reference["optimum"]


# ---- statistics --------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1,), (2,), (5, 1), (10, 1), (11, 7), (40, 3)])
def test_the_bootstraps_iqm_is_scipys_trimmed_mean_bit_for_bit(shape) -> None:
    import scipy.stats

    rng = np.random.default_rng(sum(shape))
    scores = rng.standard_normal(shape) * 10.0 ** rng.integers(-5, 6, size=shape)
    scores[rng.random(shape) < 0.3] = 1.5  # ties across the cuts
    for axis in (None, 0):
        expected = np.asarray(scipy.stats.trim_mean(scores, 0.25, axis=axis), dtype=np.float64)
        got = stats.trimmed_iqm(scores, axis)
        assert got.shape == expected.shape and np.array_equal(got, expected)


def test_iqm_and_its_interval_against_a_hand_computation() -> None:
    assert stats.iqm([7, 1, 100, 3, 2, 6, 5, 4]) == pytest.approx(4.5)  # drop 2 at each end: mean of 3, 4, 5, 6
    assert stats.iqm([0.005, 0.015]) == pytest.approx(0.01)  # fewer than 4 values: nothing dropped
    # resampling 3 values, the mean is 0 with probability 1/27 > 2.5% (and 2 likewise): the interval is [0, 2]
    assert stats.iqm_ci([0.0, 1.0, 2.0]) == pytest.approx((1.0, 0.0, 2.0))
    assert stats.iqm_ci([0.005, 0.015]) == pytest.approx((0.01, 0.005, 0.015))
    assert stats.iqm_ci([3.0]) == (3.0, 3.0, 3.0)
    value, low, high = stats.iqm_ci([0.1, 0.2, 0.05, 0.3, 0.5, 0.01, 0.02, 0.2, 0.15, 0.9])
    # 10 values: drop 2 at each end, the mean of 0.05, 0.1, 0.15, 0.2, 0.2, 0.3
    assert low < value < high and value == pytest.approx(1.0 / 6)
    with pytest.raises(ValueError, match="values"):
        stats.iqm([])


def test_performance_profile_on_fixed_data() -> None:
    # environment A: gaps 0.001 and 0.2; environment B: 0.05. Each environment weighs the same: at tau = 0.01,
    # A has 1/2 of its runs within, B none: 1/4 (pooling the 3 runs would give 1/3)
    fraction, band = stats.profile([[0.001, 0.2], [0.05]], [0.0001, 0.01, 0.1, 1.0])
    np.testing.assert_allclose(fraction, [0, 1 / 4, 3 / 4, 1])
    assert band.shape == (2, 4) and np.all(band[0] <= fraction) and np.all(fraction <= band[1])
    np.testing.assert_allclose(band[:, [0, 3]], [[0, 1], [0, 1]])  # no resample moves a fraction of 0 or 1
    assert band[0, 2] < 3 / 4 < band[1, 2]


def test_probability_of_improvement_and_iqm_curve_against_hand_computations() -> None:
    # x beats y in 3 of 4 pairs, ties count a half: (1 > 0) + (1 = 1: 1/2) + (2 > 0) + (2 > 1) = 3.5 of 4
    assert stats.probability_of_improvement([1.0, 2.0], [0.0, 1.0])[0] == pytest.approx(3.5 / 4)
    assert stats.probability_of_improvement([3.0], [1.0]) == (1.0, 1.0, 1.0)
    value, low, high = stats.probability_of_improvement([1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 2.0, 3.0])
    assert value == pytest.approx(11.5 / 16) and low < value < high  # 10 wins and 3 ties of 16 pairs
    values = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [100.0, 40.0]])
    middle, band = stats.iqm_curve(values)
    np.testing.assert_allclose(middle, [2.5, 25.0])  # per point, the mean of the middle two of four
    assert band.shape == (2, 2) and np.all(band[0] <= middle) and np.all(middle <= band[1])
    with pytest.raises(ValueError, match="values"):
        stats.iqm_curve(np.zeros(3))


def test_a_target_counts_only_where_it_is_kept_to_the_end_and_misses_are_censored() -> None:
    from agents.benchmark.report import censored_time, time_to_target

    reference = {"optimum": 0.0, "zero_action_cost": 1.0}
    points = [(1_000, 1.0, 0.5), (2_000, 2.0, 0.005), (3_000, 3.0, 0.5), (4_000, 4.0, 0.008), (5_000, 5.0, 0.009)]
    kept = {"curve": [{"transitions": t, "seconds": s, "cost": c} for t, s, c in points], "transitions": 5_000,
            "seconds": 6.0}
    assert time_to_target(kept, reference, 0.01) == (4_000, 4.0)  # not 2000: the curve left 1% at 3000
    touched = {**kept, "curve": kept["curve"][:3]}
    assert time_to_target(touched, reference, 0.01) is None
    assert censored_time(touched, reference, 0.01) == (5_000.0, 6.0, False)  # the whole training, not dropped
    flagged = {**kept, "curve": [*kept["curve"][:-1], {**kept["curve"][-1], "incomplete": 1}]}
    assert time_to_target(flagged, reference, 0.01) is None  # a point short of the objective never counts


def test_verdict_says_which_side_wins_and_why() -> None:
    def row(transitions, seconds, reached=10, gaps=(0.0,) * 10, budget=60_000):
        return {"seeds": 10, "reached_0.01": reached, "transitions_0.01": transitions, "seconds_0.01": seconds,
                "reached_0.1": reached, "transitions_0.1": transitions, "seconds_0.1": seconds,
                "final_gaps": list(gaps), "gap": (0.0, 0.0, 0.0), "budget": budget}

    fast = row((1_000, 900, 1_100), (1.0, 0.9, 1.1))
    slow = row((50_000, 40_000, 60_000), (10.0, 9.0, 11.0))
    # equal final gaps: the score decides nothing, the speed does
    assert benchmark.verdict(fast, slow).startswith(
        "the gradient agent wins (P(gradient run ends closer) = 0.50; the gradient agent is faster: to 1% kept the "
        "baseline needs 50× the transitions")
    assert benchmark.verdict(slow, fast).startswith("the baseline wins (P(gradient run ends closer) = 0.50; the "
                                                   "baseline is faster")
    cheap_but_slow = row((1_000, 900, 1_100), (20.0, 19.0, 21.0))
    assert benchmark.verdict(cheap_but_slow, slow).startswith("no clear winner (P(gradient run ends closer) = 0.50; "
                                                             "speed undecided")
    never = row((60_000, 60_000, 60_000), (12.0, 12.0, 12.0), reached=0)  # censored at the budget on every seed
    assert benchmark.verdict(never, fast).endswith("(censored IQMs; kept 1%: 0/10 against 10/10 seeds))")
    assert benchmark.verdict(never, fast).startswith("the baseline wins")
    assert "speed undecided: neither keeps 1%" in benchmark.verdict(never, never)
    # budgets that differ censor differently: the speed is not compared, the score alone decides
    capped = row((20_000, 20_000, 20_000), (5.0, 5.0, 5.0), reached=0, gaps=[0.5 + 0.001 * i for i in range(10)],
                 budget=20_000)
    assert benchmark.verdict(slow, capped).startswith(
        "the gradient agent wins (P(gradient run ends closer) = 1.00; speed not compared: the budgets differ (60,000 "
        "against 20,000 transitions)")
    # ends closer on every pair, but slower: mixed
    closer = row((50_000, 40_000, 60_000), (10.0, 9.0, 11.0), gaps=[0.001 * i for i in range(10)])
    farther = row((1_000, 900, 1_100), (1.0, 0.9, 1.1), gaps=[0.5 + 0.001 * i for i in range(10)])
    assert benchmark.verdict(closer, farther).startswith("mixed: the gradient agent ends closer, the baseline is faster")
    assert benchmark.verdict(farther, closer).startswith("mixed: the baseline ends closer, the gradient agent is faster")


def test_report_only_keeps_a_stored_reference_that_a_fresh_computation_repeats(tmp_path: Path, monkeypatch) -> None:
    from agents.benchmark import reference as reference_module

    fresh = {"env_id": "E", "optimum": 1.0 + 1e-14, "zero_action_cost": 2.0, "validation": {"optimum": 3.0}}
    monkeypatch.setattr(reference_module, "compute_reference", lambda env_id, proto: dict(fresh))
    monkeypatch.setattr(reference_module, "protocol", lambda env_id, mode: None)
    stored = {"E": {**fresh, "optimum": 1.0}}
    (tmp_path / "references.json").write_text(json.dumps(stored))
    assert reference_module.references(["E"], tmp_path)["E"]["optimum"] == 1.0  # the last bits: the stored number
    moved = {"E": {**fresh, "optimum": 1.5}}
    (tmp_path / "references.json").write_text(json.dumps(moved))
    assert reference_module.references(["E"], tmp_path)["E"]["optimum"] == 1.0 + 1e-14  # a changed card: the fresh one
    assert json.loads((tmp_path / "references.json").read_text())["E"]["optimum"] == 1.0 + 1e-14


# ---- disclosure, variants, seeds -------------------------------------------------------------------
def test_the_table_says_what_each_agent_may_use(monkeypatch) -> None:
    registry.agents()
    monkeypatch.setitem(registry._AGENTS, "peeker", Agent("peeker", "rl", "", FakeTrainer(), uses="the simulator state"))
    runs = [{**RESULTS[4], "agent": "peeker"}, {**RESULTS[0]}]
    table = benchmark.markdown_table(benchmark.summarise(runs, REFERENCES))
    assert "| DiffCartpole-v0 | peeker | the simulator state |" in table
    assert "| DiffZermelo-v0 | neural-ode | exact model gradients |" in table


def test_variants_add_labelled_rows_for_the_families_that_want_them(fake: FakeTrainer, tmp_path: Path) -> None:
    specs = benchmark.plan_runs(["DiffIsochronism-v0"], ["fake", "analytic"], [0], "quick")
    assert [(s.agent, s.variant, s.env_kwargs) for s in specs] == [
        ("fake", "", {}), ("analytic", "", {}), ("fake", "full observation", {"observe": "full"})]
    kwargs_seen = []
    trainer = registry.get("fake").train

    def trains(env_id, env_kwargs, seed, budget, curve_cost):
        kwargs_seen.append(dict(env_kwargs))
        return trainer(env_id, env_kwargs, seed, budget, curve_cost)

    fake_only = [s for s in specs if s.agent == "fake"]
    registry._AGENTS["fake"] = dataclasses.replace(registry.get("fake"), train=trains)
    results, failures = benchmark.sweep(fake_only, tmp_path, workers=1, progress=False)
    assert not failures and kwargs_seen == [{}, {"observe": "full"}]
    assert results[0]["final_cost"] == pytest.approx(results[1]["final_cost"])  # the same objective on the same starts
    rows = benchmark.summarise(results, {"DiffIsochronism-v0": {"optimum": 0.0, "zero_action_cost": 1.0}})
    assert [r["environment"] for r in rows] == ["DiffIsochronism-v0", "DiffIsochronism-v0 [full observation]"]
    assert "| DiffIsochronism-v0 [full observation] | fake | model-free samples |" in benchmark.markdown_table(rows)
    # the variant is part of the run's spec and file, and a report rebuilt from the folder keeps it apart
    assert RunSpec.from_dict(fake_only[1].as_dict()) == fake_only[1]
    collected, skipped = benchmark.collect(tmp_path, "quick")
    assert [r["variant"] for r in collected] == ["", "full observation"] and not skipped


def test_seeds_per_mode_with_a_card_override(monkeypatch) -> None:
    from agents import cards

    assert benchmark.seeds("full", "DiffDecayDesign-v0") == 10 and benchmark.seeds("quick", "DiffDecayDesign-v0") == 1
    slow = dataclasses.replace(cards.card("DiffDecayDesign-v0"), seeds={"full": 5})
    monkeypatch.setitem(cards.CARDS, "DiffDecayDesign-v0", slow)
    assert benchmark.seeds("full", "DiffDecayDesign-v0") == 5
    assert [s.seed for s in benchmark.plan_runs(["DiffDecayDesign-v0"], ["ppo"], None, "full")] == [0, 1, 2, 3, 4]
    assert len(benchmark.plan_runs(["DiffDecayDesign-v0"], ["ppo"], [0, 1], "full")) == 2  # --seeds wins
    assert benchmark.BenchmarkConfig().seed_list is None and benchmark.BenchmarkConfig(seeds=3).seed_list == [0, 1, 2]


def test_a_card_gives_slow_agents_fewer_seeds_by_name_or_family(monkeypatch) -> None:
    from agents import cards

    mixed = dataclasses.replace(cards.card("DiffDecayDesign-v0"), seeds={"full": {"rl": 5, "es": 7}})
    monkeypatch.setitem(cards.CARDS, "DiffDecayDesign-v0", mixed)
    assert [benchmark.seeds("full", "DiffDecayDesign-v0", a) for a in ("sac", "es", "cma-es")] == [5, 7, 10]
    plan = benchmark.plan_runs(["DiffDecayDesign-v0"], ["ppo", "es", "neural-ode", "analytic"], None, "full")
    assert {a: sum(s.agent == a for s in plan) for a in ("ppo", "es", "neural-ode", "analytic")} == \
        {"ppo": 5, "es": 7, "neural-ode": 10, "analytic": 1}
    assert len(benchmark.plan_runs(["DiffDecayDesign-v0"], ["ppo", "es"], [0, 1, 2], "full")) == 6  # --seeds wins


# ---- separate sweeps into one folder merge into one report ---------------------------------------
def test_two_sweeps_into_one_folder_merge_and_a_stale_run_is_left_out(tmp_path: Path, capsys) -> None:
    common = ["--quick", "--agents", "analytic", "--out", str(tmp_path), "--workers", "1", "--no-progress"]
    assert benchmark_script.main([*common, "--envs", "DiffZermelo-v0"]) == 0
    assert benchmark_script.main([*common, "--envs", "DiffIsochronism-v0"]) == 0
    table = (tmp_path / "table.md").read_text()
    assert "| DiffZermelo-v0 | analytic | the analytic answer |" in table
    assert "| DiffIsochronism-v0 | analytic | the analytic answer |" in table
    # a run file from another spec (here another budget) is listed and left out, never mixed in
    stale = tmp_path / "runs" / "quick__DiffZermelo-v0__analytic__seed0.json"
    data = json.loads(stale.read_text())
    data["spec"]["budget"]["transitions"] = 7
    stale.write_text(json.dumps(data))
    capsys.readouterr()
    assert benchmark_script.main(["--quick", "--report-only", "--out", str(tmp_path), "--no-progress"]) == 0
    assert "left out of the report" in capsys.readouterr().out
    table = (tmp_path / "table.md").read_text()
    assert "| DiffZermelo-v0 |" not in table and "| DiffIsochronism-v0 | analytic |" in table
    # the full mode's report does not take quick runs: with none of its own, it is an error, and the table stays
    capsys.readouterr()
    assert benchmark_script.main(["--report-only", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "no run of mode 'full'" in capsys.readouterr().err
    assert (tmp_path / "table.md").read_text() == table


def test_bootstrap_intervals_are_the_same_on_every_call_and_leave_numpy_s_stream_alone() -> None:
    from agents.benchmark.stats import iqm_ci

    sample = [0.1, 0.5, 0.2, 0.9, 0.3, 0.35, 2.0]
    np.random.seed(7)
    before = np.random.get_state()[1].copy()
    first, second = iqm_ci(sample), iqm_ci(sample)
    assert first == second and first.low < first.value < first.high
    assert np.array_equal(np.random.get_state()[1], before)  # the caller's random stream is untouched


def test_one_command_splices_the_docs_page_and_the_readme_and_a_bad_document_is_refused_before_any_run(
        fake: FakeTrainer, tmp_path: Path, capsys) -> None:
    from agents.benchmark.report import BLOCK_BEGIN, BLOCK_END, SUMMARY_BEGIN, SUMMARY_END

    page, readme, plain = tmp_path / "benchmark.md", tmp_path / "README.md", tmp_path / "plain.md"
    page.write_text(f"# page\n{BLOCK_BEGIN}\nold\n{BLOCK_END}\n")
    readme.write_text(f"# readme\n{SUMMARY_BEGIN}\nold\n{SUMMARY_END}\n")
    plain.write_text("# no markers\n")
    common = ["--quick", "--agents", "fake", "--envs", "DiffZermelo-v0", "--seeds", "1", "--out", str(tmp_path / "out"),
              "--workers", "1", "--no-progress"]
    for bad, why in ((str(plain), "has no block"), (str(tmp_path / "missing.md"), "readme must name existing documents")):
        assert benchmark_script.main([*common, "--readme", str(page), bad]) == 2
        assert why in capsys.readouterr().err
        assert fake.calls == [] and not (tmp_path / "out" / "runs").exists()  # refused before the sweep
    assert benchmark_script.main([*common, "--readme", str(page), str(readme)]) == 0
    table = (tmp_path / "out" / "table.md").read_text()
    assert table.strip() in page.read_text() and "old" not in page.read_text()
    assert "old" not in readme.read_text() and readme.read_text().startswith("# readme\n")


def test_a_capped_budget_is_marked_with_its_reason() -> None:
    capped = [{**r, "spec": {"budget": {"cap": "the zoo's n_timesteps (20k)"}}} if r["agent"] == "sac" else r
              for r in RESULTS]
    table = benchmark.markdown_table(benchmark.summarise(capped, REFERENCES))
    assert "| 20,000 ‡ |" in table and "DiffCartpole-v0 sac: the zoo's n_timesteps (20k)" in table
    assert "‡" not in benchmark.markdown_table(benchmark.summarise(RESULTS, REFERENCES))
    with pytest.raises(ValueError, match="transitions"):
        Budget(transitions=-1, cap="why")


def test_the_cost_table_says_where_the_sweep_time_went() -> None:
    from agents.benchmark.report import cost_table

    runs = [{**RESULTS[0], "seconds": 2.0, "total_seconds": 5.0}, {**RESULTS[1], "seconds": 4.0, "total_seconds": 5.0},
            {**RESULTS[4], "seconds": 80.0, "total_seconds": 90.0}]
    table = cost_table(runs)
    # neural-ode: training 2 + 4 = 6 s, evaluation 3 + 1 = 4 s, 10 of 100 s; sac: 80 and 10, 90 of 100
    assert "| DiffZermelo-v0 | neural-ode | 2 | 6 | 4 | 10% |" in table
    assert "| DiffCartpole-v0 | sac | 1 | 80 | 10 | 90% |" in table and "In all 100 s" in table
