"""Linear system identification (``diffenvs.envs.linear_sysid``, report §5): agents' settings, protocol, reference.

There is no closed form: the reference is the oracle, the planner (:mod:`agents.planning`) on
the true matrix, which no agent is given, played under the evaluation protocol. The oracle's
pieces (:func:`plan_controls`, :func:`open_loop_policy`, :func:`oracle_policy`) are also the
identification agents' (:mod:`agents.identification`).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from agents.cards import QUICK_SECONDS, Card, Protocol, TestSettings, register, zoo_budget
from agents.episodes import VALIDATION_SEED, BatchPolicy, batch_policy, evaluate
from agents.planning import InputSequence, PlannerConfig, backward_transitions, plan
from agents.references import Reference, played_cost, problem_as
from agents.registry import Budget
from diffenvs.envs.linear_sysid import LinearSysID

ENV_ID = "DiffLinearSysID-v0"


# ---- the oracle: the planner on the true matrix ---------------------------------------------
def fixed_truth(problem: object) -> bool:
    """Whether ``problem`` identifies one fixed true matrix (the plans and the oracle need it, not ``matrix="random"``)."""
    return isinstance(problem, LinearSysID) and not (isinstance(problem.matrix, str) and problem.matrix == "random")


def true_matrix(problem: LinearSysID) -> torch.Tensor:
    """The true A ``(d, d)`` of ``problem`` (float64)."""
    return torch.as_tensor(problem.params.A, dtype=torch.float64)


def open_loop_policy(problem: LinearSysID, controls: np.ndarray) -> BatchPolicy:
    """A Gymnasium policy that plays ``controls`` ``(steps, m)`` (physical) in time order.

    The step is read from the observation's last component, the time fraction ``t / T``, row by row: it takes one
    observation or a batch (:func:`agents.episodes.batch_policy`).
    """
    controls = np.asarray(controls, dtype=np.float64)
    steps = controls.shape[0]

    def policy(observation: np.ndarray) -> np.ndarray:
        fraction = np.asarray(observation)[..., -1].astype(np.float64)
        k = np.minimum(np.rint(fraction * steps).astype(np.int64), steps - 1)
        return np.asarray(problem.action_from_control(controls[k]), dtype=np.float32)

    return batch_policy(policy)


def plan_controls(problem: LinearSysID, matrix: torch.Tensor, generator: torch.Generator,
                  config: PlannerConfig | None = None) -> tuple[np.ndarray, int, int]:
    """Inputs ``(steps, d)`` of one episode planned on ``matrix`` ``(d, d)`` by ``config`` (default:
    :class:`PlannerConfig`'s defaults; an open-loop sequence), the transitions the planner simulated and those its
    backward passes went through (:func:`agents.planning.backward_transitions`)."""
    config = PlannerConfig() if config is None else config
    prior = torch.zeros(1, problem.d, problem.d, dtype=torch.float64)
    controller, criteria = plan(problem, matrix[None], prior, problem.max_steps, config, generator)
    if not isinstance(controller, InputSequence):
        raise TypeError("only the 'sequence' planner form gives an open-loop plan")
    with torch.no_grad():
        controls = controller.controls()[:, 0].numpy()
    return (controls, (config.iterations + 1) * problem.max_steps * config.noise_samples,
            backward_transitions(criteria, problem.max_steps, config))


#: the oracle's plans already made in this process, by (problem, seed): planning is deterministic, so a
#: reference asked for again (every report, every test) reuses the plan instead of planning for seconds again
_ORACLE_PLANS: dict[tuple[str, int], np.ndarray] = {}

#: the planner seeds the reference chooses among: one plan is a local optimum of a noisy criterion, and at d = 4 the
#: planner's seeds end 0.2% to 0.5% of J0 - J* apart on 200 episodes (0.0081 to 0.0088 against the zero input's 0.169)
ORACLE_SEEDS = tuple(range(5))
#: the validation episodes on which the reference chooses its planner seed (``reset(seed=VALIDATION_SEED + i)``,
#: never the test starts): at 200 the standard error of a paired difference is about 0.2% of J0 - J*
ORACLE_SELECTION_EPISODES = 200


def oracle_policy(problem: LinearSysID, seed: int) -> BatchPolicy:
    """The plan of the planner on the true matrix, as a policy (planned once per problem and seed in a process)."""
    key = (repr(problem) + repr(np.asarray(problem.params.A).tolist()), seed)
    if key not in _ORACLE_PLANS:
        _ORACLE_PLANS[key], _, _ = plan_controls(problem, true_matrix(problem), torch.Generator().manual_seed(seed))
    return open_loop_policy(problem, _ORACLE_PLANS[key])


def best_oracle_seed(env_id: str, env_kwargs: dict[str, Any], seeds: tuple[int, ...] = ORACLE_SEEDS,
                     episodes: int = ORACLE_SELECTION_EPISODES) -> int:
    """The planner seed among ``seeds`` whose plan on the true matrix has the lowest mean cost on ``episodes``
    validation episodes (``reset(seed=VALIDATION_SEED + i)``), as an agent chooses its settings."""
    if not seeds:
        raise ValueError("seeds must name at least one planner seed")
    problem = problem_as(LinearSysID, env_id, env_kwargs)
    costs = [float(evaluate(env_id, oracle_policy(problem, seed), episodes, env_kwargs, VALIDATION_SEED).mean())
             for seed in seeds]
    return seeds[int(np.argmin(costs))]


def reference(env_id: str, env_kwargs: dict[str, Any]) -> Reference | None:
    """The oracle: differentiable planning on the true A, the best of :data:`ORACLE_SEEDS` planner seeds on the
    validation episodes, its cost under the evaluation protocol.

    There is no closed form; the oracle knows what no agent is given (the true matrix), so it
    is the reference the others are measured against. ``None`` for ``matrix="random"``.
    """
    problem = problem_as(LinearSysID, env_id, env_kwargs)
    if not fixed_truth(problem):
        return None

    @functools.cache
    def policy() -> BatchPolicy:  # chosen once, then played on the test and the validation starts
        return oracle_policy(problem, best_oracle_seed(env_id, env_kwargs))

    return Reference("oracle", f"differentiable planning on the true A (agents.planning), the best of "
                     f"{len(ORACLE_SEEDS)} planner seeds on {ORACLE_SELECTION_EPISODES} validation episodes, "
                     "evaluated by the protocol", problem, None, played_cost(env_id, env_kwargs, policy))


#: the neural-ODE agent's tuned settings
TUNED = dict(iterations=100, learning_rate=0.01, final_learning_rate=0.001, batch_size=16)

#: rl-baselines3-zoo's nearest task: Pendulum-v1 (hyperparams/{ppo,sac,td3}.yml, entry Pendulum-v1). The zoo has no
#: identification task; Pendulum-v1 is its small continuous-control task, tuned for budgets of this order. One
#: deviation: the whole objective is paid at the last of 100 steps, which the zoo's discounts (PPO 0.9, TD3 0.98, SAC
#: 0.99) would weigh by 3e-5, 0.13 and 0.37 at the first step; gamma = 0.999 weighs it by 0.9.
RL = {"zoo": "Pendulum-v1", "gamma": 0.999}


CARD = register(Card(
    env_id=ENV_ID,
    agents={"neural-ode": TUNED, "rl": RL},
    # 200 test episodes: the noise of every step is drawn, and a paired difference of two agents' means has a
    # standard error of about 0.2% of J0 - J* there (1% was below what v1's 50 episodes resolved)
    protocol=Protocol(episodes=200),
    budgets={
        "quick": {"neural-ode": Budget(80_000, QUICK_SECONDS, 8_000), "planning": Budget(30_000, QUICK_SECONDS)},
        # equal footing: the neural-ODE agent's tuned run (160k transitions: 100 Adam iterations x 16 trajectories x
        # 100 steps) for every learning agent, the planner included (its simulated plans and its played
        # experiments: 15 experiments of 10,200), except SAC and TD3, capped at the zoo's 20k for Pendulum-v1 (an
        # off-policy update per transition)
        "full": {"gradient": Budget(100 * 16 * 100, eval_every=8_000),
                 "planning": Budget(160_000), "zeroth-order": Budget(160_000, eval_every=8_000),
                 "ppo": Budget(160_000, eval_every=8_000),
                 "sac": Budget(20_000, eval_every=1_000, cap=zoo_budget("Pendulum-v1", 20_000)),
                 "td3": Budget(20_000, eval_every=1_000, cap=zoo_budget("Pendulum-v1", 20_000)),
                 "neural-ode-default": Budget(160_000, eval_every=8_000)},
    },
    reference=reference,
    tests=TestSettings(short={"max_steps": 6}),
))
