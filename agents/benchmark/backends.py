"""Where the runs of a sweep execute: local worker processes, or Ray tasks (the optional extra ``ray``)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from agents.benchmark.config import RunSpec
from agents.benchmark.records import RunFailure, RunRecord

#: ``execute(spec_data) -> result``: one run, importable by name (worker processes and Ray pickle it by reference)
Execute = Callable[[dict[str, Any]], RunRecord | RunFailure]


#: seconds between a worker's looks at whether the sweep that started it still runs
WATCH_EVERY = 0.5


def _die_with(parent: int) -> None:
    """End this worker process when the process ``parent`` that started it ends, however it ends (a SIGKILL
    included): on Linux the kernel sends SIGKILL at once (``prctl(PR_SET_PDEATHSIG)``), and everywhere a daemon
    thread ends the process within :data:`WATCH_EVERY` seconds of its parent's pid ceasing to be its parent."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:  # it died before the request above was made
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_EVERY)
        os._exit(1)

    threading.Thread(target=watch, name="die-with-the-sweep", daemon=True).start()


def _init_worker(parent: int | None = None) -> None:
    import torch

    if parent is not None:
        _die_with(parent)
    torch.set_num_threads(1)
    os.environ.setdefault("MPLBACKEND", "Agg")


def in_processes(function: Callable[[Any], Any], jobs: list[Any], workers: int) -> Iterable[Any]:
    """``function(job)`` for each job in ``workers`` spawned processes of one torch thread each (1: in this process),
    yielding the results as they finish. ``function`` must be importable by name (it is pickled by reference).

    The worker processes end with this one, however it ends (:func:`_die_with`): a killed run leaves none computing.
    """
    if workers == 1:  # in this process: no start-up cost, and agents registered at run time are visible
        for job in jobs:
            yield function(job)
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                                initargs=(os.getpid(),)) as pool:
        futures = [pool.submit(function, job) for job in jobs]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def local(specs: list[RunSpec], workers: int, execute: Execute) -> Iterable[RunRecord | RunFailure]:
    """``execute`` each spec in ``workers`` spawned processes (1: in this process), yielding results as they finish."""
    return in_processes(execute, [spec.as_dict() for spec in specs], workers)


RAY_MISSING = ("--ray needs Ray, the optional extra 'ray': pip install 'diffenvs[ray]' "
               "(or pip install ray); without it the sweep runs in local processes")


def ray_tasks(specs: list[RunSpec], address: str | None, execute: Execute) -> Iterable[RunRecord | RunFailure]:
    """``execute`` each spec as a Ray task (``address`` of a cluster, or a local instance), yielding results."""
    try:
        import ray
    except ImportError as error:
        raise RuntimeError(RAY_MISSING) from error
    if not ray.is_initialized():
        ray.init(address=address or None, include_dashboard=False, log_to_driver=False)
    task = ray.remote(num_cpus=1)(execute)
    pending = [task.remote(spec.as_dict()) for spec in specs]
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            yield ray.get(ready[0])
    finally:
        for reference in pending:
            ray.cancel(reference)
