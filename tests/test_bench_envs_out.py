"""scripts/bench_envs.py checks where its report goes before it measures anything."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_envs.py"
_SPEC = importlib.util.spec_from_file_location("bench_envs_out", SCRIPT)
bench_envs = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = bench_envs
_SPEC.loader.exec_module(bench_envs)


@pytest.mark.parametrize("where, why", [("folder", "a folder"), ("under-a-file", "is a file"),
                                        ("read-only", "can write")])
def test_a_report_file_that_cannot_be_written_is_refused_before_the_benchmark(tmp_path: Path, where: str, why: str,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_envs, "_run", lambda args: pytest.fail("measured before --out was checked"))
    if where == "folder":
        out = tmp_path
    elif where == "under-a-file":
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "speed.md"
    else:
        if os.geteuid() == 0:
            pytest.skip("root writes anywhere")
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        out = locked / "speed.md"
    with pytest.raises(ValueError, match=rf"--out must name a file .*{why}"):
        bench_envs.main(["--quick", "--out", str(out)])


def test_a_writable_report_file_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bench_envs, "_run", lambda args: "measured")
    assert bench_envs.main(["--quick", "--out", str(tmp_path / "new" / "speed.md")]) == "measured"
    assert not (tmp_path / "new").exists()  # nothing is created by the check
