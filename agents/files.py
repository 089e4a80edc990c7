"""Files a run writes and reads: one atomic writer, JSON, checksummed checkpoints, the folder's lock.

Every file goes through :func:`atomic_write`: it is written to a temporary file beside its
destination (a unique name, ``.<name>.<random>.partial``), flushed to disk, then moved onto it
with ``os.replace``, so a reader (or a run killed half-way) sees either the old file or the new
one, never a part.

A checkpoint holds its state serialised by :func:`torch.save` together with the SHA-256 of those
bytes. It is read with ``torch.load(weights_only=True)`` (tensors and plain Python values only:
pickled code is refused before it runs) and its checksum is verified, so a truncated, corrupted
or foreign file fails with a :class:`CheckpointError` naming the file and what is wrong.

:func:`folder_lock` makes one process the only writer of an output folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import pickle
import pickletools
import re
import socket
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from stat import S_ISDIR, S_ISLNK, S_ISREG
from typing import IO, Any, Literal, overload

import numpy as np
import torch

#: how the temporary files of :func:`atomic_write` end
PARTIAL_SUFFIX = ".partial"


@overload
def atomic_write(path: str | os.PathLike, write: Callable[[IO[str]], object], binary: Literal[False] = False,
                 newline: str | None = None) -> Path: ...


@overload
def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object], binary: Literal[True],
                 newline: str | None = None) -> Path: ...


def atomic_write(path: str | os.PathLike, write: Callable[[Any], object], binary: bool = False,
                 newline: str | None = None) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it onto ``path`` (``os.replace``).

    ``binary`` opens the file in bytes mode; ``newline`` is passed to text mode (``""`` for CSV).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX)
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

    def write(file: IO[str]) -> None:
        file.write(text)

    return atomic_write(path, write)


#: what :func:`save_checkpoint` writes: a dict with the keys ``format`` (this constant), ``version``
#: (:data:`CHECKPOINT_VERSION`), ``sha256`` (the hex digest of the state's bytes) and ``state`` (those bytes as a
#: uint8 tensor)
CHECKPOINT_FORMAT = "diffenvs-checkpoint"
CHECKPOINT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a whole checkpoint of this format: truncated, corrupted, foreign, or holding pickled code."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain Python values) with :func:`torch.save` and its SHA-256, atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    wrapped = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "sha256": hashlib.sha256(payload).hexdigest(),
               "state": torch.frombuffer(bytearray(payload), dtype=torch.uint8)}
    buffer = io.BytesIO()
    torch.save(wrapped, buffer)
    return atomic_write(path, lambda file: file.write(buffer.getvalue()), binary=True)


#: what in a message of torch's weights-only reader says it refused the file's contents (rather than met its end)
_REFUSALS = ("GLOBAL", "Unsupported", "not an allowed", "Can only", "blocked")
#: the bytes that are pickle instructions (an "unsupported operand" that is none is damage, not a refusal)
_OPCODES = frozenset(ord(opcode.code) for opcode in pickletools.opcodes)


def _refusal(error: BaseException) -> tuple[bool, str]:
    """Whether torch's weights-only reader refused the file (it holds what only a code-running unpickler reads), and
    its reason in its own words, without the rest of torch's message (its advice to read the file another way)."""
    lines = [line.strip() for line in str(error).splitlines()]
    reason = ""
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            reason = line.split("WeightsUnpickler error:", 1)[1].strip() or next((rest for rest in lines[i + 1:] if rest), "")
            break
        if "GLOBAL" in line:
            reason = line
            break
    reason = reason.split(" Please ", 1)[0].split(" Check the documentation", 1)[0].strip()
    if "weights_only" in reason:  # never repeat advice about reading the file with code
        reason = ""
    operand = re.fullmatch(r"Unsupported operand (\d+)", reason)
    if operand is not None and int(operand.group(1)) not in _OPCODES:  # no pickle instruction: a damaged file
        return False, reason
    return any(word in reason for word in _REFUSALS), reason


def _weights_only(path: Path, data: bytes, what: str) -> Any:
    """``torch.load`` of ``data`` weights-only, its failures turned into a :class:`CheckpointError` naming ``path``.

    A file the weights-only reader refuses (a global such as a function or class, an instruction it does not read)
    is described as refused, with torch's reason and none of its advice on reading the file otherwise.
    """
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused, reason = _refusal(error)
        if refused and b"PK\x03\x04".startswith(data[:4]) and reason.startswith("Unsupported operand"):
            refused = False  # a damaged zip archive, which torch then read as a bare pickle from its first byte
        if refused:
            raise CheckpointError(f"checkpoint {path}: {what} is not weights-only: it holds objects other than tensors "
                                  f"and plain Python values, or pickle instructions that build such objects, and was "
                                  f"refused unread (reading it otherwise could run code): {reason}") from None
        raise CheckpointError(f"checkpoint {path}: {what} is truncated or corrupted "
                              f"(UnpicklingError{': ' + reason if reason else ''})") from None
    except Exception as error:  # torch reports a damaged file as RuntimeError, EOFError, KeyError, ... as it happens
        raise CheckpointError(f"checkpoint {path}: {what} is truncated or corrupted ({_first_line(error)})") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return type(error).__name__ + (": " + text.splitlines()[0] if text else "")


