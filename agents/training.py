"""A finished training run: evaluate its policy on the Gymnasium face, compare it with the analytic
reference, write ``results.json`` and plots, and say how it did.

Nothing here knows a particular agent or environment: any agent that gives a Gymnasium
policy, gradient-based or not, goes through :func:`finish_run`.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import json
import os
import textwrap
import time
import types
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agents.analytic import Reference
from agents.cards import presets
from agents.episodes import EVAL_SEED, GymPolicy, controls_on, evaluate, record_episode, start_states
from agents.files import jsonable, write_json
from agents.plots import plot_controls, plot_learning_curve, plot_trajectories
from diffenvs import problem_of

RESULTS_FILE = "results.json"
CHECKPOINT_FILE = "checkpoint.pt"


# ---- the command line from a config dataclass ------------------------------------------
def field_docs(cls: type) -> dict[str, str]:
    """The docstring written under each field of dataclass ``cls`` (``""`` where none)."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):  # no source available (e.g. built interactively)
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, following in zip(body, body[1:] + [None]):
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                text = ""
                if (isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                        and isinstance(following.value.value, str)):
                    text = " ".join(following.value.value.split())
                docs[node.target.id] = text
    return docs


_SCALARS: tuple[type, ...] = (bool, int, float, str)


def _parse_bool(text: str) -> bool:
    """``true``/``false`` (also ``1``/``0``, ``yes``/``no``) as a bool."""
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise ValueError(f"not a bool: {text!r}")


_parse_bool.__name__ = "bool"


def _parser_of(kind: type) -> Callable[[str], Any]:
    """The function turning one command-line word into a value of the scalar type ``kind``."""
    return _parse_bool if kind is bool else kind


def _optional(kind: type) -> Callable[[str], Any]:
    """A parser of ``kind`` that reads the text ``none`` (any case) as ``None``."""
    parse_kind = _parser_of(kind)

    def parse(text: str) -> Any:
        return None if text.lower() == "none" else parse_kind(text)

    parse.__name__ = f"{kind.__name__} or None"  # argparse names it in "invalid ... value"
    return parse


class _StoreTuple(argparse.Action):
    """Store the values of a ``nargs="+"`` option as a tuple (configs are frozen and hashable)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        setattr(namespace, self.dest, tuple(values))


def _config_fields(cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The ``__init__`` fields of dataclass ``cls`` with their resolved annotations."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if f.init]


def _is_config(kind: Any) -> bool:
    """Whether the annotation ``kind`` is a dataclass type (a nested config, flattened on the command line)."""
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _option(kind: Any) -> dict[str, Any] | None:
    """The ``add_argument`` keywords for a field annotated ``kind``; ``None`` if the command line cannot take it."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if kind in _SCALARS:
        return {"type": kind, "metavar": kind.__name__.upper()}
    if origin in (typing.Union, types.UnionType) and type(None) in arguments:
        others = [a for a in arguments if a is not type(None)]
        if len(others) == 1 and others[0] in _SCALARS:
            return {"type": _optional(others[0]), "metavar": f"{others[0].__name__.upper()}|none"}
    if origin is tuple and len(arguments) == 2 and arguments[1] is Ellipsis and arguments[0] in _SCALARS:
        item = arguments[0]
        return {"type": _parser_of(item), "nargs": "+", "action": _StoreTuple, "metavar": item.__name__.upper()}
    return None


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, title: str | None = None,
                         description: str | None = None) -> None:
    """Add one ``--field-name`` option per field of the frozen config dataclass ``cls``.

    Fields may be ``bool`` (``--x``/``--no-x``), ``int``, ``float``, ``str``, one of these or
    ``None`` (``X | None``; the text ``none`` gives ``None``), ``tuple[X, ...]`` (one or more
    values) or a nested config dataclass, flattened: each of its fields is an option of its
    own, in a group of its own. The help text is the field's docstring and its default.
    Options not given on the command line are absent from the parsed namespace
    (``argparse.SUPPRESS``), so :func:`config_from_arguments` overrides only what the user wrote.
    """
    if not _is_config(cls):
        raise TypeError(f"cls must be a dataclass, got {cls!r}")
    group = parser.add_argument_group(title or f"{cls.__name__} options", description)
    docs = field_docs(cls)
    nested: list[tuple[str, type]] = []
    for f, kind in _config_fields(cls):
        if _is_config(kind):
            nested.append((f.name, kind))
            continue
        option = _option(kind)
        if option is None:
            raise TypeError(f"field {f.name!r} of {cls.__name__} has type {kind!r}; the command line takes bool, int, "
                            f"float, str, X | None, tuple[X, ...] of these, or a nested config dataclass")
        if f.default is not dataclasses.MISSING:
            shown = f" (default: {f.default!r})"
        elif f.default_factory is not dataclasses.MISSING:
            shown = f" (default: {f.default_factory()!r})"
        else:
            shown = ""
        help_text = f"{docs.get(f.name, '')}{shown}".replace("%", "%%")
        group.add_argument("--" + f.name.replace("_", "-"), dest=f.name, default=argparse.SUPPRESS, help=help_text,
                           **option)
    for name, kind in nested:
        add_config_arguments(parser, kind, f"{name} options ({kind.__name__})", docs.get(name) or None)


