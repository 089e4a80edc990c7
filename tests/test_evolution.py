"""Evolution strategies: the gradient estimate, the batched population, the budget and the benchmark adapter."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from agents import benchmark, cards, registry
from agents.evolution import (
    EvolutionConfig,
    OpenAIES,
    centred_ranks,
    default_population,
    es_gradient,
    flat_weights,
    generation_transitions,
    load_weights,
    network_dimension,
    population_costs,
    train,
)
from agents.evolution.strategies import CovarianceES
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
    per_generation = generation_transitions(EvolutionConfig(), "DiffDecayDesign-v0")
    assert run["transitions"] % per_generation == 0 and run["details"]["rollout_steps"] == 10
    assert run["details"]["population"] == per_generation // 10 and run["details"]["backward_transitions"] == 0
    assert len(run["curve"]) >= budget.transitions // budget.eval_every - 1
    assert math.isfinite(run["final_cost"]) and (tmp_path / "runs" / f"{specs[0].key}.json").exists()


@pytest.mark.parametrize("field, value", [("population", 7), ("population", 1), ("population", -2), ("sigma", 0.0),
                                          ("sigma", math.nan), ("learning_rate", -1.0), ("weight_decay", -0.1),
                                          ("batch_size", -1), ("steps", 1.5), ("steps", "tuned"), ("steps", -1),
                                          ("strategy", "nes"), ("width", 0)])
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


# ---- the defaults: each strategy's published ones, on the shared network ----------------------------------------------
def test_the_defaults_are_salimans_et_al_s_and_the_cmaes_package_s() -> None:
    config = EvolutionConfig()
    # Salimans et al. (2017), configurations/humanoid.json: noise_stdev 0.02, Adam stepsize 0.01, l2coeff 0.005;
    # one episode per perturbation; population 0: the strategy's default for the network's weights
    assert (config.sigma, config.learning_rate, config.weight_decay) == (0.02, 0.01, 0.005)
    assert (config.population, config.batch_size, config.steps) == (0, 1, 0)
    # the network is the neural-ODE agent's, by design: the report's 2 x 16 tanh layers, its output scale
    assert (config.width, config.depth, config.init_scale) == (16, 2, 0.1)
    assert EvolutionConfig(strategy="cma-es", population=3).population == 3  # odd is fine without antithetic pairs


@pytest.mark.parametrize("env_id", ["DiffCartpole-v0", "DiffZermelo-v0", "DiffDoublePendulum-v0"])
def test_cma_es_runs_the_cmaes_package_s_default_population(env_id: str) -> None:
    from cmaes import CMA

    config = EvolutionConfig(strategy="cma-es")
    problem = problem_of(env_id)
    network = PolicyNetwork(problem, config.width, config.depth, config.init_scale)
    n = sum(p.numel() for p in network.parameters())
    assert network_dimension(config, env_id) == n
    package = CMA(mean=torch.zeros(n, dtype=torch.float64).numpy(), sigma=1.0).population_size
    assert package == 4 + math.floor(3 * math.log(n)) == default_population("cma-es", n)
    search = CovarianceES(flat_weights(network).to(torch.float64), config)
    assert search.population == package and search.ask().shape == (package, n)
    # OpenAI-ES: the same number rounded up to even (antithetic pairs)
    es = OpenAIES(flat_weights(network).to(torch.float64), EvolutionConfig(), torch.Generator().manual_seed(0))
    assert es.population == package + package % 2 and es.ask().shape == (es.population, n)
    assert generation_transitions(EvolutionConfig(), env_id) == es.population * problem.max_steps


def test_the_rollouts_run_to_the_horizon_unless_asked_for_the_neural_ode_agent_s_steps() -> None:
    # Zermelo's card tunes the neural-ODE agent's rollouts to 300 of the 500 steps: ES no longer inherits them
    assert EvolutionConfig().resolved("DiffZermelo-v0", {}) == (1, 500)
    assert EvolutionConfig(steps="neural-ode").resolved("DiffZermelo-v0", {}) == (1, 300)
    assert EvolutionConfig(steps="neural-ode").resolved(CARTPOLE, QUADRATIC) == (1, 10)  # no tuned steps: the horizon
    assert EvolutionConfig(steps=7, batch_size=0).resolved("DiffCartpole-v0", {}) == (8, 7)  # the tuned batch of 8


def test_the_l2_term_is_added_at_the_scale_of_salimans_et_al_s_code() -> None:
    # their update is Adam on -g + l2coeff theta, g = sum_i f_i eps_i / n without 1/sigma; here g_hat has the
    # 1/sigma, so the step is on sigma g_hat + lambda theta
    config = EvolutionConfig(population=4, sigma=0.02, weight_decay=0.005)
    theta = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    search = OpenAIES(theta, config, torch.Generator().manual_seed(3))
    search.ask()
    epsilon = search.epsilon.clone()
    costs = torch.tensor([3.0, 1.0, 2.0, 4.0], dtype=torch.float64)
    search.optimizer.step = lambda: None  # keep the gradient handed to Adam
    search.tell(costs)
    expected = 0.02 * es_gradient(epsilon, centred_ranks(costs), 0.02) + 0.005 * theta
    assert torch.allclose(search.theta.grad, expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("agent", ["es", "cma-es"])
def test_the_evolution_agents_report_defaults_unless_a_card_sets_their_settings(
        monkeypatch: pytest.MonkeyPatch, agent: str) -> None:
    entry = registry.get(agent)
    for env_id in ("DiffZermelo-v0", "DiffCartpole-v0", "DiffDoublePendulum-v0", "DiffIsochronism-v0",
                   "DiffLinearSysID-v0", "DiffDecayDesign-v0"):
        assert not entry.tuned(env_id, {}), env_id
    card = cards.card("DiffZermelo-v0")
    monkeypatch.setitem(cards.CARDS, "DiffZermelo-v0", dataclasses.replace(card, agents={**card.agents,
                                                                                        agent: {"sigma": 0.1}}))
    assert entry.tuned("DiffZermelo-v0", {})
    monkeypatch.setitem(cards.CARDS, "DiffZermelo-v0", dataclasses.replace(card, agents={**card.agents,
                                                                                        "zeroth-order": {"steps": 5}}))
    assert entry.tuned("DiffZermelo-v0", {})
