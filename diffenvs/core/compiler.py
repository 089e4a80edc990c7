"""Ahead-of-time compilation of a pure tensor function: traced once, compiled by TorchInductor, no guards.

The compiled rollout chunks (:mod:`diffenvs.core.fused`) and the vector face's fused step
(:mod:`diffenvs.core.vector_step`) are pure functions of tensors whose every other argument is a
constant. :func:`compile_tensor_function` traces such a function on fake tensors shaped as its inputs
(``make_fx``) into a graph of tensor operations and compiles it with TorchInductor: a call is the
kernels and a thin wrapper, with no guards to evaluate and no cache shared between callers, so
each caller keeps its own compiled code for as long as it lives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.fx.experimental.proxy_tensor import make_fx

#: a compiled function: tensors in, a tuple of tensors out
Compiled = Callable[..., Sequence[torch.Tensor]]


def compile_tensor_function(function: Callable[..., tuple[torch.Tensor, ...]], inputs: Sequence[torch.Tensor],
                            options: dict[str, Any] | None = None) -> Compiled:
    """``function`` traced on fake tensors shaped as ``inputs`` and compiled by TorchInductor (``options``: its
    configuration, e.g. ``{"cpp.threads": 1}``). The result takes tensors of the same shapes, dtypes and devices."""
    import torch._inductor  # noqa: PLC0415 (the compiler loads only when compiled code is asked for)

    # distinct copies: tracing would take one tensor given twice (the first chunk's start and state) for one input
    copies: list[torch.Tensor] = [t.clone() for t in inputs]
    graph = make_fx(function, tracing_mode="fake")(*copies)
    example: list[Any] = list(copies)  # inductor's inputs may also be ints and symbolic sizes
    return torch._inductor.compile(graph, example, options)
