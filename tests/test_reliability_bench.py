"""The benchmark's run files and command lines under misuse: reruns of another spec, damaged or foreign run files,
two sweeps into one folder, sweeps killed at any point, duplicate or idle names, bad --out, --env-kwargs and seeds."""

from __future__ import annotations

import dataclasses
import io
import json
import multiprocessing
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from agents import benchmark, cli, registry
from agents.benchmark import run as benchmark_run
from agents.registry import Agent, Budget, Trained
from diffenvs.envs.cartpole import CartpoleParams

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import benchmark as benchmark_script  # noqa: E402  (scripts/benchmark.py)

ENV = "DiffZermelo-v0"


def fake_train(env_id, env_kwargs, seed, budget, curve_cost) -> Trained:
    """A deterministic agent: a constant heading that depends on the seed."""
    policy = lambda observation: np.full(1, 0.1 * seed, dtype=np.float32)  # noqa: E731
    return Trained(policy, [{"transitions": 10.0, "seconds": 0.0, "cost": curve_cost(policy)}], 10, 0.0,
                   {"trained_on": "default"})


@pytest.fixture
def fake(monkeypatch) -> list[int]:
    """Registers the agent ``fake`` (it applies everywhere) and ``nowhere`` (it applies nowhere); the seeds trained."""
    calls: list[int] = []

    def train(env_id, env_kwargs, seed, budget, curve_cost) -> Trained:
        calls.append(seed)
        return fake_train(env_id, env_kwargs, seed, budget, curve_cost)

    registry.agents()
    monkeypatch.setitem(registry._AGENTS, "fake", Agent("fake", "rl", "a test agent", train, lambda e, k: True))
    monkeypatch.setitem(registry._AGENTS, "nowhere", Agent("nowhere", "rl", "applies nowhere", train, lambda e, k: False))
    return calls


def specs(seeds: list[int] | range = (0, 1)) -> list[benchmark.RunSpec]:
    return benchmark.plan_runs([ENV], ["fake"], list(seeds), "quick")


def quiet_sweep(specs_: list[benchmark.RunSpec], out: Path, **options):
    warnings: list[str] = []
    results, failures = benchmark.sweep(specs_, out, workers=1, progress=False, warn=warnings.append, **options)
    return results, failures, warnings


def without_times(result: dict) -> dict:
    return {key: value for key, value in result.items() if key != "total_seconds"}


# ---- 3: a rerun of another spec never overwrites, two sweeps never write at once --------------------------------
def test_a_sweep_of_another_budget_refuses_naming_the_file_and_fields_unless_replace(fake, tmp_path, monkeypatch,
                                                                                      capsys) -> None:
    common = ["--quick", "--envs", ENV, "--agents", "fake", "--seeds", "2", "--out", str(tmp_path), "--workers", "1",
              "--no-progress"]
    assert benchmark_script.main(common) == 0
    path = tmp_path / "runs" / f"quick__{ENV}__fake__seed0.json"
    before = {p.name: p.read_bytes() for p in (tmp_path / "runs").iterdir()}
    fake.clear()
    # the same (mode, env, agent, seed) under another budget: refused before anything runs, the files untouched
    from agents import cards

    old = cards.card(ENV)
    budgets = {**old.budgets, "quick": {**old.budgets.get("quick", {}), "fake": Budget(transitions=7, eval_every=7)}}
    monkeypatch.setitem(cards.CARDS, ENV, dataclasses.replace(old, budgets=budgets))
    capsys.readouterr()
    assert benchmark_script.main(common) == 2
    error = capsys.readouterr().err
    assert str(path) in error and "budget.transitions: 5000 in the file, 7 planned" in error and "--replace" in error
    assert fake == [] and {p.name: p.read_bytes() for p in (tmp_path / "runs").iterdir()} == before
    # --replace runs them again and overwrites them
    assert benchmark_script.main([*common, "--replace"]) == 0
    assert fake == [0, 1] and json.loads(path.read_text())["spec"]["budget"]["transitions"] == 7
    assert "--replace" in capsys.readouterr().err  # each overwrite is said


def test_specs_sharing_a_run_file_must_be_equal(fake, tmp_path) -> None:
    first = specs([0])[0]
    results, _, _ = quiet_sweep([first, first], tmp_path)
    assert len(results) == 1 and fake == [0]  # a repeat counts once
    with pytest.raises(ValueError, match=r"two different runs with the run file .*seed0\.json: budget\.transitions"):
        quiet_sweep([first, dataclasses.replace(first, budget=Budget(transitions=3))], tmp_path)


