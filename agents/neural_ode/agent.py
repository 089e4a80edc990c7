"""The neural-ODE agent in the benchmark: its config fitted to a budget, and its learning curve.

Two agents share this adapter. ``neural-ode`` runs the settings its environment's card tunes
(schedules, batch, L-BFGS finish, network); ``neural-ode-default`` runs the report's settings
(:class:`NeuralOdeConfig`'s defaults: Adam at 0.05, batch 1, the 2 x 16 tanh network) on every
environment, untuned, so that it meets the baselines, which run their published defaults, on
equal tuning. The latter applies only where the card tunes something.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from agents.episodes import gym_policy
from agents.neural_ode.config import LBFGS_EVALUATIONS, NeuralOdeConfig, card_settings, default_config
from agents.neural_ode.training import train
from agents.registry import Agent, Budget, CurveCost, Trained, register
from diffenvs import problem_of


def tuned(env_id: str, env_kwargs: dict[str, Any]) -> bool:
    """Whether the card of ``env_id`` tunes the neural-ODE agent's settings for ``env_kwargs``."""
    return bool(card_settings(env_id, env_kwargs))


def budget_config(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget,
                  untuned: bool = False) -> NeuralOdeConfig:
    """The tuned config for ``env_id`` (``untuned``: the defaults) with as many iterations as ``budget`` allows.

    The L-BFGS finish is kept only as far as the budget affords it after the tuned Adam
    iterations (``LBFGS_EVALUATIONS`` rollouts a step; the line search may take one more, so a
    run can exceed its budget by up to ``lbfgs_steps`` rollouts, all counted); Adam gets the rest,
    ``transitions // (batch_size x rollout steps)`` iterations (at least one), so the
    learning-rate schedule runs to its end within the budget.
    """
    config = NeuralOdeConfig() if untuned else default_config(env_id, env_kwargs)
    rollout = config.batch_size * (config.steps or problem_of(env_id, **env_kwargs).max_steps)
    worst = LBFGS_EVALUATIONS * rollout  # one L-BFGS step at most
    lbfgs_steps = min(config.lbfgs_steps, max(0, (budget.transitions - config.iterations * rollout) // worst))
    iterations = max(1, (budget.transitions - lbfgs_steps * worst) // rollout)
    return dataclasses.replace(config, iterations=iterations, lbfgs_steps=lbfgs_steps, seed=seed)


def backward_transitions(history: list[dict[str, float]]) -> int:
    r"""The environment transitions a backward pass went through in a run of ``history``: every loss evaluation
    (``batch_size`` rollouts of ``steps`` steps) is backpropagated once, so Adam's :math:`K` iterations and the
    L-BFGS finish's :math:`E` evaluations count :math:`(K + E)\, B\, T`, as its forward ``transitions``."""
    return int(history[-1]["backward_transitions"]) if history else 0


def _train(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost,
           untuned: bool = False) -> Trained:
    config = budget_config(env_id, env_kwargs, seed, budget, untuned)
    problem = problem_of(env_id, **env_kwargs)
    curve: list[dict[str, float]] = []
    next_point: list[float] = [0.0]  # transitions of the next curve point

    def on_step(step: int, metrics: dict[str, float], policy: torch.nn.Module) -> bool:
        transitions, seconds = metrics["transitions"], metrics["seconds"]
        last = step + 1 == config.iterations
        stop = seconds >= budget.seconds
        if transitions >= next_point[0] or last or stop:
            next_point[0] = transitions + budget.eval_every
            cost = float(curve_cost(gym_policy(policy, problem)))
            curve.append({"transitions": float(transitions), "seconds": float(seconds), "cost": cost,
                          "backward_transitions": float(metrics["backward_transitions"])})
        return stop

    result = train(env_id, config, env_kwargs, callback=on_step, progress=False)
    details = {"iterations": len(result.history), "batch_size": config.batch_size,
               "rollout_steps": config.steps or problem.max_steps, "trained_on": "default",
               "backward_transitions": backward_transitions(result.history)}
    return Trained(result.gym_policy(), curve, result.transitions, result.seconds, details)


def _train_untuned(env_id: str, env_kwargs: dict[str, Any], seed: int, budget: Budget, curve_cost: CurveCost) -> Trained:
    return _train(env_id, env_kwargs, seed, budget, curve_cost, untuned=True)


AGENT = register(Agent("neural-ode", "gradient", "policy network trained through the differentiable rollout, "
                       "settings tuned by the environment's card (agents.neural_ode)", _train, cost=3.0, tuned=tuned))
UNTUNED = register(Agent("neural-ode-default", "gradient", "the neural-ODE agent with the report's settings on every "
                         "environment, untuned (agents.neural_ode)", _train_untuned, tuned, cost=3.0))
