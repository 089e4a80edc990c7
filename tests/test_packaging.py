"""The environments install and run without the agents' extra; the agents say which extra they need."""

from __future__ import annotations

import subprocess
import sys
import textwrap

#: the packages of the optional extra 'agents' (pyproject.toml), hidden from the child interpreter; scipy
#: is in the extra too but torchdiffeq, a dependency of the environments, needs it already
EXTRA = ("stable_baselines3", "matplotlib", "tqdm", "tyro", "rliable")


def run_without_extra(code: str) -> subprocess.CompletedProcess:
    # a None entry in sys.modules makes the import fail
    hide = f"EXTRA_NAMES = {EXTRA!r}\n" + "".join(f"sys.modules[{name!r}] = None\n" for name in EXTRA)
    program = "import sys\n" + hide + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=300)


def test_environments_run_without_the_agents_extra() -> None:
    done = run_without_extra("""
        import gymnasium as gym
        import numpy as np
        import torch
        import diffenvs

        for env_id in diffenvs.ENV_IDS:
            env = gym.make(env_id)
            env.reset(seed=0)
            env.step(env.action_space.sample())
            envs = gym.make_vec(env_id, num_envs=3, vectorization_mode="vector_entry_point")
            envs.reset(seed=0)
            envs.step(envs.action_space.sample())
        problem = diffenvs.problem_of("DiffCartpole-v0")
        x0 = torch.zeros(2, 4, dtype=torch.float64)
        assert torch.isfinite(diffenvs.rollout(problem, torch.zeros(3, 2, 1, dtype=torch.float64), x0, steps=3).costs).all()
        for module in EXTRA_NAMES:
            assert sys.modules[module] is None, module  # still hidden: nothing above needed it
        print("environments ok")
    """)
    assert done.returncode == 0, done.stderr
    assert "environments ok" in done.stdout


def test_the_agents_name_the_extra_they_need() -> None:
    done = run_without_extra("import agents")
    assert done.returncode != 0
    assert "pip install \"diffenvs[agents]\"" in done.stderr and "stable-baselines3" in done.stderr


def test_the_documented_wrappers_dependencies_are_declared() -> None:
    """docs/faces.md sends torch learners to Gymnasium's ``NumpyToTorch``, which imports ``array_api_compat``:
    the package declares it (through Gymnasium's own ``torch`` extra, or by name)."""
    import re
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    requirements = [r.replace(" ", "").lower() for r in project["dependencies"]]
    declared = any(re.match(r"gymnasium\[[^\]]*torch[^\]]*\]", r) or r.startswith("array-api-compat")
                   for r in requirements)
    assert declared, requirements
