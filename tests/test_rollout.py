"""Many policies on the same episodes in one batched rollout (reactor.rollout)."""

from __future__ import annotations

import numpy as np
import pytest

from polycstr_lib.reactor.rollout import rollout, rollout_side_by_side


class Constant:
    """A policy that always returns one action, and remembers the observations of its reset."""

    def __init__(self, action: tuple[float, float]) -> None:
        self.action = np.asarray(action, dtype=np.float32)
        self.first: np.ndarray | None = None

    def reset(self, obs: np.ndarray) -> None:
        self.first = obs.copy()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.tile(self.action, (len(obs), 1))


def test_each_policy_runs_its_own_block_of_the_same_episodes() -> None:
    seeds = [3, 4]
    policies = [Constant((0.5, -0.5)), Constant((-1.0, 1.0))]
    joint = rollout_side_by_side(policies, "grade_up", seeds, blocks=2)
    assert joint.num_episodes == 2 * 2 * len(seeds)
    np.testing.assert_array_equal(joint.seeds, np.tile(seeds, 4))
    for i, policy in enumerate(policies):
        alone = rollout(Constant(tuple(policy.action)), "grade_up", seeds)
        for block in range(2):
            rows = slice((2 * i + block) * 2, (2 * i + block + 1) * 2)
            np.testing.assert_array_equal(joint.states[rows], alone.states)
            np.testing.assert_array_equal(joint.actions[rows], alone.actions)
        # reset sees only the policy's own rows
        assert policy.first is not None and len(policy.first) == 4


def test_side_by_side_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="policy"):
        rollout_side_by_side([], "startup", [0])
    with pytest.raises(ValueError, match="blocks"):
        rollout_side_by_side([Constant((0.0, 0.0))], "startup", [0], blocks=0)
