"""The safety layer: correct a base policy's action by descending a learned cost model.

At deployment the base action ``a_0 = π(s)`` is moved downhill on ``ĉ(s, ·)``:

* ``'gradient'``: K projected gradient steps ``a ← clip(a − η ∇_a ĉ(s, a), −1, 1)``;
* ``'newton'``: K damped Newton steps ``a ← clip(a − α (H + λI)^{-1} ∇_a ĉ(s, a), −1, 1)``
  with the per-sample 2×2 Hessian ``H``;
* ``'normalised'``: K scale-free steps of length η measured in the data's action spread
  ``σ_a`` (per-dimension standard deviation of the dataset's actions, :func:`action_spread`):
  steepest descent in the whitened action ``a / σ_a``,
  ``a ← clip(a − η σ_a ⊙ ĝ, −1, 1)`` with ``ĝ = (σ_a ⊙ g) / ‖σ_a ⊙ g‖`` and ``g = ∇_a ĉ``, so
  each step moves the whitened action by exactly η (before clipping) whatever the units
  of the cost: η = 0.5 means "half the data's spread per step" in every scenario and for
  every cost target.

Two options apply to every method:

* a *trust region* ``trust_radius = ρ``: after each step the action is projected onto
  ``{a : |a − a_0| ≤ ρ σ_a} ∩ [−1, 1]²`` (per dimension, an exact Euclidean projection onto
  a box that always contains ``a_0``), so the correction never leaves a box of ρ data
  spreads around the policy's action. ``σ_a`` is *global* (one value per dimension for the
  whole dataset), not a per-state nearest-neighbour estimate: the behaviour policies are
  PI controllers whose increments scale with the errors, so a local estimate from the few
  neighbours a 9-dimensional state has among 20,000 samples is noisy and shrinks to nothing
  near the set point, it needs the data at deployment and a neighbour search per action;
  the global spread is one constant per dimension, deterministic and free at run time;
* *pessimism* κ (``pessimism``), with a :class:`~polycstr_lib.correction.cost_models.CostEnsemble`
  as the cost model: the steps descend ``(1 − κ) mean + κ max`` over the members, a convex
  cost that is larger where the members disagree (see
  :mod:`polycstr_lib.correction.cost_models.ensemble`);
* a *horizon* H > 1 (multi-step correction, the paper's other open question): the cost
  model takes the next H actions ``(a_t, …, a_{t+H−1})`` (trained on
  :func:`~polycstr_lib.correction.cost_models.action_windows` with the cost-to-go target, so it is a
  convex model of the cost of an action *sequence*), the correction moves the whole plan
  jointly, starting from the policy's action held for H steps (:func:`plan_proposal`: the
  policy proposes one action, and increments of PI data are strongly autocorrelated), and
  only the plan's first action is applied; the next step plans again (receding horizon).
  σ_a and the trust region apply to every action of the plan.

With a PICNN cost model (or an ensemble of them) every method is a descent method on a
convex function of the action; the PICNN provides closed-form derivatives
(:meth:`PICNN.conditioned`), any other module goes through autograd.
:class:`CorrectedPolicy` wraps a policy ``act(obs)`` into its "+" version.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polycstr_lib.correction.cost_models import (
    ActionCost,
    AutogradActionCost,
    CostEnsemble,
    check_horizon,
)

__all__ = [
    "METHODS",
    "CorrectedPolicy",
    "action_spread",
    "correct_actions",
    "check_step_size",
    "default_step_size",
    "plan_proposal",
]

#: Correction methods (see the module docstring).
METHODS = ("gradient", "newton", "normalised")
_METHODS = METHODS
_PD_FLOOR = 1e-6  # smallest eigenvalue kept in the damped Newton matrix


def default_step_size(method: str) -> float:
    """Default step size: η = 0.1 (gradient), α = 1 (full Newton step), 0.5 σ_a (normalised)."""
    return {"newton": 1.0, "normalised": 0.5}.get(method, 0.1)


def action_spread(data: Any) -> np.ndarray:
    """Per-dimension standard deviation σ_a of a dataset's actions, float64 ``(action_dim,)``.

    Args:
        data: object with ``actions`` ``(N, action_dim)`` (e.g. :class:`OfflineData`).

    Raises:
        ValueError: fewer than two actions, non-finite values or a dimension with no spread.
    """
    actions = data.actions
    if isinstance(actions, Tensor):
        actions = actions.detach().cpu().numpy()
    a = np.asarray(actions, dtype=np.float64)
    if a.ndim != 2 or len(a) < 2 or not np.isfinite(a).all():
        raise ValueError(f"need (N >= 2, d) finite actions, got shape {a.shape}")
    std = a.std(axis=0)
    if not (std > 0).all():
        raise ValueError(f"every action dimension needs a positive spread, got {std}")
    return std


def plan_proposal(actions: Tensor, horizon: int) -> Tensor:
    """The plan a multi-step correction starts from: each action held for ``horizon`` steps.

    Args:
        actions: ``(B, d)`` the policy's actions.
        horizon: H >= 1.

    Returns:
        ``(B, H d)``: ``[a, a, …, a]``, the actions of steps t, …, t + H − 1 side by side
        (``actions`` itself for H = 1).
    """
    return actions if horizon == 1 else actions.repeat(1, horizon)


def _plan_scale(scale: Tensor | None, horizon: int) -> Tensor | None:
    """σ_a for every action of a plan of ``horizon`` actions."""
    return scale if scale is None or horizon == 1 else scale.repeat(horizon)


def _check_model_width(cost_model: nn.Module, horizon: int, action_dim: int) -> None:
    width = getattr(cost_model, "action_dim", None)
    if width is not None and width != horizon * action_dim:
        raise ValueError(
            f"the cost model takes {width} action values, but horizon {horizon} with "
            f"{action_dim}-dim actions needs {horizon * action_dim} (train it on "
            f"cost_models.action_windows(data, {horizon}))"
        )


def _check_options(
    method: str,
    steps: int,
    damping: float,
    action_scale: Any,
    trust_radius: float | None,
    pessimism: float,
    cost_model: nn.Module,
    horizon: int = 1,
) -> np.ndarray | None:
    """Validate the settings; return σ_a as a float64 array (None if not needed or given)."""
    check_horizon(horizon)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if not (np.isfinite(damping) and damping >= 0):
        raise ValueError(f"damping must be a finite number >= 0, got {damping}")
    if trust_radius is not None and not (np.isfinite(trust_radius) and trust_radius > 0):
        raise ValueError(f"trust_radius must be a positive number or None, got {trust_radius}")
    if not 0.0 <= pessimism <= 1.0:
        raise ValueError(f"pessimism must lie in [0, 1], got {pessimism}")
    if pessimism > 0 and not isinstance(cost_model, CostEnsemble):
        raise ValueError("pessimism > 0 needs a CostEnsemble as the cost model")
    if action_scale is None:
        if method == "normalised" or trust_radius is not None:
            raise ValueError(
                "the 'normalised' method and the trust region need action_scale (σ_a, e.g. "
                "action_spread(data))"
            )
        return None
    scale = np.asarray(action_scale, dtype=np.float64)
    if scale.ndim != 1 or not np.isfinite(scale).all() or not (scale > 0).all():
        raise ValueError(f"action_scale must be a 1-D array of positive numbers, got {scale}")
    return scale


def check_step_size(step_size: Any) -> None:
    """Refuses a step size that is not finite and >= 0 (a negative one would climb the cost).

    Raises:
        ValueError: naming the bad value.
    """
    eta = np.asarray(step_size, dtype=np.float64)
    if not (np.isfinite(eta).all() and (eta >= 0).all()):
        raise ValueError(f"step_size must be finite and >= 0, got {step_size!r}")


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


def _scale_tensor(scale: np.ndarray | None, action_dim: int, dtype: torch.dtype) -> Tensor | None:
    if scale is None:
        return None
    if scale.shape != (action_dim,):
        raise ValueError(f"action_scale has shape {scale.shape}, actions have {action_dim} dims")
    return torch.as_tensor(scale, dtype=dtype)


def _conditioned(cost_model: nn.Module, obs: Tensor, pessimism: float = 0.0) -> ActionCost:
    if isinstance(cost_model, CostEnsemble):
        return cost_model.conditioned(obs, pessimism)
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
    scale: Tensor | None = None,
    trust_radius: float | None = None,
) -> tuple[Tensor, dict[str, Any]]:
    a = actions.clamp(-1.0, 1.0)
    lo, hi = -1.0, 1.0
    if trust_radius is not None:
        if scale is None:  # pragma: no cover - checked by the callers
            raise ValueError("the trust region needs the action scale")
        lo = torch.clamp(a - trust_radius * scale, min=-1.0)
        hi = torch.clamp(a + trust_radius * scale, max=1.0)
    norms = []
    cost0 = None
    shifted = torch.zeros(len(a), dtype=torch.bool)
    for k in range(steps):
        if method == "gradient":
            cost, grad = fn.value_and_grad(a)
            direction = grad
        elif method == "normalised":
            cost, grad = fn.value_and_grad(a)
            whitened = scale * grad
            norm = torch.linalg.vector_norm(whitened, dim=-1, keepdim=True)
            # A zero gradient (a minimiser) gives no step rather than 0/0.
            direction = torch.where(norm > 0, scale * whitened / norm.clamp_min(1e-300), 0.0)
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
        new = torch.clamp(a - step_size * direction, lo, hi)
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
        "trust_radius": trust_radius,
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
    step_size: float | Any | None = None,
    damping: float = 1e-3,
    action_scale: Any = None,
    trust_radius: float | None = None,
    pessimism: float = 0.0,
    horizon: int = 1,
) -> tuple[Any, dict[str, Any]]:
    """Correct a batch of actions by K descent steps on ``ĉ(s, ·)``, staying inside [−1, 1].

    Args:
        cost_model: module ``cost_model(obs, action) -> (B,)``; a PICNN uses closed-form
            derivatives, anything else autograd. Its dtype (float32 or float64) sets the
            working precision.
        obs: ``(B, obs_dim)`` or ``(obs_dim,)`` raw observations (torch or NumPy).
        actions: ``(B, action_dim)`` or ``(action_dim,)`` base actions; clipped to [−1, 1]
            before the first step.
        method: ``'gradient'`` (projected gradient), ``'newton'`` (damped, projected Newton)
            or ``'normalised'`` (steps of η data spreads; needs ``action_scale``).
        steps: number of steps K >= 0.
        step_size: η for gradient steps (default 0.1), α for Newton (default 1.0), η in units
            of the data's action spread for normalised steps (default 0.5); a number, or a
            ``(B,)`` array of per-sample step sizes (one batch serves a whole grid of them).
        damping: λ added to the Hessian's diagonal (Newton only); the diagonal is raised further
            if ``H + λI`` is not positive definite.
        action_scale: σ_a ``(action_dim,)``, the data's per-dimension action spread
            (:func:`action_spread`); needed by ``'normalised'`` and the trust region.
        trust_radius: ρ > 0: keep ``|a − a_0| ≤ ρ σ_a`` per dimension (``a_0`` the clipped
            base action); None: no trust region.
        pessimism: κ in [0, 1] with a :class:`~polycstr_lib.correction.cost_models.CostEnsemble`:
            descend ``(1 − κ) mean + κ max`` over the members (must be 0 for a single model).
        horizon: H >= 1: correct the plan of the next H actions jointly on a cost model of
            ``H * action_dim`` action inputs, starting from :func:`plan_proposal`, and return
            its first action (see the module docstring).

    Returns:
        ``(corrected, diagnostics)``: corrected actions of the same shape and kind (torch or
        NumPy) and dtype as ``actions``; diagnostics hold ``cost_before`` and ``cost_after``
        ``(B,)``, ``step_norms`` ``(K, B)`` (norm of each step's move after clipping),
        ``newton_shifted`` ``(B,)`` bool, ``plan`` ``(B, H * action_dim)`` (the corrected
        plan, a torch tensor), and the settings.

    Raises:
        ValueError: NaN or inf in ``obs`` or ``actions``, bad shapes or settings.
    """
    scale_np = _check_options(
        method, steps, damping, action_scale, trust_radius, pessimism, cost_model, horizon
    )
    if step_size is not None:
        check_step_size(step_size)
    eta: float | Tensor = default_step_size(method) if step_size is None else step_size
    per_sample = step_size is not None and np.ndim(np.asarray(step_size)) > 0
    if not per_sample:
        eta = float(eta)
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
    action_dim = a.shape[-1]
    _check_model_width(cost_model, horizon, action_dim)
    scale = _scale_tensor(scale_np, action_dim, dtype)
    if per_sample:
        eta_np = np.asarray(step_size, dtype=np.float64)
        if eta_np.shape != (len(a),) or not np.isfinite(eta_np).all():
            raise ValueError(
                f"per-sample step sizes must be a finite ({len(a)},) array, got {eta_np.shape}"
            )
        eta = torch.as_tensor(eta_np, dtype=dtype).unsqueeze(-1)
    fn = _conditioned(cost_model, o, pessimism)
    plan, diag = _correct(
        fn,
        plan_proposal(a.detach(), horizon),
        method,
        steps,
        eta,
        damping,
        True,
        _plan_scale(scale, horizon),
        trust_radius,
    )
    diag["pessimism"] = pessimism
    diag["horizon"] = horizon
    diag["plan"] = plan
    corrected = plan[:, :action_dim].to(out_dtype)
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
        step_size: η (gradient), α (Newton) or η in data spreads (normalised); default per
            :func:`default_step_size`.
        damping: λ for Newton.
        action_scale: σ_a, the data's per-dimension action spread (:func:`action_spread`);
            needed by ``'normalised'`` and by the trust region.
        trust_radius: ρ: the corrected action stays within ρ σ_a of the policy's action per
            dimension; None: no trust region.
        pessimism: κ in [0, 1] with a :class:`~polycstr_lib.correction.cost_models.CostEnsemble`.
        horizon: H >= 1: correct the next H actions jointly (the cost model takes
            ``H * action_dim`` action inputs) and apply the first (see the module docstring).
    """

    def __init__(
        self,
        policy: Any,
        cost_model: nn.Module,
        method: str = "gradient",
        steps: int = 5,
        step_size: float | None = None,
        damping: float = 1e-3,
        action_scale: Any = None,
        trust_radius: float | None = None,
        pessimism: float = 0.0,
        horizon: int = 1,
    ) -> None:
        scale = _check_options(
            method, int(steps), damping, action_scale, trust_radius, pessimism, cost_model, horizon
        )
        self.policy = policy
        self.cost_model = cost_model.eval()
        self.method = method
        self.steps = int(steps)
        if step_size is not None:
            check_step_size(step_size)
        self.step_size = default_step_size(method) if step_size is None else float(step_size)
        self.damping = float(damping)
        self._dtype = _model_dtype(cost_model, torch.float32)
        self.action_scale = scale
        self.trust_radius = None if trust_radius is None else float(trust_radius)
        self.pessimism = float(pessimism)
        self.horizon = int(horizon)
        self._scale = None
        if scale is not None:
            self._scale = torch.as_tensor(scale, dtype=self._dtype)
        self._plan_scale = _plan_scale(self._scale, self.horizon)
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
        if o.dim() != 2 or a.dim() != 2 or len(o) != len(a):
            raise ValueError(
                f"obs and actions must be (B, d) with the same B, got {tuple(o.shape)}, "
                f"{tuple(a.shape)}"
            )
        action_dim = a.shape[-1]
        if self._scale is not None and self._scale.shape[0] != action_dim:
            raise ValueError(f"action_scale has {self._scale.shape[0]} dims, actions {action_dim}")
        _check_model_width(self.cost_model, self.horizon, action_dim)
        fn = _conditioned(self.cost_model, o, self.pessimism)
        a, _ = _correct(
            fn,
            plan_proposal(a, self.horizon),
            self.method,
            self.steps,
            self.step_size,
            self.damping,
            False,
            self._plan_scale,
            self.trust_radius,
        )
        out = a[:, :action_dim].to(torch.float32).numpy()
        return out[0] if single else out

    def __repr__(self) -> str:
        return (
            f"CorrectedPolicy({self.name}, method={self.method!r}, steps={self.steps}, "
            f"step_size={self.step_size}, trust_radius={self.trust_radius}, "
            f"pessimism={self.pessimism}, horizon={self.horizon})"
        )