def test_a_second_sweep_into_a_folder_in_use_is_refused(fake, tmp_path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / benchmark.LOCK_FILE).write_text(f"pid={holder.pid} host={socket.gethostname()}\n")
        with pytest.raises(RuntimeError, match=rf"in use by process {holder.pid} \(its lock .*{benchmark.LOCK_FILE}\)"):
            quiet_sweep(specs(), tmp_path)
        assert fake == [] and not (tmp_path / "runs").exists()
    finally:
        holder.kill()
        holder.wait()
    # a lock in this very process (a sweep inside a sweep) is refused too
    with benchmark_run.sweep_lock(tmp_path):
        with pytest.raises(RuntimeError, match=rf"in use by process {os.getpid()}"):
            quiet_sweep(specs(), tmp_path)
    assert not (tmp_path / benchmark.LOCK_FILE).exists()  # released


def test_the_lock_of_a_dead_sweep_is_taken_over_with_a_warning(fake, tmp_path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock = tmp_path / benchmark.LOCK_FILE
    lock.write_text(f"pid={gone.pid} host={socket.gethostname()}\n")
    results, failures, warnings = quiet_sweep(specs(), tmp_path)
    assert len(results) == 2 and not failures
    assert len(warnings) == 1 and f"no longer running (pid={gone.pid}" in warnings[0] and str(lock) in warnings[0]
    assert not lock.exists()
    # an empty lock (a sweep killed between creating it and writing its pid) is taken over once it is not new
    lock.write_text("")
    os.utime(lock, (time.time() - 10, time.time() - 10))
    _, _, warnings = quiet_sweep(specs(), tmp_path)
    assert "empty lock" in warnings[0] and not lock.exists()


def test_the_lock_is_created_exclusively_with_the_pid_inside(tmp_path) -> None:
    with benchmark_run.sweep_lock(tmp_path) as lock:
        assert lock.read_text().split()[0] == f"pid={os.getpid()}"
        with pytest.raises(FileExistsError):  # O_EXCL: a second creation fails
            os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    assert not lock.exists()


# ---- 17: damaged, truncated and foreign run files ------------------------------------------------------------
DAMAGES = {
    "truncated": lambda text: text[: len(text) // 2],
    "binary": lambda text: b"\xff\xfe\x00 not text",
    "a JSON list": lambda text: "[1, 2]",
    "no final_cost": lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != "final_cost"}),
    "a spec that is a string": lambda text: json.dumps({**json.loads(text), "spec": "quick"}),
    "a curve of strings": lambda text: json.dumps({**json.loads(text), "curve": ["x"]}),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_run_file_that_cannot_be_read_is_named_moved_aside_and_redone(fake, tmp_path, damage) -> None:
    planned = specs()
    quiet_sweep(planned, tmp_path)
    path = benchmark.run_path(tmp_path, planned[0])
    good = json.loads(path.read_text())
    damaged = DAMAGES[damage](path.read_text())
    path.write_bytes(damaged if isinstance(damaged, bytes) else damaged.encode())
    # the report names the file and what is wrong, and leaves it out (the old code raised in collect or report)
    results, skipped = benchmark.collect(tmp_path, "quick")
    assert [r["seed"] for r in results] == [1] and len(skipped) == 1 and skipped[0].startswith(path.name + " (")
    with pytest.raises(benchmark.RunFileError, match=f"run file {re.escape(str(path))}: "):
        benchmark.read_run(path)
    # a sweep moves it aside with a warning naming it, and runs it again (the old code stopped on a JSON list)
    fake.clear()
    results, failures, warnings = quiet_sweep(planned, tmp_path)
    assert fake == [0] and not failures and [r["seed"] for r in results] == [0, 1]
    assert len(warnings) == 1 and str(path) in warnings[0] and f"moved aside to {path.name}.corrupt" in warnings[0]
    assert path.with_name(path.name + ".corrupt").read_bytes() == (damaged if isinstance(damaged, bytes) else
                                                                  damaged.encode())
    assert without_times(json.loads(path.read_text())) == without_times(good)


def test_a_run_file_naming_another_run_is_refused_and_left_out(fake, tmp_path) -> None:
    planned = specs()
    quiet_sweep(planned, tmp_path)
    first, second = (benchmark.run_path(tmp_path, spec) for spec in planned)
    body = json.loads(first.read_text())
    first.write_text(json.dumps({**body, "seed": 5}))  # its body says seed 5, its spec and name seed 0
    second.write_text(json.dumps(body))  # the run of seed 0 under the name of seed 1
    results, skipped = benchmark.collect(tmp_path, "quick")
    assert results == []
    assert skipped == [f"{first.name} (names another run: seed 5 in its body, 0 in its spec)",
                       f"{second.name} (names another run: its spec is the run '{planned[0].key}', its name "
                       f"'{second.name}')"]
    fake.clear()
    with pytest.raises(ValueError, match="never overwrites") as refused:
        quiet_sweep(planned, tmp_path)
    assert str(first) in str(refused.value) and str(second) in str(refused.value) and fake == []
    _, _, warnings = quiet_sweep(planned, tmp_path, replace=True)
    assert fake == [0, 1] and len(warnings) == 2 and not benchmark.collect(tmp_path, "quick")[1]


def test_the_report_lists_why_a_run_is_left_out(fake, tmp_path, capsys) -> None:
    common = ["--quick", "--envs", ENV, "--agents", "fake", "--out", str(tmp_path), "--workers", "1", "--no-progress"]
    assert benchmark_script.main(common) == 0
    (tmp_path / "runs" / f"quick__{ENV}__fake__seed3.json").write_text("{")
    capsys.readouterr()
    assert benchmark_script.main(["--quick", "--report-only", "--out", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"quick__{ENV}__fake__seed3.json (not whole JSON" in out and "| DiffZermelo-v0 | fake |" in \
        (tmp_path / "table.md").read_text()


# ---- crash safety: a sweep killed at several points resumes to the same results ------------------------------
def _sweep_then_die(out: str, kill_at: str, report: str) -> None:
    """In a forked child: sweep 4 runs of ``fake`` into ``out``, SIGKILLing itself at ``kill_at``."""
    try:
        from agents import files

        counts = {"train": 0, "write": 0}
        original = files.atomic_write

        def die() -> None:
            os.kill(os.getpid(), signal.SIGKILL)

        def train(env_id, env_kwargs, seed, budget, curve_cost) -> Trained:
            counts["train"] += 1
            if kill_at == f"train:{counts['train']}":
                die()
            if kill_at == "slow":
                time.sleep(0.3)
            return fake_train(env_id, env_kwargs, seed, budget, curve_cost)

        def atomic_write(path, write, binary=False, newline=None):
            if Path(path).parent.name != "runs":
                return original(path, write, binary, newline)
            counts["write"] += 1
            if kill_at == f"half-written:{counts['write']}":
                def half(file) -> None:
                    buffer = io.StringIO()
                    write(buffer)
                    file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
                    file.flush()
                    die()
                return original(path, half, binary, newline)
            written = original(path, write, binary, newline)
            if kill_at == f"written:{counts['write']}":
                die()
            return written

        files.atomic_write = atomic_write
        registry._AGENTS["fake"] = Agent("fake", "rl", "a test agent", train, lambda e, k: True)
        with open(report, "a") as log:
            benchmark.sweep(specs(range(4)), out, workers=1, progress=False, warn=lambda m: print(m, file=log, flush=True))
    except BaseException:
        with open(report, "a") as log:
            traceback.print_exc(file=log)
        os._exit(1)
    os._exit(0)


def test_a_sweep_killed_at_any_point_resumes_without_losing_or_damaging_a_run(fake, tmp_path) -> None:
    expected = {benchmark.run_path(tmp_path / "whole", s).name: without_times(r)
                for s, r in zip(specs(range(4)), quiet_sweep(specs(range(4)), tmp_path / "whole")[0])}
    out, report = tmp_path / "killed", tmp_path / "warnings.txt"
    context = multiprocessing.get_context("fork")
    seen: dict[str, bytes] = {}
    # killed while training the 2nd run, half-way through writing the next run file, just after writing one,
    # and from outside at whatever point it has reached once a run file appeared; then it runs to the end
    for kill_at in ("train:2", "half-written:1", "written:1", "slow", "none"):
        child = context.Process(target=_sweep_then_die, args=(str(out), kill_at, str(report)))
        child.start()
        if kill_at == "slow":
            deadline = time.monotonic() + 20
            while len(list((out / "runs").glob("*.json"))) <= len(seen) and time.monotonic() < deadline:
                time.sleep(0.02)
            os.kill(child.pid, signal.SIGKILL)
        child.join(30)
        assert child.exitcode == (0 if kill_at == "none" else -signal.SIGKILL), report.read_text()
        files = {p.name: p.read_bytes() for p in (out / "runs").glob("*.json")}
        assert set(seen) <= set(files) and all(files[name] == data for name, data in seen.items())  # none lost or changed
        for name in files:  # every run file whole, and the run its name says
            assert without_times(benchmark.read_run(out / "runs" / name)) == expected[name]
        seen = files
    assert set(seen) == set(expected)
    results, skipped = benchmark.collect(out, "quick")
    assert [without_times(r) for r in results] == list(expected.values()) and not skipped
    assert not list((out / "runs").glob(".*partial")) and not (out / benchmark.LOCK_FILE).exists()
    assert report.read_text().count("no longer running") == 4  # each killed sweep's lock was taken over, with a warning


# ---- 18: names given twice, agents that apply nowhere --------------------------------------------------------
def test_names_given_twice_count_once(fake) -> None:
    twice = benchmark.plan_runs([ENV, ENV], ["fake", "analytic", "fake"], [0, 1, 0], "quick")
    assert [(s.agent, s.seed) for s in twice] == [("fake", 0), ("fake", 1), ("analytic", 0)]


def test_an_agent_that_applies_to_no_environment_is_an_error(fake, tmp_path, capsys) -> None:
    code = benchmark_script.main(["--quick", "--envs", ENV, "--agents", "fake", "nowhere", "--out", str(tmp_path),
                                  "--workers", "1", "--no-progress"])
    assert code == 2 and "agents ['nowhere'] apply to none of the environments ['DiffZermelo-v0']" in \
        capsys.readouterr().err
    assert fake == [] and not (tmp_path / "runs").exists()
    with pytest.raises(ValueError, match="nothing to run"):
        benchmark.check_plan([], [ENV], [])


def test_a_sweep_of_names_given_twice_runs_each_once(fake, tmp_path) -> None:
    code = benchmark_script.main(["--quick", "--envs", ENV, ENV, "--agents", "fake", "fake", "--out", str(tmp_path),
                                  "--workers", "1", "--no-progress"])
    assert code == 0 and fake == [0]
    assert "| DiffZermelo-v0 | fake | model-free samples | defaults | default | 1 |" in (tmp_path / "table.md").read_text()


# ---- 19: the command line: --out, --env-kwargs, seeds --------------------------------------------------------
def test_check_out_folder_refuses_what_cannot_be_an_output_folder(tmp_path, monkeypatch) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for bad, why in (("", "must name a folder, got ''"), ("  ", "must name a folder"),
                     (str(a_file), "an existing file"), (str(a_file / "below"), "whose parent .* is a file")):
        with pytest.raises(ValueError, match=f"--out {why}" if why.startswith("must") else f"--out .*{why}"):
            cli.check_out_folder(bad)
    assert cli.check_out_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # nothing created
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path)
    with pytest.raises(ValueError, match=r"--out must be a folder this process can write into.*its parent .* not writable"):
        cli.check_out_folder(tmp_path / "new")
    with pytest.raises(TypeError, match="--out"):
        cli.check_out_folder(None)  # type: ignore[arg-type]


def test_the_benchmark_script_checks_out_before_running(fake, tmp_path, capsys) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for out in (str(a_file), ""):
        code = benchmark_script.main(["--quick", "--envs", ENV, "--agents", "fake", "--out", out, "--workers", "1",
                                      "--no-progress"])
        assert code == 2 and "--out" in capsys.readouterr().err and fake == []
    assert a_file.read_text() == "x" and not (Path.cwd() / "runs" / f"quick__{ENV}__fake__seed0.json").exists()


def _script(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["train", "ude", "design", "sysid"])
def test_every_script_checks_out_before_it_works(name, tmp_path, monkeypatch) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    script = _script(name)
    # what each script does first after parsing: reaching it would mean the check came too late
    first_work = {"train": "analytic", "ude": "make_data", "design": "derivative_checks", "sysid": "identify"}[name]
    monkeypatch.setattr(script, first_work, None)
    argv = (["DiffZermelo-v0"] if name == "train" else []) + ["--out", str(a_file)]
    with pytest.raises(ValueError, match=re.escape(f"--out must be a folder, got '{a_file}', an existing file")):
        script.main(argv)


def test_an_empty_path_option_is_refused(tmp_path, capsys) -> None:
    train = _script("train")
    with pytest.raises(SystemExit) as exit_:
        train.parse_arguments(["DiffZermelo-v0", "--out", ""])
    assert exit_.value.code == 2 and "--out must name a folder or file, got ''" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        train.parse_arguments(["DiffZermelo-v0", "--out="])
    assert train.parse_arguments(["DiffZermelo-v0", "--out", str(tmp_path)]).out == tmp_path


@pytest.mark.parametrize("seed", [str(2**64), "-1"])
def test_seeds_out_of_range_are_refused_naming_the_option(seed, capsys) -> None:
    train = _script("train")
    with pytest.raises(SystemExit) as exit_:  # the neural-ODE config's seed, nested in the command line
        train.parse_arguments(["DiffZermelo-v0", "--seed", seed])
    assert exit_.value.code == 2 and f"--seed must be an integer from 0 to {cli.MAX_SEED} (2**31 - 1), got {seed}" in \
        capsys.readouterr().err
    with pytest.raises(SystemExit):
        _script("ude").main(["--seed", seed])
    assert train.parse_arguments(["DiffZermelo-v0", "--seed", str(cli.MAX_SEED)]).neural_ode.seed == cli.MAX_SEED
    with pytest.raises(ValueError, match=f"seeds must be between 0 .* and {benchmark.MAX_SEEDS}, got 100000000000"):
        benchmark.BenchmarkConfig(seeds=10**11)


def test_env_kwargs_params_set_the_problem_s_constants() -> None:
    kwargs = cli.parse_env_kwargs('{"params": {"gravity": 1.62, "pole_length": 2}}', None, "DiffCartpole-v0")
    assert kwargs["params"] == CartpoleParams(gravity=1.62, pole_length=2)
    env = gym.make("DiffCartpole-v0", **kwargs)  # the old code kept the dict: AttributeError in the environment
    env.reset(seed=0)
    env.step(env.action_space.sample())
    assert env.unwrapped.params.gravity == 1.62
    env.close()
    with pytest.raises(ValueError, match=r"--env-kwargs params of DiffCartpole-v0: CartpoleParams has no field\(s\) "
                                         r"\['gravty'\]; its fields are \['cart_mass', 'pole_mass', 'pole_length', "
                                         r"'gravity'\]"):
        cli.parse_env_kwargs('{"params": {"gravty": 1.62}}', None, "DiffCartpole-v0")
    with pytest.raises(ValueError, match="gravity must be a number, got 'low'"):
        cli.parse_env_kwargs('{"params": {"gravity": "low"}}', None, "DiffCartpole-v0")
    with pytest.raises(ValueError, match="must be a JSON object of CartpoleParams fields"):
        cli.parse_env_kwargs('{"params": 3}', None, "DiffCartpole-v0")
    with pytest.raises(ValueError, match="DiffLinearSysID-v0 takes no params"):
        cli.parse_env_kwargs('{"params": {"gamma": 2}}', None, "DiffLinearSysID-v0")


# ---- non-finite run files, --report-only under the lock and on nothing ---------------------------------------------
REPORT_ONLY = ["--quick", "--report-only", "--no-progress"]


@pytest.mark.parametrize("field, value", [("final_cost", float("nan")), ("seconds", float("inf")),
                                          ("curve", [{"transitions": 10.0, "seconds": 0.0, "cost": float("nan")}])])
def test_a_run_file_holding_a_non_finite_number_is_named_and_left_out(fake, tmp_path, capsys, field, value) -> None:
    common = ["--quick", "--envs", ENV, "--agents", "fake", "--seeds", "2", "--out", str(tmp_path), "--workers", "1",
              "--no-progress"]
    assert benchmark_script.main(common) == 0
    path = tmp_path / "runs" / f"quick__{ENV}__fake__seed1.json"
    record = json.loads(path.read_text())
    record[field] = value
    path.write_text(json.dumps(record))  # NaN and Infinity: JSON readers take them
    with pytest.raises(benchmark.RunFileError, match=rf"run file .*seed1\.json: .*{field.split('_')[0]}.* not (a )?finite"):
        benchmark.read_run(path)
    capsys.readouterr()
    assert benchmark_script.main([*REPORT_ONLY, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"quick__{ENV}__fake__seed1.json (its {field}" in out or "seed1.json (a learning-curve point" in out
    assert "| DiffZermelo-v0 | fake |" in (tmp_path / "table.md").read_text()
    # a sweep moves it aside and runs it again rather than failing on it
    fake.clear()
    assert benchmark_script.main(common) == 0 and fake == [1]


def test_report_only_takes_the_sweep_lock(fake, tmp_path, capsys) -> None:
    common = ["--quick", "--envs", ENV, "--agents", "fake", "--out", str(tmp_path), "--workers", "1", "--no-progress"]
    assert benchmark_script.main(common) == 0
    table = (tmp_path / "table.md").read_bytes()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (tmp_path / benchmark.LOCK_FILE).write_text(f"pid={holder.pid} host={socket.gethostname()}\n")
        (tmp_path / "runs" / f"quick__{ENV}__fake__seed0.json").unlink()  # a live sweep between two runs
        capsys.readouterr()
        assert benchmark_script.main([*REPORT_ONLY, "--out", str(tmp_path)]) == 2
        assert f"in use by process {holder.pid}" in capsys.readouterr().err
        assert (tmp_path / "table.md").read_bytes() == table  # the live sweep's report is not replaced by a partial one
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.parametrize("content", ["nothing", "empty-runs", "junk"])
def test_report_only_on_a_folder_without_runs_is_an_error(tmp_path, capsys, content) -> None:
    if content != "nothing":
        (tmp_path / "runs").mkdir()
    if content == "junk":
        (tmp_path / "runs" / "a.json").write_text("[1, 2]")
        (tmp_path / "runs" / "b.json").write_bytes(b"\xff\x00")
    assert benchmark_script.main([*REPORT_ONLY, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--report-only" in err and str(tmp_path) in err
    if content == "junk":
        assert "a.json (holds a JSON list" in err and "b.json (not UTF-8" in err
    assert not (tmp_path / "table.md").exists()


def test_a_sweep_takes_over_a_dangling_link_lock(fake, tmp_path) -> None:
    (tmp_path / benchmark.LOCK_FILE).symlink_to(tmp_path / "nowhere")
    outcome: list = []
    thread = threading.Thread(target=lambda: outcome.append(quiet_sweep(specs(), tmp_path)), daemon=True)
    thread.start()
    thread.join(30)
    assert not thread.is_alive(), "the sweep still waits for a dangling link"
    results, failures, warnings = outcome[0]
    assert len(results) == 2 and "is a link, no process's lock" in warnings[0]


# ---- a killed sweep's workers end with it -------------------------------------------------------------------------
SLOW_RUN = '''
import os, time
def execute(spec):
    open(os.path.join(os.environ["RUN_MARKS"], str(os.getpid())), "w").close()
    time.sleep(120)
    return {"spec": spec, "error": "slept"}
'''

SWEEP = '''
import sys
sys.path.insert(0, sys.argv[1])
import slow_run
from agents import benchmark
from agents.benchmark.backends import local
specs = benchmark.plan_runs(["DiffZermelo-v0"], ["analytic"], [0], "quick") * 2  # one run each for two workers
for result in local(specs, 2, slow_run.execute):
    pass
'''


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as file:
            return file.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")
def test_the_workers_of_a_killed_sweep_end_with_it(tmp_path) -> None:
    (tmp_path / "slow_run.py").write_text(SLOW_RUN)
    marks = tmp_path / "marks"
    marks.mkdir()
    sweep = subprocess.Popen([sys.executable, "-c", SWEEP, str(tmp_path)], env={**os.environ, "RUN_MARKS": str(marks)})
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 60
        while len(workers) < 2 and time.monotonic() < deadline and sweep.poll() is None:
            time.sleep(0.1)
            workers = [int(p.name) for p in marks.iterdir()]
        assert len(workers) == 2, "the two workers did not start"
        sweep.send_signal(signal.SIGKILL)
        sweep.wait()
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_running(pid) for pid in workers), "the workers outlived their sweep"
    finally:
        sweep.kill()
        for pid in workers:
            if _running(pid):
                os.kill(pid, signal.SIGKILL)
