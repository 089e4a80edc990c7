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
the config) on stderr and ``SystemExit(2)``. ``--help`` exits with status 0. Two checks hold
for every config: an integer field named ``seed`` (or ``..._seed``) lies in ``[0, MAX_SEED]``,
which torch, numpy and Gymnasium all accept, and a ``Path`` field is never given the empty
string (which ``Path`` reads as the current folder).

A script that writes into a folder calls :func:`check_out_folder` on it first, so that an
option naming a file, an unwritable place or nothing fails at once rather than at the first
save; :func:`parse_env_kwargs` reads ``--env-kwargs``.
"""

from __future__ import annotations

import dataclasses
import json
import keyword
import os
import re
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import tyro

__all__ = ["MAX_SEED", "Switch", "check_out_folder", "check_seeds", "parse", "parse_env_kwargs", "parse_pair", "plain_text"]

T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")

#: a ``bool`` field given as a bare flag, ``--resume``, with no ``--no-resume`` (its default must be ``False``:
#: with ``True``, the field's or a ``default`` instance's, the only option is ``--no-resume``)
Switch = Annotated[bool, tyro.conf.FlagCreatePairsOff]

#: how every script's command line is generated: nested configs flattened, without prefixes
_MARKERS = (tyro.conf.OmitArgPrefixes,)

#: the largest seed a command line takes: numpy's limit is 2**32 - 1, and a script may add offsets to its seed
MAX_SEED = 2**31 - 1


#: a reST role with its text: :math:`x^2`, :func:`~a.b`, :class:`title <target>`
_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`([^`]+)`")
#: a hyperlink reference, `text <url>`_ (or __), and an inline literal or interpreted text, ``a`` or `a`
_LINK = re.compile(r"`([^`<]+?)\s*<([^`>]+)>`__?")
_LITERAL = re.compile(r"``([^`]+)``|`([^`]+)`")


def _role_text(match: re.Match[str]) -> str:
    """What a role shows: the title of ``title <target>``, else the target (its last part after a leading ``~``)."""
    text = match.group(1)
    titled = re.fullmatch(r"(.+?)\s*<[^<>]+>", text, flags=re.DOTALL)
    if titled:
        return titled.group(1)
    if text.startswith("~"):
        return text[1:].rsplit(".", 1)[-1]
    return text


def plain_text(text: str) -> str:
    """``text`` (a reST docstring) as plain text for a terminal: roles, literals and links lose their markup.

    ``:math:`x^2``` becomes ``x^2``, ````a```` becomes ``a``, ``:func:`~a.b``` becomes ``b``
    (``:mod:`a.b``` stays ``a.b``), ```text <url>`_`` becomes ``text (url)``, and a paragraph
    ending in ``::`` (a literal block follows) ends in ``:``. Everything else is kept as it is.
    """
    text = _ROLE.sub(_role_text, text)
    text = _LINK.sub(lambda match: f"{match.group(1)} ({match.group(2)})", text)
    text = _LITERAL.sub(lambda match: match.group(1) or match.group(2), text)
    text = re.sub(r"\s+::$", "", text, flags=re.MULTILINE)  # "the config ::" introduces the block silently
    return re.sub(r"::$", ":", text, flags=re.MULTILINE)


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
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        _check_no_empty_paths(config_type, args)
        config = tyro.cli(config_type, args=args, description=None if description is None else plain_text(description),
                          config=_MARKERS, **arguments)
        check_seeds(config)
    except ValueError as error:  # the root config's validation: older tyro lets it through (tyro#482), newer exits itself
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    return config


def _fields(config_type: type) -> list[tuple[dataclasses.Field, Any]]:
    """Every init field of ``config_type`` and of its nested configs, with its type."""
    hints = typing.get_type_hints(config_type)
    found = []
    for field in dataclasses.fields(config_type):
        if not field.init:
            continue
        kind = hints[field.name]
        if isinstance(kind, type) and dataclasses.is_dataclass(kind):
            found += _fields(kind)
        else:
            found.append((field, kind))
    return found


def _is_path(kind: Any) -> bool:
    while typing.get_origin(kind) is Annotated:
        kind = typing.get_args(kind)[0]
    return kind is Path or Path in typing.get_args(kind)


def _check_no_empty_paths(config_type: type, args: Sequence[str]) -> None:
    """Raise ``ValueError`` if ``args`` give a ``Path`` option the empty string (``Path("")`` is the current folder)."""
    for field, kind in _fields(config_type):
        if not _is_path(kind):
            continue
        flag = _flag(field.name)
        for i, arg in enumerate(args):
            if arg == f"{flag}=" or (arg == flag and i + 1 < len(args) and not args[i + 1].strip()):
                raise ValueError(f"{flag} must name a folder or file, got ''")


def check_seeds(config: Any) -> None:
    """Raise ``ValueError`` naming the option if an integer field ``seed`` or ``*_seed`` of ``config`` (or of its
    nested configs) is outside ``[0, MAX_SEED]``: torch overflows on huge seeds, numpy refuses negative ones."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            check_seeds(value)
        elif (field.name == "seed" or field.name.endswith("_seed")) and isinstance(value, int) \
                and not isinstance(value, bool) and not 0 <= value <= MAX_SEED:
            raise ValueError(f"{_flag(field.name)} must be an integer from 0 to {MAX_SEED} (2**31 - 1), got {value}")


