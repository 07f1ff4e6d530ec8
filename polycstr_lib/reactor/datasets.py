"""The offline PI datasets: generation, Minari storage, integrity checks and fast loading.

One dataset per scenario, ``polycstr/<scenario>/pi-v0``, in Minari's local store (its
default place, or ``MINARI_DATASETS_PATH``), so ``minari.load_dataset(id)`` finds it. Beside
Minari's own files each dataset directory holds ``polycstr.json``: the generation config,
the PI gains of every episode, the normalisation references ``R_min``/``R_max`` (also given
to Minari as ``ref_min_score``/``ref_max_score``), summary statistics, and the SHA-256 of
the data file, checked on every load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gymnasium as gym
import numpy as np

from polycstr_lib.reactor.env import EPISODE_STEPS, register_envs
from polycstr_lib.reactor.pi import GainRanges, PIController
from polycstr_lib.reactor.rollout import Trajectories, rollout
from polycstr_lib.reactor.scenarios import SCENARIOS, get_scenario
from polycstr_lib.toolkit.store import ReportedError

DATASET_VERSION = "pi-v0"
SIDECAR = "polycstr.json"
#: Env seeds of dataset episodes are DATA_SEED_BASE * (seed + 1) + episode index (below 1e9
#: for dataset seeds < 999); validation episodes use VALIDATION_SEED_BASE + index and test
#: episodes EVAL_SEED_BASE + index, so the three sets never meet. Every tuned choice is made
#: on validation episodes; test episodes fill the tables.
DATA_SEED_BASE = 1_000_000
VALIDATION_SEED_BASE = 1_500_000_000
EVAL_SEED_BASE = 2_000_000_000
RUNAWAY_TEMPERATURE = 450.0  # K: an episode above this is counted as a thermal runaway


@dataclass(frozen=True)
class DatasetConfig:
    """How one PI dataset is generated (saved in the dataset's sidecar)."""

    scenario: str  # scenario name
    episodes: int = 100  # number of PI episodes
    seed: int = 0  # draws the PI gains and, through data_seeds(), the initial states
    gains: GainRanges = field(default_factory=GainRanges)  # ranges of the PI gains

    def __post_init__(self) -> None:
        get_scenario(self.scenario)
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        last = DATA_SEED_BASE * (self.seed + 1) + self.episodes - 1
        if self.seed < 0 or last >= VALIDATION_SEED_BASE:
            raise ValueError(
                f"dataset seed {self.seed} with {self.episodes} episodes would reuse validation "
                f"or test episodes (env seeds from {VALIDATION_SEED_BASE:,}); use a seed in "
                f"[0, {VALIDATION_SEED_BASE // DATA_SEED_BASE - 2}]"
            )


class DatasetWarning(UserWarning):
    """A broken dataset found and made again (the warning names the file and the fault)."""


class DatasetError(ReportedError, RuntimeError):
    """A dataset is missing, corrupted or inconsistent; the message names the file."""


def dataset_id(scenario: str) -> str:
    """Minari id of a scenario's PI dataset, e.g. ``polycstr/startup/pi-v0``."""
    get_scenario(scenario)
    return f"polycstr/{scenario}/{DATASET_VERSION}"


def datasets_root() -> Path:
    """Minari's local store (``MINARI_DATASETS_PATH`` or ``~/.minari/datasets``)."""
    root = os.environ.get("MINARI_DATASETS_PATH")
    path = Path(root) if root else Path.home() / ".minari" / "datasets"
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"MINARI_DATASETS_PATH={path} is a file, not a folder")
    return path


def dataset_path(scenario: str) -> Path:
    """Directory of a scenario's dataset in the local store."""
    return datasets_root() / dataset_id(scenario)


def data_seeds(config: DatasetConfig) -> np.ndarray:
    """Env seeds of the dataset's episodes (disjoint from :func:`eval_seeds`)."""
    return DATA_SEED_BASE * (config.seed + 1) + np.arange(config.episodes)


def eval_seeds(n: int, offset: int = 0) -> np.ndarray:
    """Env seeds for ``n`` test episodes, never used by any dataset or validation episode."""
    if n < 0 or not 0 <= offset <= 100_000_000:
        raise ValueError(f"need n >= 0 and 0 <= offset <= 1e8; got n={n}, offset={offset}")
    return EVAL_SEED_BASE + offset + np.arange(n)


