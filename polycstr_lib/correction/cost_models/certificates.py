"""The convexity certificate: structural and numerical checks of convexity in the action."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor, nn

from polycstr_lib.correction.cost_models.conditioned import AutogradActionCost
from polycstr_lib.correction.cost_models.networks import (
    _ACTIVATIONS,
    CONVEX_NONDECREASING_ACTIVATIONS,
    PICNN,
)


# ----------------------------------------------------------------------------------------------
# Convexity certificate
# ----------------------------------------------------------------------------------------------
def _activation_is_convex_nondecreasing(name: str, tol: float = 1e-10) -> bool:
    """Allow-listed name and a numerical check (first and second differences) on a grid."""
    if name not in CONVEX_NONDECREASING_ACTIVATIONS:
        return False
    x = torch.linspace(-15.0, 15.0, 3001, dtype=torch.float64)
    y = _ACTIVATIONS[name](x)
    d1 = y[1:] - y[:-1]
    d2 = y[2:] - 2.0 * y[1:-1] + y[:-2]
    return bool((d1 >= -tol).all() and (d2 >= -tol).all())


def convexity_certificate(
    model: nn.Module,
    n_states: int = 64,
    n_pairs: int = 64,
    seed: int = 0,
    observations: Tensor | None = None,
    action_range: float = 1.5,
    tol: float = 1e-8,
) -> dict[str, Any]:
    """Check that ``model`` is convex in the action, structurally and numerically.

    Structural (PICNN only): every effective z-to-z weight (after the reparametrisation) is
    >= 0, the convex-path activation is convex and non-decreasing (allow-list plus a numerical
    check), and the output scale ``y_std`` is positive. A model without this structure (the
    MLP) fails the structural part.

    Numerical, on a float64 copy: for ``n_states`` random states (drawn from
    ``observations`` if given, else ``obs_mean + obs_std * N(0, 1)``) and ``n_pairs`` random
    action pairs each in ``[-action_range, action_range]^2``, the midpoint gap
    ``(ĉ(a) + ĉ(b)) / 2 - ĉ((a + b) / 2)`` (must be >= -tol · scale), and the smallest
    eigenvalue of the action Hessian (autograd) at the pair's endpoints (must be >= -tol).

    Returns:
        dict with ``structural_ok``, ``min_z_weight``, ``activation_ok``, ``output_scale_ok``,
        ``min_midpoint_gap``, ``midpoint_violations``, ``min_hessian_eig``, ``n_checks``,
        ``numerical_ok`` and ``convex`` (structural and numerical both pass). For a
        :class:`~polycstr_lib.correction.cost_models.ensemble.CostEnsemble` every member is
        certified:
        the flags are the members' conjunction, the figures their worst, and ``members``
        lists each member's certificate.
    """
    from polycstr_lib.correction.cost_models.ensemble import CostEnsemble

    if isinstance(model, CostEnsemble):
        # The mean (and the pessimistic mean/max mix) of convex members is convex: certify
        # every member on the same draws and report the weakest figures.
        certs = [
            convexity_certificate(m, n_states, n_pairs, seed, observations, action_range, tol)
            for m in model.members
        ]
        out = {
            key: min(c[key] for c in certs)
            for key in ("min_z_weight", "min_midpoint_gap", "min_hessian_eig")
        }
        out["midpoint_violations"] = sum(c["midpoint_violations"] for c in certs)
        out["n_checks"] = sum(c["n_checks"] for c in certs)
        for key in ("structural_ok", "activation_ok", "output_scale_ok", "numerical_ok", "convex"):
            out[key] = all(c[key] for c in certs)
        out["members"] = certs
        return out
    m = copy.deepcopy(model).double().eval()
    gen = torch.Generator().manual_seed(seed)
    # --- structural
    if isinstance(m, PICNN):
        weights = m.effective_z_weights()
        min_w = min(float(w.detach().min()) for w in weights) if weights else float("inf")
        act_ok = _activation_is_convex_nondecreasing(type(m).activation)
        scale_ok = bool(m.y_std > 0)
        structural = min_w >= 0.0 and act_ok and scale_ok
    else:
        min_w, act_ok, scale_ok, structural = float("nan"), False, False, False
    # --- numerical
    obs_dim = m.obs_mean.shape[0]
    act_dim = getattr(m, "action_dim", 2)
    if observations is not None:
        pool = torch.as_tensor(observations, dtype=torch.float64)
        states = pool[torch.randint(len(pool), (n_states,), generator=gen)]
    else:
        eps = torch.randn(n_states, obs_dim, generator=gen, dtype=torch.float64)
        states = m.obs_mean + m.obs_std * eps
    s = states.repeat_interleave(n_pairs, dim=0)
    n = len(s)
    lo = -action_range
    a = lo + 2 * action_range * torch.rand(n, act_dim, generator=gen, dtype=torch.float64)
    b = lo + 2 * action_range * torch.rand(n, act_dim, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        fa, fb, fm = m(s, a), m(s, b), m(s, 0.5 * (a + b))
    gap = 0.5 * (fa + fb) - fm
    scale = 1.0 + torch.maximum(fa.abs(), fb.abs())
    violations = int((gap < -tol * scale).sum())
    _, _, hess_a = AutogradActionCost(m, s).value_grad_hess(a)
    _, _, hess_b = AutogradActionCost(m, s).value_grad_hess(b)
    hess = torch.cat([hess_a, hess_b])
    eig_min = float(torch.linalg.eigvalsh(0.5 * (hess + hess.transpose(-1, -2))).min())
    numerical = violations == 0 and eig_min >= -tol
    return {
        "structural_ok": bool(structural),
        "min_z_weight": min_w,
        "activation_ok": bool(act_ok),
        "output_scale_ok": bool(scale_ok),
        "min_midpoint_gap": float(gap.min()),
        "midpoint_violations": violations,
        "min_hessian_eig": eig_min,
        "n_checks": n,
        "numerical_ok": bool(numerical),
        "convex": bool(structural and numerical),
    }
