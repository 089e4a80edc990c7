"""The benchmark's episodes played on the vector face, all at once: the Gymnasium face's costs and flags, per episode.

Episode ``i`` of ``run_batched`` is row ``i`` of one vector env reset with ``seed``, which draws what the Gymnasium
face's ``reset(seed=seed + i)`` draws; the policy is called once per step on the whole batch, and a row stops adding
cost when its episode ends.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch

import diffenvs
from agents.cards import card
from agents.episodes import (
    BatchPolicy,
    accepts_batch,
    batch_policy,
    evaluate,
    gym_policy,
    play,
    run_batched,
    run_episodes,
)
from diffenvs.core import numerics

IDS = diffenvs.ENV_IDS
EPISODES = 6
#: where the vector face's reward is not the Gymnasium face's bit for bit even with libm's functions: the identification
#: error's least-squares solve (LAPACK under torch and under numpy), 1e-9 relative (see tests/test_clients.py)
SOLVE = {"DiffLinearSysID-v0"}
#: where the two faces as they are (torch's kernels against Python's ``math``) give costs a few units in the last place
#: apart: the solve above; the design criterion's exponentials; sin and cos of a chaotic pendulum under a feedback policy
LAST_BITS = SOLVE | {"DiffDecayDesign-v0", "DiffDoublePendulum-v0"}


def dims(env_id: str) -> tuple[int, int]:
    env = gym.make(env_id)
    obs, m = env.observation_space.shape[0], env.action_space.shape[0]
    env.close()
    return obs, m


def zero_policy(m: int) -> BatchPolicy:
    return batch_policy(lambda o: np.zeros((*np.shape(o)[:-1], m), np.float32))


def linear_policy(obs: int, m: int, seed: int = 0) -> BatchPolicy:
    """:math:`a = \\tanh(W o)`, ``W`` fixed and random, summed in one order so that a row of a batch and one
    observation give the same action bit for bit (a matrix product over a batch may round in another order)."""
    weights = np.random.default_rng(seed).normal(size=(m, obs)) * 0.5

    def act(observation: np.ndarray) -> np.ndarray:
        o = np.asarray(observation, np.float64)
        total = np.zeros((*o.shape[:-1], m))
        for j in range(obs):
            total = total + o[..., j, None] * weights[:, j]
        return np.tanh(total).astype(np.float32)

    return batch_policy(act)


#: the quadratic objective, whose card has a reference controller (LQR), where the protocol's objective has none
QUADRATIC = {"cost": "quadratic"}


def policies(env_id: str) -> list[tuple[str, dict, BatchPolicy]]:
    """(name, env_kwargs, policy): the zero action and a random linear policy on the protocol's objective, and the
    card's reference controller where there is one (on the protocol's objective, else on the quadratic one)."""
    obs, m = dims(env_id)
    kwargs = dict(card(env_id).protocol.env_kwargs)
    found = [("zero", kwargs, zero_policy(m)), ("linear", kwargs, linear_policy(obs, m))]
    for objective in (kwargs, {**kwargs, **QUADRATIC}):
        try:
            reference = card(env_id).reference(env_id, objective)
        except (TypeError, ValueError):  # no quadratic objective
            continue
        if reference is not None and reference.gym_policy is not None:
            found.append(("reference", objective, reference.gym_policy))
            break
    return found


def both_faces(env_id: str, policy: Callable, episodes: int = EPISODES, **kwargs) -> tuple[tuple, tuple]:
    return (run_episodes(env_id, policy, episodes, face="gymnasium", **kwargs),
            run_episodes(env_id, policy, episodes, face="vector", **kwargs))


def assert_costs(env_id: str, batched: np.ndarray, single: np.ndarray, exact: bool) -> None:
    assert batched.shape == single.shape == (EPISODES,) and batched.dtype == single.dtype == np.float64
    if exact:
        np.testing.assert_array_equal(batched, single, err_msg=env_id)
    else:
        np.testing.assert_allclose(batched, single, rtol=1e-9, atol=0, err_msg=env_id)


def libm(function: Callable[[float], float]) -> Callable[[torch.Tensor], torch.Tensor]:
    """``function`` of Python's ``math`` element by element on a tensor (the Gymnasium face's rounding)."""
    elementwise = np.frompyfunc(function, 1, 1)
    return lambda t: torch.as_tensor(elementwise(t.cpu().numpy()).astype(np.float64), dtype=t.dtype, device=t.device)


@pytest.mark.parametrize("env_id", IDS)
def test_batched_costs_are_the_gymnasium_faces_bit_for_bit_with_its_rounding(env_id: str, monkeypatch) -> None:
    """With the vector face computing sin, cos, exp, ... as Python's ``math`` does, both faces take the same steps
    (tests/test_reliability_vector.py): the batched loop must then give every episode's cost bit for bit (the least
    squares solve's reward aside) and every flag, for the zero action, a random linear policy and the card's
    reference controller."""
    for name in ("sin", "cos", "exp", "log1p", "erf", "sqrt"):
        monkeypatch.setattr(numerics.TORCH, name, libm(getattr(math, name)))
    for name, kwargs, policy in policies(env_id):
        (single, single_terminated), (batched, batched_terminated) = both_faces(env_id, policy, env_kwargs=kwargs)
        assert_costs(f"{env_id} {name}", batched, single, exact=env_id not in SOLVE)
        np.testing.assert_array_equal(batched_terminated, single_terminated)


@pytest.mark.parametrize("env_id", IDS)
def test_batched_costs_equal_the_gymnasium_faces(env_id: str) -> None:
    """The faces as they are: bit for bit, or 1e-9 relative where they round differently (LAST_BITS)."""
    for name, kwargs, policy in policies(env_id):
        (single, single_terminated), (batched, batched_terminated) = both_faces(env_id, policy, env_kwargs=kwargs)
        assert_costs(f"{env_id} {name}", batched, single, exact=env_id not in LAST_BITS)
        np.testing.assert_array_equal(batched_terminated, single_terminated)


class Counting:
    """A batch policy that records the shape of every call."""

    batched = True

    def __init__(self, policy: Callable[[np.ndarray], np.ndarray]):
        self.policy, self.shapes = policy, []

    def __call__(self, observation: np.ndarray) -> np.ndarray:
        self.shapes.append(np.shape(observation))
        return self.policy(observation)


def test_episodes_that_end_at_different_steps_add_nothing_after_their_end() -> None:
    """Zermelo's boats cross at different steps (5, 25, 50) or drift along the bank until the horizon (truncated): the
    vector face restarts an ended row, and nothing of its restarted episode may reach the cost or the flags."""
    env_id, kwargs = "DiffZermelo-v0", {"max_steps": 150}
    starts = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, 1.5], [0.0, 1.9], [1.0, 0.2], [0.5, 1.2]])

    def steer(observation: np.ndarray) -> np.ndarray:  # straight across (0) near the far bank, else along it (-1)
        return np.where(np.asarray(observation)[..., 1:2] > 0.9, 0.0, -1.0).astype(np.float32)

    played = play(env_id, steer, EPISODES, kwargs, states=starts, record=True)
    lengths = [len(e.times) - 1 for e in played]
    assert lengths == [150, 50, 25, 5, 150, 40]
    policy = Counting(steer)
    costs, terminated = run_episodes(env_id, policy, EPISODES, kwargs, states=starts)
    np.testing.assert_array_equal(terminated, [e.terminated for e in played])
    assert terminated.tolist() == [False, True, True, True, False, True]
    np.testing.assert_array_equal(costs, [e.cost for e in played])
    assert policy.shapes == [(EPISODES, dims(env_id)[0])] * max(lengths)  # one call per step on the whole batch


def test_start_states_and_seeds_are_the_gymnasium_faces() -> None:
    """Episode ``i`` is ``reset(seed=seed + i)``: another seed gives other episodes, the same on both faces, and given
    start states (more rows than episodes: the first are played) are taken as the Gymnasium face takes them."""
    env_id = "DiffCartpole-v0"
    policy = linear_policy(*dims(env_id))
    first, _ = run_batched(env_id, policy, EPISODES, seed=3)
    assert not np.array_equal(first, run_batched(env_id, policy, EPISODES, seed=4)[0])
    np.testing.assert_array_equal(first, run_episodes(env_id, policy, EPISODES, seed=3, face="gymnasium")[0])
    np.testing.assert_array_equal(first[1:], run_batched(env_id, policy, EPISODES - 1, seed=4)[0])
    states = np.random.default_rng(1).uniform(-0.3, 0.3, (EPISODES + 2, 4))
    np.testing.assert_array_equal(run_batched(env_id, policy, EPISODES, seed=5, states=states)[0],
                                  run_episodes(env_id, policy, EPISODES, seed=5, states=states, face="gymnasium")[0])
    with pytest.raises(ValueError, match="states must have one row per episode"):
        run_batched(env_id, policy, EPISODES, states=states[:2])


def test_process_noise_of_each_row_is_its_episodes() -> None:
    """LinearSysID draws noise at every step: row ``i`` must draw episode ``reset(seed=seed + i)``'s noise."""
    env_id = "DiffLinearSysID-v0"
    policy = zero_policy(dims(env_id)[1])
    single, _ = run_episodes(env_id, policy, 3, seed=21, face="gymnasium")
    np.testing.assert_allclose(run_batched(env_id, policy, 3, seed=21)[0], single, rtol=1e-9)
    assert len(set(single.tolist())) == 3  # the episodes differ: each row's noise is its own


