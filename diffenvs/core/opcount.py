"""Deterministic per-step cost counts of the eager gradient path: autograd nodes and aten operations.

An eager rollout at the batch sizes agents train with is bound by per-operation overhead, so the number of
operations per step, not their arithmetic, sets its speed. These counts do not depend on the machine's load:
:func:`graph_nodes` walks the autograd graph from a loss, :class:`OpCounter` counts the aten operations
dispatched (forward and backward alike), and :func:`rollout_counts` gives both per step of a rollout, as the
difference between two horizons (so the fixed cost of a rollout's set-up and stacking cancels).
``python -m diffenvs.core.opcount`` prints the table for every environment.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ["OpCounter", "StepCounts", "graph_nodes", "main", "rollout_counts"]


def graph_nodes(*outputs: torch.Tensor) -> Counter[str]:
    """The autograd nodes reachable from ``outputs`` (walking ``grad_fn.next_functions``), counted by name."""
    seen: set[int] = set()
    names: Counter[str] = Counter()
    stack = [t.grad_fn for t in outputs if t.grad_fn is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        names[node.name()] += 1
        stack.extend(child for child, _ in node.next_functions if child is not None)
    return names


class OpCounter(TorchDispatchMode):
    """A dispatch mode that counts the aten operations run under it, by overload name (``aten.mul.Tensor``).

    Backward's operations are counted too when ``backward()`` runs inside the mode.
    """

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


@dataclasses.dataclass(frozen=True)
class StepCounts:
    """Per-step counts of one rollout: autograd nodes, aten operations forward and backward, and the conversions
    (``aten::to`` in the profiler, forward and backward) of Python numbers to the tensors' dtype."""

    nodes: int
    forward_ops: int
    backward_ops: int
    conversions: int
    node_names: Counter[str]
    forward_names: Counter[str]


def _conversions(events: Any) -> Counter[str]:
    return Counter({"conversions": sum(e.count for e in events.key_averages() if e.key == "aten::to")})


def _measure(run: Callable[[int], torch.Tensor], steps: int) -> tuple[Counter[str], ...]:
    with OpCounter() as forward:
        loss = run(steps)
    nodes = graph_nodes(loss)
    with OpCounter() as backward:
        loss.backward()
    # a Python number in a tensor operation is converted to the tensor's dtype below the dispatcher's modes: the
    # profiler sees it as aten::to
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profiled:
        run(steps).backward()
    return nodes, forward.ops, backward.ops, _conversions(profiled)


def _difference(long: Counter[str], short: Counter[str], steps: int) -> Counter[str]:
    return Counter({k: (long[k] - short[k]) // steps for k in long.keys() | short.keys() if long[k] != short[k]})


def rollout_counts(run: Callable[[int], torch.Tensor], steps: tuple[int, int] = (2, 4)) -> StepCounts:
    """Counts per step of ``run(n)``, a scalar loss of an ``n``-step rollout (with autograd), from two horizons."""
    short, long = steps
    a, b = _measure(run, short), _measure(run, long)
    per = [_difference(y, x, long - short) for x, y in zip(a, b)]
    return StepCounts(sum(per[0].values()), sum(per[1].values()), sum(per[2].values()), per[3]["conversions"],
                      per[0], per[1])


class _Linear(torch.nn.Module):
    """A small tanh policy from observations to physical controls (the benchmark's shape)."""

    def __init__(self, obs_dim: int, control_dim: int, scale: torch.Tensor, dtype: torch.dtype) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(obs_dim, 16, dtype=dtype), torch.nn.Tanh(),
                                       torch.nn.Linear(16, control_dim, dtype=dtype), torch.nn.Tanh())
        self.register_buffer("scale", scale)

    def forward(self, observation: torch.Tensor) -> torch.Tensor:
        return self.net(observation) * self.scale


def environment_run(env_id: str, batch: int = 8, dtype: torch.dtype = torch.float32) -> Callable[[int], torch.Tensor]:
    """``run(n)``: the mean cost of an ``n``-step eager rollout of ``env_id`` from its seeded starts under a small
    tanh policy (``diffenvs.RK4()``, ``check=False``), with autograd."""
    import gymnasium as gym

    import diffenvs

    problem = gym.make(env_id).unwrapped.problem  # type: ignore[attr-defined]  # a diffenvs face has one
    starts = []
    for seed in range(batch):
        env = gym.make(env_id)
        env.reset(seed=seed)
        starts.append(env.unwrapped.state)  # type: ignore[attr-defined]  # the documented physical state
    x0 = torch.as_tensor(np.stack(starts), dtype=dtype)
    torch.manual_seed(0)
    low = torch.as_tensor(problem.control_low, dtype=dtype)
    high = torch.as_tensor(problem.control_high, dtype=dtype)
    scale = torch.where(torch.isfinite(high), torch.maximum(low.abs(), high.abs()), torch.ones_like(high))
    policy = _Linear(len(problem.observation_names), problem.control_dim, scale, dtype)

    def run(steps: int) -> torch.Tensor:
        policy.zero_grad()
        return diffenvs.rollout(problem, policy, x0, steps=steps, check=False).costs.mean()

    return run


def table(env_ids: Iterable[str], batch: int = 8, dtype: torch.dtype = torch.float32) -> str:
    """A markdown table of :func:`rollout_counts` per environment (``batch`` trajectories of ``dtype``)."""
    lines = ["| env | autograd nodes / step | aten ops / step, forward | backward | aten::to, forward and backward |",
             "|---|---:|---:|---:|---:|"]
    for env_id in env_ids:
        counts = rollout_counts(environment_run(env_id, batch, dtype))
        lines.append(f"| {env_id} | {counts.nodes} | {counts.forward_ops} | {counts.backward_ops} | "
                     f"{counts.conversions} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """Print the per-step counts of every registered environment (or of ``--env``), and the forward's operations
    by name with ``--names``."""
    import diffenvs

    parser = argparse.ArgumentParser(description="Per-step autograd nodes and aten operations of the eager "
                                     "gradient path, per environment (deterministic counts).")
    parser.add_argument("--env", action="append", help="an environment id (default: every registered one)")
    parser.add_argument("--batch", type=int, default=8, help="trajectories per rollout")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32", help="the rollout's dtype")
    parser.add_argument("--names", action="store_true", help="also list the forward's operations by name")
    args = parser.parse_args(argv)
    env_ids = args.env or list(diffenvs.ENV_IDS)
    dtype = getattr(torch, args.dtype)
    text = table(env_ids, args.batch, dtype)
    if args.names:
        for env_id in env_ids:
            counts = rollout_counts(environment_run(env_id, args.batch, dtype))
            text += f"\n\n{env_id}: " + ", ".join(f"{k} {v}" for k, v in counts.forward_names.most_common())
            text += "\nnodes: " + ", ".join(f"{k} {v}" for k, v in counts.node_names.most_common())
    print(text)
    return text


if __name__ == "__main__":
    main()
