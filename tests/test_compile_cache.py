"""The compiled code on disk: a second process that builds the same compiled rollout loads it and compiles nothing.

Each case runs fresh Python processes on one temporary cache folder and counts what they compile
and what they load (:func:`~diffenvs.core.compiler.compile_counts`), never seconds. The first
process compiles a small cartpole rollout's chunk (forward and vector-Jacobian product); the
second loads both and gives the same numbers, then compiles again for a changed constant, a
changed policy structure and another dtype, and runs ``RK4(reuse_compiled=True)`` compiled where
the code is on disk and eagerly where it is not. The vector face's compiled step is loaded likewise.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch._inductor.config as inductor_config
from torch._inductor import cpu_vec_isa

from diffenvs.core.compiler import CACHE_VARIABLE, cache_folder, trusted_folder

#: one process: for each variant named on its command line ("base" or words joined by "+": "grad" for the
#: gradients, "reuse" for RK4(reuse_compiled=True), "constant", "structure", "float32" for
#: a changed pole mass, hidden width, dtype), a 2-step rollout in one compiled chunk, then a line of JSON with the
#: compile counts so far and the numbers
PROCESS = r"""
import json, sys
import torch
import diffenvs
from diffenvs.core.compiler import compile_counts
from diffenvs.envs.cartpole import Cartpole, CartpoleParams

torch.set_num_threads(1)
from torch._inductor import cpu_vec_isa
probes = []
probe = cpu_vec_isa.VecISA.check_build
# the probe of each vector instruction set the CPU claims (AVX-512's own checks of its extensions are not counted)
cpu_vec_isa.VecISA.check_build = lambda isa, code: (code == isa._avx_code and probes.append(str(isa))) or probe(isa, code)
for variant in sys.argv[1:]:
    parts = set(variant.split("+"))
    grad = "grad" in parts
    dtype = torch.float32 if "float32" in parts else torch.float64
    params = CartpoleParams(pole_mass=1.5) if "constant" in parts else CartpoleParams()
    problem = Cartpole(params=params, cost="quadratic", max_steps=2)
    torch.manual_seed(0)
    hidden = 5 if "structure" in parts else 4
    policy = torch.nn.Sequential(torch.nn.Linear(len(problem.observation_names), hidden), torch.nn.Tanh(),
                                 torch.nn.Linear(hidden, problem.control_dim)).to(dtype)
    solver = diffenvs.RK4(reuse_compiled=True, chunk=2) if "reuse" in parts else diffenvs.RK4(compile=True, chunk=2)
    x0 = torch.tensor([[0.1, 0.0, 3.0, 0.0], [-0.2, 0.1, 2.9, 0.3]], dtype=dtype, requires_grad=grad)
    with torch.set_grad_enabled(grad):
        trajectory = diffenvs.rollout(problem, policy, x0, solver=solver)
        loss = trajectory.costs.sum() + (trajectory.states ** 2).sum()
        grads = torch.autograd.grad(loss, [x0, *policy.parameters()]) if grad else []
    numbers = [loss.item(), *(g.abs().sum().item() for g in grads)]
    print(json.dumps({"variant": variant, "counts": compile_counts(), "numbers": numbers, "probes": probes}),
          flush=True)
"""


#: one process: the vector face's compiled step, a few steps with an autoreset; a line of JSON as above
VECTOR = r"""
import json
import gymnasium as gym
import numpy as np
import torch
import diffenvs
from diffenvs.core.compiler import compile_counts

envs = gym.make_vec("DiffCartpole-v0", num_envs=3, vectorization_mode="vector_entry_point", dtype=torch.float32,
                    compile=True, max_steps=2)
observation, _ = envs.reset(seed=0)
for _ in range(3):
    observation, *_ = envs.step(np.full((3, *envs.single_action_space.shape), 0.5, dtype=np.float32))
print(json.dumps({"counts": compile_counts(), "numbers": np.asarray(observation, dtype=float).ravel().tolist()}))
"""


def run(cache: Path, *variants: str, script: str = PROCESS) -> list[dict]:
    """The JSON lines of one fresh process that runs ``variants`` with the compile cache in ``cache``."""
    env = {**os.environ, CACHE_VARIABLE: str(cache)}
    done = subprocess.run([sys.executable, "-c", script, *variants], env=env, capture_output=True, text=True,
                          timeout=3600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_a_second_process_loads_the_compiled_rollout_and_a_changed_one_compiles(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    (first,) = run(cache, "grad")
    assert first["counts"] == {"compiled": 2, "loaded": 0, "uncached": 0}  # the chunk's forward and its VJP
    same, reused, absent, constant, structure, float32 = run(
        cache, "grad", "reuse+grad", "reuse+structure", "constant", "structure", "float32")
    assert same["counts"] == {"compiled": 0, "loaded": 2, "uncached": 0}  # nothing compiled again
    assert same["numbers"] == first["numbers"]  # the same code: the same numbers, gradients included
    # the CPU's vector instruction sets were probed by the first process (where it claims any) and not again
    assert same["probes"] == [] and float32["probes"] == []
    with inductor_config.patch({"cpp.vec_isa_ok": True}):  # no probe: what the CPU claims
        claimed = cpu_vec_isa.valid_vec_isa_list.__wrapped__()
    assert len(first["probes"]) >= (len(claimed) > 0)
    assert reused["counts"] == {"compiled": 0, "loaded": 4, "uncached": 0}
    assert reused["numbers"] == first["numbers"]
    assert absent["counts"] == reused["counts"]  # reuse_compiled never compiles: this one ran eagerly
    # what the trace baked in changed: each compiles its forward again
    assert constant["counts"] == {"compiled": 1, "loaded": 4, "uncached": 0}
    assert structure["counts"] == {"compiled": 2, "loaded": 4, "uncached": 0}
    assert float32["counts"] == {"compiled": 3, "loaded": 4, "uncached": 0}
    assert constant["numbers"] != first["numbers"][:1]
    (later,) = run(cache, "reuse+structure")  # compiled by the process before: now reused
    assert later["counts"] == {"compiled": 0, "loaded": 1, "uncached": 0}
    assert later["numbers"] == pytest.approx(absent["numbers"], rel=1e-12)


def test_a_second_process_loads_the_vector_face_compiled_step(tmp_path: Path) -> None:
    (first,) = run(tmp_path / "cache", script=VECTOR)
    (second,) = run(tmp_path / "cache", script=VECTOR)
    assert first["counts"]["compiled"] > 0 and first["counts"]["loaded"] == 0
    assert second["counts"] == {"compiled": 0, "loaded": first["counts"]["compiled"], "uncached": 0}
    assert second["numbers"] == first["numbers"]


def test_the_cache_folder_is_named_by_the_environment_and_refused_where_others_may_write(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CACHE_VARIABLE, str(tmp_path / "mine"))
    assert cache_folder() == tmp_path / "mine"
    assert trusted_folder(tmp_path / "mine") is None
    assert stat.S_IMODE((tmp_path / "mine").stat().st_mode) & 0o077 == 0  # created for its owner alone
    monkeypatch.setenv(CACHE_VARIABLE, "off")
    assert cache_folder() is None
    monkeypatch.delenv(CACHE_VARIABLE)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "platform"))
    if sys.platform not in ("win32", "darwin"):
        assert cache_folder() == tmp_path / "platform" / "diffenvs" / "compiled"
    if hasattr(os, "getuid"):
        shared = tmp_path / "shared"
        shared.mkdir()
        shared.chmod(0o777)
        assert trusted_folder(shared) == "others may write to it"
        (tmp_path / "file").write_text("")
        assert trusted_folder(tmp_path / "file") is not None