def test_which_face_plays() -> None:
    """``face="auto"`` plays a batch policy on the vector face and a one-observation policy on the Gymnasium face; the
    policy calls of a 1000-step isochronism evaluation of 4 episodes: 1000 instead of 4000."""
    env_id = "DiffIsochronism-v0"
    obs, m = dims(env_id)
    batched = Counting(linear_policy(obs, m))
    costs = evaluate(env_id, batched, 4)
    assert batched.shapes == [(4, obs)] * 1000
    one_at_a_time = Counting(batched.policy)
    one_at_a_time.batched = False
    np.testing.assert_array_equal(evaluate(env_id, one_at_a_time, 4), costs)
    assert one_at_a_time.shapes == [(obs,)] * 4000
    forced = Counting(batched.policy)
    np.testing.assert_array_equal(evaluate(env_id, forced, 4, face="gymnasium"), costs)
    assert len(forced.shapes) == 4000

    def single(observation: np.ndarray) -> np.ndarray:  # would read the wrong row of a batch: never given one
        assert np.ndim(observation) == 1
        return np.zeros(m, np.float32)

    assert not accepts_batch(single) and accepts_batch(batch_policy(single))
    assert evaluate(env_id, single, 2).shape == (2,)
    with pytest.raises(ValueError, match="policy must accept a batch"):
        evaluate(env_id, single, 2, face="vector")
    with pytest.raises(ValueError, match="face must be one of"):
        evaluate(env_id, single, 2, face="batched")


