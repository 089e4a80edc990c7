"""diffenvs: continuous-time control environments with one definition and three faces.

* the Gymnasium face: ``gymnasium.make("DiffCartpole-v0")``;
* the vector face: ``gymnasium.make_vec("DiffCartpole-v0", num_envs=N, vectorization_mode="vector_entry_point")``;
* the gradient path: :func:`diffenvs.rollout`, a batched differentiable torch rollout.

Each environment module in :mod:`diffenvs.envs` registers itself
(:func:`diffenvs.core.register_problem`); importing ``diffenvs`` imports every module of that
package, so adding an environment is adding its module.
"""

from typing import Any

import diffenvs.envs  # noqa: F401  (registers every built-in environment)
from diffenvs.core.problem import Problem
from diffenvs.core.registration import problem_type_of, registered_ids
from diffenvs.core.rollout import RK4, Adaptive, Adjoint, Solver, Trajectory, rollout

__all__ = ["RK4", "Adaptive", "Adjoint", "Solver", "Trajectory", "rollout", "ENV_IDS", "problem_of", "registered_ids"]

#: the built-in environments' ids
ENV_IDS: tuple[str, ...] = registered_ids()


def problem_of(env_id: str, **kwargs: Any) -> Problem:
    """The definition (problem) behind a registered id, built with ``kwargs``."""
    return problem_type_of(env_id)(**kwargs)
