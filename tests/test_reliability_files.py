"""The files of a run: weights-only checksummed checkpoints, atomic writes, the output folder's lock and claim,
and a training run killed at random moments."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import multiprocessing
import os
import pickle
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from agents import neural_ode
from agents.files import (
    CheckpointError,
    FolderLockedError,
    atomic_write,
    folder_lock,
    load_checkpoint,
    save_checkpoint,
    write_json,
)
from agents.neural_ode import NeuralOdeConfig, train
from agents.training import RUN_FILE, run_identity

ROOT = Path(__file__).resolve().parents[1]
_SPEC = importlib.util.spec_from_file_location("train_script_files", ROOT / "scripts" / "train.py")
train_script = importlib.util.module_from_spec(_SPEC)
sys.modules[_SPEC.name] = train_script
_SPEC.loader.exec_module(train_script)

TINY = NeuralOdeConfig(iterations=3, batch_size=2, width=4, depth=1, checkpoint_every=1)
KWARGS = {"max_steps": 10}
#: a tiny neural-ODE run of scripts/train.py (its output folder is added by each test)
TINY_ARGV = ["DiffCartpole-v0", "--env-kwargs", json.dumps(KWARGS), "--iterations", "3", "--lbfgs-steps", "0",
             "--batch-size", "2", "--width", "4", "--depth", "1", "--episodes", "2", "--quiet"]
#: an analytic agent's run: no training, a few seconds
ANALYTIC_ARGV = ["DiffIsochronism-v0", "--agent", "harmonic", "--env-kwargs", '{"max_steps": 50}', "--episodes", "2"]


class RunsCode:
    """An object whose unpickling runs a shell command."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple:
        return os.system, (self.command,)


def _checkpoint(tmp_path: Path) -> Path:
    path = tmp_path / "checkpoint.pt"
    train("DiffCartpole-v0", TINY, KWARGS, checkpoint=path, progress=False)
    return path


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# ---- 1: weights-only loads ------------------------------------------------------------------------

