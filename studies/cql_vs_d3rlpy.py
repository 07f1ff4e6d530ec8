"""Our CQL against d3rlpy's CQL on the same transitions, at the same budgets, on validation.

Both are trained on one scenario's dataset in the units our agent learns in (z-scored
observations, min-max action units, rewards times the return-range scale), with the same
hyperparameters (SAC actor and twin critics 2x256, batch 256, learning rates 1e-4 / 3e-4 / 1e-4,
γ 0.99, Polyak 0.005, 10 action samples, conservative weight 5), in two settings of the
conservative weight: *fixed* (d3rlpy ``alpha_learning_rate=0``) and *lagrangian* (α learned so
that the unweighted penalty stays near ``--threshold``, at ``--alpha-lr`` in both). d3rlpy runs
in its own environment (``.venv-d3rlpy``, see ``benchmarks/training.py``) as a subprocess; the
two exchange arrays through ``.npz`` files. d3rlpy's deterministic policy (tanh of its mean) is
exported as weights, rebuilt here (checked against d3rlpy's own predictions) and driven by our
rollout code on the same validation episodes as ours.

Printed: a markdown table, one row per (setting, budget): normalised reward (mean over seeds
and episodes), runaway episodes, and the mean Q of each library's critics at the dataset
actions of 2,048 fixed transitions, beside the data's true discounted return there
(Monte-Carlo, same γ and reward scale).

Our TD target samples the next action (CORL); d3rlpy's is at tanh(μ(s')).
``--deterministic-backup`` trains ours with d3rlpy's target, to tell that difference apart.

Run (ours is cached in the artifact directory; about 12 minutes on one core):

    python studies/cql_vs_d3rlpy.py [--scenario startup] [--seeds 0] [--budgets 250 500 1000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from polycstr_lib.agents import CQLConfig, Scalers
from polycstr_lib.agents.config import TrainConfig
from polycstr_lib.agents.data import TrainingTensors, discounted_returns, load_training_data
from polycstr_lib.agents.runs import train_agent
from polycstr_lib.agents.sweeps import train_many
from polycstr_lib.analysis.curves import evaluate_agents
from polycstr_lib.reactor.datasets import ensure_dataset, read_sidecar

REPO = Path(__file__).resolve().parent.parent
D3RLPY_PYTHON = REPO / ".venv-d3rlpy" / "bin" / "python"

#: Transitions on which both libraries' critics are read (a fixed draw).
Q_SAMPLE = 2048

_D3RLPY_SCRIPT = r"""
import json, sys
import numpy as np, torch
torch.set_num_threads(1)
import d3rlpy
data, out, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
z = np.load(data)
obs, act, rew, nxt, ends = z["obs"], z["act"], z["rew"], z["next_obs"], z["ends"]
# Each episode gets its last next observation appended as one more step (action and reward
# unused), so that d3rlpy picks exactly our transitions (it drops a timed-out episode's last).
rows_o, rows_a, rows_r, rows_t = [], [], [], []
start = 0
for end in np.flatnonzero(ends):
    sl = slice(start, end + 1)
    rows_o += [obs[sl], nxt[end : end + 1]]
    rows_a += [act[sl], np.zeros((1, act.shape[1]), np.float32)]
    rows_r += [rew[sl], np.zeros(1, np.float32)]
    t = np.zeros(end + 2 - start, np.float32)
    t[-1] = 1.0
    rows_t.append(t)
    start = end + 1
timeouts = np.concatenate(rows_t)
dataset = d3rlpy.dataset.MDPDataset(
    np.concatenate(rows_o), np.concatenate(rows_a), np.concatenate(rows_r)[:, None],
    np.zeros_like(timeouts), timeouts,
)
assert dataset.transition_count == len(obs), (dataset.transition_count, len(obs))
d3rlpy.seed(settings["seed"])
algo = d3rlpy.algos.CQLConfig(
    batch_size=256, gamma=0.99, tau=0.005, actor_learning_rate=1e-4,
    critic_learning_rate=3e-4, temp_learning_rate=1e-4, initial_temperature=1.0,
    conservative_weight=settings["weight"], n_action_samples=10,
    alpha_learning_rate=settings["alpha_lr"], initial_alpha=1.0,
    alpha_threshold=settings["threshold"],
).create(device="cpu:0")
algo.build_with_dataset(dataset)
budgets = sorted(settings["budgets"])
sums, count, logs = {}, 0, []
for step in range(1, budgets[-1] + 1):
    metrics = algo.update(dataset.sample_transition_batch(256))
    for k, v in metrics.items():
        sums[k] = sums.get(k, 0.0) + float(v)
    count += 1
    if step in budgets:
        logs.append({"step": step, **{k: v / count for k, v in sums.items()}})
        sums, count = {}, 0
        policy = algo.impl.modules.policy
        arrays = {f"w:{k}": v.detach().numpy() for k, v in policy.state_dict().items()}
        arrays["check_actions"] = algo.predict(z["q_obs"])
        arrays["q_data"] = algo.predict_value(z["q_obs"], z["q_act"])
        np.savez(f"{out}/policy_{step}.npz", **arrays)