def test_gym_policy_takes_one_observation_or_a_batch() -> None:
    """A torch-path policy as a Gymnasium policy: one observation gives ``(m,)``, a batch ``(B, m)``; ``batched=False``
    keeps it to one observation (and the Gymnasium face)."""
    env_id = "DiffCartpole-v0"
    reference = card(env_id).reference(env_id, QUADRATIC)
    problem = reference.problem
    policy = gym_policy(reference.policy, problem)
    assert accepts_batch(policy) and isinstance(policy, BatchPolicy)
    observations = np.random.default_rng(0).uniform(-1, 1, (5, dims(env_id)[0])).astype(np.float32)
    rows = np.array([policy(o) for o in observations])
    assert rows.shape == (5, 1) and policy(observations).shape == (5, 1)
    np.testing.assert_array_equal(policy(observations), rows)  # u = -K s: an elementwise product and a sum per row
    assert not accepts_batch(gym_policy(reference.policy, problem, batched=False))


@pytest.mark.parametrize("episodes", [0, -1, 2.0, True, None])
def test_bad_episodes_are_refused_naming_the_argument(episodes) -> None:
    policy = zero_policy(1)
    for function in (run_batched, run_episodes, evaluate):
        with pytest.raises(ValueError, match="episodes must be a positive integer"):
            function("DiffCartpole-v0", policy, episodes)


def test_a_policy_returning_one_action_for_a_batch_is_refused() -> None:
    """A policy declared batched that returns one action for the whole batch would be broadcast: refused, named."""
    policy = batch_policy(lambda observation: np.zeros(1, np.float32))
    with pytest.raises(ValueError, match=r"policy must return actions of shape \(3, 1\).*got shape \(1,\)"):
        run_batched("DiffCartpole-v0", policy, 3)


def test_a_batch_policy_on_an_environment_without_a_vector_face_plays_on_the_gymnasium_face() -> None:
    from agents.episodes import batch_policy, has_vector_face, run_episodes

    zero = batch_policy(lambda observation: np.zeros((*np.shape(observation)[:-1], 1), dtype=np.float32))
    assert not has_vector_face("Pendulum-v1") and has_vector_face("DiffZermelo-v0")
    costs, terminated = run_episodes("Pendulum-v1", zero, 2, seed=0)
    assert costs.shape == (2,) and not terminated.any()