def validation_seeds(n: int, offset: int = 0) -> np.ndarray:
    """Env seeds for ``n`` validation episodes (disjoint from data and test episodes)."""
    if n < 0 or not 0 <= offset <= 100_000_000:
        raise ValueError(f"need n >= 0 and 0 <= offset <= 1e8; got n={n}, offset={offset}")
    return VALIDATION_SEED_BASE + offset + np.arange(n)


#: Episode splits of :func:`episode_seeds`.
SPLITS = ("validation", "test")


def episode_seeds(split: str, n: int, offset: int = 0) -> np.ndarray:
    """Env seeds of ``n`` episodes of ``split`` ('validation' or 'test').

    Raises:
        ValueError: An unknown split.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return (validation_seeds if split == "validation" else eval_seeds)(n, offset)


def generate_pi_trajectories(config: DatasetConfig) -> tuple[Trajectories, dict]:
    """Roll out the randomised PI controllers of ``config`` in one batch.

    Returns:
        The trajectories and a dict with the gains ``(E, 4)`` and the per-step rate-limit
        flags ``(E, T, 2)`` (where the PI asked for more than the per-step limit).
    """
    rng = np.random.default_rng(config.seed)
    gains = config.gains.sample(rng, config.episodes)
    controller = PIController(gains)
    limited = []

    def policy(obs: np.ndarray) -> np.ndarray:
        action = controller.act(obs)
        limited.append(controller.rate_limited.copy())
        return action

    policy.reset = controller.reset  # type: ignore[attr-defined]
    traj = rollout(policy, config.scenario, data_seeds(config))
    return traj, {"gains": gains, "rate_limited": np.stack(limited, axis=1)}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _data_file(path: Path) -> Path:
    return path / "data" / "main_data.hdf5"


def _file_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file of a dataset folder but the sidecar, by relative path."""
    return {
        path.relative_to(folder).as_posix(): _sha256(path)
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.name != SIDECAR
    }


@contextmanager
def _minari_root(root: Path):
    old = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MINARI_DATASETS_PATH", None)
        else:
            os.environ["MINARI_DATASETS_PATH"] = old


def _episode_buffers(traj: Trajectories, gains: np.ndarray) -> list:
    from minari.data_collector import EpisodeBuffer

    buffers = []
    for i in range(traj.num_episodes):
        initial_cost = np.abs(traj.setpoints[i] - traj.states[i, 0, [3, 4]]).sum()
        infos = {
            "cost": np.concatenate([[initial_cost], traj.costs[i]]),
            "constraint_violation": np.concatenate([[False], traj.violations[i]]),
            "state": traj.states[i],
            "inputs": traj.inputs[i],
            "pi_gains": np.repeat(gains[i][None], EPISODE_STEPS + 1, axis=0),
        }
        truncations = np.zeros(EPISODE_STEPS, dtype=bool)
        truncations[-1] = True
        buffers.append(
            EpisodeBuffer(
                id=i,
                seed=int(traj.seeds[i]),
                observations=traj.observations[i],
                actions=traj.actions[i],
                rewards=traj.rewards[i],
                terminations=np.zeros(EPISODE_STEPS, dtype=bool),
                truncations=truncations,
                infos=infos,
            )
        )
    return buffers