print("RESULT " + json.dumps({"version": d3rlpy.__version__, "log": logs}))
"""


class D3rlpyPolicy:
    """d3rlpy's deterministic CQL policy rebuilt from its weights, acting on raw observations."""

    def __init__(self, arrays: dict[str, np.ndarray], scalers: Scalers) -> None:
        w = {k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("w:")}
        hidden = sorted({int(k.split(".")[2]) for k in w if k.startswith("_encoder._layers.")})
        self.layers = [(w[f"_encoder._layers.{i}.weight"], w[f"_encoder._layers.{i}.bias"])
                       for i in hidden]  # fmt: skip
        self.mu = (w["_mu.weight"], w["_mu.bias"])
        self.scalers = scalers

    @torch.no_grad()
    def agent_action(self, z: np.ndarray) -> np.ndarray:
        """tanh(μ) for normalised observations, in the agent's action units."""
        h = torch.as_tensor(z, dtype=torch.float32)
        for weight, bias in self.layers:
            h = torch.relu(h @ weight.T + bias)
        return torch.tanh(h @ self.mu[0].T + self.mu[1]).numpy()

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        z = self.scalers.normalize_obs(torch.as_tensor(obs, dtype=torch.float32)).numpy()
        u = torch.from_numpy(self.agent_action(z))
        return self.scalers.to_env_actions(u).clamp(-1.0, 1.0).numpy().astype(np.float32)


