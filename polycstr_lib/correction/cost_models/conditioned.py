"""The cost as a function of the action for fixed observations, with its derivatives.

:class:`ActionCost` is the interface the safety layer descends; :class:`AutogradActionCost`
serves any module, the PICNN has a closed-form forward-mode version.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from polycstr_lib.correction.cost_models.networks import PICNN


# ----------------------------------------------------------------------------------------------
# Cost as a function of the action (used by the safety layer)
# ----------------------------------------------------------------------------------------------
class ActionCost:
    """``a -> ĉ(s, a)`` for a fixed batch of observations, with first and second derivatives.

    All methods take actions ``(B, action_dim)`` and return costs ``(B,)``, gradients
    ``(B, action_dim)`` and Hessians ``(B, action_dim, action_dim)``, all detached.
    """

    def value(self, action: Tensor) -> Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def value_and_grad(self, action: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def value_grad_hess(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError


class AutogradActionCost(ActionCost):
    """Generic :class:`ActionCost` of any module ``model(obs, action) -> (B,)`` via autograd.

    Samples are independent, so the gradient of the summed cost is the per-sample gradient and
    one more backward pass per action coordinate gives the per-sample Hessian rows.
    """

    def __init__(self, model: nn.Module, obs: Tensor) -> None:
        self.model = model
        self.obs = obs

    def value(self, action: Tensor) -> Tensor:
        with torch.no_grad():
            return self.model(self.obs, action)

    def value_and_grad(self, action: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            a = action.detach().requires_grad_(True)
            cost = self.model(self.obs, a)
            (grad,) = torch.autograd.grad(cost.sum(), a)
        return cost.detach(), grad

    def value_grad_hess(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with torch.enable_grad():
            a = action.detach().requires_grad_(True)
            cost = self.model(self.obs, a)
            (grad,) = torch.autograd.grad(cost.sum(), a, create_graph=True)
            d = a.shape[-1]
            rows = []
            for j in range(d):
                (row,) = torch.autograd.grad(
                    grad[:, j].sum(), a, retain_graph=j < d - 1, allow_unused=True
                )
                rows.append(torch.zeros_like(a) if row is None else row)
        return cost.detach(), grad.detach(), torch.stack(rows, dim=1).detach()


def _packed_forward(
    At: Sequence[Tensor],  # noqa: N803 - A transposed, as in the docstrings
    c: Sequence[Tensor],
    gz: Sequence[Tensor | None],
    WzT: Sequence[Sequence[Tensor] | None],  # noqa: N803
    action: Tensor,
    order: int,
) -> Tensor:
    """The action path of ``M`` conditioned PICNNs carrying ``[p, dp/da, d²p/da²]`` per unit.

    Args:
        At: per layer, ``A_i^T`` of every member, ``(M·B, d, n)`` (member-major).
        c: per layer, the state-only constant, ``(M·B, 1, n)``.
        gz: per layer from the second, the z-gate, ``(M·B, 1, h)`` (``None`` first).
        WzT: per layer from the second, each member's ``(W_z^+)^T`` ``(h, n)`` (``None`` first).
        action: ``(B, d)``, the same for every member.
        order: 0 (value), 1 (and gradient) or 2 (and Hessian).

    Returns:
        ``(M, B, 1 [+ d [+ d²]])``.
    """
    d = At[0].shape[1]
    n_members = len(WzT[1]) if len(WzT) > 1 else At[0].shape[0] // action.shape[0]
    b = action.shape[0]
    a = action.unsqueeze(1).repeat(n_members, 1, 1)  # (M·B, 1, d)
    t = x = None
    for i in range(len(At)):
        lin = torch.baddbmm(c[i], a, At[i])  # (M·B, 1, n): constant + affine part
        if i == 0:
            parts = [lin]
            if order >= 1:
                parts.append(At[0])
            if order >= 2:
                parts.append(lin.new_zeros(lin.shape[0], d * d, lin.shape[2]))
            t = torch.cat(parts, dim=1) if order else lin
        else:
            # one matmul per member for value, Jacobian and Hessian together, shaped as for a
            # single model: a batched matmul over members sums in another order (~1e-7)
            xs = x.reshape(n_members, b, *x.shape[1:])
            products = [xs[k] @ WzT[i][k] for k in range(n_members)]
            t = products[0] if n_members == 1 else torch.cat(products)
            t[:, :1] += lin
            if order >= 1:
                t[:, 1 : 1 + d] += At[i]
        if i == len(At) - 1:
            break
        p = t[:, :1]
        z = torch.nn.functional.softplus(p)
        if order == 0:
            x = z * gz[i + 1]
            continue
        sig = torch.sigmoid(p)
        dp = t[:, 1 : 1 + d]
        parts = [z, sig * dp]
        if order >= 2:
            outer = (dp.unsqueeze(2) * dp.unsqueeze(1)).flatten(1, 2)  # (M·B, d², n)
            parts.append(sig * (1.0 - sig) * outer + sig * t[:, 1 + d :])
        x = torch.cat(parts, dim=1) * gz[i + 1]  # gated z_{i+1} and its derivatives
    return t.squeeze(-1).reshape(n_members, b, -1)


class _PICNNActionCost(ActionCost):
    """Closed-form forward-mode derivatives of a :class:`PICNN` in the action.

    The state path and every state-only bracket are evaluated once in ``__init__``; each call
    then runs only the action path, carrying per unit the packed vector
    ``[p, dp/da (d values), d²p/da² (d² values)]`` through the layers. Every z-to-z layer is
    linear in that packed vector, so one matmul per layer propagates value, Jacobian and
    Hessian together, without autograd.
    """

    def __init__(self, model: PICNN, obs: Tensor) -> None:
        with torch.no_grad():
            obs = torch.as_tensor(obs, dtype=model.obs_mean.dtype)
            terms = model._state_terms(obs)
            weights = model.effective_z_weights()
            # Per layer, unit index last: A_i^T = (W_y diag(gate_y))^T as (B, d, n), the
            # constant (B, 1, n), the z-gate (B, 1, h) and (W_z^+)^T as (h, n).
            self.At = [
                (model.y[i].weight * g[:, None, :]).transpose(1, 2).contiguous()
                for i, (_, g, _) in enumerate(terms)
            ]
            self.c = [c.unsqueeze(1) for _, _, c in terms]
            self.gz = [None] + [gz.unsqueeze(1) for gz, _, _ in terms[1:]]
            self.WzT = [None] + [w.detach().T.contiguous() for w in weights]
            self.y_mean = model.y_mean
            self.y_std = model.y_std
        self.n_layers = len(terms)
        self.d = self.At[0].shape[1]

    def _run(self, action: Tensor, order: int) -> Tensor:
        """Packed ``(B, 1 + d + d²)`` (order 2), ``(B, 1 + d)`` (order 1) or ``(B, 1)`` output."""
        weights = [None] + [[w] for w in self.WzT[1:]]
        return _packed_forward(self.At, self.c, self.gz, weights, action, order)[0]

    def value(self, action: Tensor) -> Tensor:
        with torch.no_grad():
            return self.y_mean + self.y_std * self._run(action, 0)[:, 0]

    def value_and_grad(self, action: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            t = self._run(action, 1)
            return self.y_mean + self.y_std * t[:, 0], self.y_std * t[:, 1:]

    def value_grad_hess(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad():
            t = self._run(action, 2)
            d = self.d
            hess = (self.y_std * t[:, 1 + d :]).reshape(-1, d, d)
            return self.y_mean + self.y_std * t[:, 0], self.y_std * t[:, 1 : 1 + d], hess


class _StackedPICNNActionCost:
    """Several :class:`_PICNNActionCost` of equal layer sizes, evaluated as one.

    The members' tensors are stacked on a leading member axis, so each layer is one batched
    operation over members instead of one call per member. Only the z-path products stay one
    per member, each shaped exactly as in the member's own :class:`_PICNNActionCost`, so every
    member's outputs equal its own bit for bit (a test checks), and so does the pessimistic
    cost built from them.

    Outputs have a leading member axis: costs ``(M, B)``, gradients ``(M, B, d)``, Hessians
    ``(M, B, d, d)``.
    """

    def __init__(self, members: Sequence[_PICNNActionCost]) -> None:
        first = members[0]
        self.n_members, self.n_layers, self.d = len(members), first.n_layers, first.d

        def stack(name: str, i: int) -> Tensor:
            return torch.stack([getattr(m, name)[i] for m in members])

        L = self.n_layers  # noqa: N806 - the layer count, as in the docstrings
        # (M·B, d, n), (M·B, 1, n) and (M·B, 1, h): the member axis folded into the batch
        self.At = [stack("At", i).flatten(0, 1) for i in range(L)]
        self.c = [stack("c", i).flatten(0, 1) for i in range(L)]
        self.gz = [None] + [stack("gz", i).flatten(0, 1) for i in range(1, L)]
        # the members' own (h, n) tensors, strides included (they select the matmul kernel)
        self.WzT = [None] + [[m.WzT[i] for m in members] for i in range(1, L)]
        self.y_mean = torch.stack([torch.as_tensor(m.y_mean).reshape(()) for m in members])
        self.y_std = torch.stack([torch.as_tensor(m.y_std).reshape(()) for m in members])

    def _run(self, action: Tensor, order: int) -> Tensor:
        """Packed ``(M, B, 1 + d + d²)``, ``(M, B, 1 + d)`` or ``(M, B, 1)`` output."""
        return _packed_forward(self.At, self.c, self.gz, self.WzT, action, order)

    def value(self, action: Tensor) -> Tensor:
        with torch.no_grad():
            return self.y_mean[:, None] + self.y_std[:, None] * self._run(action, 0)[..., 0]

    def value_and_grad(self, action: Tensor) -> tuple[Tensor, Tensor]:
        with torch.no_grad():
            t = self._run(action, 1)
            std = self.y_std[:, None]
            return self.y_mean[:, None] + std * t[..., 0], std[..., None] * t[..., 1:]

    def value_grad_hess(self, action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        with torch.no_grad():
            t = self._run(action, 2)
            d, std = self.d, self.y_std[:, None]
            hess = (std[..., None] * t[..., 1 + d :]).reshape(*t.shape[:2], d, d)
            return self.y_mean[:, None] + std * t[..., 0], std[..., None] * t[..., 1 : 1 + d], hess
