"""The one horizon convention, and the deprecated names it replaces.

Every definition has ``max_steps`` (the number of steps of an episode) and ``dt`` (seconds
per step; 1 for discrete-time problems, whose "seconds" are steps); its horizon is
``max_steps * dt`` (:attr:`~diffenvs.core.problem.Problem.horizon`). The earlier names of
the horizon (``horizon=`` and ``time_limit=`` in seconds, ``steps=`` and ``measurements=``
in steps) are accepted as constructor arguments and readable as attributes for a while,
with a ``FutureWarning`` naming what replaces them.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

from diffenvs.core.problem import check_positive

T = TypeVar("T", bound=type)


def steps_of(name: str, seconds: Any, dt: Any) -> int:
    """The number of steps of ``dt`` in ``seconds`` (a deprecated horizon in seconds, named ``name``).

    ``ValueError`` unless ``dt`` divides ``seconds`` into a whole number (at least 1) of steps,
    up to rounding: rounding to the nearest step count would silently change the episode.
    """
    check_positive("dt", dt)
    check_positive(name, seconds)
    ratio = seconds / dt
    steps = round(ratio) if math.isfinite(ratio) else 0
    if steps < 1 or abs(ratio - steps) > 1e-9 * steps:
        raise ValueError(f"{name} = {seconds!r} s must be a whole number of steps of dt = {dt!r} s, got {ratio!r} "
                         f"steps; pass max_steps (the number of steps) and dt instead")
    return steps


def _deprecated_property(old: str, new: str) -> property:
    def get(self: Any) -> Any:
        warnings.warn(f"{type(self).__name__}.{old} is deprecated; read {new}", FutureWarning, stacklevel=2)
        return getattr(self, new)

    return property(get, doc=f"Deprecated: read ``{new}``.")


def renamed_horizon(old: str, *, seconds: bool = False, attribute: str | None = None) -> Callable[[T], T]:
    """Class decorator (above ``@dataclass``): accept the deprecated argument ``old`` for ``max_steps``.

    ``old`` counts steps, or seconds when ``seconds`` (``max_steps = round(old / dt)``). It
    wins over ``max_steps``, so ``dataclasses.replace(problem, old=...)`` works. With
    ``attribute``, ``problem.old`` stays readable as a deprecated property returning it.
    """

    def decorate(cls: T) -> T:
        init = vars(cls)["__init__"]  # the dataclass's own __init__ (the decorator sits above @dataclass)
        default_dt = getattr(cls, "dt", None)

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            value = kwargs.pop(old, None)
            if value is not None:
                max_steps = steps_of(old, value, kwargs.get("dt", default_dt)) if seconds else value
                warnings.warn(f"{cls.__name__}({old}=...) is deprecated; pass max_steps={max_steps!r} (the number "
                              "of steps)", FutureWarning, stacklevel=2)
                kwargs["max_steps"] = max_steps
            init(self, *args, **kwargs)

        type.__setattr__(cls, "__init__", __init__)
        if attribute is not None:
            setattr(cls, old, _deprecated_property(old, attribute))
        return cls

    return decorate
