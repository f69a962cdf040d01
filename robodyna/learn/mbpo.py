"""The simulator training loop: MBPO, classic Dyna and model-free SAC as presets of ONE code path.

MBPO (Janner et al. 2019, Alg. 2): collect real transitions; every ``model_train_every`` steps fit the dynamics
ensemble on the real buffer only and branch ``rollout_batch`` k-step rollouts from real states with the latest
policy into a FIFO model buffer (with every refit, or every ``rollout_every`` steps through the current model);
every real step do ``G`` SAC updates on batches mixing ``real_ratio`` real rows with model rows (optionally with a
fraction of goals relabelled, :mod:`robodyna.learn.relabel`, and of rows moved into an equivalent frame of a
symmetric task, :mod:`robodyna.learn.symmetry`). Everything but the collection lives in the env-free
:class:`~robodyna.learn.learner.Learner`, which the trainer service drives too.
Dyna = k=1 with buffer actions; SAC = model off (``use_model: false``, ``real_ratio: 1``).
"""

from __future__ import annotations

import logging
import time
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
from robodyna.learn.checkpoint import load_checkpoint, save_checkpoint
from robodyna.learn.config import AlgoConfig
from robodyna.learn.envs import episode_steps_for_env, make_env, obs_names_for_env, spec_for_env, task_fns_for_env
from robodyna.learn.learner import Learner
from robodyna.learn.logger import RunLogger
from robodyna.learn.sac import SAC, DivergenceError

log = logging.getLogger(__name__)

PolicyFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    checkpoint: Path
    evals: list[dict[str, float]] = field(default_factory=list)
    learner: Learner | None = None

    @property
    def agent(self) -> SAC | None:
        """The learner's SAC agent (the trained policy)."""
        return None if self.learner is None else self.learner.agent


def evaluate(policy: PolicyFn, env: gym.Env, episodes: int, seed: int) -> dict[str, Any]:
    """Run ``episodes`` episodes with ``policy(obs) -> action`` (its ``reset()``, if it has one, is called at the
    start of each); returns mean/std return, mean and median final distance, success rate."""
    rng = np.random.default_rng(seed)
    returns, dists, succ, trajs = [], [], [], []
    reset = getattr(policy, "reset", None)
    for _ in range(episodes):
        obs, _ = env.reset(seed=int(rng.integers(2**31 - 1)))
        if callable(reset):
            reset()
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
        out["median_final_distance_m"] = float(np.median(dists))  # a few far misses move the mean a lot
    if succ:
        out["success_rate"] = float(np.mean(succ))
    return out


