"""The trainer service: the network end of the link and ONE training thread around the :class:`Learner`.

- the network thread is :class:`~robodyna.transport.trainer.TrainerServer`: it receives, persists (the trainer's
  real-data store, one per robot) and acknowledges; newly persisted rows wait in its bounded queue;
- the training thread (:meth:`TrainerService.run`, the caller's thread) drains that queue into the same
  :class:`~robodyna.learn.learner.Learner` ``robodyna train`` uses — ingest real transitions (the learner refits
  the ensemble on real data and branches rollouts from real states as its counters cross thresholds), SAC
  updates under the update-to-data cap — exports the policy as ONNX with the next integer version, signs and
  pushes it (:mod:`robodyna.loop.publish`: push validation, the final selection); the controller verifies and
  swaps it in at its next episode;
- refresh scheduling (:mod:`robodyna.loop.refresh`) decides when to ask the robot for fresh episodes under the
  current policy, until the real-step budget is spent.
- with ``lockstep`` SAC waits while a refresh is outstanding and its rows go in once all have arrived, so a run
  is the same bit for bit however fast the robot, the link or the machine is.

The learner is warm-started from a simulation checkpoint (its agent and model; optionally its real buffer) or
starts fresh. Everything the service decides goes to CSV files in its directory, and its metrics against real
steps to ``metrics.csv`` and TensorBoard (``tb/``); its state is checkpointed every
round (``learner.pt``), and a restarted service re-ingests the rows its store holds beyond that checkpoint, so a
crash of either side loses no real data.
"""

from __future__ import annotations

import json
import logging
import math
import queue
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robodyna.config import to_dict
from robodyna.data.batch import Batch
from robodyna.data.store_reader import Transitions
from robodyna.learn.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from robodyna.learn.config import load_algo_config
from robodyna.learn.envs import episode_steps_for_env, make_env, obs_names_for_env, spec_for_env, task_fns_for_env
from robodyna.learn.learner import Learner
from robodyna.learn.logger import RunLogger
from robodyna.learn.select import task_scores
from robodyna.loop.drift import RealEpisode, actor_shift, rollout_signals
from robodyna.loop.final import (
    finite_starts,
    onnx_actor_state,
    opening_rows,
)
from robodyna.loop.publish import PolicyOut
from robodyna.loop.refresh import (
    DEFERRABLE,
    Decision,
    RefreshScheduler,
    append_csv,
    change_baseline,
    dynamics_changed,
    model_error_ratio,
    policy_age,
)
from robodyna.loop.service_config import ServiceConfig, warm_start_shapes

log = logging.getLogger(__name__)

SERVICE_STATE_VERSION = 1


