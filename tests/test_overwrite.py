"""scripts/train.py --overwrite loses nothing: the whole command is checked before the folder is touched, the old run
is replaced only once the new one has written its files, only files a run wrote are removed, and a refused or failed
command leaves nothing that refuses the corrected one."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import multiprocessing
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import pytest

from agents import neural_ode
from agents.training import RUN_FILE, STAGING_DIR

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("train_script_overwrite", ROOT / "scripts" / "train.py")
train_script = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = train_script
_SPEC.loader.exec_module(train_script)

#: an analytic agent's run: no training, a second or two
ANALYTIC_ARGV = ["DiffIsochronism-v0", "--agent", "harmonic", "--env-kwargs", '{"max_steps": 50}', "--episodes", "2"]
#: a tiny neural-ODE run on the same environment
TINY_ARGV = ["DiffIsochronism-v0", "--env-kwargs", '{"max_steps": 50}', "--iterations", "2", "--lbfgs-steps", "0",
             "--batch-size", "2", "--width", "4", "--depth", "1", "--episodes", "2", "--quiet", "--compile", "off"]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (its lock and temporary files aside) by relative path, with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != ".lock" and not p.name.endswith(".partial")}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a finished neural-ODE run (results, checkpoint, three plots) and a file of the user's."""
    out = tmp_path_factory.mktemp("trained") / "run"
    train_script.main([*TINY_ARGV, "--out", str(out)])
    (out / "notes.txt").write_text("mine\n")
    return out


@pytest.fixture
def finished(trained: Path, tmp_path: Path) -> Path:
    """A copy of :func:`trained` for one test."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


@pytest.mark.parametrize("argv, refusal", [
    (["DiffIsochronism-v0", "--agent", "lqr"], "'lqr' is the analytic answer of DiffCartpole-v0"),
    ([*TINY_ARGV, "--steps", "51"], "--steps must be at most the horizon of DiffIsochronism-v0, 50 steps"),
    ([*ANALYTIC_ARGV, "--episodes", "0"], "--episodes must be at least 1"),
    ([*TINY_ARGV, "--episodes", "0"], "--episodes must be at least 1"),
    ([*ANALYTIC_ARGV, "--env-kwargs", '{"max_steps": -1}'], "max_steps"),
], ids=["agent-of-another-env", "steps-beyond-horizon", "episodes-0-analytic", "episodes-0-neural", "bad-env-kwargs"])
def test_an_overwrite_refused_leaves_the_old_run_whole(finished: Path, argv: list[str], refusal: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(finished)
    monkeypatch.setattr(neural_ode, "train", lambda *a, **k: pytest.fail("trained before the command was checked"))
    with pytest.raises(ValueError, match=refusal):
        train_script.main([*argv, "--out", str(finished), "--overwrite"])
    assert snapshot(finished) == before


def test_an_overwrite_that_fails_while_running_leaves_the_old_run_whole(finished: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(finished)

    def fails(folder, **kwargs):
        (Path(folder) / "trajectory.png").write_bytes(b"half a plot")
        raise RuntimeError("the evaluation failed")

    monkeypatch.setattr(train_script, "finish_run", fails)
    with pytest.raises(RuntimeError, match="the evaluation failed"):
        train_script.main([*ANALYTIC_ARGV, "--out", str(finished), "--overwrite"])
    assert snapshot(finished) == before and not (finished / STAGING_DIR).exists()


def test_an_overwrite_removes_only_files_the_old_run_wrote(finished: Path) -> None:
    results = json.loads((finished / "results.json").read_text())
    results["plots"] = [*results["plots"], "notes.txt", "../outside.txt"]  # names the run never wrote
    results["files"]["notes.txt"] = hashlib.sha256((finished / "notes.txt").read_bytes()).hexdigest()
    (finished / "results.json").write_text(json.dumps(results))
    (finished.parent / "outside.txt").write_text("mine too\n")
    new = train_script.main([*ANALYTIC_ARGV, "--out", str(finished), "--overwrite"])
    assert new["agent"] == "harmonic"
    assert sorted(new["files"]) == sorted([RUN_FILE, "trajectory.png", "control.png", "results.json"])
    assert (finished / "notes.txt").read_text() == "mine\n" and (finished.parent / "outside.txt").exists()
    # the old run's checkpoint and loss plot are gone: the new run wrote neither
    assert sorted(p.name for p in finished.iterdir()) == ["control.png", "notes.txt", "results.json", RUN_FILE,
                                                          "trajectory.png"]
    assert json.loads((finished / RUN_FILE).read_text())["agent"] == "harmonic"


def test_a_file_of_a_run_s_name_that_the_run_did_not_write_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_script.main([*ANALYTIC_ARGV, "--out", str(out)])  # an analytic run draws no loss plot
    (out / "loss.png").write_bytes(b"the user's own plot")
    results = json.loads((out / "results.json").read_text())
    results["plots"].append("loss.png")
    results["files"]["loss.png"] = "0" * 64  # listed, but not these bytes: the run did not write them
    (out / "results.json").write_text(json.dumps(results))
    train_script.main([*ANALYTIC_ARGV, "--out", str(out), "--overwrite"])
    assert (out / "loss.png").read_bytes() == b"the user's own plot"


def test_an_overwrite_killed_before_it_finishes_leaves_the_old_run(finished: Path) -> None:
    before = snapshot(finished)
    argv = [*TINY_ARGV, "--iterations", "400", "--checkpoint-every", "1", "--out", str(finished), "--overwrite"]
    process = multiprocessing.get_context("fork").Process(target=train_script.main, args=(argv,))
    process.start()
    deadline = time.monotonic() + 60
    while not (finished / STAGING_DIR / "checkpoint.pt").exists() and time.monotonic() < deadline \
            and process.exitcode is None:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.join()
    assert process.exitcode == -signal.SIGKILL  # killed while training, its new checkpoint written
    assert snapshot(finished) == {**before, **{k: v for k, v in snapshot(finished).items() if k.startswith(STAGING_DIR)}}
    # the next command into the folder finds the old run, and the killed run's files gone
    with pytest.warns(UserWarning, match="no longer running"):
        again = train_script.main([*TINY_ARGV, "--out", str(finished), "--resume"])
    assert again["iterations"] == 2 and not (finished / STAGING_DIR).exists()
    assert sorted(snapshot(finished)) == sorted(before)


def test_a_refused_or_failed_command_leaves_nothing_that_refuses_the_corrected_one(tmp_path: Path,
                                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="analytic answer of DiffCartpole-v0"):
        train_script.main(["DiffIsochronism-v0", "--agent", "lqr", "--out", str(out)])
    assert not out.exists() or snapshot(out) == {}

    def fails(*args, **kwargs):
        raise RuntimeError("the loss is nan")

    with monkeypatch.context() as patch:
        patch.setattr(neural_ode, "train", fails)
        with pytest.raises(RuntimeError, match="the loss is nan"):
            train_script.main([*TINY_ARGV, "--out", str(out)])
    assert snapshot(out) == {}  # no run.json left saying a run is there
    assert train_script.main([*ANALYTIC_ARGV, "--out", str(out)])["agent"] == "harmonic"


def test_episodes_0_is_refused_before_training(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(neural_ode, "train", lambda *a, **k: pytest.fail("trained before --episodes was checked"))
    with pytest.raises(ValueError, match="--episodes must be at least 1"):
        train_script.main([*TINY_ARGV, "--episodes", "0", "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists() or snapshot(tmp_path / "run") == {}
