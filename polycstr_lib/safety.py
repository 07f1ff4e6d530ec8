"""The safety layer: correct a base policy's action by descending a learned cost model.

At deployment the base action ``a_0 = π(s)`` is moved downhill on ``ĉ(s, ·)``:

* ``'gradient'``: K projected gradient steps ``a ← clip(a − η ∇_a ĉ(s, a), −1, 1)``;
* ``'newton'``: K damped Newton steps ``a ← clip(a − α (H + λI)^{-1} ∇_a ĉ(s, a), −1, 1)``
  with the per-sample 2×2 Hessian ``H``.

With a PICNN cost model both are descent methods on a convex function of the action; the
PICNN provides closed-form derivatives (:meth:`PICNN.conditioned`), any other module goes
through autograd. :class:`CorrectedPolicy` wraps a policy ``act(obs)`` into its "+" version.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polycstr_lib.cost_models import ActionCost, AutogradActionCost

__all__ = ["CorrectedPolicy", "correct_actions", "default_step_size"]

_METHODS = ("gradient", "newton")
_PD_FLOOR = 1e-6  # smallest eigenvalue kept in the damped Newton matrix


def default_step_size(method: str) -> float:
    """Default step size: η = 0.1 for gradient steps, α = 1 (full step) for Newton."""
    return 1.0 if method == "newton" else 0.1


def _model_dtype(model: nn.Module, fallback: torch.dtype) -> torch.dtype:
    for t in model.parameters():
        return t.dtype
    for t in model.buffers():
        return t.dtype
    return fallback


def _check_finite(x: Tensor, what: str) -> None:
    finite = torch.isfinite(x)
    if not bool(finite.all()):
        bad = (~finite).reshape(len(x), -1).any(dim=1).nonzero().flatten()[:5].tolist()
        raise ValueError(f"{what} contain NaN or inf (first bad rows: {bad})")


def _conditioned(cost_model: nn.Module, obs: Tensor) -> ActionCost:
    if hasattr(cost_model, "conditioned"):
        return cost_model.conditioned(obs)
    return AutogradActionCost(cost_model, obs)


def _newton_direction(grad: Tensor, hess: Tensor, damping: float) -> tuple[Tensor, Tensor]:
    """``(H + λI)^{-1} ∇`` per sample for 2×2 ``H`` (closed form); shift to keep it PD.

    If the smallest eigenvalue of ``H + λI`` is below ``_PD_FLOOR`` (possible for a non-convex
    model), the diagonal is raised until it equals ``_PD_FLOOR``. Returns (direction, shifted).
    """
    h00, h11 = hess[:, 0, 0], hess[:, 1, 1]
    h01 = 0.5 * (hess[:, 0, 1] + hess[:, 1, 0])
    half_tr = 0.5 * (h00 + h11)
    rad = torch.sqrt((0.5 * (h00 - h11)) ** 2 + h01 * h01)
    lam_min = half_tr - rad + damping
    extra = torch.clamp(_PD_FLOOR - lam_min, min=0.0)
    d00, d11 = h00 + damping + extra, h11 + damping + extra
    det = d00 * d11 - h01 * h01
    g0, g1 = grad[:, 0], grad[:, 1]
    step = torch.stack([(d11 * g0 - h01 * g1) / det, (d00 * g1 - h01 * g0) / det], dim=1)
    return step, extra > 0


def _correct(
    fn: ActionCost,
    actions: Tensor,
    method: str,
    steps: int,
    step_size: float,
    damping: float,
    diagnostics: bool,
) -> tuple[Tensor, dict[str, Any]]:
    a = actions.clamp(-1.0, 1.0)
    norms = []
    cost0 = None
    shifted = torch.zeros(len(a), dtype=torch.bool)
    for k in range(steps):
        if method == "gradient":
            cost, grad = fn.value_and_grad(a)
            direction = grad
        elif a.shape[-1] == 2:
            cost, grad, hess = fn.value_grad_hess(a)
            direction, sh = _newton_direction(grad, hess, damping)
            shifted |= sh
        else:  # general action size: batched solve
            cost, grad, hess = fn.value_grad_hess(a)
            eye = torch.eye(a.shape[-1], dtype=a.dtype)
            direction = torch.linalg.solve(hess + damping * eye, grad.unsqueeze(-1)).squeeze(-1)
        if k == 0:
            cost0 = cost
        new = (a - step_size * direction).clamp_(-1.0, 1.0)
        if diagnostics:
            norms.append(torch.linalg.vector_norm(new - a, dim=-1))
        a = new
    if not diagnostics:
        return a, {}
    cost_after = fn.value(a)
    if cost0 is None:
        cost0 = cost_after
    return a, {
        "method": method,
        "steps": steps,
        "step_size": step_size,
        "damping": damping,
        "cost_before": cost0,
        "cost_after": cost_after,
        "step_norms": torch.stack(norms) if norms else torch.zeros(0, len(a), dtype=a.dtype),
        "newton_shifted": shifted,
    }


def correct_actions(
    cost_model: nn.Module,
    obs: Any,
    actions: Any,
    method: str = "gradient",
    steps: int = 5,
    step_size: float | None = None,
    damping: float = 1e-3,
) -> tuple[Any, dict[str, Any]]:
    """Correct a batch of actions by K descent steps on ``ĉ(s, ·)``, staying inside [−1, 1].

    Args:
        cost_model: module ``cost_model(obs, action) -> (B,)``; a PICNN uses closed-form
            derivatives, anything else autograd. Its dtype (float32 or float64) sets the
            working precision.
        obs: ``(B, obs_dim)`` or ``(obs_dim,)`` raw observations (torch or NumPy).
        actions: ``(B, action_dim)`` or ``(action_dim,)`` base actions; clipped to [−1, 1]
            before the first step.
        method: ``'gradient'`` (projected gradient) or ``'newton'`` (damped, projected Newton).
        steps: number of steps K >= 0.
        step_size: η for gradient steps (default 0.1), α for Newton (default 1.0).
        damping: λ added to the Hessian's diagonal (Newton only); the diagonal is raised further
            if ``H + λI`` is not positive definite.

    Returns:
        ``(corrected, diagnostics)``: corrected actions of the same shape and kind (torch or
        NumPy) and dtype as ``actions``; diagnostics hold ``cost_before`` and ``cost_after``
        ``(B,)``, ``step_norms`` ``(K, B)`` (norm of each step's move after clipping),
        ``newton_shifted`` ``(B,)`` bool, and the settings.

    Raises:
        ValueError: NaN or inf in ``obs`` or ``actions``, bad shapes or settings.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if damping < 0:
        raise ValueError(f"damping must be >= 0, got {damping}")
    eta = default_step_size(method) if step_size is None else float(step_size)
    is_numpy = not isinstance(actions, Tensor)
    a_in = torch.as_tensor(np.asarray(actions) if is_numpy else actions)
    out_dtype = a_in.dtype if a_in.is_floating_point() else torch.float32
    dtype = _model_dtype(cost_model, a_in.dtype if a_in.is_floating_point() else torch.float32)
    o = torch.as_tensor(obs).to(dtype)
    a = a_in.to(dtype)
    single = a.dim() == 1
    if single:
        o, a = o.unsqueeze(0), a.unsqueeze(0)
    if o.dim() != 2 or a.dim() != 2 or len(o) != len(a):
        raise ValueError(
            f"obs and actions must be (B, d) with the same B, got {tuple(o.shape)}, "
            f"{tuple(a.shape)}"
        )
    _check_finite(o, "observations")
    _check_finite(a, "actions")
    fn = _conditioned(cost_model, o)
    corrected, diag = _correct(fn, a.detach(), method, steps, eta, damping, diagnostics=True)
    corrected = corrected.to(out_dtype)
    if single:
        corrected = corrected[0]
    return (corrected.numpy() if is_numpy else corrected), diag


class CorrectedPolicy:
    """The "+" version of a policy: its action corrected by the safety layer (BC+, IQL+, CQL+).

    Args:
        policy: any object with ``act(obs) -> action`` (NumPy float32 in and out, single
            ``(obs_dim,)`` or batched ``(B, obs_dim)``).
        cost_model: the cost model to descend (normally a trained PICNN).
        method: ``'gradient'`` or ``'newton'``.
        steps: K correction steps.
        step_size: η (gradient) or α (Newton); default per :func:`default_step_size`.
        damping: λ for Newton.
    """

    def __init__(
        self,
        policy: Any,
        cost_model: nn.Module,
        method: str = "gradient",
        steps: int = 5,
        step_size: float | None = None,
        damping: float = 1e-3,
    ) -> None:
        if method not in _METHODS:
            raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
        self.policy = policy
        self.cost_model = cost_model.eval()
        self.method = method
        self.steps = int(steps)
        self.step_size = default_step_size(method) if step_size is None else float(step_size)
        self.damping = float(damping)
        self._dtype = _model_dtype(cost_model, torch.float32)
        base = getattr(policy, "name", type(policy).__name__)
        self.name = f"{base}+"

    def act(self, obs: Any) -> np.ndarray:
        """Corrected action(s), NumPy float32 of shape ``(action_dim,)`` or ``(B, action_dim)``."""
        action = np.array(self.policy.act(obs), dtype=np.float32)  # a copy, writable
        o = torch.as_tensor(np.asarray(obs), dtype=self._dtype)
        a = torch.as_tensor(action, dtype=self._dtype)
        single = a.dim() == 1
        if single:
            o, a = o.unsqueeze(0), a.unsqueeze(0)
        _check_finite(o, "observations")
        _check_finite(a, "actions")
        fn = _conditioned(self.cost_model, o)
        a, _ = _correct(fn, a, self.method, self.steps, self.step_size, self.damping, False)
        out = a.to(torch.float32).numpy()
        return out[0] if single else out

    def __repr__(self) -> str:
        return (
            f"CorrectedPolicy({self.name}, method={self.method!r}, steps={self.steps}, "
            f"step_size={self.step_size})"
        )