def settings(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Setting name → (our alpha_threshold, the α learning rate) for both libraries."""
    out = {}
    if "fixed" in args.settings:
        out["fixed"] = {"threshold": None, "alpha_lr": 0.0}
    if "lagrangian" in args.settings:
        out["lagrangian"] = {"threshold": args.threshold, "alpha_lr": args.alpha_lr}
    return out


def our_config(
    name: str, setting: dict, scenario: str, seed: int, steps: int, backup: bool = False
) -> TrainConfig:
    agent = CQLConfig(deterministic_backup=backup)
    if setting["threshold"] is not None:
        agent = dataclasses.replace(
            agent, alpha_threshold=setting["threshold"], conservative_alpha_lr=setting["alpha_lr"]
        )
    return TrainConfig("cql", scenario, steps=steps, seed=seed, agent=agent)


def start_d3rlpy(
    python: Path, arrays: Path, out: Path, setting: dict, seed: int, budgets: list[int]
) -> subprocess.Popen:
    """Starts training d3rlpy's CQL in its own environment (it runs beside ours)."""
    if not python.exists():
        raise SystemExit(
            f"{python} does not exist: create it with "
            "`python benchmarks/training.py --install-d3rlpy` (see its docstring)"
        )
    payload = {
        "seed": seed,
        "weight": 5.0,
        "alpha_lr": setting["alpha_lr"],
        # fixed: τ only shifts the loss value, not its gradient; 0 keeps the log readable
        "threshold": 0.0 if setting["threshold"] is None else setting["threshold"],
        "budgets": budgets,
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [str(python), "-c", _D3RLPY_SCRIPT, str(arrays), str(out), json.dumps(payload)]
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def finish_d3rlpy(proc: subprocess.Popen) -> dict:
    """Waits for a d3rlpy run; returns its version and log (one row per budget)."""
    stdout, stderr = proc.communicate()
    result = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not result:
        tail = (stderr or stdout).strip().splitlines()[-3:]
        raise SystemExit(f"d3rlpy run failed (exit {proc.returncode}): {' | '.join(tail)}")
    return json.loads(result[-1][len("RESULT ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="startup")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--budgets", nargs="+", type=int, default=[250, 500, 1000])
    parser.add_argument("--episodes", type=int, default=10)
    parser.add_argument(
        "--settings", nargs="+", choices=["fixed", "lagrangian"], default=["fixed", "lagrangian"]
    )
    parser.add_argument("--threshold", type=float, default=10.0, help="τ of the lagrangian")
    parser.add_argument("--alpha-lr", type=float, default=1e-3, help="Adam rate of log α")
    parser.add_argument("--csv", default=None, help="also write the per-run table here")
    parser.add_argument("--d3rlpy-python", type=Path, default=D3RLPY_PYTHON)
    parser.add_argument(
        "--deterministic-backup",
        action="store_true",
        help="ours with d3rlpy's TD target at tanh(μ(s')) instead of a sampled next action",
    )
    args = parser.parse_args()
    if min(args.budgets) < 1 or args.episodes < 1 or not args.seeds:
        parser.error("budgets and episodes must be positive, with at least one seed")
    budgets = sorted(set(args.budgets))
    start = time.perf_counter()
    ensure_dataset(args.scenario)
    side = read_sidecar(args.scenario)
    reference = (side["return_min"], side["return_max"])
    data = TrainingTensors.from_data(load_training_data(args.scenario))
    base = TrainConfig("cql", args.scenario)
    scalers = Scalers.from_data(data, base.reward_scaling, base.action_scaling)
    gamma = CQLConfig().gamma
    returns = discounted_returns(data, gamma, scalers.reward_scale)
    pick = np.random.default_rng(0).choice(len(returns), Q_SAMPLE, replace=False)
    q_obs = scalers.normalize_obs(data.observations[pick])
    q_act = scalers.to_agent_actions(data.actions[pick])
    ends = (data.timeouts + data.terminals).numpy() > 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        arrays = Path(tmp) / "data.npz"
        np.savez(
            arrays,
            obs=scalers.normalize_obs(data.observations).numpy(),
            act=scalers.to_agent_actions(data.actions).numpy(),
            rew=scalers.scale_reward(data.rewards).numpy(),
            next_obs=scalers.normalize_obs(data.next_observations).numpy(),
            ends=ends,
            q_obs=q_obs.numpy(),
            q_act=q_act.numpy(),
        )
        for name, setting in settings(args).items():
            procs = {}
            for seed in args.seeds:
                out = Path(tmp) / f"{name}-{seed}"
                out.mkdir()
                procs[seed] = start_d3rlpy(args.d3rlpy_python, arrays, out, setting, seed, budgets)
            configs = [
                our_config(name, setting, args.scenario, s, budgets[-1], args.deterministic_backup)
                for s in args.seeds
            ]
            train_many(configs, processes=1, snapshot_steps=budgets, progress=False)
            for seed in args.seeds:
                out = Path(tmp) / f"{name}-{seed}"
                d3 = finish_d3rlpy(procs[seed])
                d3_log = {row["step"]: row for row in d3["log"]}
                for k in budgets:
                    ours, log = train_agent(
                        our_config(
                            name, setting, args.scenario, seed, k, args.deterministic_backup
                        ),
                        progress=False,
                    )
                    w = dict(np.load(out / f"policy_{k}.npz"))
                    theirs = D3rlpyPolicy(w, scalers)
                    gap = np.abs(theirs.agent_action(q_obs.numpy()) - w["check_actions"]).max()
                    if gap > 1e-4:
                        raise SystemExit(f"rebuilt d3rlpy policy differs by {gap:.2g}")
                    with torch.no_grad():
                        z, u = q_obs.unsqueeze(0), q_act.unsqueeze(0)
                        q_ours = 0.5 * (ours.q1(z, u) + ours.q2(z, u))
                    metrics = evaluate_agents(
                        [ours.act, theirs], args.scenario, args.episodes, *reference
                    )
                    d3_row = d3_log[k]
                    for library, m, q in (
                        ("ours", metrics[0], float(q_ours.mean())),
                        ("d3rlpy", metrics[1], float(np.mean(w["q_data"]))),
                    ):
                        rows.append(
                            {
                                "setting": name,
                                "steps": k,
                                "seed": seed,
                                "library": library,
                                "score": float(m["normalised_reward"].mean()),
                                "runaways": int(m["runaway"].sum()),
                                "episodes": len(m),
                                "q_data": q,
                                "true_return": float(returns[pick].mean()),
                                "weight": float(
                                    log["conservative_weight"].iloc[-1]
                                    if library == "ours"
                                    else 5.0 * d3_row.get("alpha", 1.0)
                                ),
                            }
                        )
    table = pd.DataFrame(rows)
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(markdown_table(table))
    print(f"\nd3rlpy {d3['version']}; {time.perf_counter() - start:.0f} s")


def markdown_table(table: pd.DataFrame) -> str:
    """One row per (setting, steps): each library's score, runaways, Q on data and weight."""
    lines = [
        "| setting | steps | ours score | ours runaways | ours Q(data) | ours weight "
        "| d3rlpy score | d3rlpy runaways | d3rlpy Q(data) | d3rlpy weight | true return |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for (setting, steps), part in table.groupby(["setting", "steps"], sort=False):
        cells = [setting, f"{steps:,}"]
        for library in ("ours", "d3rlpy"):
            g = part[part["library"] == library]
            cells += [
                f"{g['score'].mean():.1f}",
                f"{g['runaways'].sum()}/{g['episodes'].sum()}",
                f"{g['q_data'].mean():.2f}",
                f"{g['weight'].mean():.2f}",
            ]
        cells.append(f"{part['true_return'].mean():.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