def config_from_arguments(namespace: argparse.Namespace, base: Any) -> Any:
    """``base`` (a config instance) with the fields given on the command line replaced.

    Nested configs (fields annotated with a dataclass type) are rebuilt from their own
    options the same way, field by field.
    """
    given = vars(namespace)
    changes: dict[str, Any] = {}
    for f, kind in _config_fields(type(base)):
        if _is_config(kind) and dataclasses.is_dataclass(getattr(base, f.name)):
            changes[f.name] = config_from_arguments(namespace, getattr(base, f.name))
        elif f.name in given:
            changes[f.name] = given[f.name]
    return dataclasses.replace(base, **changes)


def parse_env_kwargs(text: str | None, preset: str | None, env_id: str) -> dict[str, Any]:
    """Environment keyword arguments from a named ``preset`` and a JSON object ``text`` (which wins)."""
    kwargs: dict[str, Any] = {}
    if preset is not None:
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
def write_results(out: str | os.PathLike, results: dict[str, Any]) -> Path:
    """Write ``results`` (through :func:`~agents.files.jsonable`) as ``results.json`` in the folder ``out``, atomically."""
    return write_json(Path(out) / RESULTS_FILE, jsonable(results))


def finish_run(out: str | os.PathLike, *, env_id: str, agent: str, policy: GymPolicy, env_kwargs: dict[str, Any] | None = None,
               seed: int | None = None, reference: Reference | None = None, history: Sequence[dict[str, float]] = (),
               env_steps: int = 0, train_seconds: float = 0.0, config: Any = None, episodes: int = 10,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Evaluate ``policy`` on the Gymnasium face, compare it with ``reference``, write ``results.json`` and plots.

    The final cost is the mean over ``episodes`` episodes of :func:`agents.evaluation.evaluate`
    (starts ``reset(seed=EVAL_SEED + i)``); the reference controller, if any, runs the same
    episodes. ``gap`` is ``final_cost - optimum`` and ``relative_gap`` divides it by
    ``|optimum|`` (absent when the optimum is 0 or unknown); ``reference_gap`` and
    ``reference_relative_gap`` compare with the reference controller's cost instead.
    ``control_rms`` is the RMS difference of the physical controls at the reference's probe
    observations. Returns the results dictionary.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be at least 1, got {episodes}")
    began = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    env_kwargs = dict(env_kwargs or {})
    problem = problem_of(env_id, **env_kwargs)

    costs = evaluate(env_id, policy, episodes, env_kwargs)
    results: dict[str, Any] = {
        "env": env_id, "env_kwargs": env_kwargs, "agent": agent, "seed": seed,
        "final_cost": float(costs.mean()), "final_cost_std": float(costs.std()), "costs": costs,
        "episodes": episodes, "eval_seed": EVAL_SEED,
    }
    starts = start_states(env_id, env_kwargs, episodes)
    reference_policy = None if reference is None else reference.gym_policy
    probe_plot = None
    if reference is not None:
        analytic = reference.analytic(starts)
        optimum = analytic.get("optimum")
        results.update(reference=reference.name, reference_description=reference.description, analytic=analytic,
                       optimum=optimum)
        if optimum is not None:
            results["gap"] = results["final_cost"] - optimum
            if optimum != 0:
                results["relative_gap"] = results["gap"] / abs(optimum)
        if reference_policy is not None:
            reference_costs = evaluate(env_id, reference_policy, episodes, env_kwargs)
            reference_cost = float(reference_costs.mean())
            results.update(reference_cost=reference_cost, reference_gap=results["final_cost"] - reference_cost)
            if reference_cost != 0:
                results["reference_relative_gap"] = results["reference_gap"] / abs(reference_cost)
    else:
        results.update(reference=None, optimum=None)

    # episodes from the first evaluation starts, for the plots
    shown = min(episodes, 5)
    runs = {agent: [record_episode(env_id, policy, env_kwargs, EVAL_SEED + i) for i in range(shown)]}
    if reference_policy is not None and reference is not None and reference.name != agent:
        runs[f"{reference.name} (analytic)"] = [record_episode(env_id, reference_policy, env_kwargs, EVAL_SEED + i)
                                                for i in range(shown)]
    if reference is not None and reference.probe is not None:
        reference_episode = runs[agent][0] if reference.name == agent else (
            runs[f"{reference.name} (analytic)"][0] if reference_policy is not None else None)
        label, coordinates, observations = reference.probe(reference_episode)
        learned = controls_on(problem, policy, observations)
        probe_controls = {agent: learned}
        if reference_policy is not None:
            optimal = controls_on(problem, reference_policy, observations)
            probe_controls[f"{reference.name} (analytic)"] = optimal
            results["control_rms"] = float(np.sqrt(np.mean((learned - optimal) ** 2)))
            results["control_probe"] = label
        probe_plot = (label, coordinates, probe_controls)

    plots = []
    title = f"{env_id} — {agent}"
    if history:
        plots.append(plot_learning_curve(history, out / "loss.png", results.get("optimum"), title))
    plots.append(plot_trajectories(runs, problem.state_names, problem.state_units, out / "trajectory.png",
                                   None if reference is None else reference.plane, title))
    plots.append(plot_controls({label: episodes_[0] for label, episodes_ in runs.items()}, problem.control_names,
                               problem.control_units, out / "control.png", probe_plot, title))
    results.update(
        env_steps=int(env_steps), iterations=len(history), train_seconds=float(train_seconds),
        evaluation_seconds=time.perf_counter() - began, wall_time=float(train_seconds) + time.perf_counter() - began,
        config=config, plots=[p.name for p in plots], **(extra or {}),
    )
    write_results(out, results)
    return results


def summary(results: dict[str, Any]) -> str:
    """A few lines saying how the run did."""
    lines = [f"{results['env']} {json.dumps(jsonable(results['env_kwargs']))}  agent={results['agent']}  seed={results['seed']}",
             f"  final cost {results['final_cost']:.6g} (± {results['final_cost_std']:.2g} over {results['episodes']} "
             f"Gymnasium episodes)"]
    if results.get("optimum") is not None:
        relative = results.get("relative_gap")
        lines.append(f"  analytic optimum {results['optimum']:.6g}  gap {results['gap']:.3g}"
                     + ("" if relative is None else f" ({100 * relative:.3g}%)"))
    if results.get("reference_cost") is not None:
        relative = results.get("reference_relative_gap")
        lines.append(f"  {results['reference']} controller {results['reference_cost']:.6g}  gap {results['reference_gap']:.3g}"
                     + ("" if relative is None else f" ({100 * relative:.3g}%)"))
    if results.get("control_rms") is not None:
        lines.append(f"  control RMS difference to {results['reference']}: {results['control_rms']:.3g} "
                     f"(at observations along {results['control_probe']})")
    lines.append(f"  {results['env_steps']} environment steps, {results['iterations']} iterations, "
                 f"wall time {results['wall_time']:.1f} s")
    return "\n".join(lines)
