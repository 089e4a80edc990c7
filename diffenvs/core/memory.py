"""How much memory an autograd graph keeps for the backward pass."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def saved_tensor_bytes(compute: Callable[[], T]) -> tuple[T, int]:
    """Run ``compute()`` and count the bytes of every tensor storage autograd saves for backward (each storage once).

    This is the memory a backward pass of the result needs beyond its inputs: solver stages and
    activations for backpropagation through a solver, the step grid for the adjoint. Returns
    ``(compute(), bytes)``.
    """
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = compute()
    return result, sum(storages.values())
