"""Agents on the diffenvs environments: gradient-based control, RL baselines, analytic answers, the benchmark.

They need the optional extra ``agents`` (``pip install "diffenvs[agents]"``); the environments
themselves (``diffenvs``) do not.
"""

from importlib.util import find_spec

_EXTRA = {"stable_baselines3": "stable-baselines3", "scipy": "scipy", "matplotlib": "matplotlib", "tqdm": "tqdm",
          "tyro": "tyro", "rliable": "rliable", "cmaes": "cmaes",
          "threadpoolctl": "threadpoolctl"}
_missing = [package for module, package in _EXTRA.items() if find_spec(module) is None]
if _missing:
    raise ImportError(f"the agents need the optional extra 'agents' ({', '.join(_missing)} missing): "
                      'pip install "diffenvs[agents]"')