def format_eval(ev: dict[str, Any]) -> str:
    """One line: return mean ± std, and final distance / success rate when the env reports them."""
    line = f"return {ev['mean_return']:8.3f}" + (f" ± {ev['std_return']:.3f}" if "std_return" in ev else "")
    if "mean_final_distance_m" in ev:
        line += f" | final distance {100 * ev['mean_final_distance_m']:.2f} cm"
        if "median_final_distance_m" in ev:
            line += f" (median {100 * ev['median_final_distance_m']:.2f})"
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
    export_to: str | Path | None = None,
) -> TrainResult:
    """Train ``cfg.algo`` on ``env_name`` for ``total_steps`` real steps (or ``max_seconds`` of wall time).

    A simulator collector around the env-free :class:`~robodyna.learn.learner.Learner` (MBPO, Janner et al. 2019,
    Alg. 2): collect a real transition, hand it to the learner (which refits the model and branches rollouts as
    its counters cross their thresholds), do ``G`` SAC updates, evaluate and checkpoint. The collector draws from
    the learner's generator, so a seeded run is reproducible end to end.

    Checkpoints to ``run_dir/last.pt`` (learner state and collector state kept apart); a run that stops early (time
    limit) evaluates and checkpoints first. ``on_eval(row)`` is called after every evaluation; returning True
    stops training there (after a checkpoint). ``init_data`` (an episode store of the same robot and observation
    layout) warm-starts the real buffer and the model; its transitions count towards ``start_steps``.
    ``export_to``: write the final policy there as ONNX with the learner's next integer version (checkpointed).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    ckpt_path = run_dir / "last.pt"
    torch.set_num_threads(cfg.sac.num_threads)
    env = make_env(env_name, reality=reality)
    eval_env = make_env(env_name, reality=reality)
    logger: RunLogger | None = None
    try:
        spec, obs_names, task_fns = spec_for_env(env), obs_names_for_env(env), task_fns_for_env(env)
        learner = Learner(cfg, spec, obs_names, task_fns, episode_steps_for_env(env), name=env_name)
        cfg = learner.cfg  # periods resolved to real transitions
        rng = learner.rng
        low, high = spec.action_low_array.astype(np.float32), spec.action_high_array.astype(np.float32)
        extra_meta: dict[str, Any] = {"reality": reality}
        evals: list[dict[str, float]] = []
        episode_seed, episode_actions, ep_return = 0, [], 0.0
        if resume and ckpt_path.exists():
            st = load_checkpoint(ckpt_path, spec, obs_names)
            learner.load_state_dict(st["learner"])
            col = st["collector"]
            evals = list(col["evals"])
            extra_meta = {k: st["meta"][k] for k in ("reality", "init_data") if k in st["meta"]}
            episode_seed, episode_actions, ep_return = col["episode_seed"], list(col["episode_actions"]), \
                col["ep_return"]
            obs, _ = env.reset(seed=episode_seed)  # replay the unfinished episode to restore the simulator state
            for a in episode_actions:
                obs, *_ = env.step(a)
            if not np.allclose(obs, col["obs"], atol=1e-5):
                log.warning("resume: replaying the unfinished episode did not reproduce the saved observation "
                            "(non-deterministic env?); training continues from the replayed state")
            log.info("resumed %s at step %d from %s", cfg.algo, learner.n_real, ckpt_path)
        else:
            if init_data is not None:
                batch = read_init_data(init_data, spec, obs_names)
                learner.load_init_data(batch, source=str(init_data))
                extra_meta["init_data"] = str(init_data)
            episode_seed = int(rng.integers(2**31 - 1))
            obs, _ = env.reset(seed=episode_seed)
        save_config(cfg, run_dir / "config.yaml")
        logger = learner.logger = RunLogger(run_dir, tensorboard=tensorboard)
        step = learner.n_real

        def checkpoint() -> None:
            save_checkpoint(ckpt_path, {
                "meta": {**learner.meta(), **extra_meta}, "config": to_dict(cfg), "learner": learner.state_dict(),
                "collector": {"episode_seed": episode_seed, "episode_actions": episode_actions,
                              "ep_return": ep_return, "obs": obs, "evals": evals},
            })

        pbar = tqdm(total=None if max_seconds else total_steps, initial=step, disable=not progress,
                    desc=f"{cfg.algo} {env_name}", unit="step")
        t_start = time.perf_counter()
        try:
            while step < total_steps:
                # 1. collect one real transition (uniform random actions during initial exploration)
                explore = step < learner.start_steps
                action = rng.uniform(low, high).astype(np.float32) if explore else learner.act(obs)
                next_obs, reward, term, trunc, _ = env.step(action)
                row = Batch.create(obs, action, float(reward), next_obs, term, trunc)
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

                # 2. the learner stores it, refits the model on real data and branches rollouts when due (MBPO §4)
                learner.ingest(row)
                # 3. G SAC updates on batches mixing real and model rows (MBPO §4)
                learner.update(cfg.updates_per_step)

                # 4. log, evaluate, checkpoint
                if learner.last_stats and step % cfg.steps("log_every") == 0:
                    logger.scalars(step, {f"sac/{key}": float(v) for key, v in learner.last_stats.items()}
                                   | {"real_buffer/rejected": learner.n_dropped,
                                      "time/steps_per_s": step / max(1e-9, time.perf_counter() - t_start)})
                if step % cfg.steps("eval_every") == 0 or step == total_steps:
                    ev = evaluate(lambda o: learner.act(o, deterministic=True), eval_env, cfg.eval_episodes,
                                  seed=cfg.seed * 100_003 + step)
                    row_ev = {"step": float(step), **{key: v for key, v in ev.items() if isinstance(v, float)}}
                    err = learner.model_error(ev["trajectories"], seed=step)
                    row_ev.update({f"model_error_{h + 1}step": e for h, e in enumerate(err)})
                    if not evals or evals[-1]["step"] != step:
                        evals.append(row_ev)
                    logger.scalars(step, {f"eval/{key}": v for key, v in row_ev.items() if key != "step"})
                    pbar.set_postfix(ret=f"{ev['mean_return']:.2f}")
                    logger.flush()
                    if on_eval is not None and on_eval(row_ev):
                        total_steps = step
                if step % cfg.steps("checkpoint_every") == 0 or step == total_steps:
                    checkpoint()
                pbar.update(1)
        except (DivergenceError, FloatingPointError) as exc:
            kept = f"last good checkpoint kept at {ckpt_path}" if ckpt_path.exists() else \
                "no checkpoint was written yet"
            raise DivergenceError(f"training stopped: {exc}; {kept}") from exc
        finally:
            pbar.close()
        if export_to is not None:
            learner.export(export_to)
            checkpoint()
    finally:
        if logger is not None:
            logger.close()
        env.close()
        eval_env.close()
    return TrainResult(run_dir=run_dir, steps=step, checkpoint=ckpt_path, evals=evals, learner=learner)


def read_init_data(path: str | Path, spec: Any, obs_names: list[str]) -> Batch:
    """Every transition of an episode store, refusing one made for another robot (the ``init_data`` rule)."""
    from robodyna.data.store import EpisodeStore
    from robodyna.data.store_format import store_identity
    from robodyna.identity import Identity, check_identity

    store = EpisodeStore(path)
    check_identity("init_data", store_identity(store.meta), Identity.of(spec, obs_names), f"--init-data {path}")
    batch = store.read().batch
    log.info("read %d transitions (%d episodes) from %s", len(batch), len(store.episodes()), path)
    return batch


def agent_from_checkpoint(path: str | Path, env: gym.Env | None = None) -> tuple[SAC, dict[str, Any]]:
    """Rebuild the SAC agent stored in a training checkpoint (refusing another robot/obs layout if env given)."""
    spec = spec_for_env(env) if env is not None else None
    names = obs_names_for_env(env) if env is not None else None
    st = load_checkpoint(path, spec, names)
    from robodyna.config import load_config

    cfg = load_config(AlgoConfig, st["config"])
    sac = st["learner"]["sac"]
    obs_dim, act_dim = sac["dims"]
    agent = SAC(obs_dim, act_dim, sac["low"], sac["high"], cfg.sac)
    agent.load_state_dict(sac)
    return agent, st