def _oversized(value: Any, name: str = "") -> str | None:
    """The first tensor in ``value`` (nested dicts, lists, tuples) that declares more bytes than its storage holds
    (e.g. a 16 GiB tensor expanded from one byte), as ``name: what it declares``; None if there is none."""
    if isinstance(value, torch.Tensor):
        declared = value.numel() * value.element_size()
        held = value.untyped_storage().nbytes() - value.storage_offset() * value.element_size()
        if declared > max(held, 0) or not value.is_contiguous():
            return (f"{name or 'a tensor'}: shape {tuple(value.shape)} of {value.dtype} declares {declared:,} bytes "
                    f"(strides {value.stride()}) over a storage of {value.untyped_storage().nbytes():,} bytes")
        return None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        found = _oversized(item, f"{name}.{key}" if name else str(key))
        if found is not None:
            return found
    return None


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`: weights-only (no pickled code runs), checksum verified.

    Raises:
        FileNotFoundError: there is no file at ``path``.
        CheckpointError: the file is truncated or corrupted (it cannot be read, or its checksum
            does not match), is not a checkpoint of this format, or holds pickled objects other
            than tensors and plain Python values; the message names the file and what is wrong.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"checkpoint {path}: the file is empty")
    wrapped = _weights_only(path, data, "the file")
    if not isinstance(wrapped, dict) or wrapped.get("format") != CHECKPOINT_FORMAT:
        held = f"a dict with keys {sorted(map(str, wrapped))}" if isinstance(wrapped, dict) else type(wrapped).__name__
        raise CheckpointError(f"checkpoint {path}: not a {CHECKPOINT_FORMAT} file (a torch file holding {held}; "
                              "checkpoints without a checksum are not read)")
    if wrapped.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"checkpoint {path}: format version {wrapped.get('version')!r}, this version reads "
                              f"{CHECKPOINT_VERSION}")
    payload, digest = wrapped.get("state"), wrapped.get("sha256")
    if not (isinstance(payload, torch.Tensor) and payload.dtype == torch.uint8 and payload.dim() == 1
            and isinstance(digest, str)):
        raise CheckpointError(f"checkpoint {path}: corrupted (its state is not a byte tensor with a sha256 string)")
    oversized = _oversized(payload, "state")
    if oversized is not None:  # refused before its bytes are copied (a few bytes can declare gigabytes)
        raise CheckpointError(f"checkpoint {path}: corrupted or forged (a tensor larger than the bytes it holds: "
                              f"{oversized})")
    data = payload.numpy().tobytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != digest:
        raise CheckpointError(f"checkpoint {path}: corrupted (the state's SHA-256 is {actual}, the file says {digest})")
    state = _weights_only(path, data, "its state")
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path}: its state is a {type(state).__name__}, not a dict")
    oversized = _oversized(state)
    if oversized is not None:
        raise CheckpointError(f"checkpoint {path}: corrupted or forged (a tensor of its state larger than the bytes it "
                              f"holds: {oversized})")
    return state


def differences(found: Any, expected: Any, name: str = "", labels: tuple[str, str] = ("there", "here"),
                sort: bool = True) -> list[str]:
    """Where two JSON-like values differ, one ``"name: <found> there, <expected> here"`` line per leaf (``a.b`` for
    nesting; ``labels`` replace "there" and "here"), keys sorted (``sort=False``: in ``expected``'s order, then
    ``found``'s).

    Both sides go through :func:`jsonable` first, so a dataclass compares with the dict it was saved as.
    """
    found, expected = jsonable(found), jsonable(expected)
    if isinstance(found, dict) and isinstance(expected, dict):
        keys = dict.fromkeys([*expected, *found])
        return [line for key in (sorted(keys, key=str) if sort else keys)
                for line in differences(found.get(key, "<absent>"), expected.get(key, "<absent>"),
                                        f"{name}.{key}" if name else str(key), labels, sort)]
    return [] if found == expected else [f"{name or 'value'}: {found!r} {labels[0]}, {expected!r} {labels[1]}"]


# ---- the lock of an output folder ----------------------------------------------------------

LOCK_FILE = ".lock"


class FolderLockedError(RuntimeError):
    """Another live process holds the lock of the output folder."""


def _owner(lock: Path) -> tuple[tuple[Any, ...] | None, int | None, str]:
    """What identifies this ``lock`` (inode, time, text; None if there is none), the pid it names (None if none) and
    its host. The lock itself is read, never what a link points to: a link, a folder or any other thing that is not
    a file is no process's lock (its text says what it is, and it names no pid)."""
    try:
        stat = os.lstat(lock)
    except FileNotFoundError:
        return None, None, ""
    if not S_ISREG(stat.st_mode):
        kind = "a link" if S_ISLNK(stat.st_mode) else "a folder" if S_ISDIR(stat.st_mode) else "not a file"
        return (stat.st_ino, stat.st_mtime_ns, f"<{kind}>"), None, ""
    try:
        with open(lock, "rb") as file:
            text = file.read(4096).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None, None, ""
    fields = dict(part.split("=", 1) for part in text.split() if "=" in part)
    pid = fields.get("pid", "")
    return (stat.st_ino, stat.st_mtime_ns, text), int(pid) if pid.isascii() and pid.isdigit() else None, fields.get("host", "")


def _age(path: Path) -> float:
    """Seconds since ``path`` itself (not what a link points to) was last written (0 if it is gone)."""
    try:
        return time.time() - os.lstat(path).st_mtime
    except FileNotFoundError:
        return 0.0


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs here; a number no process can have (0, or beyond the system's range) is none."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, ValueError):  # beyond what a pid can be
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _remove(path: Path) -> None:
    """Remove ``path`` itself: a file or a link (never what it points to), or an empty folder; a folder holding
    something is moved aside to ``<name>.stale`` (``.stale.1``, ...) rather than its contents deleted."""
    try:
        stat = os.lstat(path)
    except FileNotFoundError:
        return
    if not S_ISDIR(stat.st_mode):
        path.unlink(missing_ok=True)
        return
    try:
        path.rmdir()
    except FileNotFoundError:
        return
    except OSError:
        target, number = path.with_name(path.name + ".stale"), 0
        while target.exists() or target.is_symlink():
            number += 1
            target = path.with_name(f"{path.name}.stale.{number}")
        os.replace(path, target)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike, wait: float = 1.0, name: str = LOCK_FILE,
                warn: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold ``folder``'s lock while the block runs: one writer per output folder.

    The lock is the file ``<folder>/<name>`` (default ``.lock``) holding the owner's pid and host, created with
    ``O_CREAT | O_EXCL`` (so of two processes exactly one creates it) and removed on leaving.
    A lock whose process is dead (a run that was killed), or that names a number no process can
    have, or that is not a file (a link, dangling or not, or a folder: no run makes one; the link
    is removed, never what it points to) is taken over with a warning (``warn``'s, default
    :func:`warnings.warn`); a live
    one raises :class:`FolderLockedError` naming the folder and the pid. A lock file that
    names no pid is given ``wait`` seconds from its creation to get one (its owner may be
    writing it), then counts as dead. A process on another host is always taken as alive. Once held, the
    temporary files (``.*.partial``) that killed writers left in ``folder`` are removed:
    no one else writes there. Yields the folder's path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / name
    mine = f"pid={os.getpid()} host={socket.gethostname()}\n"
    while True:
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            seen, pid, host = _owner(lock)
            elsewhere = host not in ("", socket.gethostname())
            if pid is not None and (elsewhere or _alive(pid)):
                where = f" on {host}" if elsewhere else ""
                raise FolderLockedError(f"the output folder {folder} is in use by process {pid}{where} (its lock "
                                        f"{lock}); wait for that run to end, or choose another folder. If no such "
                                        "process is running, delete the lock file") from None
            if pid is None and seen is not None and not seen[-1].startswith("<") and _age(lock) < wait:
                time.sleep(0.05)  # just created: its owner writes its pid next
                continue
            if seen is not None:
                _take_over(lock, seen, folder, warn)
            continue
        with os.fdopen(handle, "w") as file:
            file.write(mine)
            file.flush()
            os.fsync(file.fileno())
        break
    try:
        for leftover in folder.glob(f".*{PARTIAL_SUFFIX}"):
            leftover.unlink(missing_ok=True)
        yield folder
    finally:
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if not lock.is_symlink() and lock.read_text() == mine:
                lock.unlink()


def _take_over(lock: Path, stale: tuple[Any, ...], folder: Path, warn: Callable[[str], None] | None) -> None:
    """Remove ``lock`` if it is still the file ``stale`` identifies (a dead owner's), under a guard file so
    that of several processes taking it over at once only one removes it (the others then find the new
    owner's lock)."""
    guard = lock.with_name(lock.name + ".takeover")
    try:
        handle = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        guard_stat = None
        with contextlib.suppress(FileNotFoundError):
            guard_stat = os.lstat(guard)
        if guard_stat is not None and (not S_ISREG(guard_stat.st_mode) or _age(guard) > 10):
            _remove(guard)  # its writer died within these few lines, or it is no guard this code makes
        time.sleep(0.05)
        return
    try:
        if _owner(lock)[0] == stale:
            text = stale[-1].strip()
            if text.startswith("<"):
                message = f"the lock {lock} of the output folder {folder} is {text[1:-1]}, no process's lock: taking it over"
            else:
                message = (f"the output folder {folder} was locked by a process that is no longer running "
                           f"({text or 'an empty lock file'}): taking its lock {lock} over")
            if warn is None:
                warnings.warn(message, stacklevel=4)
            else:
                warn(message)
            _remove(lock)
    finally:
        os.close(handle)
        guard.unlink(missing_ok=True)
