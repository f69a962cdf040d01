"""The training loop: MBPO, classic Dyna and model-free SAC as presets of ONE code path.

MBPO (Janner et al. 2019, Alg. 2): collect real transitions; every ``model_train_every`` steps fit the dynamics
ensemble on the real buffer only and branch ``rollout_batch`` k-step rollouts from real states with the latest
policy into a FIFO model buffer (with every refit, or every ``rollout_every`` steps through the current model);
every real step do ``G`` SAC updates on batches mixing ``real_ratio`` real rows with model rows (optionally with a
fraction of goals relabelled, :mod:`robodyna.learn.relabel`, and of rows moved into an equivalent frame of a
symmetric task, :mod:`robodyna.learn.symmetry`).
Dyna = k=1 with buffer actions; SAC = model off (``use_model: false``, ``real_ratio: 1``).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

from robodyna.config import save_config, to_dict
from robodyna.data.batch import Batch
from robodyna.learn.buffers import ReplayBuffer, sample_mixed
from robodyna.learn.checkpoint import load_checkpoint, save_checkpoint
from robodyna.learn.config import AlgoConfig
from robodyna.learn.coords import CoordinateModel
from robodyna.learn.ensemble import DynamicsEnsemble
from robodyna.learn.envs import make_env, obs_names_for_env, spec_for_env, task_fns_for_env
from robodyna.learn.logger import RunLogger
from robodyna.learn.relabel import relabel_goals, supports_goal_relabel
from robodyna.learn.rollouts import branched_rollout, k_step_model_error, real_obs_bounds
from robodyna.learn.sac import SAC, DivergenceError, check_finite
from robodyna.learn.symmetry import augment_symmetry, supports_symmetry

log = logging.getLogger(__name__)

PolicyFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    checkpoint: Path
    evals: list[dict[str, float]] = field(default_factory=list)
    agent: SAC | None = None


def evaluate(policy: PolicyFn, env: gym.Env, episodes: int, seed: int) -> dict[str, Any]:
    """Run ``episodes`` episodes with ``policy(obs) -> action``; returns mean/std return, distance, success."""
    rng = np.random.default_rng(seed)
    returns, dists, succ, trajs = [], [], [], []
    for _ in range(episodes):
        obs, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
        rows: list[Batch] = []
        total, done = 0.0, False
        info: dict[str, Any] = {}
        while not done:
            action = np.asarray(policy(np.asarray(obs, np.float32)), dtype=np.float32)
            nxt, r, term, trunc, info = env.step(action)
            rows.append(Batch.create(obs, action, float(r), nxt, term, trunc))
            total += float(r)
            obs, done = nxt, bool(term or trunc)
        returns.append(total)
        trajs.append(Batch.concat(rows))
        if "final_distance_m" in info:
            dists.append(float(info["final_distance_m"]))
        if "is_success" in info:
            succ.append(float(info["is_success"]))
    out: dict[str, Any] = {
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "episodes": episodes,
        "trajectories": trajs,
    }
    if dists:
        out["mean_final_distance_m"] = float(np.mean(dists))
    if succ:
        out["success_rate"] = float(np.mean(succ))
    return out


def model_input_columns(cfg: AlgoConfig, task_fns: Any) -> list[int] | None:
    """The observation columns the ensemble reads: all (``model_inputs: obs``), or with ``state`` the task's
    ``dynamics_columns`` — the robot's own state, without the goal and the columns its constraints derive from
    the state (a model that cannot see the target cannot learn spurious dependences on it from a few episodes).
    A task that declares none keeps all columns."""
    cols = getattr(task_fns, "dynamics_columns", None)
    if cfg.model_inputs == "obs" or cols is None:
        return None
    return [int(c) for c in cols]


def make_model(
    cfg: AlgoConfig, env_name: str, task_fns: Any, obs_dim: int, act_dim: int
) -> DynamicsEnsemble | CoordinateModel:
    """The dynamics ensemble ``cfg.model_inputs`` asks for: over observations, or in the task's coordinates."""
    if cfg.model_inputs == "coordinates":
        if getattr(task_fns, "model_coordinates", None) is None:
            raise ValueError(f"model_inputs=coordinates: {env_name} declares no model coordinates "
                             "(set model_inputs=state or obs)")
        return CoordinateModel(task_fns.model_coordinates, act_dim, cfg.ensemble, seed=cfg.seed + 1)
    return DynamicsEnsemble(obs_dim, act_dim, cfg.ensemble, seed=cfg.seed + 1,
                            input_columns=model_input_columns(cfg, task_fns))