@pytest.mark.parametrize("wrapped", [False, True], ids=["raw-pickle", "checksummed"])
@pytest.mark.parametrize("loader", ["load_checkpoint", "load_policy", "train-resume", "script-resume"])
def test_a_checkpoint_that_would_run_code_is_refused_unrun(tmp_path: Path, wrapped: bool, loader: str) -> None:
    marker = tmp_path / "ran"
    out = tmp_path / "run"
    out.mkdir()
    path = out / "checkpoint.pt"
    arguments = train_script.parse_arguments([*TINY_ARGV, "--out", str(out)])
    write_json(out / RUN_FILE, run_identity("DiffCartpole-v0", "neural-ode", KWARGS, arguments.neural_ode))
    payload = {"policy": RunsCode(f"touch {marker}")}
    if wrapped:  # a whole file of this format, checksum right, whose state holds the object
        save_checkpoint(path, payload)
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"checkpoint .*checkpoint\.pt: .*other than tensors.*refused unread"):
        if loader == "load_checkpoint":
            load_checkpoint(path)
        elif loader == "load_policy":
            neural_ode.load_policy(path)
        elif loader == "train-resume":
            train("DiffCartpole-v0", TINY, KWARGS, checkpoint=path, resume=True, progress=False)
        else:
            train_script.main([*TINY_ARGV, "--out", str(out), "--resume"])
    assert not marker.exists()


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """Each call in ``tree`` with the dotted name it is made through (``torch.load``, ``fig.savefig``, ``open``)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            parts, target = [], node.func
            while isinstance(target, ast.Attribute):
                parts.append(target.attr)
                target = target.value
            if isinstance(target, ast.Name):
                parts.append(target.id)
            found.append((".".join(reversed(parts)), node))
    return found


SOURCES = sorted(p for folder in ("agents", "scripts", "diffenvs") for p in (ROOT / folder).rglob("*.py"))


def test_every_torch_load_is_weights_only_and_in_the_files_module() -> None:
    loads = [(path.relative_to(ROOT).as_posix(), call) for path in SOURCES
             for name, call in _calls(ast.parse(path.read_text())) if name.endswith("torch.load") or name == "load"]
    assert loads, "agents/files.py reads checkpoints with torch.load"
    for where, call in loads:
        assert where == "agents/files.py", f"{where}:{call.lineno} loads with torch.load: use agents.files.load_checkpoint"
        keywords = {k.arg: k.value for k in call.keywords}
        assert isinstance(keywords.get("weights_only"), ast.Constant) and keywords["weights_only"].value is True, where


# ---- 2: every output file is written atomically --------------------------------------------------------------

#: calls that write a file in place, by their full name or (methods: ``path.write_text``, not agents.files'
#: ``write_text``) their last part; only agents/files.py makes them (agents/plots.py draws its figures into a buffer)
_WRITERS = ("torch.save", "np.save", "np.savez", "np.savetxt", "numpy.save", "pickle.dump", "json.dump", "yaml.dump")
_WRITER_METHODS = ("write_text", "write_bytes", "savefig", "to_csv")


def _opens_for_writing(name: str, call: ast.Call) -> bool:
    """Whether ``call`` is ``open(path, mode)``, ``os.fdopen(fd, mode)`` or ``path.open(mode)`` with a writing mode."""
    if name in ("open", "io.open", "os.fdopen"):
        position = 1
    elif name.endswith(".open") and name != "Image.open":
        position = 0
    else:
        return False
    mode = call.args[position] if len(call.args) > position else next(
        (k.value for k in call.keywords if k.arg == "mode"), None)
    return mode is not None and not (isinstance(mode, ast.Constant) and not set(str(mode.value)) & set("wax+"))


def test_every_file_is_written_through_the_atomic_writer() -> None:
    writes = []
    for path in SOURCES:
        where = path.relative_to(ROOT).as_posix()
        if where == "agents/files.py":
            continue
        for name, call in _calls(ast.parse(path.read_text())):
            last = name.rsplit(".", 1)[-1]
            if where == "agents/plots.py" and last == "savefig":
                assert isinstance(call.args[0], ast.Name) and call.args[0].id == "buffer", f"{where}:{call.lineno}"
            elif name in _WRITERS or ("." in name and last in _WRITER_METHODS) or _opens_for_writing(name, call):
                writes.append(f"{where}:{call.lineno} {name}")
    assert writes == [], ("files written in place: use agents.files (atomic_write, write_text, write_json, "
                          "save_checkpoint) or agents.plots.save")


def test_concurrent_writers_of_one_file_leave_one_whole_version(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    versions = [{"writer": i, "values": list(range(2000))} for i in range(4)]

    def write(data: dict) -> None:
        for _ in range(10):
            write_json(path, data)

    threads = [threading.Thread(target=write, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert json.loads(path.read_text()) in versions
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # each temporary file had its own name


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"weights": torch.ones(3)})

    def fails(file) -> None:
        file.write(b"half a checkpoint")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fails, binary=True)
    assert torch.equal(load_checkpoint(path)["weights"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


# ---- 17: truncated, corrupted and foreign checkpoints -------------------------------------------------------

def test_a_truncated_checkpoint_names_the_file(tmp_path: Path) -> None:
    whole = _checkpoint(tmp_path).read_bytes()
    cut = tmp_path / "cut.pt"
    for length in (0, 1, 100, len(whole) // 2, len(whole) - 1):
        cut.write_bytes(whole[:length])
        for read in (load_checkpoint, neural_ode.load_policy):
            with pytest.raises(CheckpointError, match=r"checkpoint .*cut\.pt: .*(empty|truncated or corrupted)"):
                read(cut)


def test_a_corrupted_checkpoint_fails_its_checksum(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    data = bytearray(path.read_bytes())
    state = load_checkpoint(path)
    assert torch.equal(state["policy"]["hidden.0.weight"], neural_ode.load_policy(path).policy.state_dict()["hidden.0.weight"])
    weights = state["policy"]["hidden.0.weight"].numpy().tobytes()
    at = bytes(data).find(weights)  # the weights inside the stored state: no zip or pickle check covers them
    assert at > 0
    data[at + len(weights) // 2] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"checkpoint .*checkpoint\.pt: corrupted \(the state's SHA-256 is"):
        load_checkpoint(path)


def test_foreign_checkpoints_say_what_they_are(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pt"
    torch.save({"env_id": "DiffCartpole-v0", "policy": {"w": torch.ones(2)}}, path)  # no checksum: an older or other format
    with pytest.raises(CheckpointError, match=r"foreign\.pt: not a diffenvs-checkpoint file .*keys \['env_id', 'policy'\]"):
        load_checkpoint(path)
    torch.save(torch.ones(3), path)
    with pytest.raises(CheckpointError, match="not a diffenvs-checkpoint file .*Tensor"):
        load_checkpoint(path)
    path.write_text('{"a": 1}\n')
    with pytest.raises(CheckpointError, match=r"foreign\.pt: the file is truncated or corrupted"):
        load_checkpoint(path)
    save_checkpoint(path, {"weights": torch.ones(2)})  # whole, but not a neural-ODE run
    with pytest.raises(CheckpointError, match=r"foreign\.pt: not a neural-ODE run's \(it lacks env_id, env_kwargs"):
        neural_ode.load_policy(path)
    with pytest.raises(CheckpointError, match="not a neural-ODE run's"):
        train("DiffCartpole-v0", TINY, KWARGS, checkpoint=path, resume=True, progress=False)
    state = load_checkpoint(_checkpoint(tmp_path))
    save_checkpoint(path, {**state, "config": {**state["config"], "momentum": 0.9}})  # a field this version lacks
    with pytest.raises(CheckpointError, match=r"foreign\.pt: its values do not make a neural-ODE run .*momentum"):
        neural_ode.load_policy(path)
    save_checkpoint(path, {**state, "config": {**state["config"], "width": 5}})  # weights of another shape
    with pytest.raises(CheckpointError, match=r"(?s)foreign\.pt: its values do not make a neural-ODE run .*size mismatch"):
        neural_ode.load_policy(path)


def test_resuming_another_run_names_each_difference(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path)
    other = dataclasses.replace(TINY, seed=3, width=6)
    with pytest.raises(ValueError, match=r"another run .*config\.seed: 0 there, 3 here; config\.width: 4 there, 6 here"):
        train("DiffCartpole-v0", other, KWARGS, checkpoint=path, resume=True, progress=False)
    with pytest.raises(ValueError, match=r"env_kwargs\.max_steps: 10 there, 12 here"):
        train("DiffCartpole-v0", TINY, {"max_steps": 12}, checkpoint=path, resume=True, progress=False)


# ---- 4: the output folder's lock ---------------------------------------------------------------------------

def test_a_second_live_run_into_the_folder_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / ".lock").write_text(f"pid={other.pid}\n")
        with pytest.raises(FolderLockedError, match=rf"output folder {out} is in use by process {other.pid}"):
            train_script.main([*ANALYTIC_ARGV, "--out", str(out)])
    finally:
        other.kill()
        other.wait()
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written, the other run's lock kept


def test_a_stale_lock_is_taken_over_with_a_warning(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    dead = _dead_pid()
    (out / ".lock").write_text(f"pid={dead}\n")
    (out / ".results.json.x1y2.partial").write_text('{"half')  # what a killed writer left
    with pytest.warns(UserWarning, match=rf"{out} was locked by a process that is no longer running \(pid={dead}\)"):
        results = train_script.main([*ANALYTIC_ARGV, "--out", str(out)])
    assert results["agent"] == "harmonic"
    assert sorted(p.name for p in out.iterdir()) == ["control.png", "results.json", RUN_FILE, "trajectory.png"]


def test_a_lock_file_without_a_pid_is_waited_for_then_taken_over(tmp_path: Path) -> None:
    lock = tmp_path / ".lock"
    lock.touch()  # just created by a process about to write its pid
    began = time.monotonic()
    with pytest.warns(UserWarning, match="an empty lock file"), folder_lock(tmp_path, wait=0.3):
        assert time.monotonic() - began >= 0.25
        assert lock.read_text().startswith(f"pid={os.getpid()} ")
    assert not lock.exists()


def test_the_lock_is_released_when_the_run_fails_and_refuses_a_nested_holder(tmp_path: Path) -> None:
    with pytest.raises(KeyError), folder_lock(tmp_path):
        with pytest.raises(FolderLockedError, match=rf"in use by process {os.getpid()}"), folder_lock(tmp_path):
            pass
        raise KeyError("the run failed")
    assert not (tmp_path / ".lock").exists()
    with folder_lock(tmp_path):
        pass


def _contend(folder: str, start: multiprocessing.synchronize.Event, held: multiprocessing.Queue) -> None:
    start.wait()
    try:
        with folder_lock(folder):
            held.put(os.getpid())
            time.sleep(0.5)
    except FolderLockedError:
        held.put(-os.getpid())


def test_of_processes_locking_one_folder_at_once_exactly_one_holds_it(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    start, held = context.Event(), context.Queue()
    processes = [context.Process(target=_contend, args=(str(tmp_path), start, held)) for _ in range(4)]
    for process in processes:
        process.start()
    start.set()
    outcomes = [held.get(timeout=30) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    assert sum(pid > 0 for pid in outcomes) == 1, outcomes
    assert not (tmp_path / ".lock").exists()


# ---- 5: a folder holding another run ------------------------------------------------------------------------

def test_a_folder_holding_a_run_is_refused_without_resume_or_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_script.main([*TINY_ARGV, "--out", str(out)])
    (out / "notes.txt").write_text("mine\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(ValueError, match=rf"output folder {out} holds a run already .*--resume .*--overwrite"):
        train_script.main([*ANALYTIC_ARGV, "--out", str(out)])
    with pytest.raises(ValueError, match="holds a run already"):  # the same run again, without --resume
        train_script.main([*TINY_ARGV, "--out", str(out)])
    with pytest.raises(ValueError, match=r"--resume: the run in .* is another run .*agent: 'neural-ode' there, "
                                         r"'harmonic' here; config: \{'iterations': 3, .*\} there, None here; "
                                         r"env: 'DiffCartpole-v0' there, 'DiffIsochronism-v0' here"):
        train_script.main([*ANALYTIC_ARGV, "--out", str(out), "--resume"])
    with pytest.raises(ValueError, match=r"--resume: the run in .* is another run .*config\.seed: 0 there, 1 here"):
        train_script.main([*TINY_ARGV, "--out", str(out), "--resume", "--seed", "1"])
    with pytest.raises(ValueError, match="--resume continues the run in .* and --overwrite deletes it"):
        train_script.main([*TINY_ARGV, "--out", str(out), "--resume", "--overwrite"])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    # --overwrite deletes the old run's files (its loss plot and checkpoint too), not the user's
    results = train_script.main([*ANALYTIC_ARGV, "--out", str(out), "--overwrite"])
    assert results["agent"] == "harmonic"
    assert sorted(p.name for p in out.iterdir()) == ["control.png", "notes.txt", "results.json", RUN_FILE, "trajectory.png"]
    assert json.loads((out / RUN_FILE).read_text())["agent"] == "harmonic"


def test_the_figures_script_makes_its_training_runs_afresh(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("figures_script_files", ROOT / "scripts" / "figures.py")
    figures = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = figures
    spec.loader.exec_module(figures)
    for _ in range(2):  # the second time into a folder holding the first time's runs
        figures.main(["--quick", "--only", "isochronism", "--out", str(tmp_path)])
    assert json.loads((tmp_path / "runs" / "isochronism" / "results.json").read_text())["iterations"] == 2


def test_resume_refuses_a_run_that_does_not_say_what_it_is(tmp_path: Path) -> None:
    out = tmp_path / "run"
    train_script.main([*ANALYTIC_ARGV, "--out", str(out)])
    (out / RUN_FILE).unlink()
    with pytest.raises(ValueError, match=rf"--resume: the output folder {out} holds files of a run .* but no run\.json"):
        train_script.main([*ANALYTIC_ARGV, "--out", str(out), "--resume"])
    # a matching run.json lets it resume, an empty folder is claimed either way
    train_script.main([*ANALYTIC_ARGV, "--out", str(out), "--overwrite"])
    assert train_script.main([*ANALYTIC_ARGV, "--out", str(out), "--resume"])["agent"] == "harmonic"
    assert train_script.main([*ANALYTIC_ARGV, "--out", str(tmp_path / "new"), "--resume"])["agent"] == "harmonic"


# ---- crash safety: a training run killed at random moments ---------------------------------------------------

CRASH_ITERATIONS = 40


def _whole_files(out: Path) -> int:
    """Check that every file of ``out`` is whole and readable; return the checkpoint's iterations (0 if none)."""
    iterations = 0
    for path in out.iterdir():
        if path.name.startswith("."):  # the dead run's lock and temporary files: the next run clears them
            assert path.name in (".lock", ".lock.takeover") or path.name.endswith(".partial"), path.name
        elif path.suffix == ".json":
            assert isinstance(json.loads(path.read_text()), dict), path.name
        elif path.suffix == ".png":
            with Image.open(path) as image:
                image.load()
        else:
            assert path.name == "checkpoint.pt", path.name
            iterations = len(neural_ode.load_policy(path).history)
    return iterations


