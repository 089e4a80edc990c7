r"""Several hybrid models trained at once: :math:`\dot u = (\alpha u_1, -\delta u_2) + \hat U(u)`, one weight set
per member, stepped together.

Every weight carries a leading dimension, one member per :math:`\lambda`; the network and its input Jacobian are
batched matrix products (the Jacobian by forward-mode tangent propagation, so the gradient of the regulariser is
forward-over-reverse, equal to :func:`diffenvs.derivatives.input_jacobian`), and the RK4 solve steps all members
together.
"""

from __future__ import annotations

from typing import Literal, overload

import torch

from studies.ude.problem import SAVE_EVERY, TRUE_PARAMETERS

__all__ = ["Ensemble", "Layer"]

Layer = tuple[torch.Tensor, torch.Tensor]
"""One layer's ``(W, b)``, shapes ``(members, out, in)`` and ``(members, out)``."""


class Ensemble:
    """``members`` copies of the hybrid model, one weight set each, stepped together.

    ``weights`` is a list of ``(W, b)`` per layer with shapes ``(members, out, in)`` and ``(members, out)``.
    """

    def __init__(self, weights: list[Layer]):
        self.weights = weights

    @classmethod
    def from_network(cls, network: torch.nn.Sequential, members: int) -> Ensemble:
        """Every member starts from ``network``'s weights (leaves with ``requires_grad``)."""
        if not isinstance(members, int) or members < 1:
            raise ValueError(f"members must be a positive integer, got {members!r}")
        layers = [m for m in network if isinstance(m, torch.nn.Linear)]
        weights = [(layer.weight.detach().expand(members, -1, -1).clone().requires_grad_(True),
                    layer.bias.detach().expand(members, -1).clone().requires_grad_(True)) for layer in layers]
        return cls(weights)

    @classmethod
    def stack(cls, ensembles: list[Ensemble]) -> Ensemble:
        """The members of ``ensembles`` in order, as one ensemble of detached weights."""
        return cls([(torch.cat([e.weights[k][0] for e in ensembles]).detach(),
                     torch.cat([e.weights[k][1] for e in ensembles]).detach()) for k in range(len(ensembles[0].weights))])

    @property
    def members(self) -> int:
        return self.weights[0][0].shape[0]

    def parameters(self) -> list[torch.Tensor]:
        return [t for pair in self.weights for t in pair]

    def member(self, index: int) -> Ensemble:
        """Member ``index`` alone, as a one-member ensemble sharing no storage (fresh leaves)."""
        return Ensemble([(w[index:index + 1].detach().clone().requires_grad_(True),
                          b[index:index + 1].detach().clone().requires_grad_(True)) for w, b in self.weights])

    @overload
    def network(self, x: torch.Tensor, jacobian: Literal[False] = False) -> tuple[torch.Tensor, None]: ...

    @overload
    def network(self, x: torch.Tensor, jacobian: Literal[True]) -> tuple[torch.Tensor, torch.Tensor]: ...

    def network(self, x: torch.Tensor, jacobian: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        r""":math:`\hat U(x)` for ``x`` of shape ``(members, batch, 2)``, and its input Jacobian
        ``(members, batch, 2, 2)`` by forward-mode tangents if ``jacobian``."""
        h, tangent = x, None
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(self.weights):
            z = torch.baddbmm(b[:, None, :], h, w.transpose(1, 2))
            h = torch.exp(-z * z) if i < last else z
            if jacobian:
                tangent = w[:, None].expand(-1, x.shape[1], -1, -1) if tangent is None else w[:, None] @ tangent
                if i < last:
                    tangent = (-2 * z * h)[..., None] * tangent
        return h, tangent

    def field(self, x: torch.Tensor) -> torch.Tensor:
        """The hybrid vector field for states ``(members, batch, 2)``."""
        alpha, _, _, delta = TRUE_PARAMETERS
        learned, _ = self.network(x)
        return torch.stack([alpha * x[..., 0], -delta * x[..., 1]], -1) + learned

    def solve(self, u0: torch.Tensor, count: int, dt: float = SAVE_EVERY, steps: int = 2) -> torch.Tensor:
        """States at ``0, dt, ..., (count-1) dt`` from ``u0`` (``(2,)``, or ``(batch, 2)``) by RK4 with ``steps``
        steps per ``dt``; shape ``(count, members, batch, 2)`` (``batch`` 1 for a single start)."""
        x = u0.reshape(1, -1, 2).expand(self.members, -1, -1)
        h = dt / steps
        states = [x]
        for _ in range(count - 1):
            for _ in range(steps):
                k1 = self.field(x)
                k2 = self.field(x + 0.5 * h * k1)
                k3 = self.field(x + 0.5 * h * k2)
                k4 = self.field(x + h * k3)
                x = x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            states.append(x)
        return torch.stack(states)

    def regulariser(self, points: torch.Tensor) -> torch.Tensor:
        r""":math:`\sum_i \|\partial \hat U/\partial u\,(x_i)\|_F^2` per member, shape ``(members,)``."""
        _, jac = self.network(points.expand(self.members, -1, -1), jacobian=True)
        return jac.square().sum((1, 2, 3))

    def losses(self, data: torch.Tensor, steps: int, points: torch.Tensor, horizon: int | None = None,
               mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(misfit, regulariser) per member. The misfit is the mean square error on the points of ``data`` that
        ``mask`` keeps (default all) of one solve from ``data[0]`` (single shooting, ``horizon`` None), or of solves
        of ``horizon`` intervals from every kept point (multiple shooting: each segment starts on the data)."""
        if mask is None:
            mask = torch.ones(len(data), dtype=torch.bool)
        if horizon is None:
            prediction = self.solve(data[0], len(data), steps=steps)[:, :, 0]
            return (prediction - data[:, None]).square().mean(2)[mask].mean(0), self.regulariser(points)
        horizon = min(horizon, len(data) - 1)
        targets = data.unfold(0, horizon + 1, 1).permute(2, 0, 1)  # (horizon + 1, segments, 2)
        kept = mask.unfold(0, horizon + 1, 1).T  # (horizon + 1, segments)
        starts = kept[0]
        targets, counted = targets[:, starts], kept[1:, starts].to(data.dtype)
        prediction = self.solve(targets[0], horizon + 1, steps=steps)  # (horizon + 1, members, segments, 2)
        square = (prediction[1:] - targets[1:, None]).square().mean(3)  # (horizon, members, segments)
        misfit = (square * counted[:, None]).sum((0, 2)) / counted.sum()
        return misfit, self.regulariser(points)
