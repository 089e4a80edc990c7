"""Evolution strategies: the gradient estimate, the batched population, the budget and the benchmark adapter."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from agents import benchmark, registry
from agents.evolution import (
    EvolutionConfig,
    centred_ranks,
    es_gradient,
    flat_weights,
    generation_transitions,
    load_weights,
    population_costs,
    train,
)
from agents.neural_ode import PolicyNetwork, initial_states
from agents.registry import Budget
from diffenvs import problem_of, rollout

CARTPOLE, QUADRATIC = "DiffCartpole-v0", {"max_steps": 10, "cost": "quadratic"}


def test_the_antithetic_estimate_is_unbiased_on_a_quadratic() -> None:
    # f(theta) = |theta - theta*|^2 / 2: the smoothed gradient is exactly g = theta - theta*, and one
    # antithetic pair gives (f(theta + s e) - f(theta - s e)) e / (2 s) = (e . g) e, whose component j
    # has mean g_j and variance E[(e . g)^2 e_j^2] - g_j^2 = |g|^2 + g_j^2. The mean of m pairs is
    # off by at most 5 standard errors sqrt((|g|^2 + g_j^2) / m) in every component but with
    # probability ~ d * 6e-7 (the estimate is a mean of m = 20000 iid terms: normal to a good approximation)
    generator = torch.Generator().manual_seed(1)
    target = torch.tensor([0.5, -1.0, 2.0, 0.0, 0.3], dtype=torch.float64)
    theta = torch.tensor([1.0, 1.0, -1.0, 0.5, 0.3], dtype=torch.float64)
    pairs, sigma = 20_000, 0.1
    epsilon = torch.randn((pairs, 5), generator=generator, dtype=torch.float64)
    members = torch.cat([theta + sigma * epsilon, theta - sigma * epsilon])
    fitness = 0.5 * ((members - target) ** 2).sum(1)
    estimate = es_gradient(epsilon, fitness, sigma)
    g = theta - target
    standard_error = torch.sqrt((g @ g + g ** 2) / pairs)
    assert torch.all((estimate - g).abs() < 5 * standard_error), (estimate, g, standard_error)
    assert torch.all(5 * standard_error < 0.2)  # the check has teeth: an error of 0.2 in a component fails it


def test_centred_ranks_span_minus_half_to_half_with_non_finite_costs_worst() -> None:
    costs = torch.tensor([3.0, float("nan"), -1.0, 10.0, float("inf")])
    ranks = centred_ranks(costs)
    assert ranks[2] == -0.5 and ranks[0] == -0.25 and ranks[3] == 0.0
    assert sorted(ranks[[1, 4]].tolist()) == [0.25, 0.5]
    minus_infinity = centred_ranks(torch.tensor([2.0, float("-inf"), 1.0]))  # a diverged rollout is never the best
    assert minus_infinity[1] == 0.5 and minus_infinity[2] == -0.5
    with pytest.raises(ValueError, match="costs"):
        centred_ranks(torch.tensor([1.0]))


def test_the_population_rollout_gives_each_member_its_own_networks_cost() -> None:
    problem = problem_of(CARTPOLE, **QUADRATIC)
    network = PolicyNetwork(problem).to(torch.float64)
    theta = flat_weights(network)
    members = theta + 0.3 * torch.randn((3, theta.numel()), dtype=torch.float64)
    x0 = initial_states(problem, 4, torch.Generator().manual_seed(0))
    batched = population_costs(problem, network, members, x0, steps=10)
    for j in range(3):
        with torch.no_grad():
            alone = rollout(problem, load_weights(network, members[j]), x0, steps=10).costs.mean()
        assert batched[j].item() == pytest.approx(alone.item(), rel=1e-12)
    assert len(set(batched.tolist())) == 3


def test_es_lowers_the_cartpole_quadratic_cost_on_a_tiny_budget() -> None:
    problem = problem_of(CARTPOLE, **QUADRATIC)
    config = EvolutionConfig(population=16, sigma=0.1, learning_rate=0.05)
    x0 = initial_states(problem, 64, torch.Generator().manual_seed(123))  # held-out starts
    torch.manual_seed(config.seed)
    before = PolicyNetwork(problem, config.width, config.depth, config.init_scale).to(torch.float64)
    result = train(CARTPOLE, Budget(8_000), config, QUADRATIC)
    with torch.no_grad():
        initial = rollout(problem, before, x0).costs.mean().item()
        final = rollout(problem, result.policy, x0).costs.mean().item()
    assert len(result.history) == 50
    # 10 steps (0.2 s) can only trim a cost set mostly by the start: 194 -> 167 here, and ~167 for
    # every sigma, learning rate and seed tried
    assert final < 0.9 * initial, (initial, final)


@pytest.mark.parametrize("strategy", ["openai-es", "cma-es"])
def test_every_simulated_transition_is_counted_and_the_budget_is_kept(strategy: str) -> None:
    config = EvolutionConfig(strategy=strategy, population=6, batch_size=2)
    per_generation = generation_transitions(config, CARTPOLE, QUADRATIC)
    assert per_generation == 6 * 2 * 10
    points: list[int] = []

    def curve_cost(policy) -> float:  # the mean weights, on the Gymnasium face
        points.append(1)
        return 1.0

    result = train(CARTPOLE, Budget(1_000, eval_every=250), config, QUADRATIC, curve_cost)
    assert len(result.history) == 1_000 // per_generation == 8
    assert result.transitions == 8 * per_generation == result.history[-1]["transitions"]
    assert [p["transitions"] for p in result.curve] == [360.0, 600.0, 840.0, 960.0]  # past 250, 500, 750; the end
    assert len(points) == 4 and all(math.isfinite(h["mean_cost"]) for h in result.history)
    # a budget smaller than one generation still runs one, counted in full
    assert train(CARTPOLE, Budget(50), config, QUADRATIC).transitions == per_generation


def test_the_es_agent_runs_through_the_benchmark(tmp_path: Path) -> None:
    assert registry.get("es").family == "zeroth-order" and registry.get("cma-es").family == "zeroth-order"
    assert "es" in registry.applicable("DiffDecayDesign-v0")
    specs = benchmark.plan_runs(["DiffDecayDesign-v0"], ["es"], [0], "quick")
    results, failures = benchmark.sweep(specs, tmp_path, workers=1, progress=False)
    assert not failures, failures
    (run,) = results
    budget = specs[0].budget
    assert run["family"] == "zeroth-order" and 0 < run["transitions"] <= budget.transitions
    assert run["transitions"] % (16 * 1 * 10) == 0 and run["details"]["rollout_steps"] == 10
    assert len(run["curve"]) >= budget.transitions // budget.eval_every - 1
    assert math.isfinite(run["final_cost"]) and (tmp_path / "runs" / f"{specs[0].key}.json").exists()


@pytest.mark.parametrize("field, value", [("population", 7), ("population", 1), ("sigma", 0.0), ("sigma", math.nan),
                                          ("learning_rate", -1.0), ("weight_decay", -0.1), ("batch_size", -1),
                                          ("steps", 1.5), ("strategy", "nes"), ("width", 0)])
def test_bad_config_values_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        EvolutionConfig(**{field: value})


def test_steps_beyond_the_horizon_are_refused() -> None:
    with pytest.raises(ValueError, match="steps"):
        EvolutionConfig(steps=11).resolved(CARTPOLE, QUADRATIC)


def test_the_network_is_the_neural_ode_agent_s_own_on_each_environment() -> None:
    from agents.evolution.agent import train as evolve

    result = evolve("DiffIsochronism-v0", Budget(1), EvolutionConfig(steps=5, population=4), {})
    assert result.policy.symmetric  # the odd network of the isochronism card, as for the neural-ODE agent
    observation = torch.tensor([[0.3]], dtype=torch.float64)
    assert torch.allclose(result.policy(-observation), -result.policy(observation))
