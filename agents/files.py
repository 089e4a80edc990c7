"""Files a run writes and reads: one atomic writer, JSON, checkpoints.

Every file goes through :func:`atomic_write`: it is written to a temporary file beside its
destination, flushed to disk, then moved onto it with ``os.replace``, so a reader (or a run
killed half-way) sees either the old file or the new one, never a part. Checkpoints are read
with ``torch.load(weights_only=True)``: tensors and plain Python values only, no pickled code.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import torch


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], binary: bool = False,
                 newline: str | None = None) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it onto ``path`` (``os.replace``).

    ``binary`` opens the file in bytes mode; ``newline`` is passed to text mode (``""`` for CSV).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    try:
        with os.fdopen(handle, "wb" if binary else "w", newline=None if binary else newline) as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes it private; give it the usual permissions
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_write(path, lambda file: file.write(text))


def jsonable(value: Any) -> Any:
    """``value`` with dataclasses, numpy and torch values turned into JSON types (``repr`` otherwise).

    Non-finite floats become their ``repr`` (``"nan"``, ``"inf"``): JSON has no such numbers.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write ``data`` as indented JSON to ``path``, atomically (pass it through :func:`jsonable` first if
    it holds numpy, torch or dataclass values). It is serialised before the file is touched, so a value
    JSON cannot hold raises ``TypeError`` and leaves the old file whole."""
    text = json.dumps(data, indent=1) + "\n"

    def write(file: TextIO) -> None:
        file.write(text)

    return atomic_write(path, write)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain Python values) with :func:`torch.save`, atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return atomic_write(path, lambda file: file.write(buffer.getvalue()), binary=True)


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`, weights-only (no pickled code runs)."""
    return torch.load(Path(path), map_location="cpu", weights_only=True)
