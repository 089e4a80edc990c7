r"""The gradient path compiled in chunks: fast small-batch rollouts without compiling the whole horizon.

At the batch sizes agents train with (1 to a few hundred trajectories) an eager rollout is
bound by per-operation overhead, not arithmetic: a cartpole step builds some 170 autograd
nodes. Compiling the whole unrolled horizon removes it but takes minutes to compile; compiling
one step with ``torch.compile`` and letting autograd glue the steps leaves, per step, a compiled
call's guards and wrappers twice. Here the horizon of :math:`S` steps is cut into chunks of
:math:`K` steps and each chunk is one call of a function compiled once:

* forward: the chunk advances every trajectory :math:`K` steps
  (:class:`~diffenvs.core.loop.Step`, the eager loop's body) without an autograd graph; only
  the chunk's start state is kept;
* backward: in reverse, the chunk's vector-Jacobian product (``torch.func.vjp``): with
  :math:`\lambda` the cotangent of the chunk's end state and :math:`\bar s, \bar r, \bar u` those
  of its states, rewards and controls,

  .. math:: \bigl(\bar x_{\text{start}}, \bar x_0, \bar u_{\text{open}}, \bar\theta\bigr)
            = \bigl(\bar s, \bar r, \bar u, \lambda\bigr)^\top
              \frac{\partial (s, r, u, x_{\text{end}})}{\partial (x_{\text{start}}, x_0, u_{\text{open}}, \theta)},

  recomputing the chunk from its start (rematerialisation: memory :math:`S/K` states).

Each function is traced to a graph of tensor operations (``make_fx``) and compiled by
TorchInductor, so a call is the kernels and a thin wrapper, with no guards to evaluate. The price
is that everything that is not a tensor input is a constant of the compiled code: the problem's
constants, the policy's structure and its non-tensor attributes. The compiled pair is cached per
policy module and per everything that was traced (:func:`_signature`, :func:`_module_signature`: a policy
attribute changed or a layer replaced after a compile names another pair); the policy's
parameters and buffers, the tensor constants of ``params``, the start, the open-loop controls
and the noise are inputs. The :math:`S \bmod K` steps left over run eagerly after the chunks.
The results are the eager rollout's up to the rounding of fused arithmetic (equal to 1e-10 in
float64, tested).

The compiled code also lives on disk (:mod:`diffenvs.core.compiler`): a later process that traces
the same chunk loads it instead of compiling. Each chunk is named for
:func:`~diffenvs.core.compiler.compiled_before` by :func:`_description` of what it bakes in, so
that ``RK4(reuse_compiled=True)`` runs the chunks only where both are already compiled there and
eagerly otherwise.
"""

from __future__ import annotations

import dataclasses
import hashlib
import weakref
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.func import functional_call, vjp

from diffenvs.core.checks import Policy, tensor_fields
from diffenvs.core.compiler import Compiled, compile_tensor_function, compiled_before
from diffenvs.core.loop import Step, Trajectory, loop
from diffenvs.core.numerics import Components, stack

Tensors = tuple[torch.Tensor, ...]

#: compiled chunk pairs per policy module (open-loop rollouts: under ``None``), then per signature
_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, dict[tuple[Any, ...], _Chunks]] = weakref.WeakKeyDictionary()
_OPEN_LOOP: dict[tuple[Any, ...], _Chunks] = {}


