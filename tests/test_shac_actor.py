"""SHAC's networks: the Gaussian actor's reparameterised gradient, the running normaliser's statistics, evaluation."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import diffenvs
from agents.shac import ShacConfig, _networks, train
from agents.shac_networks import Actor, Critic, RunningMeanStd
from diffenvs.envs.cartpole import Cartpole

PROBLEM = Cartpole(cost="quadratic")


def _actor(seed: int = 0, **kwargs) -> Actor:
    torch.manual_seed(seed)
    actor = Actor(PROBLEM, width=8, depth=2, dtype=torch.float64, **kwargs)
    if actor.normaliser is not None:  # statistics away from the prior, so normalisation matters to the gradient
        actor.normaliser.update(torch.randn(50, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 2 + 1)
    return actor


def _one_step_return(actor: Actor, x0: torch.Tensor, noise_seed: int) -> torch.Tensor:
    """The reward of one step from ``x0`` under the sampled actor, the noise drawn afresh from ``noise_seed``."""
    with actor.sampling(torch.Generator().manual_seed(noise_seed)):
        return diffenvs.rollout(PROBLEM, actor, x0, steps=1, check=False).rewards.sum()


def test_the_reparameterised_gradient_equals_finite_differences_on_one_step() -> None:
    """d/dθ of one step's reward through z = μ(o) + σ ε (ε fixed): autograd against central differences, float64.

    The log standard deviation's entry fails if the sample were drawn without the reparameterisation (its gradient would
    be zero); every entry fails if the noise or the normaliser were applied differently on the gradient path."""
    actor = _actor()
    x0 = torch.tensor([[0.1, -0.2, math.pi - 0.3, 0.5], [-0.3, 0.4, 2.5, -1.0], [0.0, 0.1, 0.2, 0.3]], dtype=torch.float64)
    loss = _one_step_return(actor, x0, noise_seed=7)
    parameters = dict(actor.named_parameters())
    grads = dict(zip(parameters, torch.autograd.grad(loss, list(parameters.values()))))
    assert grads["log_std"].abs().item() > 1e-6  # the noise's scale is on the gradient path
    step = 1e-6
    checked = 0
    for name in ("log_std", "output.weight", "output.bias", "hidden.0.weight", "hidden.2.weight", "hidden.3.weight"):
        flat = parameters[name].data.view(-1)
        for index in range(0, flat.numel(), max(1, flat.numel() // 4)):
            original = flat[index].item()
            with torch.no_grad():
                flat[index] = original + step
                up = _one_step_return(actor, x0, noise_seed=7).item()
                flat[index] = original - step
                down = _one_step_return(actor, x0, noise_seed=7).item()
                flat[index] = original
            expected = (up - down) / (2 * step)
            assert grads[name].view(-1)[index].item() == pytest.approx(expected, rel=1e-5, abs=1e-7), (name, index)
            checked += 1
    assert checked >= 15


def test_the_actor_samples_while_sampling_and_evaluates_its_mean() -> None:
    actor = _actor()
    obs = torch.randn(5, 6, dtype=torch.float64)
    mean = actor(obs)
    torch.testing.assert_close(actor(obs), mean)  # evaluation: the deterministic mean
    with actor.sampling(torch.Generator().manual_seed(0)):
        first = actor(obs)
    with actor.sampling(torch.Generator().manual_seed(0)):
        again = actor(obs)
    torch.testing.assert_close(first, again)  # the draws come from the given generator
    assert not torch.allclose(first, mean)
    z = actor.mean_pre_activation(obs)
    torch.testing.assert_close(mean, 50.0 * torch.tanh(z))  # the force's bounds: ±50 N
    with pytest.raises(ValueError, match="stochastic"):
        with _actor(stochastic=False).sampling(torch.Generator()):
            pass


def test_a_saved_actor_evaluates_with_its_normalisers_statistics() -> None:
    actor = _actor()
    state = actor.state_dict()
    assert {"normaliser.mean", "normaliser.var", "normaliser.count", "log_std"} <= set(state)
    fresh = _actor(seed=5)
    fresh.normaliser = RunningMeanStd(6, dtype=torch.float64)  # prior statistics: different actions
    obs = torch.randn(4, 6, dtype=torch.float64)
    assert not torch.allclose(fresh(obs), actor(obs))
    fresh.load_state_dict(state)
    torch.testing.assert_close(fresh(obs), actor(obs))


@settings(max_examples=25, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=6), seed=st.integers(0, 2**31 - 1))
def test_the_normaliser_holds_the_moments_of_every_batch_seen(sizes, seed) -> None:
    """Batch by batch, mean and population variance equal numpy's over the concatenation (no prior)."""
    rng = np.random.default_rng(seed)
    batches = [rng.normal(3.0, 2.0, (n, 3)) * rng.uniform(0.1, 10.0, 3) for n in sizes]
    normaliser = RunningMeanStd(3, prior_count=0.0, dtype=torch.float64)
    for batch in batches:
        normaliser.update(torch.as_tensor(batch))
    data = np.concatenate(batches)
    np.testing.assert_allclose(normaliser.mean.numpy(), data.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(normaliser.var.numpy(), data.var(0), rtol=1e-9, atol=1e-12)
    assert float(normaliser.count) == len(data)
    normalised = normaliser(torch.as_tensor(data)).numpy()
    np.testing.assert_allclose(normalised, (data - data.mean(0)) / np.sqrt(data.var(0) + 1e-5), rtol=1e-8, atol=1e-10)


def test_the_parallel_merge_of_two_normalisers_equals_one_over_both() -> None:
    """Merging a second normaliser's moments gives the statistics of both data sets; the prior (mean 0, variance 1,
    count 1e-4, the paper's) weighs in as a count of 1e-4 observations."""
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 3.0, (30, 2)), rng.normal(-2.0, 0.5, (7, 2))
    left, right = RunningMeanStd(2, 0.0, torch.float64), RunningMeanStd(2, 0.0, torch.float64)
    left.update(torch.as_tensor(a))
    right.update(torch.as_tensor(b))
    left.merge(right.mean, right.var, float(right.count))
    both = np.concatenate([a, b])
    np.testing.assert_allclose(left.mean.numpy(), both.mean(0), rtol=1e-12)
    np.testing.assert_allclose(left.var.numpy(), both.var(0), rtol=1e-12)
    prior = RunningMeanStd(2, dtype=torch.float64)
    prior.update(torch.as_tensor(a))
    weight = 30 / (30 + 1e-4)
    np.testing.assert_allclose(prior.mean.numpy(), weight * a.mean(0), rtol=1e-12)
    expected_var = (1e-4 * 1.0 + 30 * a.var(0) + a.mean(0) ** 2 * 1e-4 * 30 / (30 + 1e-4)) / (30 + 1e-4)
    np.testing.assert_allclose(prior.var.numpy(), expected_var, rtol=1e-12)


