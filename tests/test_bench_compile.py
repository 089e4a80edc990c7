"""The compile benchmark runs end to end on a tiny rollout (its seconds are not asserted: they belong to the README)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import bench_compile  # noqa: E402


def test_tiny_compile_benchmark_shows_the_second_process_compiles_nothing(tmp_path: Path) -> None:
    out = tmp_path / "compile.md"
    report = bench_compile.main(["--chunks", "2", "--steps", "2", "--batch", "2", "--repeats", "1", "--out", str(out)])
    assert out.read_text().strip() == report.strip()
    (row,) = [line for line in report.splitlines() if line.startswith("| 2 |")]
    assert row.endswith("| 2 / 0 | 0 / 2 |")  # the first compiles forward and VJP, the second loads both
