"""Cards are data: each agent reads its own section of a card's settings, and rejects a key it does not read."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from agents import cards, evolution, identification, neural_ode, registry, rl, shac
from agents.benchmark.config import budget
from agents.cards import Card
from agents.neural_ode.config import tuned_run_transitions
from agents.objectives import TrainingObjective, training_objective
from diffenvs import problem_of


def test_the_agents_section_updates_its_familys() -> None:
    card = Card("Anything-v0", agents={"rl": {"zoo": "Pendulum-v1", "gamma": 0.9}, "ppo": {"gamma": 0.99},
                                       "neural-ode": lambda env_kwargs: {"iterations": 3 if env_kwargs else 4}})
    assert card.settings("ppo", "rl") == {"zoo": "Pendulum-v1", "gamma": 0.99}
    assert card.settings("sac", "rl") == {"zoo": "Pendulum-v1", "gamma": 0.9}
    assert card.settings("sac") == {} and Card("Other-v0").settings("ppo", "rl") == {}
    assert card.settings("neural-ode") == {"iterations": 4}
    assert card.settings("neural-ode", "gradient", {"cost": "quadratic"}) == {"iterations": 3}  # a function of env_kwargs
    with pytest.raises(ValueError, match=r"the card of Anything-v0 gives agent 'ppo' the setting 'zoo'"):
        card.settings("ppo", "rl", known=("gamma",))


def test_every_card_names_registered_agents_or_families() -> None:
    names = set(registry.agents()) | set(registry.FAMILIES)
    for env_id, card in cards.cards().items():
        assert set(card.agents) <= names, env_id
        for name, agent in registry.agents().items():  # every agent reads its section without complaint
            card.settings(name, agent.family, card.protocol.env_kwargs)


LEARNERS = ("neural-ode", "neural-ode-default", "ppo", "sac", "td3", "shac", "es", "cma-es", "planning")


@pytest.mark.parametrize("env_id", ["DiffZermelo-v0", "DiffCartpole-v0", "DiffDoublePendulum-v0", "DiffIsochronism-v0",
                                    "DiffLinearSysID-v0", "DiffDecayDesign-v0"])
def test_every_learner_gets_the_common_budget_or_says_why_not(env_id: str) -> None:
    """Equal footing: every learning agent's full budget is the tuned neural-ODE agent's, or a smaller one that names
    its reason (the ‡ of the table); and the common budget is at most the tuned run, which the agent then fits its
    schedule into (never a budget larger than what its settings simulate, handed only to it)."""
    common = budget("full", env_id, "neural-ode").transitions
    for agent in LEARNERS:
        found = budget("full", env_id, agent)
        assert found.transitions == common or (found.transitions < common and found.cap), (env_id, agent, found)
    settings = neural_ode.config.card_settings(env_id)
    if settings:
        steps = settings.get("steps") or problem_of(env_id).max_steps
        assert common <= tuned_run_transitions(settings, steps), env_id


def with_agents(monkeypatch: pytest.MonkeyPatch, env_id: str, agents: dict[str, Any]) -> None:
    monkeypatch.setitem(cards.CARDS, env_id, dataclasses.replace(cards.card(env_id), agents=agents))


READERS: dict[str, tuple[str, Callable[[str], object]]] = {
    "neural-ode": ("DiffZermelo-v0", lambda env_id: neural_ode.default_config(env_id)),
    "ppo": ("DiffZermelo-v0", lambda env_id: rl.hyperparameters(env_id, "ppo")),
    "rl": ("DiffZermelo-v0", lambda env_id: rl.hyperparameters(env_id, "td3")),
    "shac": ("DiffZermelo-v0", shac.card_config),
    "es": ("DiffZermelo-v0", lambda env_id: evolution.agent.card_config(env_id, "es", "openai-es", 0)),
    "zeroth-order": ("DiffZermelo-v0", lambda env_id: evolution.agent.card_config(env_id, "cma-es", "cma-es", 0)),
    "planning": ("DiffLinearSysID-v0", lambda env_id: identification.planner_config(env_id, "planning")),
}


@pytest.mark.parametrize("section", READERS)
def test_each_agent_rejects_a_key_it_does_not_read(monkeypatch: pytest.MonkeyPatch, section: str) -> None:
    env_id, read = READERS[section]
    with_agents(monkeypatch, env_id, {section: {"no_such_setting": 1}})
    with pytest.raises(ValueError, match=rf"{env_id} gives agent .* the setting 'no_such_setting'"):
        read(env_id)


def test_the_agents_build_their_configs_from_their_sections(monkeypatch: pytest.MonkeyPatch) -> None:
    with_agents(monkeypatch, "DiffZermelo-v0", {
        "neural-ode": {"iterations": 7}, "rl": {"zoo": "Pendulum-v1", "gamma": 0.5}, "sac": {"gamma": 0.25},
        "shac": {"horizon": 8, "objective": {"label": "mine"}}, "es": {"population": 4}})
    assert neural_ode.default_config("DiffZermelo-v0").iterations == 7
    assert rl.hyperparameters("DiffZermelo-v0", "ppo").gamma == 0.5
    assert rl.hyperparameters("DiffZermelo-v0", "sac") == dataclasses.replace(
        rl.from_zoo("sac", "Pendulum-v1"), gamma=0.25)
    assert shac.card_config("DiffZermelo-v0").horizon == 8
    assert training_objective("DiffZermelo-v0", "shac") == TrainingObjective(label="mine")
    assert training_objective("DiffZermelo-v0") == TrainingObjective()
    assert evolution.agent.card_config("DiffZermelo-v0", "es", "openai-es", 3).population == 4


def test_an_objective_with_an_unknown_key_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    with_agents(monkeypatch, "DiffZermelo-v0", {"rl": {"objective": {"reward": "dense"}}})
    with pytest.raises(ValueError, match=r"DiffZermelo-v0 gives agent 'ppo' an objective with the setting 'reward'"):
        training_objective("DiffZermelo-v0", "ppo")
