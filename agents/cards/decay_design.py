r"""Sequential design on du/dt = -θu (``diffenvs.envs.decay_design``, report §6): protocol, budgets, reference.

The measurement time that maximises each measurement's information
:math:`\tfrac12\log(1 + g^2 C/\sigma^2)`, :math:`g = -t e^{-\hat\theta t}`, is
:math:`t = 1/\hat\theta` (where :math:`g^2` peaks). The greedy design is the reference; its
cost on the evaluation episodes is the reference cost (one-step optimal, not a proven optimum
of the whole sequence).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from agents.cards import QUICK_SECONDS, Card, Protocol, Section, TestSettings, register
from agents.references import Episode, Reference, gym_policy, played_cost, problem_as, recorded
from agents.registry import Budget
from diffenvs.envs.decay_design import DecayDesign

ENV_ID = "DiffDecayDesign-v0"


class GreedyDesign(torch.nn.Module):
    r"""The measurement time :math:`t = 1/\hat\theta` (s) from the belief ``(θ̂, C)``, clamped to ``[0, t_max]``.

    :math:`g^2 = t^2 e^{-2\hat\theta t}` peaks at :math:`t = 1/\hat\theta`; a belief with
    :math:`\hat\theta \le 1/t_{\max}` gets :math:`t_{\max}`.
    """

    def __init__(self, problem: DecayDesign):
        super().__init__()
        self.problem = problem

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        low, high = self.problem.control_low[0], self.problem.control_high[0]
        mean = observation[..., :1]
        time = torch.where(mean * high > 1.0, 1.0 / mean.clamp_min(1.0 / high), torch.full_like(mean, high))
        return time.clamp(low, high)


def reference(env_id: str, env_kwargs: dict[str, Any]) -> Reference:
    """The greedy design t = 1/θ̂; its cost on the same episodes is the reference (one-step optimal)."""
    problem = problem_as(DecayDesign, env_id, env_kwargs)
    greedy = GreedyDesign(problem)

    def belief_probe(episode: Episode | None) -> tuple[str, np.ndarray, np.ndarray]:
        played = recorded(episode)
        return "measurement n, along the greedy design's episode", np.arange(len(played.controls)), \
            played.observations[:-1]

    return Reference("greedy-design", "measurement time t = 1/theta_hat, the maximiser of each measurement's "
                     "information (report §6); reference: its cost on the same episodes, one-step optimal",
                     problem, greedy, played_cost(env_id, env_kwargs, lambda: gym_policy(greedy, problem)),
                     belief_probe, plane=(0, 1))


#: rl-baselines3-zoo's nearest task: Pendulum-v1 (hyperparams/{ppo,sac,td3}.yml, entry Pendulum-v1), the zoo's small
#: continuous-control task with a dense reward (here the information gain of each measurement). Two deviations scale
#: the zoo's 20k and 100k budgets to this card's 5k: TD3 collects random transitions for half the budget as the zoo
#: does (2500 of 5k, the zoo 10k of 20k), and PPO rollouts of 4 x 128 transitions (the zoo 4 x 1024) give ten updates,
#: where the zoo's rollouts would give one.
ZOO: dict[str, Section] = {"rl": {"zoo": "Pendulum-v1"}, "ppo": {"n_steps": 128}, "td3": {"learning_starts": 2500}}

CARD = register(Card(
    env_id=ENV_ID,
    agents=dict(ZOO),
    # every episode draws its decay rate and its noise: 100 starts resolve a gap of 1% of the greedy design's
    # cost (20 did not)
    protocol=Protocol(episodes=100),
    budgets={
        "quick": {"rl": Budget(2_000, QUICK_SECONDS, 500), "neural-ode": Budget(1_000, QUICK_SECONDS, 100)},
        # equal footing: every learning agent gets the same 5,000 transitions and the same curve grid
        "full": {"rl": Budget(5_000, eval_every=250), "zeroth-order": Budget(5_000, eval_every=250),
                 "gradient": Budget(5_000, eval_every=250)},
    },
    reference=reference,
    controllers={"greedy-design": GreedyDesign},
    tests=TestSettings(short={"max_steps": 3}),
))