def generate_dataset(config: DatasetConfig, overwrite: bool = False) -> Path:
    """Generate a PI dataset and store it atomically in Minari's local store.

    The dataset is written under a temporary root on the same file system and moved into
    place in one rename, so an interrupted run leaves either the old dataset or none.

    Args:
        config: what to generate.
        overwrite: replace an existing dataset.

    Returns:
        The dataset directory.

    Raises:
        DatasetError: if the dataset exists and ``overwrite`` is false.
    """
    import minari

    register_envs()
    final = dataset_path(config.scenario)
    if final.exists() and not overwrite:
        raise DatasetError(f"dataset exists at {final}; pass overwrite=True to replace it")
    traj, extra = generate_pi_trajectories(config)
    returns = traj.returns
    r_min, r_max = float(returns.min()), float(returns.max())
    root = datasets_root()
    root.mkdir(parents=True, exist_ok=True)
    staging = root / f".staging-{uuid.uuid4().hex}"
    try:
        with _minari_root(staging), warnings.catch_warnings():
            # Minari nags about an author e-mail and a separate evaluation env; neither applies.
            warnings.filterwarnings("ignore", message=".*(author_email|eval_env).*")
            env = gym.make("PolyCSTR-v0", scenario=config.scenario)
            minari.create_dataset_from_buffers(
                dataset_id=dataset_id(config.scenario),
                buffer=_episode_buffers(traj, extra["gains"]),
                env=env,
                algorithm_name="randomised PI (two loops, conditional-integration anti-windup)",
                author="PolyCSTR companion",
                code_permalink="polycstr_lib.reactor.datasets.generate_dataset",
                ref_min_score=r_min,
                ref_max_score=r_max,
                description=(
                    f"{config.episodes} episodes x {EPISODE_STEPS} steps of randomised PI "
                    f"control, scenario {config.scenario}: {SCENARIOS[config.scenario]}"
                ),
            )
            env.close()
        built = staging / dataset_id(config.scenario)
        runaway = (traj.states[:, :, 4] > RUNAWAY_TEMPERATURE).any(axis=1)
        sidecar = {
            "config": asdict(config),
            "dataset_id": dataset_id(config.scenario),
            "return_min": r_min,
            "return_max": r_max,
            "pi_gains": extra["gains"].tolist(),
            "gain_columns": ["kp_polymer", "ki_polymer", "kp_temperature", "ki_temperature"],
            "episode_seeds": traj.seeds.tolist(),
            "rate_limited_fraction": extra["rate_limited"].mean(axis=(0, 1)).tolist(),
            "runaway_episodes": int(runaway.sum()),
            "violation_steps": int(traj.violations.sum()),
            "files": _file_hashes(built),
        }
        (built / SIDECAR).write_text(json.dumps(sidecar, indent=1))
        final.parent.mkdir(parents=True, exist_ok=True)
        _ensure_namespace(root, staging)
        if final.exists():
            trash = final.with_name(f".old-{uuid.uuid4().hex}")
            os.replace(final, trash)
            os.replace(built, final)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(built, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _ensure_namespace(root: Path, staging: Path) -> None:
    """Copy Minari's namespace metadata from the staging root when the store lacks it."""
    for name in ("namespace_metadata.json",):
        src, dst = staging / "polycstr" / name, root / "polycstr" / name
        if src.exists() and not dst.exists():
            shutil.copyfile(src, dst)


def read_sidecar(scenario: str) -> dict:
    """The dataset's ``polycstr.json`` (config, gains, references, checksum)."""
    path = dataset_path(scenario) / SIDECAR
    if not path.exists():
        raise DatasetError(
            f"no dataset for scenario {scenario!r} at {path.parent}; run `make data` or "
            f"polycstr_lib.reactor.datasets.ensure_dataset({scenario!r})"
        )
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path} is corrupted ({exc}); regenerate it") from None


def verify_dataset(scenario: str) -> dict:
    """Check every file of the dataset (data and Minari's metadata) against its checksum.

    Returns:
        The sidecar.

    Raises:
        DatasetError: naming the file when it is missing, truncated, altered or unlisted.
    """
    sidecar = read_sidecar(scenario)
    folder = dataset_path(scenario)
    listed = sidecar.get("files")
    if not isinstance(listed, dict) or not listed:
        raise DatasetError(
            f"{folder / SIDECAR} lists no file checksums (made by an older version); "
            "regenerate it with `make data`"
        )
    present = _file_hashes(folder)
    for name, digest in listed.items():
        if name not in present:
            raise DatasetError(f"{folder / name} is missing; regenerate with `make data`")
        if present[name] != digest:
            raise DatasetError(
                f"{folder / name} does not match its checksum (corrupted or truncated); "
                f"regenerate it with `make data` or ensure_dataset({scenario!r}, regenerate=True)"
            )
    extra = sorted(set(present) - set(listed))
    if extra:
        raise DatasetError(f"{folder / extra[0]} is not part of the dataset; regenerate it")
    return sidecar


