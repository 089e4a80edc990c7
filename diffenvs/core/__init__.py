"""Shared machinery: numerics, the definition interface, the three faces, input checks."""

from __future__ import annotations

from diffenvs.core.gym_face import DiffEnv
from diffenvs.core.problem import Problem
from diffenvs.core.vector_face import DiffVectorEnv

__all__ = ["DiffEnv", "DiffVectorEnv", "Problem", "faces"]


def faces(problem_type: type[Problem], doc: str | None) -> tuple[type[DiffEnv], type[DiffVectorEnv]]:
    """The Gymnasium and vector environment classes of a definition (the registered entry points)."""
    name = problem_type.__name__
    single = type(f"{name}Env", (DiffEnv,), {"__doc__": doc, "problem_type": problem_type,
                                             "__module__": problem_type.__module__})
    vector = type(f"{name}VectorEnv", (DiffVectorEnv,), {"__doc__": DiffVectorEnv.__doc__, "problem_type": problem_type,
                                                       "__module__": problem_type.__module__})
    return single, vector
