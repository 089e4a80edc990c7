"""The gradient path's argument checks, written once: :func:`~diffenvs.core.rollout.rollout` validates here.

Types, shapes, dtypes and ``params`` are checked on every call; with ``check=True`` also the
values of ``x0``, ``noise``, a tensor of controls and every control a policy returns at a step's
start (finite). Errors name the argument, what was expected and what came.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from diffenvs.core.problem import OdeProblem, ParamsT, Problem
from diffenvs.core.solvers import RK4, Adaptive, Adjoint
from diffenvs.core.validation import check_integer

#: a policy: observations ``(batch, obs_dim)`` to physical controls ``(batch, m)``
Policy = Callable[[torch.Tensor], torch.Tensor]


def finite(value: torch.Tensor) -> torch.Tensor:
    """``torch.isfinite`` outside the autograd graph (on a tensor that requires grad it would record, and save, an ``abs``)."""
    return torch.isfinite(value.detach())


def first_bad(finite: torch.Tensor) -> tuple[int, ...]:
    """The index of the first ``False`` of ``finite`` (row-major: the earliest step, then the lowest trajectory)."""
    return tuple(int(i) for i in torch.nonzero(~finite)[0])


def checked_params(problem: Problem[ParamsT], params: ParamsT | None) -> ParamsT:
    """``params`` (default ``problem.params``) after the checks ``problem``'s constructor applies to its own.

    The definition's ``__post_init__`` runs on a copy of ``problem`` holding ``params``, so a
    constant given here meets exactly the checks it meets in the constructor (``pole_mass=-1``
    fails as ``Cartpole(params=...)`` does). Tensor fields, the constants being differentiated,
    are not checked (a check on a tensor's value would be a branch on it): the copy holds the
    problem's own, already checked, value of those fields.
    """
    own = problem.params
    if params is None or params is own:
        return own
    if dataclasses.is_dataclass(own) and not isinstance(params, type(own)):
        raise TypeError(f"params must be a {type(own).__name__} (the constants of {type(problem).__name__}), "
                        f"got {type(params).__name__}")
    checked: Any = params
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        tensors = {f.name: getattr(own, f.name) for f in dataclasses.fields(params)
                   if f.init and isinstance(getattr(params, f.name), torch.Tensor)}
        checked = dataclasses.replace(params, **tensors) if tensors else params
    probe = copy.copy(problem)
    object.__setattr__(probe, "params", checked)
    probe.__post_init__()
    return params


def checked_tensor(name: str, value: Any, shape: tuple[int, ...], x0: torch.Tensor, check: bool, axes: str) -> None:
    """Raise unless ``value`` is a tensor of ``shape`` and ``x0``'s dtype and device, finite when ``check``.

    ``axes`` names the leading axes of ``value`` for the message (e.g. ``"step, trajectory"``).
    """
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape}, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
    if value.dtype != x0.dtype or value.device != x0.device:
        raise TypeError(f"{name} must have x0's dtype and device ({x0.dtype}, {x0.device}), "
                        f"got ({value.dtype}, {value.device})")
    if check and not bool(finite(value).all()):
        index = first_bad(finite(value).flatten(len(axes.split(", "))).all(-1))
        raise ValueError(f"{name} must be finite, got {value[index].tolist()} at ({axes}) = {index}; "
                         "check=False skips this check")


def policy_output(u: Any, step: Any, batch: int, m: int, x0: torch.Tensor) -> torch.Tensor:
    """A callable policy's output, checked: a tensor ``(batch, m)`` of ``x0``'s dtype and device."""
    at = f" at step {step}" if isinstance(step, int) else ""
    if not isinstance(u, torch.Tensor):
        raise TypeError(f"policy must return a torch.Tensor of controls of shape ({batch}, {m}), got "
                        f"{type(u).__name__}{at}")
    if tuple(u.shape) != (batch, m):
        raise ValueError(f"policy must return controls of shape (batch, control_dim) = ({batch}, {m}), "
                         f"got {tuple(u.shape)}{at}")
    if u.dtype != x0.dtype or u.device != x0.device:
        raise TypeError(f"policy must return controls of x0's dtype and device ({x0.dtype}, {x0.device}), "
                        f"got ({u.dtype}, {u.device}){at}")
    return u


def check_policy_outputs(raw: torch.Tensor, states: torch.Tensor, first_step: Any = 0) -> None:
    """Raise if the policy returned a non-finite control ``raw`` ``(steps, batch, m)`` from a finite state.

    ``states`` ``(steps, batch, n)`` are the states the controls were computed from, at steps
    ``first_step, first_step + 1, ...``. A state that had already diverged is not the policy's
    fault, and not an error here: the trajectory holds the non-finite values, as the faces'
    finite-state check would truncate there. One synchronisation per call when all is finite.
    """
    good = finite(raw)
    if bool(good.all()):  # the common case: one reduction, the states untouched
        return
    blamed = ~good.all(-1) & finite(states).all(-1)
    if bool(blamed.any()):
        step, row = first_bad(~blamed)
        raise ValueError(f"policy must return finite controls, got {raw[step, row].tolist()} at step {first_step + step} "
                         f"(trajectory {row}) from the finite state {states[step, row].tolist()}; "
                         "check=False skips this check")


#: the precisions a rollout runs in (x0's dtype); half precision would integrate with 3 significant digits
ROLLOUT_DTYPES = (torch.float32, torch.float64)


def check_start_states(problem: Problem[Any], name: str, states: torch.Tensor) -> None:
    """Raise ``ValueError`` naming ``name`` and the row unless every physical start state ``(batch, n)`` is one the faces
    accept (:meth:`~diffenvs.core.problem.Problem.check_state`, as ``reset(options={"state": ...})`` checks it).

    One synchronisation, and a loop over the rows only for a problem that restricts its states.
    """
    if type(problem).check_state is Problem.check_state:  # no restriction: nothing to look at
        return
    # tolist, not numpy: it works under torch.func's transforms too, where a tensor has no storage to share
    for row, state in enumerate(states.detach().to(torch.float64).tolist()):
        try:
            problem.check_state(np.asarray(state))
        except ValueError as error:
            raise ValueError(f"{name} row {row} is not a start state of {type(problem).__name__}: {error}; "
                             "check=False skips this check") from None


def _checked_x0(problem: Problem[Any], x0: Any, check: bool) -> None:
    if not isinstance(x0, torch.Tensor) or x0.dim() != 2 or x0.shape[-1] != problem.state_dim:
        raise ValueError(f"x0 must be a tensor of shape (batch, {problem.state_dim}), got "
                         f"{tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__}")
    if not x0.is_floating_point():
        raise ValueError(f"x0 must be a floating-point tensor, got dtype {x0.dtype}")
    if x0.dtype not in ROLLOUT_DTYPES:
        raise TypeError(f"x0 must be float32 or float64 (the rollout runs in x0's dtype; half precision keeps about "
                        f"3 significant digits), got dtype {x0.dtype}: convert it with x0.float() or x0.double()")
    if check and not bool(finite(x0).all()):
        (row,) = first_bad(finite(x0).all(-1))
        raise ValueError(f"x0 must be finite, got {x0[row].tolist()} in row {row}; check=False skips this check")


def _checked_policy(problem: Problem[Any], policy: Any, x0: torch.Tensor, steps: int, control: str,
                    check: bool) -> Policy | torch.Tensor:
    """The policy, a tensor of controls broadcast over the batch, or a callable."""
    batch, m = x0.shape[0], problem.control_dim
    if isinstance(policy, torch.Tensor):
        if control == "feedback":
            raise ValueError("control='feedback' needs a callable policy, not a tensor of controls")
        if policy.dim() == 2:
            policy = policy.unsqueeze(1).expand(-1, batch, -1)
        if tuple(policy.shape) != (steps, batch, m):
            raise ValueError(f"policy as a tensor of controls must have shape ({steps}, {batch}, {m}), got {tuple(policy.shape)}")
        checked_tensor("policy as a tensor of controls", policy, (steps, batch, m), x0, check, "step, trajectory")
        return policy
    if not callable(policy):
        raise TypeError(f"policy must be callable or a tensor of controls, got {type(policy).__name__}")
    return policy


def checked_arguments(problem: Problem[Any], policy: Any, x0: Any, steps: Any, control: Any, solver: Any,
                      noise: Any, check: Any) -> Policy | torch.Tensor:
    """Validate :func:`~diffenvs.core.rollout.rollout`'s arguments once; the policy comes back (a tensor of controls
    broadcast over the batch)."""
    if control not in ("sampled", "feedback"):
        raise ValueError(f"control must be 'sampled' or 'feedback', got {control!r}")
    if not isinstance(solver, (RK4, Adaptive)):
        raise TypeError(f"solver must be RK4(), Adaptive(...) or Adjoint(...), got {solver!r}")
    if not isinstance(check, bool):
        raise TypeError(f"check must be True or False, got {check!r}")
    _checked_x0(problem, x0, check)
    check_integer("steps", steps)
    policy = _checked_policy(problem, policy, x0, steps, control, check)
    if noise is not None:
        if not problem.step_noise:
            raise ValueError(f"noise must be None: {type(problem).__name__} has no process noise (step_noise = 0)")
        checked_tensor("noise", noise, (steps, x0.shape[0], problem.step_noise), x0, check, "step, trajectory")
    if not isinstance(problem, OdeProblem) and (control == "feedback" or not isinstance(solver, RK4)):
        raise ValueError(f"{type(problem).__name__} is a discrete-time map: it takes control='sampled' and solver=RK4()")
    if isinstance(solver, Adjoint) and control == "feedback" and not isinstance(policy, torch.nn.Module):
        raise TypeError("the adjoint solver with control='feedback' needs the policy to be a torch.nn.Module "
                        "(its parameters are the adjoint's parameters)")
    return policy


def gradient_leaves(policy: Policy | torch.Tensor, params: Any, solver: Any) -> list[torch.Tensor]:
    """The tensors gradients flow to that an adjoint solve takes as its parameters: the policy's parameters and the
    tensor fields of ``params`` that require grad (leaf tensors, else ``ValueError`` with :class:`Adjoint`)."""
    policy_parameters = list(policy.parameters()) if isinstance(policy, torch.nn.Module) else []
    leaves = [p for p in (*policy_parameters, *tensor_fields(params).values()) if p.requires_grad]
    if isinstance(solver, Adjoint) and any(not p.is_leaf for p in leaves):
        raise ValueError("with the Adjoint solver, tensors in params and the policy's parameters must be leaf tensors")
    return leaves


def tensor_fields(params: Any) -> dict[str, torch.Tensor]:
    """The tensor fields of a dataclass of constants, by name (none for anything else)."""
    if not dataclasses.is_dataclass(params) or isinstance(params, type):
        return {}
    return {f.name: v for f in dataclasses.fields(params) if isinstance(v := getattr(params, f.name), torch.Tensor)}