def ensure_dataset(scenario: str, regenerate: bool = False, config: DatasetConfig | None = None):
    """Make sure a valid dataset exists: generate it if missing, invalid or asked to.

    A valid dataset made with other settings (another seed or episode count) is never replaced
    silently: it is kept and refused, unless ``regenerate`` is set.

    Returns:
        ``(path, generated)``: the dataset directory and whether it was (re)generated.

    Raises:
        DatasetError: a valid dataset with other settings exists and ``regenerate`` is false.
    """
    config = config or DatasetConfig(scenario)
    if not regenerate:
        try:
            sidecar = verify_dataset(scenario)
        except DatasetError as error:
            sidecar = None  # missing or broken: made again below, saying why
            if dataset_path(scenario).exists():
                warnings.warn(f"{error}; making it again", DatasetWarning, stacklevel=2)
        if sidecar is not None:
            wanted = json.loads(json.dumps(asdict(config)))
            if sidecar["config"] == wanted:
                return dataset_path(scenario), False
            have = sidecar["config"]
            raise DatasetError(
                f"the {scenario} dataset at {dataset_path(scenario)} was made with seed "
                f"{have['seed']} and {have['episodes']} episodes, not seed {config.seed} and "
                f"{config.episodes}; keep it, or replace it with `python -m polycstr_lib data "
                f"--scenario {scenario} --seed {config.seed} --episodes {config.episodes} "
                "--regenerate`"
            )
    return generate_dataset(config, overwrite=True), True


@dataclass(frozen=True)
class OfflineData:
    """A whole dataset as contiguous float32 torch tensors (N transitions)."""

    scenario: str  # scenario name
    observations: object  # (N, 9) torch.float32
    actions: object  # (N, 2) torch.float32 in [-1, 1]
    rewards: object  # (N,) torch.float32, -(e_P^2 + e_T^2)
    costs: object  # (N,) torch.float32, |e_P| + |e_T| after the step
    next_observations: object  # (N, 9) torch.float32
    terminals: object  # (N,) torch.float32, all zero (episodes only truncate)
    timeouts: object  # (N,) torch.float32, 1 on each episode's last step
    episode_ids: object  # (N,) torch.int64
    return_min: float  # R_min: worst episode return of the PI data
    return_max: float  # R_max: best episode return of the PI data

    def __len__(self) -> int:
        return int(self.rewards.shape[0])


def load_trajectories(scenario: str) -> tuple[Trajectories, dict]:
    """The dataset's episodes as :class:`Trajectories` (verified), and its sidecar."""
    import minari

    sidecar = verify_dataset(scenario)
    path = dataset_path(scenario)
    try:
        with _minari_root(datasets_root()):
            dataset = minari.load_dataset(dataset_id(scenario))
            episodes = list(dataset.iterate_episodes())
    except Exception as exc:  # h5py / minari raise many kinds on damaged files
        raise DatasetError(f"cannot read {_data_file(path)}: {exc}") from exc
    stack = np.stack
    infos = [ep.infos for ep in episodes]
    observations = stack([ep.observations for ep in episodes]).astype(np.float32)
    states = stack([i["state"] for i in infos])
    traj = Trajectories(
        scenario=scenario,
        seeds=np.array(sidecar["episode_seeds"]),
        observations=observations,
        actions=stack([ep.actions for ep in episodes]).astype(np.float32),
        rewards=stack([ep.rewards for ep in episodes]).astype(np.float64),
        costs=stack([i["cost"][1:] for i in infos]),
        violations=stack([i["constraint_violation"][1:] for i in infos]).astype(bool),
        states=states,
        inputs=stack([i["inputs"] for i in infos]),
        setpoints=np.repeat(get_scenario(scenario).setpoint[None], len(episodes), axis=0),
    )
    _check_trajectories(traj, path)
    return traj, sidecar


def _check_trajectories(traj: Trajectories, path: Path) -> None:
    e = traj.num_episodes
    if traj.observations.shape != (e, EPISODE_STEPS + 1, 9):
        raise DatasetError(
            f"{path}: observations have shape {traj.observations.shape}, expected "
            f"({e}, {EPISODE_STEPS + 1}, 9)"
        )
    for name in ("observations", "actions", "rewards", "costs"):
        if not np.all(np.isfinite(getattr(traj, name))):
            raise DatasetError(f"{path}: non-finite values in {name}")