def test_a_run_killed_at_random_moments_loses_no_checkpoint_and_resumes(tmp_path: Path) -> None:
    """scripts/train.py's main in a forked process, killed (SIGKILL) at random moments after a new
    checkpoint (one is written every iteration), then as soon as the first plot of the run's end is
    there (the others and results.json being written): the files left are whole, no checkpoint is
    lost, and --resume finishes the run."""
    out = tmp_path / "run"
    argv = [*TINY_ARGV, "--iterations", str(CRASH_ITERATIONS), "--checkpoint-every", "1", "--out", str(out)]
    fork = multiprocessing.get_context("fork")  # the child starts at once: torch and the script are imported
    chance = random.Random(0)
    saved = 0  # the most iterations a checkpoint was seen to hold
    for attempt, until in enumerate(("checkpoint", "checkpoint", "plot")):
        before = saved
        process = fork.Process(target=train_script.main, args=(argv + (["--resume"] if attempt else []),))
        process.start()
        deadline, delay = time.monotonic() + 120, chance.uniform(0.0, 0.2)
        while process.exitcode is None and time.monotonic() < deadline:
            if until == "plot" and (out / "trajectory.png").exists():
                break
            if until == "checkpoint" and (out / "checkpoint.pt").exists():
                saved = max(saved, _whole_files(out))  # read while the run writes: whole at every moment
                if saved > before:
                    time.sleep(delay)
                    break
            time.sleep(0.01)
        if process.exitcode is None:
            os.kill(process.pid, signal.SIGKILL)
        process.join()
        assert process.exitcode in (-signal.SIGKILL, 0), process.exitcode
        left = _whole_files(out)
        assert left >= saved, f"the checkpoint of {saved} iterations was lost (now {left})"
        saved = left
        if attempt == 0:
            assert 0 < saved < CRASH_ITERATIONS, saved  # killed in the middle of training
    stale = (out / ".lock").exists()
    with pytest.warns(UserWarning, match="no longer running") if stale else contextlib.nullcontext():
        results = train_script.main([*argv, "--resume"])
    assert results["iterations"] == CRASH_ITERATIONS
    assert [h["iteration"] for h in neural_ode.load_policy(out / "checkpoint.pt").history] == list(range(CRASH_ITERATIONS))
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "control.png", "loss.png", "results.json", RUN_FILE,
                                                     "trajectory.png"]
    _whole_files(out)


