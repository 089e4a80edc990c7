"""The speed benchmark runs end to end (its numbers are not asserted: they belong to the README)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_envs  # noqa: E402


def test_quick_benchmark_writes_every_section(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(bench_envs, "gradient_cost", lambda batch, steps, repeats, solver: (1.0, 2.0))
    monkeypatch.setattr(bench_envs, "saved_bytes", lambda solver, horizon, batch: 2**20)
    out = tmp_path / "speed.md"
    report = bench_envs.main(["--quick", "--no-compile", "--out", str(out), "--threads", "1"])
    text = out.read_text()
    assert text.strip() == report.strip()
    for heading in ("Gymnasium face", "Vector face", "Gradient path", "Memory kept for backward"):
        assert heading in text
    for env_id in ("DiffCartpole-v0", "DiffZermelo-v0"):
        assert env_id in text


def test_saved_bytes_counts_what_backward_keeps() -> None:
    import diffenvs

    small = bench_envs.saved_bytes(diffenvs.RK4(), 5, 8)
    large = bench_envs.saved_bytes(diffenvs.RK4(), 10, 8)
    assert 0 < small < large  # twice the horizon keeps more for the backward pass
