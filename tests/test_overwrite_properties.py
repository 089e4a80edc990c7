"""Properties (hypothesis) of the guarantees that no data is lost or reported stale: replacing a run (``--overwrite``),
the output folder's lock, and ``--report-only``, over generated folder contents, locks and ways of failing."""

from __future__ import annotations

import json
import os
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import benchmark
from agents.benchmark import BenchmarkConfig, run_benchmark
from agents.files import FolderLockedError, folder_lock
from agents.training import (
    COMMIT_FILE,
    RESULTS_FILE,
    RUN_FILE,
    RUN_FILES,
    STAGING_DIR,
    abandon_run,
    claim_folder,
    commit_run,
    manifest,
    recover,
)

FEW = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OTHERS = [name for name in RUN_FILES if name not in (RUN_FILE, RESULTS_FILE)]
USER_FILES = ["notes.txt", "data.csv", "loss.png.bak"]


def contents(folder: Path) -> dict[str, bytes]:
    """Every file of ``folder`` (its lock aside), by name, with its bytes; a folder in it counts as a name too."""
    return {p.name: p.read_bytes() if p.is_file() else b"<folder>" for p in sorted(folder.iterdir()) if p.name != ".lock"}


class Killed(BaseException):
    """A process killed at this point (what SIGKILL does, raised so the test can look at what is left)."""


def _write_run(folder: Path, names: list[str], tag: str, listed: list[str] | None) -> None:
    """Files ``names`` of a run in ``folder``, each holding ``tag``, and its ``results.json`` (unless ``listed`` is
    None) whose manifest lists them with their digests and the names ``listed``: a file of the user's with its own
    digest, any other name with a digest no file there has."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(f"{tag} {name}")
    if listed is not None:
        files = manifest(folder, names)
        for name in listed:
            files.setdefault(name, manifest(folder, [name]).get(name, "0" * 64) if name in USER_FILES else "0" * 64)
        (folder / RESULTS_FILE).write_text(json.dumps({"tag": tag, "files": files, "plots": listed}))


@FEW
@given(old=st.lists(st.sampled_from(OTHERS), unique=True, min_size=1),
       listed=st.lists(st.sampled_from([*RUN_FILES, *USER_FILES, "../outside.txt"]), unique=True),
       manifest=st.booleans(),
       users=st.lists(st.sampled_from(USER_FILES), unique=True),
       new=st.lists(st.sampled_from(OTHERS), unique=True),
       stray=st.sampled_from([None, *OTHERS]),
       outcome=st.sampled_from(["commit", "fails", "killed-running", "killed-committing"]),
       step=st.integers(0, 8))
def test_overwrite_keeps_the_old_run_until_the_new_one_is_whole_and_removes_only_what_a_run_wrote(
        old: list[str], listed: list[str], manifest: bool, users: list[str], new: list[str], stray: str | None,
        outcome: str, step: int) -> None:
    with tempfile.TemporaryDirectory() as base:
        out = Path(base) / "run"
        out.mkdir()
        for name in users:
            (out / name).write_text(f"user {name}")
        _write_run(out, [RUN_FILE, *old], "old", listed if manifest else None)
        (Path(base) / "outside.txt").write_text("user outside")
        if manifest and stray is not None and stray not in old:  # a file of a run's name the old run did not write
            (out / stray).write_text("user stray")
        before = contents(out)
        old_written = {RUN_FILE, *old} | ({RESULTS_FILE} if manifest else set())
        with folder_lock(out):
            folder = claim_folder(out, {"run": "new"}, overwrite=True)
            assert folder == out / STAGING_DIR and contents(out) == {**before, STAGING_DIR: b"<folder>"}
            _write_run(folder, [RUN_FILE, *new], "new", [])
            new_files = contents(folder)
            begun = outcome == "commit"
            if outcome == "commit":
                commit_run(out, folder)
            elif outcome == "fails":
                abandon_run(out, folder)
            elif outcome == "killed-committing":  # killed after `step` removals or moves of the replacement
                calls = {"n": 0}
                real_replace, real_unlink = os.replace, Path.unlink

                def counted(real):
                    def call(*args, **kwargs):
                        calls["n"] += 1
                        if calls["n"] > step:
                            raise Killed
                        return real(*args, **kwargs)
                    return call

                with ExitStack() as stack:
                    stack.enter_context(mock.patch("agents.training.os.replace", counted(real_replace)))
                    stack.enter_context(mock.patch.object(Path, "unlink", counted(real_unlink)))
                    try:
                        commit_run(out, folder)
                    except Killed:
                        pass
                begun = (folder / COMMIT_FILE).is_file() or not folder.exists()
        with folder_lock(out):
            recover(out)  # what the next claim of the folder does first
        after = contents(out)
        assert STAGING_DIR not in after
        assert (Path(base) / "outside.txt").read_text() == "user outside"
        for name in users:  # a file of the user's is never touched, whatever results.json lists
            assert after[name] == before[name]
        if not begun:  # failed, or killed before the replacement began: the old run, whole
            assert after == before
        else:
            # a replacement begun is finished by the next claim: the new run's files, and the old run's files that
            # it did not write (a file the old run did not list as written stays)
            expected = {name: data for name, data in before.items()
                        if name not in RUN_FILES or name not in old_written}
            expected.update(new_files)
            assert after == expected


@FEW
@given(kind=st.sampled_from(["live-pid", "dead-pid", "huge-pid", "pid-0", "no-pid", "bytes", "dangling-link",
                             "link-to-a-file", "empty-folder", "full-folder"]),
       junk=st.binary(max_size=24),
       name=st.sampled_from([".lock", "sweep.lock"]))
def test_a_lock_is_refused_only_while_a_live_process_holds_it_and_never_waits_long(kind: str, junk: bytes,
                                                                                  name: str) -> None:
    with tempfile.TemporaryDirectory() as base:
        folder = Path(base) / "out"
        folder.mkdir()
        lock = folder / name
        target = Path(base) / "target.txt"
        target.write_text("user file")
        if kind == "live-pid":
            lock.write_text(f"pid={os.getpid()}\n")
        elif kind == "dead-pid":
            lock.write_text("pid=4194305\n")  # beyond Linux's largest pid
        elif kind == "huge-pid":
            lock.write_text(f"pid={10**11 + len(junk)}\n")
        elif kind == "pid-0":
            lock.write_text("pid=0\n")
        elif kind == "no-pid":
            lock.write_text(junk.decode("latin-1").replace("=", ""))
        elif kind == "bytes":
            lock.write_bytes(junk.replace(b"=", b""))
        elif kind == "dangling-link":
            lock.symlink_to(Path(base) / "nowhere")
        elif kind == "link-to-a-file":
            lock.symlink_to(target)
        else:
            lock.mkdir()
            if kind == "full-folder":
                (lock / "inside").write_bytes(junk)
        before = contents(folder)
        warned: list[str] = []
        began = time.monotonic()
        if kind == "live-pid":
            with pytest.raises(FolderLockedError, match=f"in use by process {os.getpid()}"):
                with folder_lock(folder, wait=0.1, name=name, warn=warned.append):
                    pass
            assert contents(folder) == before  # the live holder's lock is left as it was
        else:
            with folder_lock(folder, wait=0.1, name=name, warn=warned.append):
                assert lock.read_text().startswith(f"pid={os.getpid()} ")
            assert len(warned) == 1 and str(lock) in warned[0]
            assert not lock.exists() and not lock.is_symlink()
        assert time.monotonic() - began < 5
        assert target.read_text() == "user file"  # a link is removed, never what it points to
        if kind == "full-folder":
            assert (folder / f"{name}.stale" / "inside").read_bytes() == junk


@pytest.fixture(scope="module")
def one_run(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A real run file of the quick benchmark (the analytic answer on Zermelo: seconds)."""
    out = tmp_path_factory.mktemp("sweep")
    specs = benchmark.plan_runs(["DiffZermelo-v0"], ["analytic"], [0], "quick")
    benchmark.sweep(specs, out, workers=1, progress=False)
    return benchmark.run_path(out, specs[0]).read_bytes()


