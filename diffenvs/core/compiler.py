"""Ahead-of-time compilation of a pure tensor function: traced once, compiled by TorchInductor, no guards,
and its compiled code kept on disk so that the next process loads it instead of compiling again.

The compiled rollout chunks (:mod:`diffenvs.core.fused`) and the vector face's fused step
(:mod:`diffenvs.core.vector_step`) are pure functions of tensors whose every other argument is a
constant. :func:`compile_tensor_function` traces such a function on fake tensors shaped as its inputs
(``make_fx``) into a graph of tensor operations and compiles it with TorchInductor: a call is the
kernels and a thin wrapper, with no guards to evaluate.

**The on-disk cache.** Compiling costs tens of seconds (lowering the graph, generating and
compiling its C++); tracing costs a second or two. TorchInductor's FX-graph cache and
AOTAutograd's cache store the compiled code under a key that hashes the traced graph itself (its
operations, its baked-in constants: the problem's constants, the policy's structure and non-tensor
attributes, the chunk's length), the inputs' shapes, dtypes and devices, the compiler's
configuration and the torch version; a second process that traces the same graph finds the key and
loads the code. Both caches skip (``fxgraph_cache_bypass``) a graph traced outside a tracing
context with a shape environment, which is why, before, every process compiled again: here the
compile runs inside one. Their entries are written to a temporary file and renamed, so two
processes compiling the same key at once both succeed and the last rename wins with the same code.

**Where, and what is trusted.** One folder per machine and user: ``$DIFFENVS_COMPILE_CACHE`` if
set, else ``diffenvs/compiled`` under the platform's cache directory (``$XDG_CACHE_HOME`` or
``~/.cache``; ``%LOCALAPPDATA%`` on Windows; ``~/Library/Caches`` on macOS). Loading an entry
unpickles it and loads a shared library, that is, runs code written there: the folder is trusted
only where the current user owns it and nobody else may write to it (checked on POSIX before each
compile; it is created with mode 0700). A folder that fails the check is not used: the function is
compiled without the on-disk cache, with a warning. ``DIFFENVS_COMPILE_CACHE=off`` turns the cache
off. :func:`compile_counts` counts, in this process, the graphs compiled and those loaded.

**Knowing before tracing.** A caller may name what it compiles (``key``: a description of
everything the trace bakes in); after a compile with the cache on, an empty file named by the
key's hash is left in the folder's ``compiled-keys``, and :func:`compiled_before` tells a later
process, without tracing or compiling, that loading will be nearly free (``compile='auto'`` of the
agents decides on it). It is a hint only: what is loaded is always found by the graph's own hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.fx.experimental.proxy_tensor import make_fx

#: a compiled function: tensors in, a tuple of tensors out
Compiled = Callable[..., Sequence[torch.Tensor]]

#: the environment variable that names the compile cache's folder (``off``: no on-disk cache)
CACHE_VARIABLE = "DIFFENVS_COMPILE_CACHE"

#: in this process: graphs ``"compiled"``, graphs ``"loaded"`` from the on-disk cache, ``"uncached"`` (compiled
#: without it)
_COUNTS: Counter[str] = Counter()


def cache_folder() -> Path | None:
    """The compile cache's folder (see the module's docstring), or ``None`` where it is turned off."""
    chosen = os.environ.get(CACHE_VARIABLE)
    if chosen is not None:
        return None if chosen.strip().lower() in ("", "off", "0", "none") else Path(chosen).expanduser().absolute()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "diffenvs" / "compiled"


def trusted_folder(folder: Path) -> str | None:
    """Creates ``folder`` (mode 0700) if missing; ``None`` where it may be trusted, else why not."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        status = folder.stat()
    except OSError as error:
        return f"it cannot be created or read ({error})"
    if not stat.S_ISDIR(status.st_mode):
        return "it is not a folder"
    getuid = getattr(os, "getuid", None)
    if getuid is not None:  # POSIX: the owner alone may write there
        if status.st_uid != getuid():
            return "another user owns it"
        if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return "others may write to it"
    return None


def compile_counts() -> dict[str, int]:
    """Graphs compiled in this process so far: ``compiled`` (code generated), ``loaded`` (from the on-disk cache),
    ``uncached`` (compiled with the on-disk cache off or untrusted; also counted in ``compiled``)."""
    return {name: _COUNTS[name] for name in ("compiled", "loaded", "uncached")}


def _key_file(folder: Path, key: str) -> Path:
    digest = hashlib.sha256(f"{torch.__version__}\n{key}".encode()).hexdigest()
    return folder / "compiled-keys" / digest


def compiled_before(key: str) -> bool:
    """Whether a graph named ``key`` was compiled into the (trusted) on-disk cache, by any process."""
    folder = cache_folder()
    return folder is not None and trusted_folder(folder) is None and _key_file(folder, key).exists()


def _remember(key: str) -> None:
    folder = cache_folder()
    if folder is None:
        return
    path = _key_file(folder, key)
    try:
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.touch()  # empty: two processes touching it at once agree
    except OSError as error:
        warnings.warn(f"the compile cache could not record {path}: {error}", RuntimeWarning, stacklevel=3)


