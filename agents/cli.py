"""The command line of a script, generated from its config dataclasses by `tyro <https://brentyi.github.io/tyro/>`_.

A config is a frozen dataclass with a docstring under each field. :func:`parse` gives one
``--field-name`` option per field (underscores become hyphens), with the field's docstring and
its default as the help, and returns the config::

    config = cli.parse(UdeConfig, argv, description=__doc__)

How a field is spelled on the command line follows its type:

========================  ===========================================================
``bool``                  ``--flag`` / ``--no-flag`` (:data:`Switch`: ``--flag`` only)
``int``, ``float``,       ``--count 3``
``str``
``X | None``              ``--rate 0.1`` or ``--rate None``
``tuple[X, ...]``         ``--names a b`` (no value: the empty tuple)
``Literal[...]``          one of the listed values
a config dataclass        flattened: each of its fields is an option of its own, with
                          no prefix (``--iterations``, not ``--planner.iterations``), in
                          a group of its own headed by the field's docstring
========================  ===========================================================

Because nested configs are flattened, a script that takes several configs wraps them in one
dataclass, one field each, or calls :func:`parse_pair`; their field names must differ.

A value that cannot be read, or that the config's own validation (``__post_init__``) refuses
with a ``ValueError``, ends the process as argparse does: a message naming the option (or
the config) on stderr and ``SystemExit(2)``. ``--help`` exits with status 0.
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import sys
import typing
from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

import tyro

__all__ = ["Switch", "parse", "parse_pair"]

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")

#: a ``bool`` field given as a bare flag, ``--resume``, with no ``--no-resume`` (its default must be ``False``:
#: with ``True``, the field's or a ``default`` instance's, the only option is ``--no-resume``)
Switch = Annotated[bool, tyro.conf.FlagCreatePairsOff]

#: how every script's command line is generated: nested configs flattened, without prefixes
_MARKERS = (tyro.conf.OmitArgPrefixes,)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _check_flat(config_type: type, owners: dict[str, str] | None = None) -> dict[str, str]:
    """The option of every (nested) field of ``config_type`` -> the field it sets; ``TypeError`` if two share one."""
    owners = {} if owners is None else owners
    hints = typing.get_type_hints(config_type)
    for field in dataclasses.fields(config_type):
        if not field.init:
            continue
        kind = hints[field.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            _check_flat(kind, owners)
            continue
        owner = f"{config_type.__name__}.{field.name}"
        flag = _flag(field.name)
        if flag in owners:
            raise TypeError(f"{owners[flag]} and {owner} would both be the option {flag}: nested configs are "
                            f"flattened without a prefix, so their field names must differ")
        owners[flag] = owner
    return owners


def parse(config_type: type[T], argv: Sequence[str] | None = None, *, default: T | None = None,
          description: str | None = None) -> T:
    """The config of type ``config_type`` that the command line ``argv`` describes.

    ``argv`` defaults to ``sys.argv[1:]``. Options not given keep the value of ``default``
    (an instance of ``config_type``, e.g. tuned for the task at hand; its nested configs
    included) or, without one, the field's default. ``description`` heads ``--help``
    (default: the docstring of ``config_type``).

    Raises ``TypeError`` if ``config_type`` is not a dataclass or two of its (nested) fields
    would share an option; exits (``SystemExit``) on ``--help`` and on a value refused.
    """
    if not (isinstance(config_type, type) and dataclasses.is_dataclass(config_type)):
        raise TypeError(f"config_type must be a dataclass type, got {config_type!r}")
    if default is not None and not isinstance(default, config_type):
        raise TypeError(f"default must be an instance of {config_type.__name__}, got {type(default).__name__}")
    _check_flat(config_type)
    arguments: dict[str, Any] = {} if default is None else {"default": default}
    try:
        return tyro.cli(config_type, args=None if argv is None else list(argv), description=description, config=_MARKERS,
                        **arguments)
    except ValueError as error:  # the root config's validation: older tyro lets it through (tyro#482), newer exits itself
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from error


def parse_pair(first: type[A], second: type[B], argv: Sequence[str] | None = None, *,
               titles: tuple[str, str] = ("first", "second"), defaults: tuple[A | None, B | None] = (None, None),
               description: str | None = None) -> tuple[A, B]:
    """Two configs, of types ``first`` and ``second``, from one command line ``argv``.

    Their options are flat (``--lr``, not ``--agent.lr``), in two groups of ``--help`` named by
    ``titles`` (identifiers) and headed by each type's docstring; ``defaults`` are instances
    whose values replace the fields' defaults (``None``: the type's own defaults). Otherwise
    as :func:`parse`: the two types' field names must differ.
    """
    for title in titles:
        if not (isinstance(title, str) and title.isidentifier() and not keyword.iskeyword(title)):
            raise ValueError(f"titles must be two Python identifiers, got {titles!r}")
    if titles[0] == titles[1]:
        raise ValueError(f"titles must differ, got {titles!r}")
    kinds = (first, second)
    for kind in kinds:
        if not (isinstance(kind, type) and dataclasses.is_dataclass(kind)):
            raise TypeError(f"first and second must be dataclass types, got {kind!r}")
    pair = dataclasses.make_dataclass(f"{first.__name__}And{second.__name__}",
                                      [(title, kind) for title, kind in zip(titles, kinds)], frozen=True)
    values = [kind() if value is None else value for kind, value in zip(kinds, defaults)]
    parsed = parse(pair, argv, default=pair(*values), description=description)
    return getattr(parsed, titles[0]), getattr(parsed, titles[1])


def parse_env_kwargs(text: str | None, preset: str | None, env_id: str) -> dict[str, Any]:
    """Environment keyword arguments from a named ``preset`` and a JSON object ``text`` (which wins)."""
    kwargs: dict[str, Any] = {}
    if preset is not None:
        from agents.cards import presets

        named = presets()
        if preset not in named:
            raise ValueError(f"preset must be one of {sorted(named)}, got {preset!r}")
        preset_env, preset_kwargs = named[preset]
        if preset_env != env_id:
            raise ValueError(f"preset {preset!r} is for {preset_env}, got env_id {env_id!r}")
        kwargs.update(preset_kwargs)
    if text:
        try:
            given = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"env_kwargs must be a JSON object, got {text!r} ({error})") from error
        if not isinstance(given, dict):
            raise ValueError(f"env_kwargs must be a JSON object, got {text!r}")
        kwargs.update(given)
    return kwargs


# ---- a finished run: evaluate, compare, write, plot --------------------------------------
