"""Plots of a training run: its learning curve, its trajectories and its controls beside the reference's.

Every figure is drawn on the Agg backend and written through :func:`save`, which lays it out,
writes it atomically and closes it.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.files import atomic_write

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from agents.episodes import Episode


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig: Figure, path: str | os.PathLike, title: str | None = None, dpi: int = 120) -> Path:
    """Title (if any), lay out, write ``path`` atomically and close the figure."""
    if title is not None:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=dpi, format=Path(path).suffix.lstrip(".") or "png")
    pyplot().close(fig)
    return atomic_write(path, lambda file: file.write(buffer.getvalue()), binary=True)


def plot_learning_curve(history: Sequence[dict[str, float]], path: str | os.PathLike, optimum: float | None = None,
                        title: str = "") -> Path:
    """Training loss (the batch's mean cost) against iterations; against its gap to ``optimum`` if given."""
    plt = pyplot()
    iterations = np.array([h["iteration"] for h in history])
    loss = np.array([h["loss"] for h in history])
    fig, ax = plt.subplots(figsize=(6, 4))
    if optimum is not None and np.all(loss - optimum > 0):
        ax.semilogy(iterations, loss - optimum, lw=1)
        ax.set_ylabel(f"loss − optimum ({optimum:.5g})")
    else:
        if np.all(loss > 0):
            ax.set_yscale("log")
        ax.plot(iterations, loss, lw=1)
        ax.set_ylabel("loss (mean cost of the batch)")
        if optimum is not None:
            ax.axhline(optimum, color="k", ls="--", lw=1, label=f"optimum {optimum:.5g}")
            ax.legend()
    ax.set_xlabel("iteration")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return save(fig, path)


def _recorded(episode: Episode) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An episode's ``times``, ``states`` and ``controls``; a ``ValueError`` for one played without recording."""
    if episode.times is None or episode.states is None or episode.controls is None:
        raise ValueError("episodes must be recorded (agents.episodes.record_episode, or play(record=True))")
    return episode.times, episode.states, episode.controls


def plot_trajectories(episodes: dict[str, list[Episode]], state_names: Sequence[str], state_units: Sequence[str],
                      path: str | os.PathLike, plane: tuple[int, int] | None = None, title: str = "") -> Path:
    """Each state component against time (first episode of each label), and the ``plane`` of two components
    (every episode), one colour per label (e.g. the learned controller and the optimal one)."""
    plt = pyplot()
    n = len(state_names)
    panels = n + (plane is not None)
    fig, axes = plt.subplots(1, panels, figsize=(3.4 * panels, 3.2), squeeze=False)
    axes = axes[0]
    styles = ["-", "--", ":", "-."]
    for (label, runs), style in zip(episodes.items(), styles):
        times, first, _ = _recorded(runs[0])
        for i in range(n):
            axes[i].plot(times, first[:, i], style, lw=1.5, label=label)
        if plane is not None:
            a, b = plane
            for j, run in enumerate(runs):
                _, states, _ = _recorded(run)
                axes[-1].plot(states[:, a], states[:, b], style, lw=1,
                              color=axes[0].lines[-1].get_color(), label=label if j == 0 else None)
    for i in range(n):
        axes[i].set_xlabel("t (s)")
        axes[i].set_ylabel(f"{state_names[i]} ({state_units[i]})")
        axes[i].grid(alpha=0.3)
    if plane is not None:
        a, b = plane
        axes[-1].set_xlabel(f"{state_names[a]} ({state_units[a]})")
        axes[-1].set_ylabel(f"{state_names[b]} ({state_units[b]})")
        axes[-1].grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return save(fig, path, title)


def plot_controls(episodes: dict[str, Episode], control_names: Sequence[str], control_units: Sequence[str],
                  path: str | os.PathLike, probe: tuple[str, np.ndarray, dict[str, np.ndarray]] | None = None,
                  title: str = "") -> Path:
    """Controls against time along each labelled episode; with ``probe`` = (label, coordinates,
    {label: controls}) a second panel compares the controls at the same observations."""
    plt = pyplot()
    panels = 1 + (probe is not None)
    fig, axes = plt.subplots(1, panels, figsize=(4.5 * panels, 3.5), squeeze=False)
    axes = axes[0]
    styles = ["-", "--", ":", "-."]
    unit = ", ".join(f"{c} ({u})" for c, u in zip(control_names, control_units))
    for (label, episode), style in zip(episodes.items(), styles):
        times, _, controls_along = _recorded(episode)
        axes[0].step(times[:-1], controls_along, style, where="post", lw=1.2, label=label)
    axes[0].set_xlabel("t (s)")
    axes[0].set_ylabel(unit)
    axes[0].set_title("along each controller's own episode", fontsize=9)
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    if probe is not None:
        coordinate, xs, controls = probe
        order = np.argsort(xs, kind="stable")
        for (label, values), style in zip(controls.items(), styles):
            axes[1].plot(xs[order], values[order], style, lw=1.5, label=label)
        axes[1].set_xlabel(coordinate)
        axes[1].set_ylabel(unit)
        axes[1].set_title("at the same observations", fontsize=9)
        axes[1].legend(fontsize=8)
        axes[1].grid(alpha=0.3)
    return save(fig, path, title)
