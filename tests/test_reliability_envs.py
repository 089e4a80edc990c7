"""Regression tests of the environments' edges: constants, horizons, singular estimates, huge actions, specs."""

from __future__ import annotations

import math
import warnings

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.wrappers import TimeAwareObservation, TimeLimit

import diffenvs
from diffenvs.core.numerics import SCALAR, wrap_angle
from diffenvs.envs.cartpole import Cartpole, CartpoleParams
from diffenvs.envs.decay_design import DecayDesign, DecayDesignParams
from diffenvs.envs.isochronism import Isochronism, IsochronismParams
from diffenvs.envs.linear_sysid import LinearSysID, least_squares
from diffenvs.envs.zermelo import Zermelo, ZermeloParams

SYSID = "DiffLinearSysID-v0"


def vector(env_id: str, num_envs: int, **kwargs):
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", **kwargs)


def play(env: gym.Env, actions) -> tuple[float, bool, bool, dict]:
    """Step ``actions`` until the episode ends; the last step's reward, flags and info."""
    for action in actions:
        _, reward, terminated, truncated, info = env.step(np.asarray(action))
        if terminated or truncated:
            return reward, terminated, truncated, info
    raise AssertionError("the episode did not end")


# ---- 6: enough samples for an invertible design ------------------------------------------
@pytest.mark.parametrize("d, max_steps", [(4, 4), (1, 1), (3, 2)])
def test_linear_sysid_needs_d_plus_one_samples(d, max_steps):
    with pytest.raises(ValueError, match=r"max_steps.*d \+ 1.*got " + str(max_steps)):
        gym.make(SYSID, d=d, max_steps=max_steps)


def test_linear_sysid_with_d_plus_one_samples_estimates():
    env = gym.make(SYSID, d=1, max_steps=2, noise_std=0.1)
    env.reset(seed=0)
    reward, terminated, truncated, _ = play(env, [[1.0]] * 2)
    assert terminated and not truncated and math.isfinite(reward) and reward <= 0.0


# ---- 7: a singular design gives the minimum-norm estimate, on both faces ------------------
def test_least_squares_is_the_solve_where_the_design_is_invertible():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(3, 20, 4, generator=generator, dtype=torch.float64)
    gram, cross = x.transpose(-1, -2) @ x, torch.randn(3, 4, 4, generator=generator, dtype=torch.float64)
    expected = torch.linalg.solve(gram, cross.transpose(-1, -2)).transpose(-1, -2)
    torch.testing.assert_close(least_squares(gram, cross), expected)
    np.testing.assert_allclose(least_squares(gram[0].numpy(), cross[0].numpy()), expected[0].numpy(), rtol=1e-10)