@contextlib.contextmanager
def _on_disk_cache() -> Iterator[bool]:
    """Inductor's and AOTAutograd's caches in the trusted folder for the compile within; yields whether they are on."""
    import torch._functorch.config as functorch_config  # noqa: PLC0415 (the compiler loads only when asked for)
    import torch._inductor.config as inductor_config  # noqa: PLC0415
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir  # noqa: PLC0415

    folder = cache_folder()
    refused = None if folder is None else trusted_folder(folder)
    if folder is None or refused is not None:
        if refused is not None:
            warnings.warn(f"the compile cache {str(folder)!r} is not used: {refused}; compiling without it",
                          RuntimeWarning, stacklevel=4)
        with inductor_config.patch(fx_graph_cache=False), functorch_config.patch(enable_autograd_cache=False):
            yield False
        return
    with (temporary_cache_dir(str(folder)), inductor_config.patch(fx_graph_cache=True, fx_graph_remote_cache=False),
          functorch_config.patch(enable_autograd_cache=True, enable_remote_autograd_cache=False),
          inductor_config.patch({"cpp.vec_isa_ok": _vector_isa_verdict(folder)})):
        yield True


def _vector_isa_verdict(folder: Path) -> bool | None:
    """``True`` where this machine's CPU was found, once, to build and load code for every vector instruction set
    it claims (recorded in ``folder``); ``None`` (TorchInductor probes, as by default) otherwise.

    TorchInductor checks each claimed set (AVX2, AVX-512) once per process by compiling a test
    program and loading it in a child Python; on a 2-core CPU the six probes were about a sixth of a
    second process's load of compiled code. The verdict is recorded under the torch version and the
    claimed sets, so a later process with the same CPU and torch skips the probe of each set (AVX-512's
    checks of its own extensions, which decide compiler flags, still run); the compiled code's key
    includes the verdict, the same in both processes.
    """
    from torch._inductor import config as inductor_config  # noqa: PLC0415
    from torch._inductor import cpu_vec_isa  # noqa: PLC0415

    with inductor_config.patch({"cpp.vec_isa_ok": True}):
        claimed = [str(isa) for isa in cpu_vec_isa.valid_vec_isa_list.__wrapped__()]
    digest = hashlib.sha256(f"{torch.__version__}\n{sys.platform}\n{claimed}".encode()).hexdigest()
    records = folder / "vector-isa"
    if (records / f"{digest}-usable").exists():
        return True
    if (records / f"{digest}-not-usable").exists():
        return None
    usable = [str(isa) for isa in cpu_vec_isa.valid_vec_isa_list()] == claimed  # the probe, as TorchInductor runs it
    record = records / f"{digest}-{'usable' if usable else 'not-usable'}"
    try:
        records.mkdir(mode=0o700, exist_ok=True)
        record.touch()  # empty: the name is the verdict, so two processes recording it at once agree
    except OSError as error:
        warnings.warn(f"the compile cache could not record {record}: {error}", RuntimeWarning, stacklevel=4)
    return True if usable else None


def _with_defaults(options: dict[str, Any] | None, inputs: Sequence[torch.Tensor]) -> dict[str, Any]:
    """TorchInductor's ``options`` with this module's defaults beneath them: on the CPU, the wrapper that calls the
    kernels generated in C++ (``cpp_wrapper``) instead of Python.

    A compiled rollout chunk at batch 256 is some ten kernels and a few matrix products whose
    arithmetic takes microseconds; the Python wrapper's bookkeeping around them (a view, an
    allocation or a check per intermediate buffer, hundreds per call) took most of each call. In C++
    they cost a fraction: a cartpole rollout's forward+backward at batch 256 went from 23.8 to 16.8 ms on one
    core (``scripts/bench_envs.py``'s gradient rows), with the same kernels and so the same numbers, bit for bit.
    """
    on_cpu = all(t.device.type == "cpu" for t in inputs)
    return {**({"cpp_wrapper": True} if on_cpu else {}), **(options or {})}


def compile_tensor_function(function: Callable[..., tuple[torch.Tensor, ...]], inputs: Sequence[torch.Tensor],
                            options: dict[str, Any] | None = None, key: str | None = None) -> Compiled:
    """``function`` traced on fake tensors shaped as ``inputs`` and compiled by TorchInductor (``options``: its
    configuration, e.g. ``{"cpp.threads": 1}``), or loaded from the on-disk cache where the same graph was compiled
    before. The result takes tensors of the same shapes, dtypes and devices. ``key``, where given, is recorded for
    :func:`compiled_before` (it must describe everything that tracing bakes into the graph)."""
    import torch._inductor  # noqa: PLC0415 (the compiler loads only when compiled code is asked for)
    from torch._dynamo.utils import counters  # noqa: PLC0415
    from torch._guards import TracingContext, tracing  # noqa: PLC0415
    from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: PLC0415
    from torch.fx.experimental.symbolic_shapes import ShapeEnv  # noqa: PLC0415

    # distinct copies: tracing would take one tensor given twice (the first chunk's start and state) for one input
    copies: list[torch.Tensor] = [t.clone() for t in inputs]
    graph = make_fx(function, tracing_mode="fake")(*copies)
    # the caches key only graphs compiled in a tracing context whose fake mode has a shape environment; the inputs,
    # fake tensors of that mode with static shapes, keep every size a constant (as the graph has them)
    mode = FakeTensorMode(shape_env=ShapeEnv())
    example: list[Any] = [mode.from_tensor(t, static_shapes=True) for t in copies]
    hits = counters["inductor"]["fxgraph_cache_hit"] + counters["aot_autograd"]["autograd_cache_hit"]
    with _on_disk_cache() as cached, tracing(TracingContext(mode)):
        compiled = torch._inductor.compile(graph, example, _with_defaults(options, copies))
    loaded = counters["inductor"]["fxgraph_cache_hit"] + counters["aot_autograd"]["autograd_cache_hit"] > hits
    _COUNTS["loaded" if loaded else "compiled"] += 1
    _COUNTS["uncached"] += not cached
    if cached and key is not None:
        _remember(key)
    return compiled
