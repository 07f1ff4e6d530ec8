"""The kinds of correction a sweep compares (CorrectionVariant), the defaults, their grids."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from polycstr_lib.correction.cost_models import check_horizon
from polycstr_lib.correction.safety import METHODS


@dataclass(frozen=True)
class CorrectionVariant:
    """One kind of correction; its step size is what the sweep varies."""

    method: str = (
        "gradient"  # 'gradient', 'newton' or 'normalised' (see polycstr_lib.correction.safety)
    )
    model: str = "picnn"  # key of the cost model in the ``cost_models`` mapping
    steps: int = 3  # correction steps K
    trust_radius: float | None = None  # ρ: stay within ρ σ_a of the policy's action; None: off
    pessimism: float = 0.0  # κ of the pessimistic ensemble cost (needs a CostEnsemble model)
    horizon: int = 1  # H: correct the next H actions jointly (model trained on action windows)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.trust_radius is not None and not self.trust_radius > 0:
            raise ValueError(f"trust_radius must be > 0 or None, got {self.trust_radius}")
        if not 0.0 <= self.pessimism <= 1.0:
            raise ValueError(f"pessimism must lie in [0, 1], got {self.pessimism}")
        check_horizon(self.horizon)

    def policy_kwargs(self, step_size: float, action_scale: Any) -> dict[str, Any]:
        """Keyword arguments of :class:`~polycstr_lib.correction.safety.CorrectedPolicy` (model
        aside)."""
        needs_scale = self.method == "normalised" or self.trust_radius is not None
        return {
            "method": self.method,
            "steps": self.steps,
            "step_size": float(step_size),
            "action_scale": None if action_scale is None or not needs_scale else action_scale,
            "trust_radius": self.trust_radius,
            "pessimism": self.pessimism,
            "horizon": self.horizon,
        }


#: The chapter's variants: the paper's plain gradient step, the scale-free step, the plain
#: step inside a trust region of one data spread, and the plain step on the pessimistic cost
#: of a PICNN ensemble (model key ``"ensemble"``).
DEFAULT_VARIANTS: dict[str, CorrectionVariant] = {
    "plain": CorrectionVariant("gradient"),
    "normalised": CorrectionVariant("normalised"),
    "trust region": CorrectionVariant("gradient", trust_radius=1.0),
    "uncertainty": CorrectionVariant("gradient", model="ensemble", pessimism=0.5),
}


#: Step-size grids: raw cost units for gradient steps, data spreads σ_a for normalised steps.
DEFAULT_STEP_SIZES: dict[str, tuple[float, ...]] = {
    "plain": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    "normalised": (0.03, 0.1, 0.3, 1.0, 3.0),
    "trust region": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    "uncertainty": (1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
}