def test_singular_design_on_the_single_face_gives_a_finite_reward():
    """Noiseless inputs along e_1 keep the state on e_1 (the Jordan block maps e_1 to 0.9 e_1): G has rank 1."""
    env = gym.make(SYSID, noise_std=0.0, max_steps=10)
    env.reset(seed=0)
    reward, terminated, truncated, _ = play(env, [[1.0, 0.0, 0.0, 0.0]] * 10)
    assert terminated and not truncated
    # the estimate 0.9 e_1 e_1^T (minimum norm) misses the rest of the Jordan block: 0.9^2 * 3 + 1 * 3 = 5.43
    assert reward == pytest.approx(-math.sqrt(3 * 0.81 + 3), rel=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_one_singular_environment_does_not_stop_the_batch(dtype):
    actions = np.random.default_rng(0).uniform(-1.0, 1.0, (10, 2, 4)).astype(np.float32)  # row 1 spans R^4
    actions[:, 0] = [1.0, 0.0, 0.0, 0.0]  # row 0 does not
    env = vector(SYSID, 2, noise_std=0.0, max_steps=10, dtype=dtype)
    env.reset(seed=0)
    for k in range(10):
        _, rewards, terminated, truncated, _ = env.step(actions[k])
    assert terminated.all() and not truncated.any() and np.isfinite(rewards).all()
    single = gym.make(SYSID, noise_std=0.0, max_steps=10)
    for i in range(2):
        single.reset(seed=i)
        expected, *_ = play(single, actions[:, i])
        tight = dtype == torch.float64
        assert rewards[i] == pytest.approx(expected, rel=1e-9 if tight else 1e-3, abs=1e-6 if tight else 1e-4)


# ---- 8: an explicit matrix --------------------------------------------------------------
def test_explicit_matrix_is_the_system():
    matrix = np.array([[0.5, 0.1], [0.0, -0.4]])
    env = gym.make(SYSID, d=2, matrix=matrix, noise_std=0.0, max_steps=3)
    env.reset(seed=0)
    np.testing.assert_array_equal(env.unwrapped.problem.params.A, matrix)
    env.step(np.array([1.0, 0.0], np.float32))
    env.step(np.array([0.0, 1.0], np.float32))  # x_1 = u_0, x_2 = A x_1 + u_1
    np.testing.assert_allclose(env.unwrapped.state, matrix @ [1.0, 0.0] + [0.0, 1.0])
    reward, terminated, _, _ = play(env, [[0.3, 0.3]])
    assert terminated and reward == pytest.approx(0.0, abs=1e-9)  # noiseless data of a spanning design: exact
    batch = vector(SYSID, 2, d=2, matrix=matrix, max_steps=3)
    observations, _ = batch.reset(seed=0)
    assert observations.shape == (2, 3)


@pytest.mark.parametrize("matrix", [np.eye(3), [["a", "b"], ["c", "d"]], "diagonal", np.full((2, 2), np.nan)])
def test_bad_matrix_is_refused_naming_it(matrix):
    with pytest.raises(ValueError, match="matrix"):
        LinearSysID(d=2, matrix=matrix)


# ---- 9: the episode length ----------------------------------------------------------------
@pytest.mark.parametrize("problem_type, old, seconds, dt", [
    (Cartpole, "horizon", 2.0, 0.03), (Cartpole, "horizon", 2.0, 3.0), (Zermelo, "time_limit", 10.0, 0.03),
    (Zermelo, "time_limit", 1.0, 4.0)])
def test_deprecated_horizon_that_dt_does_not_divide_is_refused(problem_type, old, seconds, dt):
    with warnings.catch_warnings(), pytest.raises(ValueError, match=f"{old} = .*dt = {dt}"):
        warnings.simplefilter("ignore", FutureWarning)
        problem_type(**{old: seconds, "dt": dt})


@pytest.mark.parametrize("problem_type, old, seconds, dt, steps", [
    (Cartpole, "horizon", 2.0, 0.02, 100), (Zermelo, "time_limit", 10.0, 0.02, 500), (Zermelo, "time_limit", 0.3, 0.1, 3)])
def test_deprecated_horizon_that_dt_divides_gives_its_steps(problem_type, old, seconds, dt, steps):
    with pytest.warns(FutureWarning, match="max_steps"):
        assert problem_type(**{old: seconds, "dt": dt}).max_steps == steps


@pytest.mark.parametrize("problem_type", [Cartpole, Zermelo])
@pytest.mark.parametrize("dt", [0.0, -0.02, math.nan, math.inf, True, "0.02"])
def test_bad_dt_is_refused(problem_type, dt):
    with pytest.raises(ValueError, match="dt"):
        problem_type(dt=dt)


@pytest.mark.parametrize("env_id", diffenvs.ENV_IDS)
@pytest.mark.parametrize("max_steps", [0, -3, 2.0, True])
def test_bad_max_steps_is_refused_on_every_id(env_id, max_steps):
    with pytest.raises(ValueError, match="max_steps"):
        gym.make(env_id, max_steps=max_steps)


def test_isochronism_period_too_small_for_its_steps_is_refused():
    with pytest.raises(ValueError, match="dt"):
        Isochronism(params=IsochronismParams(period=5e-324), max_steps=2)  # dt underflows to 0


# ---- 10: extreme constants truncate on the single face as on the vector face -------------
@pytest.mark.parametrize("kwargs", [dict(params=CartpoleParams(pole_length=1e-80)), dict(max_force=1e200),
                                    dict(params=CartpoleParams(cart_mass=1e-300, pole_mass=1e-300), max_force=1e300)])
def test_extreme_cartpole_constants_truncate_on_both_faces(kwargs):
    env = gym.make("DiffCartpole-v0", **kwargs)
    observation, _ = env.reset(seed=0)
    ends = []
    for _ in range(100):
        observation, reward, terminated, truncated, info = env.step(np.ones(1, np.float32))
        assert np.isfinite(observation).all() and math.isfinite(reward)
        if terminated or truncated:
            ends.append((terminated, truncated, info.get("nonfinite_state", False)))
            break
    batch = vector("DiffCartpole-v0", 1, **kwargs)
    batch.reset(seed=0)
    for _ in range(100):
        observations, rewards, terminated, truncated, info = batch.step(np.ones((1, 1), np.float32))
        assert np.isfinite(observations).all() and np.isfinite(rewards).all()
        if terminated[0] or truncated[0]:
            ends.append((bool(terminated[0]), bool(truncated[0]), bool(info.get("nonfinite_state", [False])[0])))
            break
    assert ends[0] == ends[1] == (False, True, True)


def test_scalar_namespace_gives_torch_values_instead_of_raising():
    assert math.isnan(SCALAR.sin(math.inf)) and math.isnan(SCALAR.cos(-math.inf)) and math.isnan(SCALAR.sqrt(-1.0))
    assert SCALAR.exp(1e4) == math.inf and SCALAR.ceil(math.inf) == math.inf and math.isnan(SCALAR.ceil(math.nan))
    assert math.isnan(wrap_angle(math.nan, SCALAR)) and wrap_angle(3 * math.pi / 2, SCALAR) == pytest.approx(-math.pi / 2)
    for v in (-2.5, 0.3, 1e10):
        assert float(torch.sin(torch.tensor(v, dtype=torch.float64))) == pytest.approx(SCALAR.sin(v))


# ---- 11 and 21: actions are clipped to the box, then projected onto the ball ---------------
@pytest.mark.parametrize("action", [[1e200] * 4, [101.0, 1.0, 1.0, 1.0], [3.0, 2.0, 1.0, 1.0]])
def test_linear_sysid_out_of_box_action_acts_as_the_clipped_one(action):
    env = gym.make(SYSID, noise_std=0.0)
    env.reset(seed=0)
    env.step(np.asarray(action))
    np.testing.assert_allclose(env.unwrapped.state, [0.5] * 4)  # [1, 1, 1, 1] / |[1, 1, 1, 1]|, gamma = 1


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("scale", [1e20, 1e38])
def test_linear_sysid_huge_actions_on_the_vector_face(dtype, scale):
    env = vector(SYSID, 2, noise_std=0.0, dtype=dtype, gamma=2.0)
    env.reset(seed=0)
    env.step(np.array([[scale] * 4, [-scale, 0.0, 0.0, 0.0]], np.float32))
    np.testing.assert_allclose(env.state, [[1.0] * 4, [-2.0, 0.0, 0.0, 0.0]], rtol=1e-6)


def test_linear_sysid_control_inside_the_ball_is_unchanged():
    problem = LinearSysID(gamma=2.0)
    control = np.array([0.3, -1.2, 0.5, 0.9])
    action = problem.action_from_control(control)
    np.testing.assert_allclose(problem.control_from_action(tuple(action), SCALAR), control)


# ---- 12: constants that the first observation cannot hold are refused at construction -----
@pytest.mark.parametrize("field, value", [("prior_mean", 1e39), ("prior_mean", -1e39), ("prior_variance", 1e39),
                                          ("prior_mean", math.nan), ("theta_true", math.inf), ("noise_std", 0.0)])
def test_decay_design_refuses_constants_at_construction(field, value):
    with pytest.raises(ValueError, match=f"params.{field}"):
        gym.make("DiffDecayDesign-v0", params=DecayDesignParams(**{field: value}))


def test_reset_blames_the_constants_not_an_options_state_that_was_not_passed():
    env = gym.make("DiffDecayDesign-v0")
    object.__setattr__(env.unwrapped.problem, "params", DecayDesignParams(prior_mean=1e39))  # past the checks
    with pytest.raises(ValueError, match="constructor's constants") as caught:
        env.reset(seed=0)
    assert "options" not in str(caught.value)
    with pytest.raises(ValueError, match=r'options\["state"\]'):
        env.reset(seed=0, options={"state": [1e39, 1.0]})


def test_cartpole_refuses_an_initial_noise_beyond_float32():
    with pytest.raises(ValueError, match="initial_noise"):
        Cartpole(initial_noise=1e39)


# ---- 20: numpy scalars are numbers, bools are not -----------------------------------------
@pytest.mark.parametrize("problem_type, kwargs", [
    (Cartpole, dict(max_force=np.float32(10.0), dt=np.float64(0.05), max_steps=np.int64(10),
                    params=CartpoleParams(pole_mass=np.float32(0.5)), initial_noise=np.float16(0.01))),
    (Zermelo, dict(dt=np.float32(0.05), max_steps=np.int32(20), params=ZermeloParams(wind_max=np.float64(3.0)))),
    (Isochronism, dict(max_steps=np.uint16(100), max_force=np.float32(5.0), params=IsochronismParams(np.float32(3.0)))),
    (LinearSysID, dict(d=np.int64(2), max_steps=np.int64(5), gamma=np.float32(2.0), noise_std=np.float64(0.0))),
    (DecayDesign, dict(max_steps=np.int8(3), t_max=np.float32(4.0), params=DecayDesignParams(prior_mean=np.float32(1.5)))),
])
def test_numpy_scalar_constants_are_accepted_as_python_numbers(problem_type, kwargs):
    problem = problem_type(**kwargs)
    for name, value in kwargs.items():
        stored = getattr(problem, name)
        if name == "params":
            for field, given in vars(value).items():
                assert type(getattr(stored, field)) in (int, float) and getattr(stored, field) == pytest.approx(given)
        else:
            assert type(stored) in (int, float) and stored == pytest.approx(value)
    env = problem_type.env_id
    single = gym.make(env, **kwargs)
    single.reset(seed=0)
    observation, reward, *_ = single.step(single.action_space.sample())
    assert np.isfinite(observation).all() and math.isfinite(reward)


@pytest.mark.parametrize("problem_type, name, kwargs", [
    (Cartpole, "max_force", dict(max_force=True)), (Cartpole, "dt", dict(dt=True)),
    (Cartpole, "params.pole_length", dict(params=CartpoleParams(pole_length=True))),
    (Cartpole, "initial_angle", dict(initial_angle=np.bool_(True))),
    (Zermelo, "max_steps", dict(max_steps=True)), (Isochronism, "params.period", dict(params=IsochronismParams(True))),
    (LinearSysID, "d", dict(d=True)), (LinearSysID, "gamma", dict(gamma=True)), (LinearSysID, "noise_std", dict(noise_std=False)),
    (DecayDesign, "t_max", dict(t_max=True)), (DecayDesign, "params.prior_mean", dict(params=DecayDesignParams(prior_mean=True))),
])
def test_bools_are_not_numbers(problem_type, name, kwargs):
    with pytest.raises(ValueError, match=name.replace(".", r"\.")):
        problem_type(**kwargs)


@pytest.mark.parametrize("problem_type", [Cartpole, Zermelo, Isochronism, DecayDesign])
def test_params_of_the_wrong_type_are_refused(problem_type):
    with pytest.raises(TypeError, match="params must be a"):  # a mapping of its fields is taken
        problem_type(params=[9.8])


# ---- 22: the spec reports each environment's own episode length ----------------------------
@pytest.mark.parametrize("env_id", diffenvs.ENV_IDS)
@pytest.mark.parametrize("max_steps", [None, 7])
def test_time_aware_observation_counts_the_episode(env_id, max_steps):
    kwargs = {} if max_steps is None else {"max_steps": max_steps}
    env = gym.make(env_id, **kwargs)
    length = env.unwrapped.problem.max_steps
    # no length is claimed that the episode does not have (the spec says None: no TimeLimit is applied)
    assert env.spec.max_episode_steps in (None, length) and env.unwrapped.spec.max_episode_steps in (None, length)
    wrapper = env
    while wrapper is not env.unwrapped:  # no TimeLimit of another length: the environment ends its own episodes
        assert not isinstance(wrapper, TimeLimit)
        wrapper = wrapper.env
    # TimeAwareObservation reads the length from a TimeLimit: one of the episode's own length changes nothing
    timed = TimeAwareObservation(gym.make(env_id, max_episode_steps=length, **kwargs), normalize_time=True)
    observation, _ = timed.reset(seed=0)
    assert observation[-1] == 0.0
    steps, terminated, truncated = 0, False, False
    while not (terminated or truncated) and steps < 30:
        observation, _, terminated, truncated, _ = timed.step(timed.action_space.sample())
        steps += 1
    if max_steps is not None:
        assert terminated or truncated
        assert observation[-1] == pytest.approx(steps / length)


def test_an_explicit_time_limit_is_the_one_reported():
    env = gym.make("DiffCartpole-v0", max_episode_steps=5)
    assert env.spec.max_episode_steps == 5
    env.reset(seed=0)
    _, terminated, truncated, _ = play(env, [[0.0]] * 10)
    assert truncated and not terminated


@pytest.mark.parametrize("env_id", diffenvs.ENV_IDS)
def test_checkers_pass_on_every_id(env_id):
    from gymnasium.utils.env_checker import check_env
    from stable_baselines3.common.env_checker import check_env as sb3_check_env

    check_env(gym.make(env_id, max_steps=6).unwrapped)
    sb3_check_env(gym.make(env_id, max_steps=6), warn=True)
