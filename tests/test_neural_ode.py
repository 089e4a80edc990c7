"""Neural-ODE control: tiny-budget training on every environment, gradients, resume, non-finite stops."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from agents import neural_ode
from agents.episodes import evaluate
from agents.neural_ode import NeuralOdeConfig, NonFiniteError, PolicyNetwork, initial_states, train
from diffenvs import RK4, Trajectory, problem_of, rollout
from diffenvs.core import rollout as rollout_module
from diffenvs.core.compiler import CACHE_VARIABLE, compile_counts
from diffenvs.core.loop import Step, loop
from diffenvs.core.numerics import TORCH, rk4_step

TINY = NeuralOdeConfig(iterations=4, learning_rate=0.02, final_learning_rate=0.01, checkpoint_every=2)
SHORT_CARTPOLE = {"max_steps": 10}  # 0.2 s


@pytest.mark.parametrize(
    ("env_id", "env_kwargs", "overrides"),
    [
        ("DiffZermelo-v0", {"max_steps": 120}, {"batch_size": 1, "iterations": 2}),  # straight across takes 2 s
        ("DiffCartpole-v0", SHORT_CARTPOLE, {"batch_size": 4}),
        ("DiffCartpole-v0", {**SHORT_CARTPOLE, "cost": "quadratic", "initial_angle": 0.1}, {"batch_size": 4}),
        ("DiffIsochronism-v0", {"max_steps": 20}, {"batch_size": 8, "starts": "fixed"}),
        ("DiffLinearSysID-v0", {"d": 2, "max_steps": 10}, {"batch_size": 4}),
    ],
)
def test_tiny_training_on_every_environment(env_id: str, env_kwargs: dict, overrides: dict) -> None:
    config = dataclasses.replace(TINY, **overrides)
    seen: list[tuple[int, dict]] = []
    result = train(env_id, config, env_kwargs, callback=lambda step, metrics, policy: seen.append((step, metrics)) or False,
                   progress=False)
    problem = result.problem
    assert [step for step, _ in seen] == list(range(config.iterations))
    losses = [h["loss"] for h in result.history]
    assert all(math.isfinite(v) for v in losses)
    assert result.transitions == config.iterations * config.batch_size * problem.max_steps
    assert [h["transitions"] for h in result.history] == [(k + 1) * config.batch_size * problem.max_steps
                                                          for k in range(config.iterations)]
    assert all(b["seconds"] > a["seconds"] for a, b in zip(result.history, result.history[1:]))
    # the trained network is a policy on the Gymnasium face
    costs = evaluate(env_id, result.gym_policy(), 1, env_kwargs)
    assert np.isfinite(costs).all()


def test_training_lowers_the_loss() -> None:
    # near upright with the quadratic cost: from the untrained network towards the LQR cost
    config = NeuralOdeConfig(iterations=15, learning_rate=0.05, final_learning_rate=0.05)
    kwargs = {"max_steps": 25, "cost": "quadratic", "initial_angle": 0.1, "initial_noise": 0.0}
    result = train("DiffCartpole-v0", config, kwargs, progress=False)
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < 0.7 * losses[0]


def test_output_layer_respects_the_control_bounds() -> None:
    for env_id, kwargs in (("DiffZermelo-v0", {}), ("DiffCartpole-v0", {"max_force": 7.0}), ("DiffLinearSysID-v0", {"d": 3})):
        problem = problem_of(env_id, **kwargs)
        network = PolicyNetwork(problem, init_scale=50.0).double()  # saturate the output
        observations = 100.0 * torch.randn(256, len(problem.observation_names), dtype=torch.float64)
        controls = network(observations)
        low, high = torch.tensor(problem.control_low), torch.tensor(problem.control_high)
        assert bool(((controls >= low) & (controls <= high)).all())
        assert controls.shape == (256, problem.control_dim)
        if env_id == "DiffLinearSysID-v0":  # the ball |u| <= gamma, through the problem's own map
            assert controls.norm(dim=-1).max().item() <= problem.gamma + 1e-12
    # Zermelo: the heading is sigmoid-affine onto [0, pi]
    zermelo = problem_of("DiffZermelo-v0")
    network = PolicyNetwork(zermelo).double()
    obs = torch.randn(5, len(zermelo.observation_names), dtype=torch.float64)
    z = network.output(network.hidden(obs))
    torch.testing.assert_close(network(obs), math.pi * torch.sigmoid(2 * z))
    # the small initial output layer starts near the middle of the range
    assert (network(obs) - math.pi / 2).abs().max().item() < 0.3
    # a symmetric network is odd about the centre of the range
    odd = PolicyNetwork(zermelo, symmetric=True).double()
    torch.testing.assert_close(odd(-obs) - math.pi / 2, -(odd(obs) - math.pi / 2))
    assert odd(torch.zeros(1, obs.shape[1], dtype=torch.float64)).item() == pytest.approx(math.pi / 2)


@pytest.mark.parametrize("symmetric", [False, True])
def test_network_calls_its_layers_as_the_modules_do(symmetric: bool) -> None:
    # the forward pass calls the layers' functions directly (a rollout calls it every step): the modules' result
    for env_id, kwargs in (("DiffZermelo-v0", {}), ("DiffLinearSysID-v0", {"d": 3})):
        problem = problem_of(env_id, **kwargs)
        network = PolicyNetwork(problem, symmetric=symmetric).double()
        obs = torch.randn(7, len(problem.observation_names), dtype=torch.float64, generator=torch.Generator().manual_seed(0))
        z = network.output(network.hidden(obs))
        if symmetric:
            z = 0.5 * (z - network.output(network.hidden(-obs)))
        modules = torch.stack(problem.control_from_action(torch.tanh(z).unbind(-1), TORCH), -1)
        assert torch.equal(network(obs), modules)


def test_default_config_uses_one_trajectory_where_all_would_be_the_same() -> None:
    assert neural_ode.default_config("DiffCartpole-v0", {"initial_noise": 0.0}).batch_size == 1
    assert neural_ode.default_config("DiffCartpole-v0").batch_size > 1
    assert neural_ode.default_config("DiffZermelo-v0").batch_size == 1
    assert neural_ode.default_config("DiffLinearSysID-v0").batch_size > 1  # x0 = 0 but noisy steps
    assert neural_ode.default_config("DiffCartpole-v0", {"cost": "quadratic"}) != neural_ode.default_config("DiffCartpole-v0")


def test_gradient_of_the_training_loss_passes_gradcheck() -> None:
    problem = problem_of("DiffCartpole-v0", max_steps=5, cost="quadratic", initial_angle=0.1)
    network = PolicyNetwork(problem).double()
    x0 = initial_states(problem, 3, torch.Generator().manual_seed(0))

    def loss(bias: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        def policy(obs: torch.Tensor) -> torch.Tensor:
            action = torch.tanh(torch.nn.functional.linear(network.hidden(obs), weight, bias))
            return torch.stack(problem.control_from_action(action.unbind(-1), TORCH), -1)

        return rollout(problem, policy, x0).costs.mean()

    bias = torch.tensor([0.3], dtype=torch.float64, requires_grad=True)
    weight = (0.1 * torch.randn(1, 16, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(loss, (bias, weight))


def _graph_nodes(*outputs: torch.Tensor) -> int:
    """The autograd nodes reachable from ``outputs``."""
    seen: dict[int, object] = {}  # the nodes kept alive, so that no id is reused
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen[id(node)] = node
            stack += [n for n, _ in node.next_functions if n is not None]
    return len(seen)


@pytest.mark.parametrize(("batch", "control", "steps"), [(1, "sampled", 300), (6, "sampled", 120), (6, "feedback", 40)])
def test_zermelo_crossing_located_once_is_the_crossing_located_every_step(monkeypatch, batch: int, control: str,
                                                                           steps: int) -> None:
    # the training rollout locates the crossing only in the step that crosses; locating it in every step (the Step
    # of every other problem) gives the same trajectory and the same gradients to the last bit, from far more nodes
    problem = rollout_module.time_limited(problem_of("DiffZermelo-v0"), steps)
    network = PolicyNetwork(problem).double()
    generator = torch.Generator().manual_seed(1)
    x0 = torch.stack([torch.rand(batch, generator=generator, dtype=torch.float64) * 2 - 1,
                      torch.rand(batch, generator=generator, dtype=torch.float64) * 1.9], -1)
    x0[0] = 0.0  # the training start; the others cross at different steps, some at the time limit (40 steps)

    def run() -> tuple[Trajectory, list[torch.Tensor], int]:
        network.zero_grad()
        trajectory = rollout(problem, network, x0, steps=steps, control=control)
        nodes = _graph_nodes(trajectory.costs.mean())
        trajectory.costs.mean().backward()
        return trajectory, [p.grad.clone() for p in network.parameters()], nodes

    located, located_gradient, located_nodes = run()
    assert isinstance(rollout_module.located(Step(problem, problem.params, control, rk4_step, batch, x0), x0.unbind(-1)),
                      rollout_module.LocatedStep)
    monkeypatch.setattr(rollout_module, "located", lambda step, x: step)
    every, every_gradient, every_nodes = run()
    for name in ("states", "controls", "rewards", "done", "times"):
        assert torch.equal(getattr(located, name), getattr(every, name)), name
    assert all(torch.equal(a, b) for a, b in zip(located_gradient, every_gradient))
    crossed = located.states[-1, :, 1] > problem.params.river_width - 1e-9
    assert crossed.any() and crossed.all() == (steps > 100)  # in 40 steps some meet the time limit first
    assert located_nodes < every_nodes / 2.5, (located_nodes, every_nodes)  # the least: 2.9x, at batch 6, 120 steps, sampled


def test_tuned_zermelo_training_rollout_runs_eagerly_with_its_crossing_located_once(monkeypatch, tmp_path) -> None:
    # compile='auto' below COMPILE_FROM reuses compiled code where cached; with an event to locate, the rollout stays on
    # the eager loop that locates it once (the chunks' eager fall-back would locate it in every step) and compiles nothing
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "cache"))
    config = neural_ode.default_config("DiffZermelo-v0")
    solver = config.solver_object(config.steps)
    assert isinstance(solver, RK4) and solver.reuse_compiled and not solver.compile
    problem = rollout_module.time_limited(problem_of("DiffZermelo-v0"), config.steps)
    bodies: list[Step] = []
    monkeypatch.setattr(rollout_module, "loop", lambda body, *args: bodies.append(body) or loop(body, *args))
    before = compile_counts()
    network = PolicyNetwork(problem).double()
    trajectory = rollout(problem, network, torch.zeros(1, 2, dtype=torch.float64), steps=config.steps, solver=solver)
    assert compile_counts() == before
    assert [type(body) for body in bodies] == [rollout_module.LocatedStep]
    assert torch.equal(trajectory.costs, rollout(problem, network, torch.zeros(1, 2, dtype=torch.float64),
                                                 steps=config.steps).costs)


def test_adjoint_gives_the_direct_gradient() -> None:
    base = dataclasses.replace(TINY, iterations=2, batch_size=2, solver="dopri5", rtol=1e-9, atol=1e-11)
    kwargs = {**SHORT_CARTPOLE, "cost": "quadratic", "initial_angle": 0.1}
    direct = train("DiffCartpole-v0", base, kwargs, progress=False)
    adjoint = train("DiffCartpole-v0", dataclasses.replace(base, adjoint=True), kwargs, progress=False)
    for a, b in zip(direct.history, adjoint.history):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-7)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-5)
    # the fixed-step adjoint and continuous feedback run too
    fixed = train("DiffCartpole-v0", dataclasses.replace(TINY, iterations=2, adjoint=True, control="feedback"), kwargs,
                  progress=False)
    assert all(math.isfinite(h["loss"]) for h in fixed.history)


def test_initial_states_follow_the_problem() -> None:
    generator = torch.Generator().manual_seed(1)
    cartpole = problem_of("DiffCartpole-v0", initial_noise=0.05)
    x0 = initial_states(cartpole, 500, generator)
    assert x0.shape == (500, 4)
    assert (x0 - torch.tensor([0.0, 0.0, math.pi, 0.0], dtype=torch.float64)).abs().max().item() <= 0.05
    assert (x0[:, 2] - math.pi).std().item() == pytest.approx(0.1 / math.sqrt(12), rel=0.15)
    zermelo = initial_states(problem_of("DiffZermelo-v0"), 3, generator)
    assert torch.equal(zermelo, torch.zeros(3, 2, dtype=torch.float64))
    isochronism = initial_states(problem_of("DiffIsochronism-v0"), 4000, generator)
    assert isochronism.mean(0).abs().max().item() < 0.06 and isochronism.std(0).sub(1).abs().max().item() < 0.06


def test_resume_gives_the_uninterrupted_result(tmp_path) -> None:
    config = dataclasses.replace(TINY, iterations=6, batch_size=3, checkpoint_every=1)
    kwargs = {**SHORT_CARTPOLE, "initial_noise": 0.2}  # drawn starts: the RNG state matters
    straight = train("DiffCartpole-v0", config, kwargs, progress=False)
    path = tmp_path / "checkpoint.pt"
    first = train("DiffCartpole-v0", config, kwargs, callback=lambda step, metrics, policy: step == 2, checkpoint=path,
                  progress=False)
    assert first.stopped and len(first.history) == 3
    resumed = train("DiffCartpole-v0", config, kwargs, checkpoint=path, resume=True, progress=False)
    assert len(resumed.history) == 6
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history]
    for name, value in straight.policy.state_dict().items():
        assert torch.equal(value, resumed.policy.state_dict()[name]), name
    # the saved run loads back as it ended
    loaded = neural_ode.load_policy(path)
    obs = torch.randn(4, 6, dtype=torch.float64)
    assert torch.equal(loaded.policy(obs), straight.policy(obs))
    # a checkpoint of another run is refused
    with pytest.raises(ValueError, match="another run"):
        train("DiffCartpole-v0", dataclasses.replace(config, seed=1), kwargs, checkpoint=path, resume=True, progress=False)


def test_a_nonfinite_loss_stops_training_with_a_message(tmp_path, monkeypatch) -> None:
    def diverged(*args, **kwargs) -> Trajectory:  # what a blown-up rollout returns
        trajectory = rollout(*args, **kwargs)
        trajectory.rewards = trajectory.rewards * math.nan
        return trajectory

    monkeypatch.setattr(neural_ode.training, "rollout", diverged)
    path = tmp_path / "checkpoint.pt"
    with pytest.raises(NonFiniteError, match=r"iteration 0: the loss is nan \(non-finite\)"):
        train("DiffCartpole-v0", TINY, SHORT_CARTPOLE, checkpoint=path, progress=False)
    assert not path.exists()  # nothing was saved from a non-finite model


def test_a_nonfinite_gradient_stops_training_with_a_message(monkeypatch) -> None:
    def poisoned(*args, **kwargs) -> Trajectory:  # finite loss, infinite slope: 0 * d sqrt(0) = nan
        trajectory = rollout(*args, **kwargs)
        trajectory.rewards = trajectory.rewards + 0.0 * torch.sqrt(0.0 * trajectory.controls.sum())
        return trajectory

    monkeypatch.setattr(neural_ode.training, "rollout", poisoned)
    seen: list[dict] = []
    with pytest.raises(NonFiniteError, match="the gradient norm is nan"):
        train("DiffCartpole-v0", TINY, SHORT_CARTPOLE, callback=lambda step, metrics, policy: seen.append(metrics) or False,
              progress=False)
    assert seen == []  # no optimiser step was taken


def test_config_is_checked() -> None:
    with pytest.raises(ValueError, match="iterations"):
        NeuralOdeConfig(iterations=0)
    with pytest.raises(ValueError, match="control must be one of"):
        NeuralOdeConfig(control="continuous")
    with pytest.raises(ValueError, match="solver must be one of"):
        NeuralOdeConfig(solver="euler-maruyama")
    with pytest.raises(ValueError, match="clip_norm"):
        NeuralOdeConfig(clip_norm=-1.0)
    with pytest.raises(ValueError, match="beta2"):
        NeuralOdeConfig(beta2=1.0)
    with pytest.raises(ValueError, match="config.steps must be at most"):
        train("DiffCartpole-v0", dataclasses.replace(TINY, steps=11), SHORT_CARTPOLE, progress=False)
    with pytest.raises(ValueError, match="resume=True needs a checkpoint"):
        train("DiffCartpole-v0", TINY, SHORT_CARTPOLE, resume=True, progress=False)
    schedule = NeuralOdeConfig(iterations=11, learning_rate=0.1, final_learning_rate=0.001)
    assert schedule.learning_rate_at(0) == pytest.approx(0.1)
    assert schedule.learning_rate_at(5) == pytest.approx(0.01)
    assert schedule.learning_rate_at(10) == pytest.approx(0.001)


def test_callback_stops_early_and_objects_with_on_step_work() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.steps: list[int] = []

        def on_step(self, step: int, metrics: dict, policy: torch.nn.Module) -> bool:
            self.steps.append(step)
            return metrics["transitions"] >= 2 * 10

    recorder = Recorder()
    result = train("DiffCartpole-v0", TINY, SHORT_CARTPOLE, callback=recorder, progress=False)
    assert recorder.steps == [0, 1] and result.stopped and len(result.history) == 2


def test_lbfgs_finish_lowers_the_loss_counts_its_rollouts_and_resumes(tmp_path) -> None:
    config = dataclasses.replace(TINY, iterations=3, lbfgs_steps=3, checkpoint_every=1)
    kwargs = {"max_steps": 15, "cost": "quadratic", "initial_angle": 0.1, "initial_noise": 0.0}
    straight = train("DiffCartpole-v0", config, kwargs, progress=False)
    losses = [h["loss"] for h in straight.history]
    assert len(losses) == 6
    assert losses[-1] < 0.7 * losses[2]  # two quasi-Newton steps (the last entry is the third step's start)
    steps = [b["transitions"] - a["transitions"] for a, b in zip(straight.history, straight.history[1:])]
    rollout_steps = straight.problem.max_steps
    assert steps[:2] == [rollout_steps, rollout_steps]  # Adam: one rollout per iteration
    assert all(rollout_steps < s <= (neural_ode.LBFGS_EVALUATIONS + 1) * rollout_steps for s in steps[2:])  # L-BFGS: several
    path = tmp_path / "checkpoint.pt"
    train("DiffCartpole-v0", config, kwargs, callback=lambda step, metrics, policy: step == 3, checkpoint=path, progress=False)
    resumed = train("DiffCartpole-v0", config, kwargs, checkpoint=path, resume=True, progress=False)
    assert [h["loss"] for h in resumed.history] == losses
    for name, value in straight.policy.state_dict().items():
        assert torch.equal(value, resumed.policy.state_dict()[name]), name
    with pytest.raises(ValueError, match="lbfgs_steps"):
        NeuralOdeConfig(lbfgs_steps=-1)