def test_training_merges_every_window_state_into_the_actors_statistics() -> None:
    """Two windows of 3 steps over 4 episodes: the window's start and its 3 states each, for every episode."""
    config = ShacConfig(iterations=2, num_envs=4, horizon=3, critic_iterations=1, width=8)
    result = train("DiffCartpole-v0", config, {"cost": "quadratic"}, progress=False)
    assert result.policy.normaliser is not None
    assert float(result.policy.normaliser.count) == pytest.approx(1e-4 + 2 * 4 * (3 + 1))
    assert result.history[-1]["log_std"] != pytest.approx(-1.0)  # the noise's scale learns without an entropy term


def test_the_paper_critic_and_learning_rate_schedule() -> None:
    """Orthogonal critic weights of gain sqrt(2), zero biases; both rates reach the paper's 1e-5 at the end."""
    critic = Critic(6, 64, 2, torch.float64)
    first = critic.net[0]
    assert isinstance(first, torch.nn.Linear)
    torch.testing.assert_close(first.weight.T @ first.weight, 2.0 * torch.eye(6, dtype=torch.float64))
    assert all(layer.bias.abs().max() == 0 for layer in critic.net if isinstance(layer, torch.nn.Linear))
    config = ShacConfig(iterations=10)
    nets = _networks(PROBLEM, config, torch.float64)
    nets.decay(config, 5)
    assert nets.actor_optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * (1e-2 + 1e-5))
    nets.decay(config, 10)
    for optimizer in (nets.actor_optimizer, nets.critic_optimizer):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-5)


def test_compiled_windows_need_an_actor_of_parameters_alone() -> None:
    with pytest.raises(ValueError, match="compile"):
        ShacConfig(compile="on")
    ShacConfig(compile="on", stochastic=False, normalise=False)
    with pytest.raises(TypeError, match="stochastic"):
        ShacConfig(stochastic=1)  # type: ignore[arg-type]  # a wrong type on purpose


def test_the_paper_check_script_writes_its_curves_and_table(tmp_path, monkeypatch) -> None:
    """scripts/shac_paper.py on a tiny budget: one window of SHAC, its curve point scored by the swing-up's gap."""
    import importlib.util
    import json
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("shac_paper", Path(__file__).resolve().parents[1] / "scripts" / "shac_paper.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "shac_paper", script)  # its dataclasses look their module up
    spec.loader.exec_module(script)
    import agents.shac

    trained_with: list[dict] = []
    original = agents.shac.train

    def recording_train(env_id, config=None, env_kwargs=None, **kwargs):  # type: ignore[no-untyped-def]
        trained_with.append(dict(env_kwargs or {}))
        return original(env_id, config, env_kwargs, **kwargs)

    monkeypatch.setattr(agents.shac, "train", recording_train)
    runs = script.main(["--agents", "shac", "--shac-transitions", "1600", "--eval-every", "1600", "--episodes", "1",
                        "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "shac_paper.json").read_text())
    assert saved["runs"][0]["agent"] == "shac" and len(runs[0]["curve"]) == 1
    point = runs[0]["curve"][0]
    assert point["gap"] == pytest.approx(point["cost"] / saved["zero_force_cost"])
    table = (tmp_path / "shac_paper.md").read_text()
    assert point["transitions"] == 64 * 32 and "| shac | 0 |" in table
    touched = point["gap"] <= 0.10  # one seed, one point: the summary's counts and censored medians follow from it
    assert f"| shac | 10% | 1 | {int(touched)} | 2,048 | {int(touched)} | 2,048 |" in table
    # the paper's dense reward, whatever the card gives the benchmark's critic learners
    assert trained_with == [{"cost": "quadratic"}] and saved["runs"][0]["trained_on"] == script.DENSE.label
    with pytest.raises(ValueError, match="agents"):
        script.PaperCheckConfig(agents=("sac",))