# ---- checkpoints that declare more than they hold, pickles refused -----------------------------------------------

def test_a_checkpoint_declaring_a_huge_tensor_is_refused_naming_the_file_before_allocating(tmp_path: Path) -> None:
    """A few bytes on disk can declare a tensor of 64 GiB (a one-byte storage expanded): refused before its bytes are
    copied out (that copy raised MemoryError), as the wrapper's state and inside a state with a valid checksum."""
    huge = torch.zeros(1, dtype=torch.uint8).expand(2**36)
    path = tmp_path / "huge.pt"
    torch.save({"format": "diffenvs-checkpoint", "version": 1, "sha256": "0" * 64, "state": huge}, path)
    assert path.stat().st_size < 2000
    for read in (load_checkpoint, neural_ode.load_policy):
        with pytest.raises(CheckpointError, match=r"checkpoint .*huge\.pt: corrupted or forged .*state: shape "
                                                  r"\(68719476736,\) .*over a storage of 1 bytes"):
            read(path)
    save_checkpoint(path, {"policy": {"w": torch.zeros(1).expand(2**34)}})  # its checksum right
    with pytest.raises(CheckpointError, match=r"huge\.pt: corrupted or forged .*policy\.w: shape \(17179869184,\)"):
        load_checkpoint(path)


