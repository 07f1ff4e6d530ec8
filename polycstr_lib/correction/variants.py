"""The kinds of correction a sweep compares (CorrectionVariant), the defaults, their grids,
and the one correction fixed before any rollout (:data:`ZERO_TUNING`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from polycstr_lib.correction.cost_models import check_horizon
from polycstr_lib.correction.safety import METHODS

if TYPE_CHECKING:
    from polycstr_lib.correction.task import ScenarioTask


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


@dataclass(frozen=True)
class FixedCorrection:
    """A correction whose step size is fixed in advance: a variant and its step size."""

    variant: CorrectionVariant  # the kind of correction (method, K, trust radius, …)
    step_size: float  # η, in the variant's units (data spreads σ_a for a normalised step)

    def __post_init__(self) -> None:
        if not self.step_size > 0:
            raise ValueError(f"step_size must be > 0, got {self.step_size}")

    def policy_kwargs(self, action_scale: Any) -> dict[str, Any]:
        """Keyword arguments of :class:`~polycstr_lib.correction.safety.CorrectedPolicy`
        (model aside), with σ_a = ``action_scale``."""
        return self.variant.policy_kwargs(self.step_size, action_scale)

    def text(self) -> str:
        """The setting in words, e.g. ``'3 normalised steps of 0.1 σ_a within ρ = 0.25 σ_a'``."""
        v = self.variant
        unit = " σ_a" if v.method == "normalised" else ""
        trust = "" if v.trust_radius is None else f" within ρ = {v.trust_radius:g} σ_a"
        return f"{v.steps} {v.method} steps of {self.step_size:g}{unit}{trust}"


#: The zero-tuning correction: one setting fixed before any rollout, for every scenario and
#: every agent: K = 3 normalised steps of η = 0.1 σ_a on the one-step PICNN inside a trust
#: region of ρ = 0.25 σ_a around the policy's action. Why these values, with no simulator:
#: every length is in units of σ_a, the spread of the data's own actions (computed from the
#: dataset alone), so one setting means the same in every scenario and for any units of the
#: cost. The cost model is fitted on the data, so its gradient is trusted only close to actions
#: the data takes; the base policies imitate those actions, so a correction that moves an
#: action by a small fraction of the data's spread stays where the model was fitted. The
#: trust region bounds the move to a quarter of a spread per dimension whatever the gradient
#: does, and three steps of a tenth of a spread (a path of at most 0.3 σ_a) reach that bound
#: only where the model's descent direction stays consistent, so the correction is a nudge
#: along the model's slope, never a jump to its minimiser, which may lie far from the data.
ZERO_TUNING = FixedCorrection(CorrectionVariant("normalised", steps=3, trust_radius=0.25), 0.1)


def zero_tuning(task: ScenarioTask) -> dict[str, Any]:
    """:data:`ZERO_TUNING` for a scenario's task: the keyword arguments of
    :class:`~polycstr_lib.correction.safety.CorrectedPolicy` (model aside, the model being
    ``ZERO_TUNING.variant.model``) with the task's σ_a."""
    return ZERO_TUNING.policy_kwargs(task.action_scale)