def compiled_rollout(step: Step, policy: Policy | torch.Tensor, x: Components,
                     start: Components, states0: torch.Tensor, steps: int, noise: torch.Tensor | None, chunk: int,
                     first_step: int = 0, cached_only: bool = False) -> tuple[Trajectory, torch.Tensor]:
    """The rollout of :func:`~diffenvs.core.rollout.rollout` for ``RK4(compile=True, chunk=chunk)``.

    Returns the trajectory and the controls before clipping, as the eager loop does; falls back
    to the eager loop where the chunks cannot carry the gradients (see :class:`~diffenvs.core.solvers.RK4`),
    where the rollout is shorter than a chunk and, with ``cached_only`` (``RK4(reuse_compiled=True)``), where the
    chunk's compiled code (its vector-Jacobian product too where gradients are recorded) is not on disk yet.
    """
    module = policy if isinstance(policy, torch.nn.Module) else None
    open_loop = isinstance(policy, torch.Tensor)
    constants = tensor_fields(step.params)
    chunks = steps // chunk
    if (chunks == 0 or (not open_loop and module is None)
            or any(t.requires_grad for t in constants.values()) or (noise is not None and noise.requires_grad)
            or any(component.shape != (step.batch,) for component in x)):  # the chunks carry (batch, n) states
        return loop(step, policy, x, start, states0, steps, noise, first_step)
    runner = _runner(step, module, chunk, noise is not None, constants)
    if cached_only:
        leaves = [*x, *start, *([policy] if isinstance(policy, torch.Tensor) else []),
                  *([] if module is None else module.parameters())]
        recorded = torch.is_grad_enabled() and any(t.requires_grad for t in leaves)
        if not runner.ready(recorded):
            return loop(step, policy, x, start, states0, steps, noise, first_step)
    like = step.like
    controls = policy[:chunks * chunk] if isinstance(policy, torch.Tensor) else like.new_zeros(0)
    weights, fixed = runner.inputs(constants)
    states, rewards, held, dones, raw, end = _ChunkedRollout.apply(
        runner, chunks, first_step, noise, fixed, stack(x, like=like), stack(start, like=like), controls, *weights)
    trajectory = Trajectory(torch.cat([states0[None], states]), held, rewards,
                            torch.cat([torch.zeros(1, step.batch, dtype=torch.bool, device=like.device), dones]),
                            (first_step + torch.arange(steps + 1, dtype=like.dtype, device=like.device)) * step.problem.dt)
    left = steps - chunks * chunk
    if left == 0:
        return trajectory, raw
    # the steps left over, eagerly, from the chunks' end; the trajectory's clock goes on
    covered = chunks * chunk
    tail, tail_raw = loop(step, policy[covered:] if isinstance(policy, torch.Tensor) else policy, end.unbind(-1), start,
                          states[-1], left,
                           None if noise is None else noise[covered:], first_step + covered, dones[-1])
    return Trajectory(torch.cat([trajectory.states, tail.states[1:]]), torch.cat([trajectory.controls, tail.controls]),
                      torch.cat([trajectory.rewards, tail.rewards]), torch.cat([trajectory.done, tail.done[1:]]),
                      trajectory.times), torch.cat([raw, tail_raw])


def _signature(value: Any) -> Any:
    """A hashable account of everything in ``value`` that tracing bakes into the compiled code.

    Tensors count by dtype, shape and device (their values are inputs); numbers, strings and
    bools by value; dataclasses, tuples and lists field by field; anything else by identity.
    """
    if isinstance(value, torch.Tensor):
        return ("tensor", value.dtype, tuple(value.shape), str(value.device))
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape, value.tobytes())
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (type(value), tuple((f.name, _signature(getattr(value, f.name))) for f in dataclasses.fields(value)))
    if isinstance(value, (tuple, list)):
        return (type(value), tuple(_signature(v) for v in value))
    if value is None or isinstance(value, (bool, int, float, str, complex)):
        return (type(value), value)
    return ("object", id(value))


def _qualified(kind: type | Any) -> str:
    return f"{getattr(kind, '__module__', '?')}.{getattr(kind, '__qualname__', repr(kind))}"


def _description(value: Any) -> str:
    """A text account of everything in ``value`` that tracing bakes into the compiled code, the same in every process.

    As :func:`_signature`, with a module by its submodules' types, parameter and buffer shapes and
    non-tensor attributes, a function by its qualified name, and anything else by its type and
    ``repr`` (which, where it shows an address, only makes the account differ between processes).
    """
    if isinstance(value, torch.Tensor):
        return f"tensor({value.dtype}, {tuple(value.shape)}, {value.device}, grad={value.requires_grad})"
    if isinstance(value, np.ndarray):
        return f"array({value.dtype.str}, {value.shape}, {hashlib.sha256(value.tobytes()).hexdigest()})"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = ", ".join(f"{f.name}={_description(getattr(value, f.name))}" for f in dataclasses.fields(value))
        return f"{_qualified(type(value))}({fields})"
    if isinstance(value, (tuple, list)):
        return f"{type(value).__name__}[{', '.join(_description(v) for v in value)}]"
    if isinstance(value, dict):
        return f"dict[{', '.join(f'{_description(k)}: {_description(v)}' for k, v in value.items())}]"
    if value is None or isinstance(value, (bool, int, float, str, complex, torch.dtype, torch.device)):
        return repr(value)
    if isinstance(value, torch.nn.Module):
        parts = []
        for name, module in value.named_modules():
            attributes = {k: v for k, v in vars(module).items() if not k.startswith("_")}
            tensors = {k: _description(v) for k, v in (*module.named_parameters(recurse=False),
                                                         *module.named_buffers(recurse=False))}
            parts.append(f"{name}: {_qualified(type(module))}{_description(attributes)}{_description(tensors)}")
        return "module{" + "; ".join(parts) + "}"
    if callable(value) and hasattr(value, "__qualname__"):
        return _qualified(value)
    return f"{_qualified(type(value))}:{value!r}"


