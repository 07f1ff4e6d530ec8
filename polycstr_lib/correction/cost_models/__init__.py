"""Learned cost models ĉ(s, a): a partially input-convex network and a plain MLP.

One module per concept:

* :mod:`~polycstr_lib.correction.cost_models.config`: :class:`CostModelConfig`;
* :mod:`~polycstr_lib.correction.cost_models.networks`: :class:`PICNN`, :class:`MLPCost`,
  :func:`build_cost_model`;
* :mod:`~polycstr_lib.correction.cost_models.conditioned`: the cost as a function of the action for
  fixed
  observations (:class:`ActionCost`), used by the safety layer;
* :mod:`~polycstr_lib.correction.cost_models.targets`: one-step and cost-to-go targets, action
  windows
  for multi-step correction (:func:`action_windows`), episode split;
* :mod:`~polycstr_lib.correction.cost_models.training`: :func:`train_cost_model` (cached artifact);
* :mod:`~polycstr_lib.correction.cost_models.ensemble`: PICNN ensembles, their members trained
  in parallel (:func:`train_cost_ensemble`), and their pessimistic convex cost;
* :mod:`~polycstr_lib.correction.cost_models.certificates`: :func:`convexity_certificate`;
* :mod:`~polycstr_lib.correction.cost_models.diagnostics`: :func:`r2_score` and gradient-stability
  helpers
  (:func:`action_gradients`, :func:`direction_agreement`, :func:`sign_flip_rate`).

Every public name is re-exported here: ``from polycstr_lib.correction.cost_models import X`` works.
"""

from polycstr_lib.correction.cost_models.certificates import convexity_certificate
from polycstr_lib.correction.cost_models.conditioned import ActionCost, AutogradActionCost
from polycstr_lib.correction.cost_models.config import CostModelConfig
from polycstr_lib.correction.cost_models.diagnostics import (
    action_gradients,
    direction_agreement,
    r2_score,
    sign_flip_rate,
)
from polycstr_lib.correction.cost_models.ensemble import (
    CostEnsemble,
    PessimisticActionCost,
    is_picnn_ensemble,
    train_cost_ensemble,
)
from polycstr_lib.correction.cost_models.networks import (
    CONVEX_NONDECREASING_ACTIVATIONS,
    PICNN,
    MLPCost,
    build_cost_model,
)
from polycstr_lib.correction.cost_models.targets import (
    action_windows,
    check_horizon,
    cost_targets,
    discounted_cost_to_go,
    split_episodes,
)
from polycstr_lib.correction.cost_models.training import train_cost_model

__all__ = [
    "CONVEX_NONDECREASING_ACTIVATIONS",
    "MLPCost",
    "PICNN",
    "ActionCost",
    "AutogradActionCost",
    "CostEnsemble",
    "CostModelConfig",
    "PessimisticActionCost",
    "action_gradients",
    "action_windows",
    "build_cost_model",
    "check_horizon",
    "convexity_certificate",
    "cost_targets",
    "direction_agreement",
    "discounted_cost_to_go",
    "is_picnn_ensemble",
    "r2_score",
    "sign_flip_rate",
    "split_episodes",
    "train_cost_ensemble",
    "train_cost_model",
]
