"""Shared machinery: numerics, the definition interface, the three faces, input checks, registration."""

from __future__ import annotations

from diffenvs.core.gym_face import DiffEnv
from diffenvs.core.problem import Feedback, Held, OdeProblem, Problem
from diffenvs.core.registration import faces, problem_type_of, register_problem, registered_ids
from diffenvs.core.transition import Transition, transition
from diffenvs.core.vector_face import DiffVectorEnv

__all__ = ["DiffEnv", "DiffVectorEnv", "Feedback", "Held", "OdeProblem", "Problem", "Transition", "faces",
           "problem_type_of", "register_problem", "registered_ids", "transition"]