def format_eval(ev: dict[str, Any]) -> str:
    """One line: return mean ± std, and final distance / success rate when the env reports them."""
    line = f"return {ev['mean_return']:8.3f} ± {ev['std_return']:.3f}"
    if "mean_final_distance_m" in ev:
        line += f" | final distance {100 * ev['mean_final_distance_m']:.2f} cm"
    if "success_rate" in ev:
        line += f" | success {100 * ev['success_rate']:.0f}%"
    return line


def train(
    cfg: AlgoConfig,
    env_name: str,
    run_dir: str | Path,
    total_steps: int,
    reality: str | None = None,
    resume: bool = False,
    progress: bool = True,
    tensorboard: bool = True,
    max_seconds: float | None = None,
    on_eval: Callable[[dict[str, float]], bool] | None = None,
    init_data: str | Path | None = None,
) -> TrainResult:
    """Train ``cfg.algo`` on ``env_name`` for ``total_steps`` real steps (or ``max_seconds`` of wall time).

    Checkpoints to ``run_dir/last.pt``; a run that stops early (time limit) evaluates and checkpoints first.
    ``on_eval(row)`` is called after every evaluation; returning True stops training there (after a checkpoint).
    ``init_data`` (an episode store of the same robot and observation layout) warm-starts the real buffer and
    the model; its transitions count towards ``start_steps`` (uniform exploration shortens accordingly).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "last.pt"
    torch.set_num_threads(cfg.sac.num_threads)
    env = make_env(env_name, reality=reality)
    eval_env = make_env(env_name, reality=reality)
    spec, obs_names, task_fns = spec_for_env(env), obs_names_for_env(env), task_fns_for_env(env)
    goals, symmetry = supports_goal_relabel(task_fns), supports_symmetry(task_fns)
    for key, supported, missing in (("goal_relabel_ratio", goals, "has no known goal distribution to relabel with"),
                                    ("rollout_goal_relabel", goals, "has no known goal distribution to relabel with"),
                                    ("symmetry_augment_ratio", symmetry,
                                     "declares no symmetry of its dynamics and reward")):
        if getattr(cfg, key) > 0 and not supported:
            raise ValueError(f"{key}={getattr(cfg, key)}: {env_name} {missing} (set {key}=0)")
    obs_dim, act_dim = len(obs_names), spec.act_dim
    low, high = spec.action_low_array.astype(np.float32), spec.action_high_array.astype(np.float32)

    # --- state: agent, model, buffers, rngs (all seeded from cfg.seed) -------------------------------
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    agent = SAC(obs_dim, act_dim, low, high, cfg.sac, seed=cfg.seed)
    model = make_model(cfg, env_name, task_fns, obs_dim, act_dim) if cfg.use_model else None
    real = ReplayBuffer(cfg.real_buffer_size, obs_dim, act_dim, name="real buffer")
    k = cfg.rollout_length(0)
    model_buf = ReplayBuffer(cfg.model_buffer_size(k), obs_dim, act_dim, name="model buffer") if model else None
    meta: dict[str, Any] = {"robot_spec": spec.to_json(), "obs_names": obs_names, "env": env_name, "reality": reality,
            "algo": cfg.algo, "run_id": uuid.uuid4().hex[:12]}
    step, episode_seed, episode_actions, ep_return, evals = 0, 0, [], 0.0, []
    if resume and ckpt_path.exists():
        st = load_checkpoint(ckpt_path, spec, obs_names)
        agent.load_state_dict(st["sac"])
        if model is not None:
            model.load_state_dict(st["model"])
            model_buf.load_state_dict(st["model_buffer"])  # type: ignore[union-attr]
        real.load_state_dict(st["real_buffer"])
        rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        step, k, evals, meta["run_id"] = st["step"], st["k"], st["evals"], st["meta"]["run_id"]
        meta["init_transitions"] = st["meta"].get("init_transitions", 0)
        episode_seed, episode_actions, ep_return = st["episode_seed"], list(st["episode_actions"]), st["ep_return"]
        obs, _ = env.reset(seed=episode_seed)  # replay the unfinished episode to restore the simulator state
        for a in episode_actions:
            obs, *_ = env.step(a)
        if not np.allclose(obs, st["obs"], atol=1e-5):
            log.warning("resume: replaying the unfinished episode did not reproduce the saved observation "
                        "(non-deterministic env?); training continues from the replayed state")
        log.info("resumed %s at step %d from %s", cfg.algo, step, ckpt_path)
    else:
        if init_data is not None:
            n_init = load_init_data(init_data, real, spec, obs_names)
            meta["init_data"], meta["init_transitions"] = str(init_data), n_init
            if cfg.sac.normalize_obs and n_init > 1:
                data = real.all()
                agent.set_obs_normalizer(data.obs.mean(0), data.obs.std(0))
            if model is not None and n_init >= cfg.min_real_for_model:
                rep = model.fit(real.all(), rng)
                log.info("model warm-started on %d transitions from %s (%d epochs)", n_init, init_data, rep.epochs)
        episode_seed = int(rng.integers(2**31 - 1))
        obs, _ = env.reset(seed=episode_seed)
    start_steps = max(0, cfg.start_steps - int(meta.get("init_transitions", 0)))
    save_config(cfg, run_dir / "config.yaml")
    logger = RunLogger(run_dir, tensorboard=tensorboard)

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {
            "meta": meta, "config": to_dict(cfg), "step": step, "k": k, "evals": evals,
            "sac": agent.state_dict(), "model": model.state_dict() if model else None,
            "real_buffer": real.state_dict(), "model_buffer": model_buf.state_dict() if model_buf else None,
            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
            "episode_seed": episode_seed, "episode_actions": episode_actions, "ep_return": ep_return, "obs": obs,
        })

    def policy_act(o: np.ndarray, r: np.random.Generator) -> np.ndarray:
        return agent.act(o, r)

    pbar = tqdm(total=None if max_seconds else total_steps, initial=step, disable=not progress,
                desc=f"{cfg.algo} {env_name}", unit="step")
    stats: dict[str, torch.Tensor] = {}
    t_start = time.perf_counter()
    try:
        while step < total_steps:
            # 1. collect one real transition (uniform random actions during initial exploration)
            action = rng.uniform(low, high).astype(np.float32) if step < start_steps else agent.act(obs, rng)
            next_obs, reward, term, trunc, info = env.step(action)
            real.add(Batch.create(obs, action, float(reward), next_obs, term, trunc))
            episode_actions.append(action)
            ep_return += float(reward)
            step += 1
            obs = next_obs
            if max_seconds is not None and time.perf_counter() - t_start > max_seconds:
                total_steps = step  # wall-time budget spent: finish this step, evaluate, checkpoint, stop
            if term or trunc:
                logger.scalars(step, {"train/episode_return": ep_return})
                episode_seed = int(rng.integers(2**31 - 1))
                obs, _ = env.reset(seed=episode_seed)
                episode_actions, ep_return = [], 0.0
            if step == start_steps and cfg.sac.normalize_obs:
                data = real.all()
                agent.set_obs_normalizer(data.obs.mean(0), data.obs.std(0))

            # 2. fit the model on real data only, then branch rollouts into the model buffer (MBPO §4)
            if model is not None and step % cfg.model_train_every == 0 and len(real) >= cfg.min_real_for_model:
                rep = model.fit(real.all(), rng)
                logger.scalars(step, {"model/epochs": rep.epochs, "model/fit_seconds": rep.seconds,
                                      "model/train_loss": rep.train_loss,
                                      **{f"model/val_mse/{i}": v for i, v in enumerate(rep.val_mse)}})
                logger.text(step, "model/elites", " ".join(map(str, rep.elites)))
                if cfg.model_buffer_eviction == "flush_on_refit":
                    assert model_buf is not None
                    model_buf.clear()
            if model is not None and model_buf is not None and model.fitted and step % cfg.rollout_period == 0:
                k = cfg.rollout_length(step / cfg.epoch_length)
                model_buf.resize(cfg.model_buffer_size(k))
                start = real.sample(cfg.rollout_batch, rng)
                if cfg.rollout_goal_relabel > 0:  # branch towards goals the robot has not been given yet
                    start = relabel_goals(start, task_fns, cfg.rollout_goal_relabel, rng)
                bounds = None if cfg.rollout_obs_margin is None else real_obs_bounds(real, cfg.rollout_obs_margin)
                ro_stats: dict[str, Any] = {}
                rollout = branched_rollout(model, start, k, task_fns, rng, policy=policy_act,
                                           buffer_actions=cfg.rollout_actions == "buffer", obs_bounds=bounds,
                                           stats=ro_stats, uncertainty_penalty=cfg.rollout_uncertainty_penalty,
                                           max_std=cfg.rollout_max_std, constrain=cfg.rollout_constraints)
                model_buf.add(rollout)
                logger.scalars(step, {"rollout/k": k, "rollout/transitions": len(rollout),
                                      "model_buffer/size": len(model_buf),
                                      "rollout/out_of_bounds": ro_stats["out_of_bounds"],
                                      "rollout/mean_std": ro_stats["mean_std"],
                                      "rollout/uncertain": ro_stats["uncertain"],
                                      "model_buffer/rejected": model_buf.rejected})

            # 3. G SAC updates on batches mixing real and model rows (MBPO §4)
            if step >= start_steps:
                # model rows only once the model buffer holds at least a batch (never overfit a handful of rows)
                ratio = cfg.real_ratio if model_buf is not None and len(model_buf) >= cfg.sac.batch_size else 1.0
                bs, n_up = cfg.sac.batch_size, cfg.updates_per_step
                batches = sample_mixed(real, model_buf, bs, ratio, rng, n_batches=n_up)  # G batches, one draw
                if cfg.goal_relabel_ratio > 0:
                    batches = relabel_goals(batches, task_fns, cfg.goal_relabel_ratio, rng, cfg.achieved_goal_ratio)
                if cfg.symmetry_augment_ratio > 0:
                    batches = augment_symmetry(batches, task_fns, cfg.symmetry_augment_ratio, rng)
                for i in range(n_up):
                    stats = agent.update(batches.take(slice(i * bs, (i + 1) * bs)))
                if stats:
                    check_finite(stats, cfg.max_abs_q, f"step {step}")

            # 4. log, evaluate, checkpoint
            if stats and step % cfg.log_every == 0:
                logger.scalars(step, {f"sac/{key}": float(v) for key, v in stats.items()}
                               | {"real_buffer/rejected": real.rejected,
                                  "time/steps_per_s": step / max(1e-9, time.perf_counter() - t_start)})
            if step % cfg.eval_every == 0 or step == total_steps:
                ev = evaluate(lambda o: agent.act(o, deterministic=True), eval_env, cfg.eval_episodes,
                              seed=cfg.seed * 100_003 + step)
                row = {"step": float(step), **{key: v for key, v in ev.items() if isinstance(v, float)}}
                if model is not None and model.fitted:
                    err = k_step_model_error(model, ev["trajectories"], cfg.model_error_horizon,
                                             np.random.default_rng(step))
                    row.update({f"model_error_{h + 1}step": float(e) for h, e in enumerate(err)})
                if not evals or evals[-1]["step"] != step:
                    evals.append(row)
                logger.scalars(step, {f"eval/{key}": v for key, v in row.items() if key != "step"})
                pbar.set_postfix(ret=f"{ev['mean_return']:.2f}")
                logger.flush()
                if on_eval is not None and on_eval(row):
                    total_steps = step
            if step % cfg.checkpoint_every == 0 or step == total_steps:
                checkpoint()
            pbar.update(1)
    except (DivergenceError, FloatingPointError) as exc:
        kept = f"last good checkpoint kept at {ckpt_path}" if ckpt_path.exists() else "no checkpoint was written yet"
        raise DivergenceError(f"training stopped: {exc}; {kept}") from exc
    finally:
        pbar.close()
        logger.close()
        env.close()
        eval_env.close()
    return TrainResult(run_dir=run_dir, steps=step, checkpoint=ckpt_path, evals=evals, agent=agent)


def load_init_data(path: str | Path, real: ReplayBuffer, spec: Any, obs_names: list[str]) -> int:
    """Add every transition of an episode store to ``real``; refuse a store of another robot or obs layout."""
    from robodyna.data.store import EpisodeStore
    from robodyna.data.store_format import store_identity
    from robodyna.identity import Identity, check_identity

    store = EpisodeStore(path)
    check_identity("init_data", store_identity(store.meta), Identity.of(spec, obs_names), f"--init-data {path}")
    batch = store.read().batch
    before = len(real)
    real.add(batch)
    log.info("loaded %d transitions (%d episodes) from %s into the real buffer", len(real) - before,
             len(store.episodes()), path)
    return len(real) - before


def agent_from_checkpoint(path: str | Path, env: gym.Env | None = None) -> tuple[SAC, dict[str, Any]]:
    """Rebuild the SAC agent stored in a training checkpoint (refusing another robot/obs layout if env given)."""
    spec = spec_for_env(env) if env is not None else None
    names = obs_names_for_env(env) if env is not None else None
    st = load_checkpoint(path, spec, names)
    from robodyna.config import load_config

    cfg = load_config(AlgoConfig, st["config"])
    obs_dim, act_dim = st["sac"]["dims"]
    agent = SAC(obs_dim, act_dim, st["sac"]["low"], st["sac"]["high"], cfg.sac)
    agent.load_state_dict(st["sac"])
    return agent, st