def check_out_folder(path: str | os.PathLike, flag: str = "--out") -> Path:
    """``path`` as a ``Path`` if it can be an output folder: raise ``ValueError`` naming ``flag`` otherwise.

    Refused: the empty string (it would mean the current folder), an existing file, a path
    through a file, and a place this process cannot write into (the folder itself if it exists,
    else its nearest existing parent, where it will be created). Nothing is created.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{flag} must be a folder path, got {type(path).__name__} {path!r}")
    text = os.fspath(path)
    if not str(text).strip():
        raise ValueError(f"{flag} must name a folder, got {text!r} (use '.' for the current folder)")
    folder = Path(text).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{flag} must be a folder, got {text!r}, an existing file")
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{flag} must be a folder, got {text!r}, whose parent {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        where = "it" if existing == folder else f"its parent {str(existing)!r}"
        raise ValueError(f"{flag} must be a folder this process can write into, got {text!r}: {where} is not writable")
    return folder


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
    """Environment keyword arguments from a named ``preset`` and a JSON object ``text`` (which wins).

    A ``"params"`` entry given as a JSON object sets fields of the problem's constants (its
    ``params`` dataclass, e.g. ``{"params": {"gravity": 1.62}}``); the others keep their
    defaults (:func:`problem_params`).
    """
    kwargs: dict[str, Any] = {}
    if preset is not None:
        from agents.cards import presets

        named = presets()
        if preset not in named:
            raise ValueError(f"--preset must be one of {sorted(named)}, got {preset!r}")
        preset_env, preset_kwargs = named[preset]
        if preset_env != env_id:
            raise ValueError(f"--preset {preset!r} is for {preset_env}, got env_id {env_id!r}")
        kwargs.update(preset_kwargs)
    if text:
        try:
            given = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(f"--env-kwargs: env_kwargs must be a JSON object, got {text!r} ({error})") from error
        if not isinstance(given, dict):
            raise ValueError(f"--env-kwargs: env_kwargs must be a JSON object, got {text!r}")
        if "params" in given:
            given["params"] = problem_params(env_id, given["params"])
        kwargs.update(given)
    return kwargs


def problem_params(env_id: str, given: Any) -> Any:
    """The constants of ``env_id``'s problem (its ``params`` dataclass) with the fields of the dict ``given`` set.

    JSON lists become arrays or tuples where the default value is one. Raises ``ValueError``
    naming ``--env-kwargs`` for a problem that takes no ``params``, a ``given`` that is not an
    object, unknown fields (listing the known ones) and non-numbers for numeric fields.
    """
    from diffenvs import problem_type_of

    problem_type = problem_type_of(env_id)
    if not dataclasses.is_dataclass(problem_type):
        raise TypeError(f"the problem of {env_id}, {problem_type.__name__}, must be a dataclass")
    if dataclasses.is_dataclass(given) and not isinstance(given, type):
        return given
    fields = {field.name: field for field in dataclasses.fields(problem_type)}
    field = fields.get("params")
    if field is None or not field.init:
        others = [name for name, f in fields.items() if f.init]
        raise ValueError(f"--env-kwargs: {env_id} takes no params (its constants follow from its arguments {others})")
    if field.default_factory is not dataclasses.MISSING:
        default = field.default_factory()
    else:
        default = None if field.default is dataclasses.MISSING else field.default
    params_type = type(default) if default is not None else typing.get_type_hints(problem_type)["params"]
    if not (isinstance(params_type, type) and dataclasses.is_dataclass(params_type)):
        raise ValueError(f"--env-kwargs: the params of {env_id} are not a dataclass of named constants")
    known = [f.name for f in dataclasses.fields(params_type) if f.init]
    if not isinstance(given, dict):
        raise ValueError(f"--env-kwargs params of {env_id} must be a JSON object of {params_type.__name__} fields "
                         f"{known}, got {given!r}")
    unknown = [name for name in given if name not in known]
    if unknown:
        raise ValueError(f"--env-kwargs params of {env_id}: {params_type.__name__} has no field(s) {unknown}; "
                         f"its fields are {known}")
    values = {}
    for name, value in given.items():
        old = getattr(default, name, None)
        if isinstance(old, np.ndarray):
            value = np.asarray(value, dtype=old.dtype)
        elif isinstance(old, tuple) and isinstance(value, list):
            value = tuple(value)
        elif isinstance(old, (int, float)) and not isinstance(old, bool) and \
                not (isinstance(value, (int, float)) and not isinstance(value, bool)):
            raise ValueError(f"--env-kwargs params of {env_id}: {name} must be a number, got {value!r}")
        values[name] = value
    try:
        return dataclasses.replace(default, **values) if default is not None else params_type(**values)
    except TypeError as error:
        raise ValueError(f"--env-kwargs params of {env_id}: {error}") from error


# ---- a finished run: evaluate, compare, write, plot --------------------------------------