def _module_signature(module: torch.nn.Module) -> tuple[Any, ...]:
    """What tracing bakes in of a policy module: per submodule, its type, its public non-tensor attributes (a
    ``scale`` the forward multiplies by, ``training``) and the names, dtypes and shapes of its parameters and buffers.

    A changed attribute or a replaced layer after a compile then names another compiled pair instead
    of reusing code traced with the old one.
    """
    return tuple((name, type(sub), tuple((k, _signature(v)) for k, v in vars(sub).items() if not k.startswith("_")),
                  tuple((k, _signature(v)) for k, v in (*sub.named_parameters(recurse=False),
                                                        *sub.named_buffers(recurse=False))))
                 for name, sub in module.named_modules())


def _runner(step: Step, policy: torch.nn.Module | None, chunk: int, noisy: bool, constants: dict[str, torch.Tensor]
            ) -> _Chunks:
    """The cached compiled pair for this rollout's static structure, or a new one."""
    key = (_signature(step.problem), _signature(step.params), step.control, step.integrate, step.batch, step.like.dtype,
           str(step.like.device), step.check_each, chunk, noisy, policy is None,
           None if policy is None else _module_signature(policy))
    table = _OPEN_LOOP if policy is None else _CACHE.setdefault(policy, {})
    if key not in table:
        table[key] = _Chunks(step, policy, chunk, noisy, tuple(constants))
    return table[key]


class _Inputs(NamedTuple):
    """A compiled chunk's flat inputs, by name (``rest``: the cotangents of a VJP)."""

    weights: Tensors
    fixed: Tensors
    x: torch.Tensor
    done: torch.Tensor
    k0: torch.Tensor
    start: torch.Tensor
    controls: torch.Tensor
    noise: torch.Tensor | None
    rest: Tensors