@pytest.mark.parametrize("payload", [
    pickle.dumps(RunsCode("touch {marker}"), protocol=4),
    pickle.dumps({"policy": RunsCode("touch {marker}")}, protocol=0),
    b"(S'touch {marker}'\nios\nsystem\n.",  # the INST instruction
    b"\x80\x02(cos\nsystem\nS'touch {marker}'\no.",  # the OBJ instruction
], ids=["protocol-4", "protocol-0", "inst", "obj"])
@pytest.mark.parametrize("wrapped", [False, True], ids=["raw", "checksummed"])
def test_a_refused_pickle_is_said_to_be_refused_never_damaged_and_no_advice_to_run_it(tmp_path: Path, payload: bytes,
                                                                                     wrapped: bool) -> None:
    marker = tmp_path / "ran"
    data = payload.replace(b"{marker}", str(marker).encode())
    path = tmp_path / "checkpoint.pt"
    if wrapped:
        wrapper = {"format": "diffenvs-checkpoint", "version": 1, "sha256": hashlib.sha256(data).hexdigest(),
                   "state": torch.frombuffer(bytearray(data), dtype=torch.uint8)}
        torch.save(wrapper, path)
    else:
        path.write_bytes(data)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    assert f"checkpoint {path}: " in message and "not weights-only" in message and "could run code" in message
    assert "truncated" not in message and "corrupted" not in message and "weights_only" not in message, message
    assert not marker.exists()