def to_offline_data(traj: Trajectories, return_min: float, return_max: float) -> OfflineData:
    """Flatten trajectories into transitions as contiguous float32 tensors."""
    import torch

    e, t = traj.rewards.shape
    timeouts = np.zeros((e, t), dtype=np.float32)
    timeouts[:, -1] = 1.0

    def tensor(x, dtype=torch.float32):
        return torch.from_numpy(np.ascontiguousarray(x)).to(dtype).contiguous()

    return OfflineData(
        scenario=traj.scenario,
        observations=tensor(traj.observations[:, :-1].reshape(e * t, 9)),
        actions=tensor(traj.actions.reshape(e * t, 2)),
        rewards=tensor(traj.rewards.reshape(-1)),
        costs=tensor(traj.costs.reshape(-1)),
        next_observations=tensor(traj.observations[:, 1:].reshape(e * t, 9)),
        terminals=torch.zeros(e * t, dtype=torch.float32),
        timeouts=tensor(timeouts.reshape(-1)),
        episode_ids=tensor(np.repeat(np.arange(e), t), torch.int64),
        return_min=float(return_min),
        return_max=float(return_max),
    )


def load_offline_data(scenario: str) -> OfflineData:
    """Load a scenario's dataset, verified against its checksum, in one call.

    Raises:
        DatasetError: when the dataset is missing or corrupted (the message names the file
            and how to regenerate it).
    """
    traj, sidecar = load_trajectories(scenario)
    return to_offline_data(traj, sidecar["return_min"], sidecar["return_max"])


def normalised_reward(returns, return_min: float, return_max: float) -> np.ndarray:
    """``100 (R - R_min) / (R_max - R_min)``; values outside [0, 100] are kept."""
    return 100.0 * (np.asarray(returns, dtype=np.float64) - return_min) / (return_max - return_min)


def runaway_episodes(traj: Trajectories) -> np.ndarray:
    """(E,) bool: episodes whose temperature exceeds :data:`RUNAWAY_TEMPERATURE` at some step."""
    return (np.asarray(traj.states)[:, :, 4] > RUNAWAY_TEMPERATURE).any(axis=1)


def normalisation_reference(
    traj: Trajectories, exclude_runaways: bool = False
) -> tuple[float, float]:
    """``(R_min, R_max)`` of the normalised reward from a scenario's data episodes.

    The book's score uses every data episode (``exclude_runaways=False``, the values stored
    with the dataset). The alternative leaves out the thermal runaways, whose returns are
    orders of magnitude below the rest and so compress every other episode near 100.

    Args:
        traj: The data episodes (E episodes).
        exclude_runaways: Leave out the episodes of :func:`runaway_episodes`.

    Raises:
        ValueError: When no episode is left (every episode ran away).
    """
    returns = np.asarray(traj.returns, dtype=np.float64)
    keep = ~runaway_episodes(traj) if exclude_runaways else np.ones(len(returns), dtype=bool)
    if not keep.any():
        raise ValueError("every data episode runs away: no reference is left")
    return float(returns[keep].min()), float(returns[keep].max())


def reference_comparison(traj: Trajectories) -> dict[str, float]:
    """How much the runaway episodes stretch the normalised-reward scale of one dataset.

    Returns:
        ``runaways`` (count), ``return_min`` and ``return_min_without_runaways``,
        ``return_max``, ``stretch`` (ratio of the two ranges, 1 without runaways), and the
        data's median and 10th-percentile score under each reference (``median_all``,
        ``median_without``, ``p10_all``, ``p10_without``).
    """
    lo, hi = normalisation_reference(traj)
    lo_kept, hi_kept = normalisation_reference(traj, exclude_runaways=True)
    all_scores = normalised_reward(traj.returns, lo, hi)
    kept_scores = normalised_reward(traj.returns, lo_kept, hi_kept)
    return {
        "runaways": int(runaway_episodes(traj).sum()),
        "return_min": lo,
        "return_min_without_runaways": lo_kept,
        "return_max": hi,
        "stretch": (hi - lo) / (hi_kept - lo_kept),
        "median_all": float(np.median(all_scores)),
        "median_without": float(np.median(kept_scores)),
        "p10_all": float(np.percentile(all_scores, 10)),
        "p10_without": float(np.percentile(kept_scores, 10)),
    }