class TrainerService(PolicyOut):
    """Receive real data from robots, learn from it with the :class:`Learner`, push signed policies.

    Args:
        robot: robot name (the learner is built for its nominal simulation's spec and observation layout).
        out: the service's directory (``store/`` real data, ``policies/`` every ONNX version, CSVs, ``learner.pt``).
        bind: ZeroMQ endpoint (``tcp://127.0.0.1:0``: a free port; written to ``out/endpoint``).
        keys_dir: trainer keys and the allowed robots' public keys.
        init_checkpoint: stage-1 simulation checkpoint to warm-start from (ignored when resuming).
        first_episodes: episodes the robot runs before any request (``controller.first_episodes``): with
            ``lockstep`` a fresh service waits for them as for a refresh.
    """

    def __init__(self, robot: str, out: str | Path, bind: str, keys_dir: str | Path, cfg: ServiceConfig,
                 init_checkpoint: str | Path | None = None, seed: int = 0, first_episodes: int = 0) -> None:
        from robodyna.identity import Identity
        from robodyna.transport.keys import TrainerKeys
        from robodyna.transport.trainer import TrainerServer

        self.cfg, self.robot = cfg, robot
        # the stage-1 checkpoint the learner starts from (None: it starts fresh), and goes back to at a detected change
        self.stage1 = None if init_checkpoint is None or cfg.warm_start == "fresh" else init_checkpoint
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "policies").mkdir(exist_ok=True)
        torch.set_num_threads(cfg.num_threads)
        env = make_env(robot)
        try:
            self.spec, self.obs_names = spec_for_env(env), obs_names_for_env(env)
            self.task_fns, self.episode_steps = task_fns_for_env(env), episode_steps_for_env(env)
            for key in ("selection_score", "validation_score"):
                if getattr(cfg, key) not in task_scores(self.task_fns):
                    raise ValueError(f"trainer.{key}: {getattr(cfg, key)} needs a task with an "
                                     f"end-effector-to-target distance; {robot}'s task has none")
        finally:
            env.close()
        # a model warm-started from simulation keeps the simulation data's standardisation: re-estimated from the
        # first few real episodes it voids the warm start (issue 15: in nominal "reality" the policy went from
        # 2.2 to 9.7 cm after the first refit; kept, 2.5 cm); the config's own overrides come after and win
        # each checkpoint is read once: the service's own state when resuming, else the stage-1 one to warm-start
        state_path = self.out / "learner.pt"
        saved = load_checkpoint(state_path, self.spec, self.obs_names) if state_path.exists() else None
        warm: dict[str, Any] | None = None
        keep: list[str] = []
        if self.stage1 is not None:
            if saved is not None:
                shaped = saved["learner"]
            else:
                shaped = warm = load_checkpoint(self.stage1, self.spec, self.obs_names)["learner"]
            keep = ["ensemble.normalizer=first_fit", *warm_start_shapes(shaped["config"])]
        algo = load_algo_config(cfg.algo, robot, [*keep, *cfg.algo_overrides, f"seed={seed}",
                                                  f"sac.num_threads={cfg.num_threads}"])
        # metrics.csv (+ tb/): the learner's own (model fits, SAC) and the service's real/, drift/, refresh/, policy/
        self.metrics = RunLogger(self.out, tensorboard=cfg.tensorboard)
        self.learner = Learner(algo, self.spec, self.obs_names, self.task_fns, self.episode_steps, name=robot,
                               logger=self.metrics)
        # no uniform exploration on the real robot, and the observation normaliser stays the simulation agent's
        # (the learner resets it when n_real reaches start_steps; 0 is never reached after a row)
        self.learner.start_steps = 0
        self.scheduler = RefreshScheduler(cfg.refresh, self.out / "refresh.csv")
        self.ingested: dict[str, int] = {}  # rows of each robot's store the learner has seen
        self.version_rows: dict[int, int] = {}  # real rows per policy version
        self.real_steps = 0
        self.round = 0
        self.fitted_error = float("nan")
        self.last_new_error = float("nan")
        self.new_errors: list[float] = []  # newest-data errors of robot-refitted models since the last change
        self.episodes: list[RealEpisode] = []
        # the first observation of every real episode (the start states validation and final selection score
        # from), kept as rows arrive instead of re-reading the store every round
        self._starts: list[np.ndarray] = []
        self._last_episode: dict[str, int] = {}  # per robot: the episode index of the last row seen
        self._partial: dict[str, list[Transitions]] = {}
        self.outstanding: dict[str, Any] | None = None  # the refresh request waiting for its data
        self.updates_at_export = 0
        self.pushed_version = -1
        # actor weights of the last pushed policies (for the averaged final one; refilled after a restart)
        self.recent_actors: list[dict[str, torch.Tensor]] = []
        self.deployed_actor: dict[str, torch.Tensor] | None = None  # the last pushed policy's actor weights
        # (updates, actor weights) of SAC's iterates since the last validation, one per update chunk
        # (``validation_candidates``; not checkpointed: a restarted trainer validates the iterates it made since)
        self.iterates: list[tuple[int, dict[str, torch.Tensor]]] = []
        self.rejected_in_a_row = 0  # rounds push validation rejected since the last push (not checkpointed)
        self.unconfirmed = {}  # pushed versions not answered yet (``PolicyOut._refused``; not checkpointed)
        self.done = False
        self._stop = threading.Event()
        self._sim_version = 0
        self._sim_fits = 0  # fits of the warm-start model; SAC waits for one more (a refit on this robot's data)
        self._sig_updates = -1
        self._sig_cache: tuple[tuple[int, ...], dict[str, float]] | None = None
        self._fresh_error = True  # the next newest-data error starts a new maximum
        if saved is not None:
            self._load(saved, state_path)
        elif warm is not None:
            self._warm_start(warm, str(self.stage1))
        self._catch_up()
        self._inbox: list[tuple[str, Transitions]] = []  # lockstep: rows received, not yet ingested
        if cfg.lockstep and self.real_steps == 0 and first_episodes > 0:  # the robot's first episodes, unasked
            self.outstanding = {"t": time.monotonic(), "reason": "first_episodes", "value": 0.0,
                                "episodes": first_episodes, "until": first_episodes * self.episode_steps}
            # (a robot that lost them, restarted, is asked for them after refresh.request_timeout_s)
        self.server = TrainerServer(bind, self.out / "store", TrainerKeys.load(keys_dir),
                                    expected=Identity.of(self.spec))

    # -- state ---------------------------------------------------------------------------------------------
    def _load_stage1(self, st: dict[str, Any]) -> None:
        """The stage-1 agent (actor, critics, optimiser moments) and model into the learner; the actor's freeze
        (``critic_warmup_updates``) counted from the agent's update count the checkpoint brings."""
        lr = self.learner
        lr.agent.load_state_dict(st["sac"])
        lr.agent.actor_frozen_until = 0
        lr.agent.freeze_actor(self.cfg.critic_warmup_updates)
        if lr.model is not None and st["model"] is not None:
            lr.model.load_state_dict(st["model"])

    def _warm_start(self, st: dict[str, Any], path: str | Path) -> None:
        lr = self.learner
        self._load_stage1(st)
        if self.cfg.warm_start == "agent_model_buffer":
            if st.get("real_buffer") is None:
                raise ValueError(f"{path} holds no real buffer (a stripped checkpoint): use warm_start agent_model")
            lr.real.load_state_dict(st["real_buffer"])
            lr.n_init = len(lr.real)
        lr.policy_version = self._sim_version = int(st["counters"]["policy_version"])
        self._sim_fits = lr.n_fits
        self._keep_actor(lr.policy_version)
        log.info("warm-started from %s (%s; simulation policy v%d)", path, self.cfg.warm_start, lr.policy_version)

    def _save(self) -> None:
        self.metrics.flush()
        save_checkpoint(self.out / "learner.pt", {
            "meta": self.learner.meta(), "learner": self.learner.state_dict(),
            "service": {"version": SERVICE_STATE_VERSION, "ingested": dict(self.ingested),
                        "version_rows": {str(k): v for k, v in self.version_rows.items()},
                        "real_steps": self.real_steps, "round": self.round, "fitted_error": self.fitted_error,
                        "updates_at_data": self.scheduler.updates_at_data,
                        "updates_at_defer": self.scheduler.updates_at_defer, "sim_version": self._sim_version,
                        "sim_fits": self._sim_fits, "actor_frozen_until": self.learner.agent.actor_frozen_until,
                        "updates_at_export": self.updates_at_export, "pushed_version": self.pushed_version,
                        "new_errors": list(self.new_errors)},
        })

    def _load(self, st: dict[str, Any], path: Path) -> None:
        self.learner.load_state_dict(st["learner"])
        sv = st["service"]
        if sv.get("version") != SERVICE_STATE_VERSION:
            raise ValueError(f"{path}: service state version {sv.get('version')!r}")
        self.ingested = {str(k): int(v) for k, v in sv["ingested"].items()}
        self.version_rows = {int(k): int(v) for k, v in sv["version_rows"].items()}
        self.real_steps, self.round = int(sv["real_steps"]), int(sv["round"])
        self.fitted_error, self._sim_version = float(sv["fitted_error"]), int(sv["sim_version"])
        self.scheduler.updates_at_data = int(sv["updates_at_data"])
        self.scheduler.updates_at_defer = int(sv.get("updates_at_defer", 0))  # absent before stop 54
        self._sim_fits = int(sv.get("sim_fits", 0))
        self.new_errors = [float(e) for e in sv.get("new_errors", [])]  # absent before stop 60
        self.learner.agent.freeze_actor(int(sv.get("actor_frozen_until", 0)) - self.learner.agent.n_updates)
        self.updates_at_export = int(sv["updates_at_export"])
        self.pushed_version = int(sv.get("pushed_version", -1))
        self._restore_deployed()
        log.info("resumed the trainer service at %d real steps, round %d, policy v%d", self.real_steps, self.round,
                 self.learner.policy_version)

    def _restore_deployed(self) -> None:
        """After a restart: the deployed policy's actor weights (what ``push_validation`` compares a new policy
        with) and, for an averaged final policy, the last pushed ones, read back from the ONNX files pushed."""
        lr = self.learner
        on_disk, refused = ([int(f.stem[len("policy_v"):]) for f in d.glob("policy_v*.onnx")]
                            for d in (self.out / "policies", self.out / "policies" / "refused"))
        if on_disk and max(on_disk) > max(self.pushed_version, lr.policy_version):
            # exported (and pushed, it follows at once) after the last checkpoint: a crash in between. It counts as
            # deployed, and no version number is used twice
            log.warning("policy_v%d.onnx is newer than the checkpoint (v%d): taken as the deployed policy",
                        max(on_disk), lr.policy_version)
            self.pushed_version = lr.policy_version = max(on_disk)
        if self.pushed_version in refused:  # refused after the last checkpoint: the robot runs the one before
            self.pushed_version = max((v for v in on_disk if v < self.pushed_version), default=-1)
        lr.policy_version = max([lr.policy_version, *refused])  # a refused version's number is not used again
        version = self.pushed_version if self.pushed_version >= 0 else self._sim_version
        n = self.cfg.final_average_versions
        recent = range(max(self._sim_version + 1, self.pushed_version - n), self.pushed_version + 1) \
            if self.pushed_version >= 0 and n else range(0)
        template = lr.agent.actor.state_dict()
        states = {}  # each version's file read once (the deployed one is the last of the recent ones)
        for v in {*recent, version}:
            path = self.out / "policies" / f"policy_v{v}.onnx"
            states[v] = onnx_actor_state(path, template) if path.is_file() else None
        self.deployed_actor = states[version]
        if self.deployed_actor is None:
            log.warning("resumed without policies/policy_v%d.onnx: the next policy is pushed unvalidated", version)
        self.recent_actors = [st for v in recent if (st := states[v]) is not None]

    def _catch_up(self) -> None:
        """Ingest rows the store holds beyond the checkpoint (persisted and acked before a crash)."""
        from robodyna.data.store import EpisodeStore

        root = self.out / "store"
        if not root.is_dir():
            return
        for d in sorted(p for p in root.iterdir() if (p / "meta.json").is_file()):
            tr = EpisodeStore(d).read(check_finite=False)
            have = self.ingested.get(d.name, 0)
            if have:  # rows the checkpoint holds: their episode starts (the rows beyond go through _ingest)
                self._note_starts(d.name, tr.episode_index[:have], tr.batch.obs[:have])
            if len(tr) > have:
                log.info("robot %s: ingesting %d stored rows the checkpoint had not seen", d.name, len(tr) - have)
                cols = tr.columns()
                self._ingest(d.name, Transitions.from_columns({k: v[have:] for k, v in cols.items()}))

    # -- data in -------------------------------------------------------------------------------------------
    def _ingest(self, robot: str, tr: Transitions) -> None:
        lr = self.learner
        n = len(tr)
        if n == 0:
            return
        self.ingested[robot] = self.ingested.get(robot, 0) + n
        self._note_starts(robot, tr.episode_index, tr.batch.obs)
        vers, counts = np.unique(tr.extras["policy_version"], return_counts=True)
        for v, c in zip(vers.tolist(), counts.tolist()):
            self.version_rows[int(v)] = self.version_rows.get(int(v), 0) + int(c)
        trajs = _split_episodes(tr.batch, tr.episode_index)
        if lr.model is not None and lr.model.fitted:  # error on the newest data, before the model sees it
            err = lr.model_error(trajs, horizon=1, seed=lr.n_real)
            if err and np.isfinite(err[0]):  # the largest since the last refresh decision: a refit within the
                # same drain must not hide what the newest data showed the model before it trained on it
                self.last_new_error = err[0] if self._fresh_error else max(self.last_new_error, err[0])
                self._fresh_error = False
                refitted = lr.n_fits > self._sim_fits
                base = change_baseline(self.fitted_error, self.new_errors, self.cfg.refresh.change_baseline_window)
                if dynamics_changed(err[0], base, refitted, self.cfg.refresh.forget_on_change_ratio):
                    self._forget(err[0], base)
                elif refitted:  # the error level of new episodes for the change detector (a model fitted here)
                    keep = max(1, self.cfg.refresh.change_baseline_window)
                    self.new_errors = [*self.new_errors, float(err[0])][-keep:]
        fits = lr.n_fits
        lr.ingest(tr.batch)
        self.real_steps += n
        if lr.n_fits != fits or not np.isfinite(self.fitted_error):
            self._measure_fitted_error()
        self._episodes(robot, tr)

    def _forget(self, new_error: float, baseline: float) -> None:
        """``refresh.forget_on_change_ratio``: the learner forgets the rows from before a dynamics change and waits,
        as on a new robot, for a model refit on the rows after it (the store keeps every row)."""
        n = self.learner.forget_real()
        self.new_errors = []  # the error level of the robot it was
        log.warning("dynamics change at %d real steps (newest-data error %.3g = %.1f x the error level %.3g, fitted "
                    "%.3g): the learner forgot %d real rows from before it (kept in the store)", self.real_steps,
                    new_error, new_error / baseline, baseline, self.fitted_error, n)
        restart = False
        if self.cfg.refresh.restart_on_change and self.stage1 is not None:
            restart = True
            self._load_stage1(load_checkpoint(self.stage1, self.spec, self.obs_names)["learner"])
            self._measure_fitted_error()
            log.warning("dynamics change: agent and model restarted from %s", self.stage1)
        elif self.cfg.refresh.restart_on_change:  # the learner started fresh: no stage-1 agent to go back to
            log.warning("dynamics change: no stage-1 checkpoint to restart from (a fresh start); the agent "
                        "and model go on, on the rows after the change")
        self._sim_fits = self.learner.n_fits
        self.metrics.scalars(self.real_steps, {"drift/forgotten_rows": n, "drift/restarted": float(restart)})

    def _note_starts(self, robot: str, episode_index: np.ndarray, obs: np.ndarray) -> None:
        first = opening_rows(episode_index, self._last_episode.get(robot))
        if len(first):
            self._starts.append(np.asarray(obs[first], np.float32))
            self._last_episode[robot] = int(episode_index[-1])

    def episode_starts(self) -> np.ndarray:
        """The first observation of every real episode the service has (finite ones; every robot's)."""
        return finite_starts(self._starts, len(self.obs_names))

    def _measure_fitted_error(self) -> None:
        """The model's validation error: the mean held-out one-step MSE of its elites from its last fit (raw units,
        the observation deltas and the reward)."""
        model = self.learner.model
        if model is None or not model.fitted:
            return
        ens = self.learner._ensemble()
        self.fitted_error = float(np.mean(np.asarray(ens.val_mse)[np.asarray(ens.elites)]))

    def _episodes(self, robot: str, tr: Transitions) -> None:
        """Close complete episodes (their rows may come in several batches); log their real return, distance."""
        parts = self._partial.setdefault(robot, [])
        parts.append(tr)
        allr = Transitions.concat(parts, tr.batch.obs_dim, tr.batch.act_dim) if len(parts) > 1 else tr
        b, ep = allr.batch, allr.episode_index
        ends = np.flatnonzero(b.terminated | b.truncated)
        s = 0
        for e in ends.tolist():
            sl = slice(s, e + 1)
            if ep[s] != ep[e]:  # an episode cut short by a restart: its rows are kept, not scored
                s = e + 1
                continue
            last = b.next_obs[e: e + 1]
            dist = float(self.task_fns.distance(last)[0])
            row = RealEpisode(int(allr.extras["policy_version"][s]), float(b.reward[sl].sum()), dist,
                           float(self.task_fns.success(last)[0]), b.take(slice(s, s + 1)), e + 1 - s)
            self.episodes.append(row)
            append_csv(self.out / "real_episodes.csv", {
                "robot": robot, "episode": int(ep[s]), "policy_version": row.version, "return": row.ret,
                "final_distance_m": row.final_distance_m, "success": row.success, "steps": row.steps,
                "real_steps": self.real_steps, "round": self.round, "wall_s": time.time()})
            self.metrics.scalars(self.real_steps, {"real/return": row.ret, "real/final_distance_m": dist,
                                                   "real/success": row.success, "real/policy_version": row.version})
            s = e + 1
        rest = allr.columns()
        self._partial[robot] = [Transitions.from_columns({k: v[s:] for k, v in rest.items()})] if s < len(b) else []

    def _drain(self, timeout: float) -> int:
        """Ingest the rows received (waiting up to ``timeout`` for some); returns how many were ingested. With
        ``lockstep`` the rows of an outstanding request wait until all of them are here, then go in as one piece
        per robot (the model's error on the newest data is then measured on the same rows however they arrived)."""
        got: list[tuple[str, Transitions]] = []
        try:
            got.append(self.server.batches.get(timeout=timeout))
            while True:
                got.append(self.server.batches.get_nowait())
        except queue.Empty:
            pass
        if not self.cfg.lockstep:
            for robot, tr in got:
                self._ingest(robot, tr)
            return sum(len(tr) for _, tr in got)
        self._inbox += got
        o, pending = self.outstanding, sum(len(tr) for _, tr in self._inbox)
        if not pending or (o is not None and self.real_steps + pending < o["until"]):
            return 0
        inbox, self._inbox = self._inbox, []
        for robot in dict.fromkeys(r for r, _ in inbox):
            parts = [tr for r, tr in inbox if r == robot]
            b = parts[0].batch
            self._ingest(robot, parts[0] if len(parts) == 1 else Transitions.concat(parts, b.obs_dim, b.act_dim))
        return pending

    # -- signals -------------------------------------------------------------------------------------------
    def signals(self) -> dict[str, float]:
        lr = self.learner
        vs = np.array(list(self.version_rows), np.int64)
        cs = np.array([self.version_rows[v] for v in self.version_rows], np.int64)
        key = (lr.n_updates, lr.n_real, lr.n_fits, lr.policy_version, self.pushed_version, len(self.episodes))
        h = self.cfg.return_horizon or self.episode_steps
        if self._sig_cache is None or self._sig_cache[0] != key:  # model rollouts: once per state of learning
            self._sig_cache = (key, {**rollout_signals(lr, self.task_fns, self.episodes, h, self.deployed_actor),
                                     "policy_shift": actor_shift(lr, self.deployed_actor)})
        rolled = self._sig_cache[1]
        return {"model_error_ratio": model_error_ratio(self.last_new_error, self.fitted_error),
                "state_novelty": rolled["state_novelty"], "policy_shift": rolled["policy_shift"],
                "policy_age": policy_age(vs, cs, lr.policy_version), "return_gap": rolled["return_gap"]}

    def _log_signals(self) -> None:
        lr = self.learner
        self._sig_updates = lr.n_updates
        sig = self.signals()
        self.metrics.scalars(self.real_steps, {**{f"drift/{k}": v for k, v in sig.items()},
                                               "drift/new_error": self.last_new_error,
                                               "drift/fitted_error": self.fitted_error})
        append_csv(self.out / "signals.csv", {"real_steps": self.real_steps, "updates": lr.n_updates,
                                                "policy_version": lr.policy_version, **sig,
                                                "new_error": self.last_new_error, "fitted_error": self.fitted_error,
                                                "fits": lr.n_fits, "wall_s": time.time()})

    def _connected(self) -> list[str]:
        return [r for r, s in self.server.status()["robots"].items() if s["connected"]]

    # -- the training thread ---------------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> dict[str, Any]:
        """Serve until the real-step budget is spent and learnt from (or :meth:`stop`); returns a summary."""
        self.server.start()
        (self.out / "endpoint").write_text(self.server.endpoint)
        log.info("trainer service listening on %s", self.server.endpoint)
        cfg, lr = self.cfg, self.learner
        t_wait = time.monotonic()
        try:
            while not self._stop.is_set():
                got = self._drain(0.0 if lr.updates_allowed > lr.n_updates and not self._awaiting_rows() else 0.05)
                if got:
                    self._data_arrived()
                may = not self._awaiting_rows() and self._may_update()  # again: the drain may have ended the wait
                if may:
                    self._anneal_lr()
                did = lr.update(cfg.update_chunk) if may else 0
                if did:
                    self._note_iterate()
                self._policy_results()
                if (got or lr.n_updates - self._sig_updates >= 5 * cfg.update_chunk) and self.real_steps:
                    self._log_signals()
                if cfg.export_every_updates and did and lr.n_updates - self.updates_at_export >= \
                        cfg.export_every_updates and self.real_steps < cfg.real_step_budget:
                    self.export_and_push("every_updates")
                cap = lr.updates_allowed <= lr.n_updates or not may
                if self.real_steps >= cfg.real_step_budget and cap and self.outstanding is None:
                    self.export_and_push("final")
                    self.export_final_and_push()
                    self.done = True
                    break
                robots = self._connected()
                if not robots:
                    if time.monotonic() - t_wait > cfg.robot_wait_s:
                        raise RuntimeError(f"no robot connected within {cfg.robot_wait_s:.0f} s")
                    continue
                t_wait = time.monotonic()
                if self.outstanding is not None:
                    if time.monotonic() - self.outstanding["t"] > cfg.refresh.request_timeout_s:
                        log.warning("refresh request of round %d unanswered for %.0f s: sending it again",
                                    self.round, cfg.refresh.request_timeout_s)
                        self._request(self.outstanding["reason"], self.outstanding["value"], again=True)
                    continue
                if self.real_steps >= cfg.real_step_budget or self.real_steps == 0:
                    continue  # budget spent: learn from what there is; no data yet: the robot's first episodes
                d = self.scheduler.decide(lr.n_updates, self.signals(), cap)
                if d.refresh:
                    verdict = self._pre_validate(d)
                    if verdict is not False:  # False: deferred, SAC goes on from the deployed weights
                        self._request(d.reason, d.value, validated=verdict is True)
        finally:
            self._save()
            self._policy_results()
            summary = self.summary()
            (self.out / "summary.json").write_text(json.dumps(summary, indent=1))
            self.metrics.close()
            self.server.stop()
        return summary

    def _anneal_lr(self) -> None:
        """``lr_final_frac``: SAC's step size for the next updates, linear in the updates done of the budget's."""
        f, lr = self.cfg.lr_final_frac, self.learner
        if f is None:
            return
        total = max(1, lr.cfg.updates_per_step * self.cfg.real_step_budget)
        lr.agent.set_lr(lr.cfg.sac.lr * (1.0 - (1.0 - f) * min(1.0, lr.n_updates / total)))

    def _awaiting_rows(self) -> bool:
        """``lockstep``: SAC waits for the outstanding request's rows."""
        return self.cfg.lockstep and self.outstanding is not None

    def _may_update(self) -> bool:
        """SAC may update (``updates_wait_for_model``): once the model has been refitted on this robot's data and
        the model buffer holds a batch (rollouts of the warm simulation model alone do not count)."""
        lr = self.learner
        return (not self.cfg.updates_wait_for_model or lr.model_buf is None
                or (lr.n_fits > self._sim_fits and len(lr.model_buf) >= lr.cfg.sac.batch_size))

    def _data_arrived(self) -> None:
        lr = self.learner
        self.scheduler.fresh_data(lr.n_updates)
        o = self.outstanding
        if o is not None and self.real_steps >= o["until"]:
            self.outstanding = None
            self._save()

    def _new_policy(self) -> bool:
        lr = self.learner
        return lr.policy_version != self.pushed_version or lr.n_updates > self.updates_at_export

    def _pre_validate(self, d: Decision) -> bool | None:
        """``refresh.defer_rejected``: push validation of the round's policy before a refresh that a policy-change
        signal triggered. True: it passed (push it); False: rejected, the refresh waits (``RefreshScheduler.defer``);
        None: not validated here (the refresh validates as usual)."""
        rc = self.cfg.refresh
        if not rc.defer_rejected or rc.mode != "drift" or d.reason not in DEFERRABLE or not self._new_policy():
            return None
        if self._passes_validation():
            return True
        self.scheduler.defer(self.learner.n_updates)
        self.metrics.scalars(self.real_steps, {f"refresh/deferred_{d.reason}": d.value})
        log.info("refresh (%s = %.3g) deferred: validation rejected the round's policy; training on", d.reason,
                 d.value)
        return False

    def _request(self, reason: str, value: float, again: bool = False, validated: bool = False) -> None:
        cfg, lr = self.cfg, self.learner
        if not again:
            self.round += 1
            sig = self.signals()  # as the decision saw them (a push resets the policy shift and ages the data)
            if self._new_policy() and (validated or self._passes_validation()):
                self.export_and_push(f"round {self.round}")
            left = cfg.real_step_budget - self.real_steps
            eps = max(1, min(cfg.refresh.refresh_episodes, math.ceil(left / self.episode_steps)))
            self.outstanding = {"t": time.monotonic(), "reason": reason, "value": value, "episodes": eps,
                                "until": self.real_steps + eps * self.episode_steps}
            row = {"round": self.round, "real_steps": self.real_steps, "updates": lr.n_updates,
                   "policy_version": lr.policy_version, "reason": reason, "value": value, "episodes": eps,
                   **sig, "fitted_error": self.fitted_error, "new_error": self.last_new_error,
                   "wall_s": time.time()}
            self.scheduler.record(row)
            self.metrics.scalars(self.real_steps, {"refresh/round": self.round, f"refresh/{reason}": value})
            self._fresh_error = True
            log.info("refresh round %d: %d episode(s) (%s = %.3g)", self.round, eps, reason, value)
        else:
            self.outstanding = {**(self.outstanding or {}), "t": time.monotonic()}
            self.metrics.scalars(self.real_steps, {"refresh/resent": self.round})  # report.md counts these
        self.server.request_refresh(None, int(self.outstanding["episodes"]), "episodes")
        self._save()

    def summary(self) -> dict[str, Any]:
        lr = self.learner
        return {"done": self.done, "real_steps": self.real_steps, "rounds": self.round,
                "policy_version": lr.policy_version, "sim_policy_version": self._sim_version,
                "counters": lr.counters(), "ingested": dict(self.ingested), "config": to_dict(self.cfg)}


def _split_episodes(b: Batch, episode_index: np.ndarray) -> list[Batch]:
    if len(b) == 0:
        return []
    bounds = [*np.flatnonzero(opening_rows(episode_index)).tolist(), len(b)]
    return [b.take(slice(s, e)) for s, e in zip(bounds[:-1], bounds[1:]) if e > s]


def read_service_checkpoint(path: str | Path) -> dict[str, Any]:
    """The service's saved state (tests, reports)."""
    return read_checkpoint(path)

