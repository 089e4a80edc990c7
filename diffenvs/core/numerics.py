"""Array namespaces and the one step rule shared by every face.

A definition writes its physics once, component-wise, against a small namespace ``ns``
(:class:`ArrayNamespace`: ``ns.sin``, ``ns.cos``, ...). The Gymnasium face runs it on Python floats with
:data:`SCALAR` (a single environment is far too small for tensors to pay off); the
vector face and the gradient path run the *same* code on batched torch tensors with
:data:`TORCH`. The explicit Runge--Kutta step :func:`rk4_step` is likewise written once
over tuples of components, so every face integrates with the same arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

Components = tuple[Any, ...]
#: a one-step integrator ``(f, t, x, h, args) -> x(t + h)`` of ``dx/dt = f(t, x, args)``
Integrator = Callable[[Callable[[Any, Components, Any], Components], Any, Components, Any, Any], Components]


class ArrayNamespace(Protocol):
    """The array namespace a definition's physics is written against (:data:`SCALAR`, :data:`TORCH`).

    Each function applies element-wise to a Python float or a tensor. ``name`` says which
    namespace it is; ``eager`` whether Python control flow on values is allowed (one environment on
    floats) or not (batched, differentiable tensors: masked selects with ``where`` instead).
    """

    @property
    def name(self) -> str: ...
    @property
    def eager(self) -> bool: ...
    def sin(self, v: Any, /) -> Any: ...
    def cos(self, v: Any, /) -> Any: ...
    def exp(self, v: Any, /) -> Any: ...
    def log1p(self, v: Any, /) -> Any: ...
    def erf(self, v: Any, /) -> Any: ...
    def sqrt(self, v: Any, /) -> Any: ...
    def atan2(self, y: Any, x: Any, /) -> Any: ...
    def tanh(self, v: Any, /) -> Any: ...
    def ceil(self, v: Any, /) -> Any: ...
    def where(self, condition: Any, a: Any, b: Any, /) -> Any: ...
    def clip(self, v: Any, low: Any, high: Any, /) -> Any: ...
    def isfinite(self, v: Any, /) -> Any: ...
    def logical_not(self, v: Any, /) -> Any: ...


class HasCeil(Protocol):
    """Any namespace with an element-wise ``ceil`` (:data:`SCALAR`, :data:`TORCH`, numpy, math)."""

    def ceil(self, v: Any, /) -> Any: ...


class HasExp(Protocol):
    """Any namespace with an element-wise ``exp`` (:data:`SCALAR`, :data:`TORCH`, numpy, math)."""

    def exp(self, v: Any, /) -> Any: ...


@dataclass(eq=False, slots=True)
class Namespace:
    """A concrete :class:`ArrayNamespace`: its name, whether it is eager, and its functions (attributes that a test
    may replace, e.g. by libm's functions)."""

    name: str
    eager: bool
    sin: Callable[[Any], Any]
    cos: Callable[[Any], Any]
    exp: Callable[[Any], Any]
    log1p: Callable[[Any], Any]
    erf: Callable[[Any], Any]
    sqrt: Callable[[Any], Any]
    atan2: Callable[[Any, Any], Any]
    tanh: Callable[[Any], Any]
    ceil: Callable[[Any], Any]
    where: Callable[[Any, Any, Any], Any]
    clip: Callable[[Any, Any, Any], Any]
    isfinite: Callable[[Any], Any]
    logical_not: Callable[[Any], Any]


def _scalar_where(condition: bool, a: Any, b: Any) -> Any:
    return a if condition else b


# The math module raises where torch returns inf or nan (sin(inf), exp(1000), ceil(nan), sqrt(-1)). The
# Gymnasium face must see the same non-finite values as the vector face, so that its finite-state check
# truncates the episode instead of raising: these wrappers give torch's results (no cost unless they raise).
def _sin(v: float) -> float:
    try:
        return math.sin(v)
    except ValueError:  # sin(inf)
        return math.nan


def _cos(v: float) -> float:
    try:
        return math.cos(v)
    except ValueError:
        return math.nan


def _exp(v: float) -> float:
    try:
        return math.exp(v)
    except OverflowError:
        return math.inf


def _log1p(v: float) -> float:
    try:
        return math.log1p(v)
    except ValueError:  # -1 gives -inf in torch, below -1 nan
        return -math.inf if v == -1.0 else math.nan


def _sqrt(v: float) -> float:
    try:
        return math.sqrt(v)
    except ValueError:  # a negative number
        return math.nan


def _ceil(v: float) -> float:
    try:
        return math.ceil(v)
    except (OverflowError, ValueError):  # inf and nan stay what they are
        return v


SCALAR: ArrayNamespace = Namespace(
    name="scalar",
    eager=True,  # Python control flow on values is allowed (and cheaper than computing both branches)
    sin=_sin,
    cos=_cos,
    exp=_exp,
    log1p=_log1p,
    erf=math.erf,
    sqrt=_sqrt,
    atan2=math.atan2,
    tanh=math.tanh,
    ceil=_ceil,
    where=_scalar_where,
    clip=lambda v, lo, hi: min(max(v, lo), hi),
    isfinite=math.isfinite,
    logical_not=lambda v: not v,
)
"""Python floats: the fast path of a single Gymnasium environment."""

TORCH: ArrayNamespace = Namespace(
    name="torch",
    eager=False,  # no branches on tensor values: batched, differentiable, torch.func-friendly
    sin=torch.sin,
    cos=torch.cos,
    exp=torch.exp,
    log1p=torch.log1p,
    erf=torch.erf,
    sqrt=torch.sqrt,
    atan2=torch.atan2,
    tanh=torch.tanh,
    ceil=torch.ceil,
    where=lambda c, a, b: (a if c else b) if isinstance(c, bool) else torch.where(c, a, b),
    clip=torch.clamp,
    isfinite=torch.isfinite,
    # a flag may still be a Python bool (a step index given as an int, a problem without events)
    logical_not=lambda v: (not v) if isinstance(v, bool) else torch.logical_not(v),
)
"""Batched torch tensors: the vector face and the gradient path."""


def wrap_angle(phi: Any, ns: HasCeil) -> Any:
    r"""Angle wrapped to :math:`(-\pi, \pi]`: :math:`\phi - 2\pi \lceil (\phi - \pi) / 2\pi \rceil`.

    The derivative is 1 (the ceiling is piecewise constant), as for ``atan2(sin phi, cos phi)``,
    at the cost of one rounding instead of three transcendental functions. ``ns`` is any
    namespace with ``ceil`` (``SCALAR``, ``TORCH``, numpy).
    """
    return phi - 2.0 * math.pi * ns.ceil((phi - math.pi) / (2.0 * math.pi))


def columns(array: Any) -> Components:
    """The last-axis columns of a batch of draws: a tensor's ``unbind(-1)``, or a list as it is."""
    return array.unbind(-1) if isinstance(array, torch.Tensor) else tuple(array)


def axpy(a: Any, x: Components, y: Components) -> Components:
    """``y + a * x`` component-wise."""
    return tuple(yi + a * xi for xi, yi in zip(x, y))


def rk4_step(f: Callable[[Any, Components, Any], Components], t: Any, x: Components, h: Any, args: Any = None) -> Components:
    r"""One classical Runge--Kutta step of :math:`\dot x = f(t, x, \text{args})` over a step ``h``.

    ``x`` is a tuple of components (floats or tensors); ``t`` and ``h`` are floats or
    tensors broadcasting against them (a per-environment step size is allowed); ``args``
    is held constant (e.g. the control). The update is
    :math:`x + \tfrac{h}{6}(k_1 + 2k_2 + 2k_3 + k_4)`.

    Four or more tensor components of one shape, dtype and device are integrated as one stacked
    tensor (:func:`_rk4_stacked`): the same arithmetic on each element, in a quarter or less of the
    operations.
    """
    if _stackable(x, h):
        return _rk4_stacked(f, t, x, h, args)
    return rk4_components(f, t, x, h, args)


def rk4_components(f: Callable[[Any, Components, Any], Components], t: Any, x: Components, h: Any,
                   args: Any = None) -> Components:
    """:func:`rk4_step` component by component, whatever the number of components (its stacked branch equals this
    to the last bit). Traced into one compiled kernel the components stay in registers from stage to stage, where a
    stacked state is written to memory and read back: the vector face's compiled step takes this one."""
    half = 0.5 * h
    k1 = f(t, x, args)
    k2 = f(t + half, axpy(half, k1, x), args)
    k3 = f(t + half, axpy(half, k2, x), args)
    k4 = f(t + h, axpy(h, k3, x), args)
    sixth = h / 6.0
    return tuple(
        xi + sixth * (a + 2.0 * b + 2.0 * c + d) for xi, a, b, c, d in zip(x, k1, k2, k3, k4)
    )


#: the fewest components integrated stacked: stacking and unstacking the state and the four stages costs about as
#: many operations as the component-wise stage arithmetic saves on two or three components (an eager cartpole, four
#: components, and double pendulum, six, ran faster stacked; Zermelo and the isochronism, two, slower)
STACK_FROM = 4


def _stackable(x: Components, h: Any) -> bool:
    """Whether ``x`` is :data:`STACK_FROM` or more tensors of one shape, dtype and device, and ``h`` keeps that shape."""
    if len(x) < STACK_FROM or not all(isinstance(c, torch.Tensor) for c in x):
        return False
    first = x[0]
    if not all(c.shape == first.shape and c.dtype == first.dtype and c.device == first.device for c in x[1:]):
        return False
    return not isinstance(h, torch.Tensor) or torch.broadcast_shapes(h.shape, first.shape) == first.shape


def _stack_like(components: Components, like: torch.Tensor) -> torch.Tensor:
    """Components stacked on a new first axis, each broadcast to ``like``'s shape (a derivative may be a number)."""
    if all(isinstance(c, torch.Tensor) and c.shape == like.shape for c in components):
        return torch.stack(components)
    return torch.stack([torch.as_tensor(c, dtype=like.dtype, device=like.device).expand(like.shape)
                        if not (isinstance(c, torch.Tensor) and c.shape == like.shape) else c for c in components])


def _rk4_stacked(f: Callable[[Any, Components, Any], Components], t: Any, x: Components, h: Any,
                 args: Any) -> Components:
    """:func:`rk4_step` on the stacked state ``(n, *shape)``: each element sees the component-wise step's operations
    in the same order (``a + 2b`` as one ``add`` with ``alpha=2``, whose product is exact), so the result is the
    same to the last bit."""
    like = x[0]
    state = torch.stack(x)
    half, sixth = 0.5 * h, h / 6.0
    # a step given as a number multiplies as a 0-d tensor of the state's dtype: the value it would be converted to
    # anyway, without a conversion (``aten::to``) in each product's forward and backward
    half_, h_, sixth_ = (like.new_tensor(c) if isinstance(c, (int, float)) else c for c in (half, h, sixth))
    k1 = _stack_like(f(t, x, args), like)
    k2 = _stack_like(f(t + half, (state + half_ * k1).unbind(), args), like)
    k3 = _stack_like(f(t + half, (state + half_ * k2).unbind(), args), like)
    k4 = _stack_like(f(t + h, (state + h_ * k3).unbind(), args), like)
    total = torch.add(torch.add(k1, k2, alpha=2.0), k3, alpha=2.0) + k4
    return (state + sixth_ * total).unbind()


def stack(components: Sequence[Any], like: torch.Tensor | None = None) -> torch.Tensor:
    """Stack torch components along a new last axis, broadcasting scalars and shapes."""
    tensors = [c if isinstance(c, torch.Tensor) else None for c in components]
    ref = like if like is not None else next(t for t in tensors if t is not None)
    first = next((t for t in tensors if t is not None), None)
    if first is not None and all(t is None or (t.shape == first.shape and t.dtype == ref.dtype) for t in tensors):
        # tensors of one shape, and numbers (e.g. the time): each number one filled tensor, nothing to broadcast
        return torch.stack([first.new_full(first.shape, c) if t is None else t for c, t in zip(components, tensors)],
                           dim=-1)
    parts = [
        c if isinstance(c, torch.Tensor) else torch.as_tensor(c, dtype=ref.dtype, device=ref.device)
        for c in components
    ]
    parts = torch.broadcast_tensors(*parts)
    return torch.stack(parts, dim=-1)


def to_numpy(value: Any) -> np.ndarray:
    """A torch tensor, array or float as a numpy array (detached, on the CPU)."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