# ---- locks that are no process's ----------------------------------------------------------------------------------

def _make_lock(lock: Path, kind: str) -> Path | None:
    """Put at ``lock`` a lock of ``kind``; returns a file of the user's that must survive (or None)."""
    target = lock.parent.parent / f"{kind}-target.txt"
    if kind == "dangling-link":
        lock.symlink_to(lock.parent / "nowhere")
    elif kind == "link-to-a-file":
        target.write_text("mine\n")
        lock.symlink_to(target)
        return target
    elif kind == "empty-folder":
        lock.mkdir()
    elif kind == "folder-with-a-file":
        lock.mkdir()
        (lock / "inside.txt").write_text("mine\n")
        return None
    elif kind == "pid-beyond-range":
        lock.write_text("pid=99999999999\n")
    elif kind == "pid-0":
        lock.write_text("pid=0\n")
    else:
        lock.write_bytes(b"\xff\xfe pid=\xff\x00")
    return None


LOCK_KINDS = ["dangling-link", "link-to-a-file", "empty-folder", "folder-with-a-file", "pid-beyond-range", "pid-0",
              "binary"]


def _within(seconds: float, work) -> list:
    """Run ``work()`` in a thread; its outcome (``["ok", value]`` or ``["raised", error]``), or fail if it still runs
    after ``seconds`` (a lock spinning forever)."""
    outcome: list = []

    def target() -> None:
        try:
            outcome.extend(["ok", work()])
        except BaseException as error:  # handed to the test
            outcome.extend(["raised", error])

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still waiting for the lock after {seconds} s"
    return outcome


@pytest.mark.parametrize("kind", LOCK_KINDS)
def test_a_lock_that_is_no_process_s_is_taken_over_at_once(tmp_path: Path, kind: str) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    lock = folder / ".lock"
    keep = _make_lock(lock, kind)
    warned: list[str] = []

    def hold() -> str:
        with folder_lock(folder, wait=0.2, warn=warned.append):
            return lock.read_text()

    outcome = _within(10, hold)
    assert outcome[0] == "ok", outcome[1]
    assert outcome[1].startswith(f"pid={os.getpid()} ") and not lock.exists() and not lock.is_symlink()
    assert len(warned) == 1 and str(lock) in warned[0] and "taking" in warned[0], warned
    if keep is not None:  # a link is removed, never what it points to
        assert keep.read_text() == "mine\n"
    if kind == "folder-with-a-file":  # moved aside, not deleted
        assert (folder / ".lock.stale" / "inside.txt").read_text() == "mine\n"


def test_train_py_takes_over_a_dangling_link_lock(tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").symlink_to(tmp_path / "nowhere")
    with pytest.warns(UserWarning, match="is a link, no process's lock"):
        outcome = _within(60, lambda: train_script.main([*ANALYTIC_ARGV, "--out", str(out)]))
    assert outcome[0] == "ok", outcome[1]
    assert outcome[1]["agent"] == "harmonic" and not (out / ".lock").is_symlink()
