"""Registration: a definition module makes its problem a Gymnasium id in one line.

``OscillatorEnv, OscillatorVectorEnv = register_problem(Oscillator, "MyOscillator-v0", __doc__)``
builds the two faces (also set as attributes of the definition's module, the string entry
points gymnasium records), registers them with ``gymnasium.register`` (``gymnasium.make``
and ``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``), sets
``Cartpole.env_id`` and records the id for :func:`problem_type_of`. A definition in a
user's own file registers the same way.

No ``max_episode_steps`` is registered: ``gymnasium.make`` would wrap every environment in a
``TimeLimit`` of that length whatever its keyword arguments, cutting an episode of a longer
``max_steps`` short. Each environment ends its episodes itself, and the spec that
``gymnasium.make`` gives it reports that length (``env.spec.max_episode_steps == max_steps``,
see :class:`~diffenvs.core.gym_face.DiffEnv`), which is what ``TimeAwareObservation`` reads.
"""

from __future__ import annotations

import math
import sys

import gymnasium

from diffenvs.core.gym_face import DiffEnv
from diffenvs.core.problem import Problem
from diffenvs.core.vector_face import DiffVectorEnv

_PROBLEMS: dict[str, type[Problem]] = {}
_ORDER: dict[str, tuple[float, int]] = {}


def faces(problem_type: type[Problem], doc: str | None) -> tuple[type[DiffEnv], type[DiffVectorEnv]]:
    """The Gymnasium and vector environment classes of a definition (the registered entry points)."""
    name = problem_type.__name__
    single = type(f"{name}Env", (DiffEnv,), {"__doc__": doc, "problem_type": problem_type,
                                             "__module__": problem_type.__module__})
    vector = type(f"{name}VectorEnv", (DiffVectorEnv,), {"__doc__": DiffVectorEnv.__doc__, "problem_type": problem_type,
                                                       "__module__": problem_type.__module__})
    return single, vector


def register_problem(problem_type: type[Problem], env_id: str, doc: str | None = None, *,
                     order: float = math.inf) -> tuple[type[DiffEnv], type[DiffVectorEnv]]:
    """Register ``problem_type`` as the Gymnasium id ``env_id``; returns its environment and vector environment classes.

    ``doc`` is the environment's docstring (its module's ``__doc__``); ``order`` places the
    id in :func:`registered_ids` (the built-in environments are numbered, ids without an
    order follow in the order they were registered).
    """
    if not (isinstance(problem_type, type) and issubclass(problem_type, Problem)):
        raise TypeError(f"problem_type must be a subclass of diffenvs.core.Problem, got {problem_type!r}")
    if not (isinstance(env_id, str) and env_id):
        raise ValueError(f"env_id must be a non-empty string such as 'MyOscillator-v0', got {env_id!r}")
    single, vector = faces(problem_type, doc)
    problem_type.env_id = env_id
    # gymnasium records entry points as strings (so specs serialise): the classes live in the definition's module
    module = sys.modules[problem_type.__module__]
    for face in (single, vector):
        setattr(module, face.__name__, face)
    gymnasium.register(id=env_id, entry_point=f"{module.__name__}:{single.__name__}",
                       vector_entry_point=f"{module.__name__}:{vector.__name__}")
    _PROBLEMS[env_id] = problem_type
    _ORDER[env_id] = (order, _ORDER[env_id][1] if env_id in _ORDER else len(_ORDER))
    return single, vector


def registered_ids() -> tuple[str, ...]:
    """Every id registered with :func:`register_problem` so far, the built-in environments first."""
    return tuple(sorted(_PROBLEMS, key=_ORDER.__getitem__))


def problem_type_of(env_id: str) -> type[Problem]:
    """The definition registered as ``env_id``."""
    if env_id not in _PROBLEMS:
        raise ValueError(f"env_id must be one of {registered_ids()}, got {env_id!r}")
    return _PROBLEMS[env_id]