JUNK = st.one_of(st.binary(max_size=30), st.sampled_from([b"[1, 2]", b"{}", b"null", b'{"spec": 1}', b"\xff\x00"]))


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.function_scoped_fixture])
@given(valid=st.booleans(), junk=st.lists(JUNK, max_size=3),
       broken=st.sampled_from([None, "final_cost", "seconds", "transitions"]),
       holder=st.sampled_from(["none", "live", "dead"]))
def test_report_only_reports_every_whole_run_names_every_other_file_and_never_beside_a_live_sweep(
        one_run: bytes, valid: bool, junk: list[bytes], broken: str | None, holder: str) -> None:
    with tempfile.TemporaryDirectory() as base:
        out = Path(base)
        runs = out / "runs"
        runs.mkdir()
        name = "quick__DiffZermelo-v0__analytic__seed0.json"
        if valid:
            (runs / name).write_bytes(one_run)
        for i, data in enumerate(junk):
            (runs / f"junk{i}.json").write_bytes(data)
        if broken is not None:  # a whole run of another seed whose number is NaN
            record = json.loads(one_run)
            record["spec"]["seed"] = record["seed"] = 1
            record[broken] = float("nan")
            (runs / name.replace("seed0", "seed1")).write_text(json.dumps(record))
        if holder != "none":
            (out / benchmark.LOCK_FILE).write_text(f"pid={os.getpid() if holder == 'live' else 4194305}\n")
        logged: list[str] = []
        config = BenchmarkConfig(quick=True, report_only=True, out=str(out), progress=False)
        files_before = sorted(p.name for p in out.iterdir())
        try:
            outcome = run_benchmark(config, log=logged.append)
        except (ValueError, RuntimeError) as error:
            refusal = str(error)
            outcome = None
        if holder == "live":
            assert outcome is None and "in use by process" in refusal
            assert sorted(p.name for p in out.iterdir()) == files_before  # no report written beside the sweep
            return
        said = "\n".join(logged) if outcome is not None else refusal
        for i in range(len(junk)):  # every file that is not a whole run is named
            assert f"junk{i}.json (" in said
        if broken is not None:
            assert f"seed1.json (its {broken} is nan, not a finite number)" in said
        if valid:
            assert outcome is not None and [r["seed"] for r in outcome["results"]] == [0]
            assert "| DiffZermelo-v0 | analytic |" in (out / "table.md").read_text()
        else:
            assert outcome is None and "--report-only: no run of mode 'quick'" in refusal
            assert not (out / "table.md").exists()
        if holder == "dead":
            assert not (out / benchmark.LOCK_FILE).exists()  # taken over, and released