class _Chunks:
    """The compiled forward and vector-Jacobian product of one chunk of ``length`` steps.

    Both are compiled on their first call, from the shapes of that call's inputs. Their inputs,
    flat: the policy's parameters (``weights``), its buffers and the tensor constants of ``params``
    (``fixed``), the chunk's start ``x`` ``(batch, n)`` and done flags, the first step's index ``k0`` (a 0-d
    tensor), the episode's start ``(batch, n)``, the chunk's open-loop controls ``(length, batch, m)``
    (empty for a policy) and its noise ``(length, batch, step_noise)`` if any; the VJP then the
    cotangents of the states, rewards, controls and end state.
    """

    def __init__(self, step: Step, policy: torch.nn.Module | None, length: int, noisy: bool,
                 constant_names: tuple[str, ...]) -> None:
        self.step, self.policy, self.length, self.noisy = step, policy, length, noisy
        self.weight_names = tuple(dict(policy.named_parameters())) if policy is not None else ()
        self.buffer_names = tuple(dict(policy.named_buffers())) if policy is not None else ()
        self.constant_names = constant_names
        self.key = "rollout chunk\n" + "\n".join(_description(part) for part in (
            step.problem, step.params, step.control, step.integrate, step.batch, step.like.dtype, step.like.device,
            step.check_each, length, noisy, constant_names, policy))
        self._forward: Compiled | None = None
        self._vjp: Compiled | None = None

    def inputs(self, constants: dict[str, torch.Tensor]) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """``(weights, fixed)``: the policy's parameters, then its buffers and ``params``' tensor constants."""
        if self.policy is None:
            return (), tuple(constants.values())
        parameters, buffers = dict(self.policy.named_parameters()), dict(self.policy.named_buffers())
        return (tuple(parameters[name] for name in self.weight_names),
                (*(buffers[name] for name in self.buffer_names), *(constants[name] for name in self.constant_names)))

    def ready(self, recorded: bool) -> bool:
        """Whether the forward (and, ``recorded``: the vector-Jacobian product) are compiled or on disk already."""
        return ((self._forward is not None or compiled_before(self.key + "\nforward"))
                and (not recorded or self._vjp is not None or compiled_before(self.key + "\nvjp")))

    def run(self, weights: tuple[torch.Tensor, ...], fixed: tuple[torch.Tensor, ...], x: torch.Tensor,
            done: torch.Tensor, k0: torch.Tensor, start: torch.Tensor, controls: torch.Tensor, noise: torch.Tensor | None
            ) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, torch.Tensor]]:
        """``length`` steps from the internal state ``x`` at step ``k0``, in plain torch (what is traced).

        Returns the differentiable ``(states, rewards, held, end)`` and the ``(dones, raw)``
        flags and controls before clipping, stacked over the chunk's steps.
        """
        step, buffers, constants = self.step, fixed[:len(self.buffer_names)], fixed[len(self.buffer_names):]
        if constants:
            params = dataclasses.replace(step.params, **dict(zip(self.constant_names, constants)))
            step = dataclasses.replace(step, params=params)
        module = self.policy
        policy: Policy | None = None
        if module is not None:
            named = {**dict(zip(self.weight_names, weights)), **dict(zip(self.buffer_names, buffers))}

            def call(o: torch.Tensor) -> torch.Tensor:
                return functional_call(module, named, (o,))

            policy = call

        xs: Components = x.unbind(-1)
        first: Components = start.unbind(-1)
        flag: torch.Tensor | bool = done
        states, rewards, held, dones, raw = [], [], [], [], []
        for j in range(self.length):
            source = controls[j] if policy is None else policy
            xs, reward, flag, h, unclipped = step(source, k0 + j, xs, flag, None if noise is None else noise[j], first)
            states.append(stack(step.problem.state_to_physical(xs), like=step.like))
            rewards.append(reward)
            held.append(h)
            dones.append(torch.as_tensor(flag))
            raw.append(unclipped)
        outputs = (torch.stack(states), torch.stack(rewards), torch.stack(held), stack(xs, like=step.like))
        return outputs, (torch.stack(dones), torch.stack(raw))

    def forward(self, weights: Tensors, fixed: Tensors, x: torch.Tensor, done: torch.Tensor, k0: torch.Tensor,
                start: torch.Tensor, controls: torch.Tensor, noise: torch.Tensor | None) -> Sequence[torch.Tensor]:
        """The chunk without a graph: ``(states, rewards, held, end, dones, raw)``."""
        inputs = [*weights, *fixed, x, done, k0, start, controls, *([] if noise is None else [noise])]
        if self._forward is None:
            self._forward = compile_tensor_function(lambda *a: self._flat_forward(len(weights), len(fixed), *a), inputs,
                                                    key=self.key + "\nforward")
        return self._forward(*inputs)

    def vjp(self, weights: Tensors, fixed: Tensors, x: torch.Tensor, done: torch.Tensor, k0: torch.Tensor,
            start: torch.Tensor, controls: torch.Tensor, noise: torch.Tensor | None, cotangents: Tensors
            ) -> Sequence[torch.Tensor]:
        """``(d_x, d_start, d_controls, *d_weights)`` for the cotangents of ``(states, rewards, held, end)``."""
        inputs = [*weights, *fixed, x, done, k0, start, controls, *([] if noise is None else [noise]), *cotangents]
        if self._vjp is None:
            self._vjp = compile_tensor_function(lambda *a: self._flat_vjp(len(weights), len(fixed), *a), inputs,
                                                key=self.key + "\nvjp")
        return self._vjp(*inputs)

    def _unpack(self, count: int, fixed_count: int, inputs: Tensors) -> _Inputs:
        weights, rest = inputs[:count], inputs[count:]
        fixed, rest = rest[:fixed_count], rest[fixed_count:]
        x, done, k0, start, controls, *tail = rest
        noise = tail.pop(0) if self.noisy else None
        return _Inputs(weights, fixed, x, done, k0, start, controls, noise, tuple(tail))

    def _flat_forward(self, count: int, fixed_count: int, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        weights, fixed, x, done, k0, start, controls, noise, _ = self._unpack(count, fixed_count, inputs)
        outputs, flags = self.run(weights, fixed, x, done, k0, start, controls, noise)
        return (*outputs, *flags)

    def _flat_vjp(self, count: int, fixed_count: int, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        weights, fixed, x, done, k0, start, controls, noise, cotangents = self._unpack(count, fixed_count, inputs)

        def differentiable(weights: Tensors, x: torch.Tensor, start: torch.Tensor, controls: torch.Tensor
                           ) -> tuple[Tensors, tuple[torch.Tensor, torch.Tensor]]:
            return self.run(weights, fixed, x, done, k0, start, controls, noise)

        pull = vjp(differentiable, tuple(weights), x, start, controls, has_aux=True)[1]
        d_weights, d_x, d_start, d_controls = pull(tuple(cotangents))
        return (d_x, d_start, d_controls, *d_weights)


class _ChunkedRollout(torch.autograd.Function):
    """The chunks as one autograd node: forward by compiled chunks, backward by compiled chunk VJPs in reverse."""

    @staticmethod
    def forward(ctx, runner: _Chunks, chunks: int, first_step: int, noise: torch.Tensor | None,
                fixed: tuple[torch.Tensor, ...], x: torch.Tensor, start: torch.Tensor, controls: torch.Tensor,
                *weights: torch.Tensor):
        like, length = runner.step.like, runner.length
        done = torch.zeros(runner.step.batch, dtype=torch.bool, device=like.device)
        starts, flags, parts = [], [], []
        for c in range(chunks):
            piece = slice(c * length, (c + 1) * length)
            starts.append(x)
            flags.append(done)
            k0 = torch.tensor(float(first_step + c * length), dtype=like.dtype, device=like.device)
            states, rewards, held, x, dones, raw = runner.forward(
                weights, fixed, x, done, k0, start, controls[piece] if controls.numel() else controls,
                None if noise is None else noise[piece])
            done = dones[-1]
            parts.append((states, rewards, held, dones, raw))
        ctx.runner, ctx.noise, ctx.chunks, ctx.fixed, ctx.first_step = runner, noise, chunks, fixed, first_step
        ctx.save_for_backward(start, controls, *weights, *starts, *flags)
        outputs = tuple(torch.cat(column) for column in zip(*parts))
        ctx.mark_non_differentiable(outputs[3], outputs[4])
        return (*outputs, x)

    @staticmethod
    def backward(ctx, g_states, g_rewards, g_held, _dones, _raw, g_end):
        runner, noise, chunks, fixed, length = ctx.runner, ctx.noise, ctx.chunks, ctx.fixed, ctx.runner.length
        start, controls, *rest = ctx.saved_tensors
        count = len(rest) - 2 * chunks
        weights, starts, flags = rest[:count], rest[count:count + chunks], rest[count + chunks:]
        like = runner.step.like
        lam = g_end.contiguous()
        g_start = torch.zeros_like(start)
        g_controls = torch.zeros_like(controls)
        g_weights = [torch.zeros_like(w) for w in weights]
        for c in reversed(range(chunks)):
            piece = slice(c * length, (c + 1) * length)
            k0 = torch.tensor(float(ctx.first_step + c * length), dtype=like.dtype, device=like.device)
            cotangents = (g_states[piece].contiguous(), g_rewards[piece].contiguous(), g_held[piece].contiguous(), lam)
            lam, d_start, d_controls, *d_weights = runner.vjp(
                weights, fixed, starts[c], flags[c], k0, start, controls[piece] if controls.numel() else controls,
                None if noise is None else noise[piece], cotangents)
            g_start += d_start
            if controls.numel():
                g_controls[piece] = d_controls
            for total, d in zip(g_weights, d_weights):
                total += d
        return (None, None, None, None, None, lam, g_start, g_controls, *g_weights)
