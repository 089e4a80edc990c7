"""The speed benchmark runs end to end (its numbers are not asserted: they belong to the README)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_envs  # noqa: E402


def test_quick_benchmark_writes_every_section(tmp_path: Path, monkeypatch) -> None:
    rows = {"diffenvs eager": (1.0, 2.0, None), "JAX lax.scan + jit": (0.5, 1.0, 0.3)}
    monkeypatch.setattr(bench_envs, "gradient_rows", lambda batch, steps, repeats, compile, device: rows)
    monkeypatch.setattr(bench_envs, "saved_bytes", lambda solver, horizon, batch: 2**20)
    out = tmp_path / "speed.md"
    report = bench_envs.main(["--quick", "--no-compile", "--out", str(out), "--threads", "1"])
    text = out.read_text()
    assert text.strip() == report.strip()
    for heading in ("Gymnasium face", "Vector face", "Gradient path", "Memory kept for backward"):
        assert heading in text
    for env_id in ("DiffCartpole-v0", "DiffZermelo-v0"):
        assert env_id in text


def test_a_device_torch_cannot_use_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="device must name a torch device"):
        bench_envs.SpeedConfig(device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="device 'cuda' is not available here"):
            bench_envs.SpeedConfig(device="cuda")


_NO_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=_NO_CUDA)])
def test_gradient_rows_on_the_named_device(device: str) -> None:
    """The gradient rows run where ``device`` says: the CPU, and a GPU where torch sees one."""
    rows = bench_envs.gradient_rows(4, 3, 1, False, device)
    forward, both, _ = rows["diffenvs eager"]
    assert 0 < forward and 0 < both


def test_saved_bytes_counts_what_backward_keeps() -> None:
    import diffenvs

    small = bench_envs.saved_bytes(diffenvs.RK4(), 5, 8)
    large = bench_envs.saved_bytes(diffenvs.RK4(), 10, 8)
    assert 0 < small < large  # twice the horizon keeps more for the backward pass


def test_the_jax_twin_is_the_same_rollout() -> None:
    """The JAX rollout of the speed table has diffenvs' loss and gradient (same problem, policy and start)."""
    import numpy as np
    import pytest
    import torch

    import diffenvs
    from diffenvs.envs.cartpole import Cartpole

    jax = pytest.importorskip("jax")
    import jax_cartpole

    problem = Cartpole(max_steps=20)
    torch.manual_seed(0)
    policy = bench_envs.TanhPolicy(problem)
    x0 = torch.zeros(4, 4)
    x0[:, 2] = torch.pi - torch.arange(4) * 0.1
    loss = diffenvs.rollout(problem, policy, x0).costs.mean()
    loss.backward()
    weights = jax_cartpole.weights_of(policy)
    value, grads = jax.value_and_grad(jax_cartpole.loss_function(20))(weights, jax.numpy.asarray(x0.numpy()))
    assert abs(float(value) - loss.item()) <= 1e-4 * abs(loss.item())
    first = policy.net[0].weight.grad.numpy()
    np.testing.assert_allclose(np.asarray(grads[0][0]).T, first, rtol=2e-3, atol=1e-4 * np.abs(first).max())
