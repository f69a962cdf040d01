"""The env-free learner: MBPO, classic Dyna and model-free SAC as presets of ONE learning core.

The lecture's picture of Dyna-style RL is three processes sharing buffers: data collection, model training, policy
training. :class:`Learner` is the last two — it never sees an env. A collector (the simulator loop of
:func:`robodyna.learn.mbpo.train`, or the trainer service fed by robots over the network) hands it real
transitions with :meth:`Learner.ingest` in chunks of any size and asks for SAC updates with
:meth:`Learner.update`. What MBPO (Janner et al. 2019, Alg. 2) does between real steps becomes due as counters
cross thresholds, never on ``step % N``:

- every ``model_train_every`` real transitions: fit the ensemble on the real buffer only (§4; the model never
  trains on its own rollouts), and evict the model buffer per ``model_buffer_eviction``;
- every ``rollout_period`` real transitions: branch ``rollout_batch`` k-step rollouts from real start states with
  the latest policy and a random ensemble member per step into the model buffer (§4, App. C);
- SAC updates on batches mixing ``real_ratio`` real rows (§4), capped at ``updates_per_step`` per real transition
  after ``start_steps`` (the update-to-data ratio), so a trainer that receives data in bursts neither starves nor
  overfits.

A chunk of rows is split at those thresholds, so chunks of 1, 7 or 500 rows fit and roll out on exactly the data
the same rows one by one would. Rows with a non-finite value are dropped and counted, never stored.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robodyna.config import to_dict
from robodyna.data.batch import Batch
from robodyna.learn.action_filter import policy_filter_for
from robodyna.learn.buffers import ReplayBuffer, sample_mixed
from robodyna.learn.config import AlgoConfig
from robodyna.learn.coords import CoordinateModel
from robodyna.learn.ensemble import DynamicsEnsemble
from robodyna.learn.logger import RunLogger
from robodyna.learn.relabel import relabel_goals, supports_goal_relabel
from robodyna.learn.rollouts import branched_rollout, k_step_model_error, real_obs_bounds
from robodyna.learn.sac import SAC, check_finite
from robodyna.learn.symmetry import augment_symmetry, supports_symmetry
from robodyna.spec import RobotSpec

log = logging.getLogger(__name__)

LEARNER_STATE_VERSION = 1


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


def check_task_options(cfg: AlgoConfig, task_fns: Any, name: str) -> None:
    """Refuse options that need task knowledge the task does not declare (goals, a symmetry), naming the key."""
    goals, symmetry = supports_goal_relabel(task_fns), supports_symmetry(task_fns)
    for key, supported, missing in (("goal_relabel_ratio", goals, "has no known goal distribution to relabel with"),
                                    ("rollout_goal_relabel", goals, "has no known goal distribution to relabel with"),
                                    ("symmetry_augment_ratio", symmetry,
                                     "declares no symmetry of its dynamics and reward")):
        if getattr(cfg, key) > 0 and not supported:
            raise ValueError(f"{key}={getattr(cfg, key)}: {name} {missing} (set {key}=0)")


class Learner:
    """SAC agent, dynamics model, real and model buffers, RNGs and counters; no env.

    ``cfg`` may state periods in episodes or seconds (``"5 episodes"``); they are resolved to real transitions
    with ``episode_steps`` and the spec's control rate. ``rng`` is the generator every random draw of the learner
    uses (a simulator collector may share it so that a seeded run is reproducible end to end).
    """

    def __init__(self, cfg: AlgoConfig, spec: RobotSpec, obs_names: list[str], task_fns: Any,
                 episode_steps: int, name: str | None = None, rng: np.random.Generator | None = None,
                 logger: RunLogger | None = None) -> None:
        self.name = name or spec.name
        self.cfg = cfg = cfg.in_steps(episode_steps, spec.control_hz).for_task(supports_goal_relabel(task_fns))
        self.spec, self.obs_names, self.task_fns = spec, list(obs_names), task_fns
        self.episode_steps = int(episode_steps)
        check_task_options(cfg, task_fns, self.name)
        obs_dim, act_dim = len(self.obs_names), spec.act_dim
        low, high = spec.action_low_array.astype(np.float32), spec.action_high_array.astype(np.float32)
        self.rng = rng if rng is not None else np.random.default_rng(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.agent = SAC(obs_dim, act_dim, low, high, cfg.sac, seed=cfg.seed)
        if cfg.policy_filter:
            self.agent.set_action_filter(policy_filter_for(task_fns, spec))
        self.model = make_model(cfg, self.name, task_fns, obs_dim, act_dim) if cfg.use_model else None
        self.real = ReplayBuffer(cfg.real_buffer_size, obs_dim, act_dim, name="real buffer")
        self.k = cfg.rollout_length(0)
        self.model_buf = (ReplayBuffer(cfg.model_buffer_size(self.k), obs_dim, act_dim, name="model buffer")
                          if self.model is not None else None)
        self.logger = logger
        self.run_id = uuid.uuid4().hex[:12]
        self.policy_version = 0
        # counters: real transitions stored (init data excluded), dropped, warm-start rows, SAC updates, rounds
        self.n_real = 0
        self.n_dropped = 0
        self.n_init = 0
        self.n_updates = 0
        self.n_rollout_rounds = 0
        self.start_steps = cfg.steps("start_steps")
        self.last_stats: dict[str, torch.Tensor] = {}

    # ---------------------------------------------------------------------------------------------- data in
    def load_init_data(self, batch: Batch, source: str = "init data") -> int:
        """Warm start from recorded transitions (not counted as new real data): they fill the real buffer, set
        the observation normaliser, fit the model once, and shorten uniform exploration by as many rows."""
        before = len(self.real)
        self.real.add(batch)
        n = len(self.real) - before
        self.n_init += n
        self.start_steps = max(0, self.cfg.steps("start_steps") - self.n_init)
        if self.cfg.sac.normalize_obs and n > 1:
            data = self.real.all()
            self.agent.set_obs_normalizer(data.obs.mean(0), data.obs.std(0))
        if self.model is not None and n >= self.cfg.min_real_for_model:
            rep = self.model.fit(self.real.all(), self.rng)
            log.info("model warm-started on %d transitions from %s (%d epochs)", n, source, rep.epochs)
        return n

    def ingest(self, batch: Batch) -> int:
        """Store real transitions (any number of rows) and do the work whose thresholds they cross, in order.

        Returns the number of rows stored; rows with a non-finite value are dropped and counted (``n_dropped``).
        """
        if batch.obs_dim != len(self.obs_names) or batch.act_dim != self.spec.act_dim:
            raise ValueError(f"{self.name}: transitions have obs {batch.obs_dim}/action {batch.act_dim} columns, "
                             f"the learner expects {len(self.obs_names)}/{self.spec.act_dim}")
        mask = batch.finite_mask()
        if not mask.all():
            bad = int((~mask).sum())
            self.n_dropped += bad
            log.warning("%s: dropped %d transition(s) with non-finite values (%d in total)", self.name, bad,
                        self.n_dropped)
            batch = batch.take(mask)
        done, n = 0, len(batch)
        while done < n:
            take = min(n - done, self._rows_to_next_threshold())
            self.real.add(batch.take(slice(done, done + take)))
            self.n_real += take
            done += take
            self._due_work()
        return n

    def _rows_to_next_threshold(self) -> int:
        c, s = self.cfg, self.n_real
        every = c.steps("model_train_every")
        nxt = [every - s % every, c.rollout_period - s % c.rollout_period]
        if s < self.start_steps:
            nxt.append(self.start_steps - s)
        return min(nxt)

    def _due_work(self) -> None:
        """What becomes due when ``n_real`` has just reached its value: normaliser, refit, rollout round."""
        c, s = self.cfg, self.n_real
        if s == self.start_steps and c.sac.normalize_obs:
            data = self.real.all()
            self.agent.set_obs_normalizer(data.obs.mean(0), data.obs.std(0))
        if self.model is not None and s % c.steps("model_train_every") == 0 and len(self.real) >= c.min_real_for_model:
            self.fit_model()
        if self.model is not None and self.model.fitted and s % c.rollout_period == 0:
            self.rollout_round()

    # ---------------------------------------------------------------------------------------------- model
    def fit_model(self) -> None:
        """Fit the ensemble on the real buffer only (MBPO §4) and evict the model buffer per the config."""
        assert self.model is not None
        rep = self.model.fit(self.real.all(), self.rng)
        self._log({"model/epochs": rep.epochs, "model/fit_seconds": rep.seconds, "model/train_loss": rep.train_loss,
                   **{f"model/val_mse/{i}": v for i, v in enumerate(rep.val_mse)}})
        if self.logger is not None:
            self.logger.text(self.n_real, "model/elites", " ".join(map(str, rep.elites)))
        if self.cfg.model_buffer_eviction == "flush_on_refit":
            assert self.model_buf is not None
            self.model_buf.clear()

    def forget_real(self) -> int:
        """Forget the real rows held so far and the model rows branched from them (after a dynamics change: they
        describe another robot); counters and the model's and agent's weights stay. Returns the rows forgotten."""
        n = len(self.real)
        self.real.clear()
        if self.model_buf is not None:
            self.model_buf.clear()
        return n

    def rollout_round(self) -> Batch:
        """Branch ``rollout_batch`` k-step rollouts from real start states with the latest policy (MBPO §4) into
        the model buffer (FIFO holding ``model_retain_epochs`` epochs of rounds); returns the rollout batch."""
        assert self.model is not None and self.model_buf is not None
        c, rng = self.cfg, self.rng
        self.k = c.rollout_length(self.n_real / c.steps("epoch_length"))
        self.model_buf.resize(c.model_buffer_size(self.k))
        start = self.real.sample(c.rollout_batch, rng)
        if c.rollout_goal_relabel > 0:  # branch towards goals the robot has not been given yet
            start = relabel_goals(start, self.task_fns, c.rollout_goal_relabel, rng)
        bounds = None if c.rollout_obs_margin is None else real_obs_bounds(self.real, c.rollout_obs_margin)
        ro_stats: dict[str, Any] = {}
        rollout = branched_rollout(self.model, start, self.k, self.task_fns, rng, policy=self.agent.act,
                                   buffer_actions=c.rollout_actions == "buffer", obs_bounds=bounds, stats=ro_stats,
                                   uncertainty_penalty=c.rollout_uncertainty_penalty, max_std=c.rollout_max_std,
                                   constrain=c.rollout_constraints)
        self.model_buf.add(rollout)
        self.n_rollout_rounds += 1
        self._log({"rollout/k": self.k, "rollout/transitions": len(rollout), "model_buffer/size": len(self.model_buf),
                   "rollout/out_of_bounds": ro_stats["out_of_bounds"], "rollout/mean_std": ro_stats["mean_std"],
                   "rollout/uncertain": ro_stats["uncertain"], "model_buffer/rejected": self.model_buf.rejected})
        return rollout

    @property
    def n_fits(self) -> int:
        return 0 if self.model is None else int(self._ensemble().n_fits)

    def _ensemble(self) -> DynamicsEnsemble:
        assert self.model is not None
        return self.model.ensemble if isinstance(self.model, CoordinateModel) else self.model

    def model_error(self, trajectories: list[Batch], horizon: int | None = None, seed: int = 0) -> list[float]:
        """Open-loop 1..h-step observation error of the model on real trajectories (empty without a model)."""
        if self.model is None or not self.model.fitted:
            return []
        h = horizon or self.cfg.model_error_horizon
        return [float(e) for e in k_step_model_error(self.model, trajectories, h, np.random.default_rng(seed))]

    # ---------------------------------------------------------------------------------------------- SAC
    @property
    def updates_allowed(self) -> int:
        """SAC updates the update-to-data cap allows so far: ``updates_per_step`` per real transition from the
        first transition at or after ``start_steps`` on."""
        first = max(self.start_steps, 1)
        return self.cfg.updates_per_step * max(0, self.n_real - first + 1)

    def update(self, n: int | None = None) -> int:
        """Up to ``n`` SAC updates (default: all the cap allows) on batches mixing real and model rows (MBPO §4);
        returns how many ran. Batches are drawn ``updates_per_step`` at a time (one draw per group)."""
        c = self.cfg
        todo = self.updates_allowed - self.n_updates
        if n is not None:
            todo = min(todo, n)
        bs, group, done = c.sac.batch_size, max(1, c.updates_per_step), 0
        while done < todo:
            g = min(group, todo - done)
            # model rows only once the model buffer holds at least a batch (never overfit a handful of rows)
            ratio = c.real_ratio if self.model_buf is not None and len(self.model_buf) >= bs else 1.0
            batches = sample_mixed(self.real, self.model_buf, bs, ratio, self.rng, n_batches=g)
            if c.ratio("goal_relabel_ratio") > 0:
                batches = relabel_goals(batches, self.task_fns, c.ratio("goal_relabel_ratio"), self.rng,
                                        c.ratio("achieved_goal_ratio"))
            if c.symmetry_augment_ratio > 0:
                batches = augment_symmetry(batches, self.task_fns, c.symmetry_augment_ratio, self.rng)
            for i in range(g):
                self.last_stats = self.agent.update(batches.take(slice(i * bs, (i + 1) * bs)))
            done += g
            self.n_updates += g
            check_finite(self.last_stats, c.max_abs_q, f"{self.name} after {self.n_real} real transitions")
        return done

    def act(self, obs: np.ndarray, deterministic: bool = False) -> np.ndarray:
        """The current policy's action (stochastic draws use the learner's generator)."""
        return self.agent.act(obs, deterministic=deterministic) if deterministic else self.agent.act(obs, self.rng)

    # ---------------------------------------------------------------------------------------------- out
    def export(self, path: str | Path, version: int | None = None) -> Path:
        """Write the deterministic policy as ONNX with the next integer version (or ``version``)."""
        from robodyna.learn.export import export_policy

        v = self.policy_version + 1 if version is None else int(version)
        out = export_policy(self.agent, self.spec, self.obs_names, path, policy_version=v, run_id=self.run_id)
        self.policy_version = v
        return out

    def counters(self) -> dict[str, int]:
        return {"real": self.n_real, "dropped": self.n_dropped, "init": self.n_init, "updates": self.n_updates,
                "fits": self.n_fits, "rollout_rounds": self.n_rollout_rounds, "policy_version": self.policy_version}

    def _log(self, values: dict[str, Any]) -> None:
        if self.logger is not None:
            self.logger.scalars(self.n_real, values)

    def meta(self) -> dict[str, Any]:
        """Identity and provenance stored with the learner's state (robodyna.identity reads it)."""
        return {"robot_spec": self.spec.to_json(), "obs_names": self.obs_names, "env": self.name,
                "algo": self.cfg.algo, "run_id": self.run_id, "episode_steps": self.episode_steps}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit (agent, model, buffers, RNGs, counters)."""
        return {
            "version": LEARNER_STATE_VERSION, "config": to_dict(self.cfg), "counters": self.counters(),
            "start_steps": self.start_steps, "k": self.k, "run_id": self.run_id,
            "sac": self.agent.state_dict(), "model": self.model.state_dict() if self.model is not None else None,
            "real_buffer": self.real.state_dict(),
            "model_buffer": self.model_buf.state_dict() if self.model_buf is not None else None,
            "rng": self.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, st: dict[str, Any]) -> None:
        if st.get("version") != LEARNER_STATE_VERSION:
            raise ValueError(f"learner state version {st.get('version')!r}, expected {LEARNER_STATE_VERSION}")
        if (st["model"] is None) != (self.model is None):
            raise ValueError(f"learner state {'has no' if st['model'] is None else 'has a'} dynamics model, "
                             f"this {self.cfg.algo} learner {'needs one' if self.model is not None else 'has none'}")
        self.agent.load_state_dict(st["sac"])
        if self.model is not None:
            assert self.model_buf is not None
            self.model.load_state_dict(st["model"])
            self.model_buf.load_state_dict(st["model_buffer"])
        self.real.load_state_dict(st["real_buffer"])
        self.rng.bit_generator.state = st["rng"]
        torch.set_rng_state(st["torch_rng"])
        cnt = st["counters"]
        self.n_real, self.n_dropped, self.n_init = int(cnt["real"]), int(cnt["dropped"]), int(cnt["init"])
        self.n_updates, self.n_rollout_rounds = int(cnt["updates"]), int(cnt["rollout_rounds"])
        self.policy_version = int(cnt["policy_version"])
        self.start_steps, self.k, self.run_id = int(st["start_steps"]), int(st["k"]), str(st["run_id"])
