"""Checks of a definition's constants, run by its ``__post_init__`` (and by ``rollout`` on ``params`` it is given)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import torch

from diffenvs.core.validation import check_integer, check_positive, finite_number, is_real


class Definition(Protocol):
    """What these checks read of a definition (:class:`~diffenvs.core.problem.Problem`): its constants and episode."""

    @property
    def params(self) -> Any: ...
    @property
    def max_steps(self) -> int: ...
    @property
    def dt(self) -> float: ...


#: the largest float32: a constant that is observed directly must not exceed it
FLOAT32_MAX = float(np.finfo(np.float32).max)


def plain_constants(problem: Definition, params_type: type | None = None) -> None:
    """Turn numpy scalar constants of ``problem`` (a frozen dataclass) and of its ``params`` into Python numbers.

    Called first in a definition's ``__post_init__``, so that the checks and the physics see
    plain ``int``/``float`` (a ``numpy.float32`` constant would otherwise make the Python-float
    physics compute in float32). With ``params_type``, ``params`` must be an instance of it or a
    mapping of some of its fields (``{"pole_length": 0.5}``: a spec read back from JSON, a command
    line's ``dict(...)``, a Hydra config), which builds one; ``TypeError`` otherwise. Bools and
    tensors are left as they are.
    """

    def plain(value: Any) -> Any:
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return float(value)
        return value

    if not dataclasses.is_dataclass(problem):
        raise TypeError(f"a definition must be a dataclass, got {type(problem).__name__}")
    for f in dataclasses.fields(problem):
        if f.init and f.name != "params":
            object.__setattr__(problem, f.name, plain(getattr(problem, f.name)))
    if params_type is None:
        return
    params = problem.params
    if isinstance(params, Mapping):  # a spec read back from JSON, a command line's dict(...), a Hydra config
        params = params_from_mapping(params_type, params)
        object.__setattr__(problem, "params", params)
    if not isinstance(params, params_type):
        raise TypeError(f"params must be a {params_type.__name__} or a mapping of its fields, "
                        f"got {type(params).__name__}: {params!r}")
    if not dataclasses.is_dataclass(params) or isinstance(params, type):
        return
    changes = {f.name: plain(getattr(params, f.name)) for f in dataclasses.fields(params)
               if isinstance(getattr(params, f.name), (np.integer, np.floating))}
    if changes:
        object.__setattr__(problem, "params", dataclasses.replace(params, **changes))


def params_from_mapping(params_type: type, mapping: Mapping[Any, Any]) -> Any:
    """``params_type(**mapping)``: a mapping of some of its fields (the others keep their defaults).

    ``TypeError`` names the keys that are no field of ``params_type``, and the fields there are.
    """
    names = [f.name for f in dataclasses.fields(params_type) if f.init] if dataclasses.is_dataclass(params_type) else []
    unknown = [key for key in mapping if key not in names]
    if unknown:
        raise TypeError(f"params has no field {', '.join(map(repr, unknown))}: the fields of "
                        f"{params_type.__name__} are {names}")
    return params_type(**dict(mapping))


def check_episode(problem: Definition) -> None:
    """Raise ``ValueError`` unless ``max_steps >= 1`` and ``dt`` (given or derived) is finite and positive."""
    check_integer("max_steps", problem.max_steps)
    dt = problem.dt
    if not (is_real(dt) and finite_number(dt) and dt > 0):
        raise ValueError(f"dt must be a finite positive number (seconds per step), got {dt!r} "
                         f"(max_steps = {problem.max_steps!r})")


def check_positive_fields(params: Any, names: Sequence[str]) -> None:
    """:func:`check_positive` on the fields ``names`` of ``params`` that are plain numbers.

    Tensor fields (physical constants being differentiated) are left alone: a check on their
    values would be a branch on a tensor.
    """
    for name in names:
        value = getattr(params, name)
        if not isinstance(value, torch.Tensor):
            check_positive(f"params.{name}", value)
