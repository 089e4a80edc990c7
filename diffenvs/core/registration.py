"""Registration: a definition module makes its problem a Gymnasium id in one line.

``OscillatorEnv, OscillatorVectorEnv = register_problem(Oscillator, "MyOscillator-v0", __doc__)``
builds the two faces (also set as attributes of the definition's module, the string entry
points gymnasium records), registers them with ``gymnasium.register`` (``gymnasium.make``
and ``gymnasium.make_vec(..., vectorization_mode="vector_entry_point")``), sets
``Oscillator.env_id`` and records the id for :func:`problem_type_of`. A definition in a
user's own file registers the same way.

**Namespace.** With ``namespace="diffenvs"`` (the built-in environments) the id is registered
twice: as ``"diffenvs/DiffCartpole-v0"``, Gymnasium's namespaced form, and as the plain
``"DiffCartpole-v0"`` the project has always used (``Problem.env_id``, the cards, the result
files). Both are listed in one section of ``gymnasium.pprint_registry()``, named after the
namespace rather than after each module file. ``gymnasium.make("diffenvs:DiffCartpole-v0")``
imports ``diffenvs`` first, for a program that has not.

**No time limit** (``max_episode_steps``) is registered: ``gymnasium.make`` would wrap every
environment in a ``TimeLimit`` of that length whatever its keyword arguments, cutting an episode
of a longer ``max_steps`` short, and at the horizon of a problem whose objective is defined there
it would report a truncation where the episode terminates. Each environment ends its episodes
itself after ``max_steps`` steps, and its spec says ``max_episode_steps=None``, as registered
(see :class:`~diffenvs.core.gym_face.DiffEnv`).

**No reward threshold** is registered: a return is minus a cost whose scale is set by the
constructor's arguments (``cost="terminal"`` or ``"quadratic"``, ``max_steps``, ``params``), so a
threshold recorded once per id would be wrong for every environment built with other arguments;
each card states its reference cost for its own settings (``agents/cards``).
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
#: namespaced id -> the plain id it is registered beside
_ALIASES: dict[str, str] = {}


def faces(problem_type: type[Problem], doc: str | None) -> tuple[type[DiffEnv], type[DiffVectorEnv]]:
    """The Gymnasium and vector environment classes of a definition (the registered entry points)."""
    name = problem_type.__name__
    single = type(f"{name}Env", (DiffEnv,), {"__doc__": doc, "problem_type": problem_type,
                                             "__module__": problem_type.__module__})
    vector = type(f"{name}VectorEnv", (DiffVectorEnv,), {"__doc__": DiffVectorEnv.__doc__, "problem_type": problem_type,
                                                       "__module__": problem_type.__module__})
    return single, vector


def register_problem(problem_type: type[Problem], env_id: str, doc: str | None = None, *,
                     order: float = math.inf, namespace: str | None = None
                     ) -> tuple[type[DiffEnv], type[DiffVectorEnv]]:
    """Register ``problem_type`` as the Gymnasium id ``env_id``; returns its environment and vector environment classes.

    ``doc`` is the environment's docstring (its module's ``__doc__``); ``order`` places the
    id in :func:`registered_ids` (the built-in environments are numbered, ids without an
    order follow in the order they were registered); ``namespace`` registers the id
    ``f"{namespace}/{env_id}"`` as well, and lists both ids under it (see the module docstring).
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
    if namespace is not None and not (isinstance(namespace, str) and namespace.isidentifier()):
        raise ValueError(f"namespace must be None or an identifier such as 'diffenvs', got {namespace!r}")
    entry_point, vector_entry_point = (f"{module.__name__}:{face.__name__}" for face in (single, vector))
    for registered in (env_id,) if namespace is None else (env_id, f"{namespace}/{env_id}"):
        gymnasium.register(id=registered, entry_point=entry_point, vector_entry_point=vector_entry_point)
    if namespace is not None:
        _ALIASES[f"{namespace}/{env_id}"] = env_id
        # pprint_registry groups an id without a namespace by its module's file: list the plain id under the namespace
        gymnasium.registry[env_id].namespace = namespace
    _PROBLEMS[env_id] = problem_type
    _ORDER[env_id] = (order, _ORDER[env_id][1] if env_id in _ORDER else len(_ORDER))
    return single, vector


def registered_ids() -> tuple[str, ...]:
    """Every id registered with :func:`register_problem` so far, the built-in environments first."""
    return tuple(sorted(_PROBLEMS, key=_ORDER.__getitem__))


def problem_type_of(env_id: str) -> type[Problem]:
    """The definition registered as ``env_id`` (plain or namespaced, ``"diffenvs/DiffCartpole-v0"``)."""
    plain = _ALIASES.get(env_id, env_id) if isinstance(env_id, str) else env_id
    if plain not in _PROBLEMS:
        raise ValueError(f"env_id must be one of {registered_ids()} (or one of them as '<namespace>/<id>'), "
                         f"got {env_id!r}")
    return _PROBLEMS[plain]
