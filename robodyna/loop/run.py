"""``robodyna loop``: from "trained in simulation" to "adapted on the real robot", with a report.

Stage 1: a policy and a model trained in nominal simulation (:func:`robodyna.learn.mbpo.train`), or the checkpoint
the config names. Stage 2: the trainer service (:mod:`robodyna.loop.trainer`) and the controller
(``robodyna controller --trainer ...``) as separate processes on a CURVE-secured ZeroMQ link (loopback; keys
generated into the run directory), rounds until the real-step budget is spent. Then the sim-only and the adapted
policy are evaluated on the "real" robot (the reality profile) and ``report.md`` is written.

Either side may crash: a controller that exits early is restarted on its store (the link resends what the
trainer has not acknowledged), a trainer that exits early is restarted from its checkpoint and store;
``--resume RUN_DIR`` continues a loop that stopped (the orchestrator itself crashing included).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from robodyna.config import load_config, read_yaml, save_config
from robodyna.lifetime import child_env
from robodyna.loop.config import LoopConfig
from robodyna.paths import configs_root

log = logging.getLogger(__name__)

MAX_RESTARTS = 5


def _cli() -> list[str]:
    return [sys.executable, "-m", "robodyna.cli.main", "-v"]


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    return child_env({**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})


def repo_path(path: str) -> Path:
    """A path a config names (a checkpoint): absolute as given, else relative to the repository root."""
    p = Path(path)
    return p if p.is_absolute() else configs_root().parent / p


class LoopRun:
    """One loop run in ``run_dir`` (see the module docstring)."""

    def __init__(self, cfg: LoopConfig, run_dir: str | Path) -> None:
        self.cfg, self.run_dir = cfg, Path(run_dir)
        self.tdir, self.cdir = self.run_dir / "trainer", self.run_dir / "controller"
        self.keys = self.run_dir / "keys"
        self.trainer: subprocess.Popen[bytes] | None = None
        self.controller: subprocess.Popen[bytes] | None = None
        self.reality = cfg.reality
        self.events: list[dict[str, Any]] = []

    @classmethod
    def create(cls, cfg: LoopConfig, run_dir: str | Path) -> LoopRun:
        rd = Path(run_dir)
        if (rd / "config.yaml").exists():
            raise FileExistsError(f"{rd} already holds a loop run; --resume {rd} continues it")
        rd.mkdir(parents=True, exist_ok=True)
        save_config(cfg, rd / "config.yaml")
        return cls(cfg, rd)

    @classmethod
    def resume(cls, run_dir: str | Path) -> LoopRun:
        rd = Path(run_dir)
        if not (rd / "config.yaml").is_file():
            raise FileNotFoundError(f"{rd}: no loop run to resume (config.yaml missing)")
        return cls(load_config(LoopConfig, read_yaml(rd / "config.yaml"), source=str(rd / "config.yaml")), rd)

    # -- stage 1 ---------------------------------------------------------------------------------------------
    def stage1(self) -> Path:
        """The simulation checkpoint (trained here unless the config names one) and the sim-only ONNX policy."""
        c = self.cfg.stage1
        if c.checkpoint:
            ckpt = repo_path(c.checkpoint)
            if not ckpt.is_file():
                raise FileNotFoundError(f"stage1.checkpoint {ckpt} not found")
        else:
            ckpt = self.run_dir / "stage1" / "last.pt"
            if not (self.run_dir / "stage1" / "done").exists():
                from robodyna.learn.config import load_algo_config
                from robodyna.learn.mbpo import train

                algo = load_algo_config(c.algo, self.cfg.robot, [*c.algo_overrides, f"seed={self.cfg.seed}",
                                                                 "sac.num_threads=1"])
                log.info("stage 1: %s in nominal simulation for %d steps", algo.algo, c.steps)
                train(algo, self.cfg.robot, self.run_dir / "stage1", c.steps, resume=ckpt.exists(),
                      progress=False, tensorboard=False)
                (self.run_dir / "stage1" / "done").write_text("")
        sim_onnx = self.run_dir / "sim_only.onnx"
        if not sim_onnx.exists():
            self._export_sim(ckpt, sim_onnx)
        return ckpt

    def _export_sim(self, ckpt: Path, out: Path) -> None:
        version = export_checkpoint_policy(self.cfg.robot, ckpt, out)
        (self.tdir / "policies").mkdir(parents=True, exist_ok=True)
        shutil.copy(out, self.tdir / "policies" / f"policy_v{version}.onnx")

    # -- stage 2 ---------------------------------------------------------------------------------------------
    def _keys(self) -> None:
        from robodyna.transport.keys import generate_keys

        for n in ("trainer", self.cfg.controller.robot_id):
            if not (self.keys / f"{n}.key_secret").exists():
                generate_keys(self.keys, n)

    def _start_trainer(self, ckpt: Path) -> str:
        (self.tdir / "endpoint").unlink(missing_ok=True)
        self.tdir.mkdir(parents=True, exist_ok=True)
        logf = open(self.tdir / "trainer.log", "ab")
        self.trainer = subprocess.Popen(
            [*_cli(), "trainer", "--learn", str(self.run_dir / "config.yaml"), "--out", str(self.tdir), "--bind",
             "tcp://127.0.0.1:0", "--keys", str(self.keys), "--init-checkpoint", str(ckpt)],
            stdout=logf, stderr=subprocess.STDOUT, env=_env())
        end = time.monotonic() + 300
        while not (self.tdir / "endpoint").exists():
            if self.trainer.poll() is not None:
                raise RuntimeError(f"the trainer exited with code {self.trainer.returncode} before listening "
                                   f"(see {self.tdir / 'trainer.log'})")
            if time.monotonic() > end:
                raise RuntimeError("the trainer did not start listening within 300 s")
            time.sleep(0.1)
        ep = (self.tdir / "endpoint").read_text().strip()
        self._event("trainer_started", endpoint=ep, pid=self.trainer.pid)
        return ep

    def _latest_policy(self) -> Path:
        pols = sorted((self.tdir / "policies").glob("policy_v*.onnx"), key=lambda p: int(p.stem.split("_v")[1]))
        return pols[-1] if pols else self.run_dir / "sim_only.onnx"

    def _start_controller(self, endpoint: str, episodes: int) -> None:
        c = self.cfg.controller
        self.cdir.mkdir(parents=True, exist_ok=True)
        logf = open(self.cdir / "controller.log", "ab")
        outf = open(self.cdir / f"status_{len(self.events)}.json", "wb")
        cmd = [*_cli(), "controller", "--robot", self.cfg.robot, "--reality", self.reality, "--policy",
               str(self._latest_policy()), "--record", str(self.cdir / "record"), "--episodes", str(episodes),
               "--idle", "--trainer", c.trainer or endpoint, "--keys", str(self.keys), "--robot-id", c.robot_id,
               "--seed", str(c.seed), "--stats-every", "30"]
        if not c.pace:
            cmd.append("--no-pace")
        inject = self.cfg.inject
        if inject.after_real_steps > 0 and self.reality != inject.reality:  # the robot changes at a real step count
            cmd += ["--reality-change", f"{inject.after_real_steps}:{inject.reality}"]
        for o in c.overrides:
            cmd += ["--set", o]
        self.controller = subprocess.Popen(cmd, stdout=outf, stderr=logf, env=_env())
        self._event("controller_started", reality=self.reality, episodes=episodes,
                    policy=self._latest_policy().name, pid=self.controller.pid)

    def _stop(self, proc: subprocess.Popen[bytes] | None, timeout: float = 60.0) -> int | None:
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def _event(self, kind: str, **kw: Any) -> None:
        row = {"t": time.time(), "event": kind, **kw}
        self.events.append(row)
        with open(self.run_dir / "events.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        log.info("loop: %s %s", kind, kw)

    def _recorded(self) -> int:
        """The rows the controller's record store holds (0 before it is created)."""
        from robodyna.loop.report import stored_rows

        return stored_rows(self.cdir / "record") or 0

    def stage2(self, ckpt: Path) -> dict[str, Any]:
        cfg = self.cfg
        self._keys()
        # a run resumed past an injected change continues (and is evaluated) on the robot it had changed to
        recorded = self._recorded()
        injected = cfg.inject.after_real_steps <= 0 or recorded >= cfg.inject.after_real_steps
        if cfg.inject.after_real_steps > 0 and injected:
            self.reality = cfg.inject.reality
        summary_path = self.tdir / "summary.json"
        if summary_path.exists() and json.loads(summary_path.read_text()).get("done"):
            return json.loads(summary_path.read_text())
        fresh = recorded == 0
        endpoint = self._start_trainer(ckpt)
        self._start_controller(endpoint, cfg.controller.first_episodes if fresh else 0)
        restarts = {"trainer": 0, "controller": 0}
        end = time.monotonic() + cfg.timeout_s
        try:
            while True:
                time.sleep(0.2)
                assert self.trainer is not None and self.controller is not None
                if self.trainer.poll() is not None:
                    if summary_path.exists() and json.loads(summary_path.read_text()).get("done"):
                        break
                    restarts["trainer"] += 1
                    self._event("trainer_exited", code=self.trainer.returncode, restart=restarts["trainer"])
                    if restarts["trainer"] > MAX_RESTARTS:
                        raise RuntimeError(f"the trainer failed {restarts['trainer']} times (see trainer.log)")
                    endpoint = self._start_trainer(ckpt)
                    self._stop(self.controller)  # the controller learns the new port on its restart
                if self.controller.poll() is not None:
                    restarts["controller"] += 1
                    self._event("controller_exited", code=self.controller.returncode,
                                restart=restarts["controller"])
                    if restarts["controller"] > MAX_RESTARTS:
                        raise RuntimeError(f"the controller failed {restarts['controller']} times "
                                           "(see controller.log)")
                    self._start_controller(endpoint, 1)  # one episode: data that clears a pending refresh
                if not injected and self._recorded() >= cfg.inject.after_real_steps:  # the controller changed it
                    injected = True
                    self.reality = cfg.inject.reality
                    self._event("dynamics_change", reality=self.reality, real_steps=cfg.inject.after_real_steps)
                if time.monotonic() > end:
                    raise RuntimeError(f"the loop did not finish within timeout_s={cfg.timeout_s:.0f} s")
        finally:
            self._stop(self.controller)
            self._stop(self.trainer)
        return json.loads(summary_path.read_text())

    # -- evaluation and report ---------------------------------------------------------------------------------
    def evaluate(self) -> dict[str, Any]:
        ev = self.cfg.eval
        out: dict[str, Any] = {"reality": self.reality, "episodes": ev.episodes, "safety_filter": True}
        for name, path in (("sim_only", self.run_dir / "sim_only.onnx"), ("adapted", self._latest_policy())):
            out[name] = evaluate_on_robot(self.cfg, self.reality, path) | {"policy": path.name}
        (self.run_dir / "eval.json").write_text(json.dumps(out, indent=1))
        return out

    def run(self) -> dict[str, Any]:
        from robodyna.loop.report import write_report

        ckpt = self.stage1()
        try:
            summary = self.stage2(ckpt)
        except (RuntimeError, OSError) as exc:  # stop cleanly: evaluate what exists, report, keep every row
            self._event("loop_failed", error=str(exc))
            sp = self.tdir / "summary.json"
            summary = json.loads(sp.read_text()) if sp.exists() else {"done": False}
            summary = {"real_steps": 0, "rounds": 0, "policy_version": None, "sim_policy_version": None,
                       **summary, "error": str(exc)}
            write_report(self.run_dir, self.cfg, {"summary": summary, "eval": self.evaluate()})
            log.error("loop stopped: %s; report with what was done: %s", exc, self.run_dir / "report.md")
            raise
        result = {"summary": summary, "eval": self.evaluate()}
        write_report(self.run_dir, self.cfg, result)
        return result


def export_checkpoint_policy(robot: str, ckpt: str | Path, out: str | Path) -> int:
    """Export the policy of a learner checkpoint made for ``robot`` (a stage-1 checkpoint: the sim-only policy) to
    ONNX at ``out``; returns its policy version."""
    from robodyna.learn.envs import make_env, obs_names_for_env, spec_for_env
    from robodyna.learn.export import export_policy
    from robodyna.learn.mbpo import agent_from_checkpoint

    env = make_env(robot)
    try:
        agent, st = agent_from_checkpoint(Path(ckpt), env)
        version = int(st["learner"]["counters"]["policy_version"])
        export_policy(agent, spec_for_env(env), obs_names_for_env(env), Path(out), policy_version=version,
                      run_id=str(st["learner"]["run_id"]))
    finally:
        env.close()
    return version


def evaluate_on_robot(cfg: LoopConfig, reality: str, policy: str | Path | Callable[[Any], Any]) -> dict[str, float]:
    """Score a policy on the loop's "real" robot as its controller runs it: ``reality``, the controller's robot.yaml
    overrides, and every action through the robot's safety filter (:class:`~robodyna.onboard.filter.FilteredPolicy`;
    on laggy reacher2 it changes about a third of a sim-trained policy's actions). ``policy``: an ONNX file, or
    ``make_policy(env)`` that builds the policy; the loop config's evaluation episodes and seed pick the targets.
    Returns the float results plus ``filtered_tick_fraction``."""
    from robodyna.learn.mbpo import evaluate
    from robodyna.onboard.filter import FilteredPolicy, FilterParams
    from robodyna.tasks.env import make_env

    env = make_env(cfg.robot, reality=reality, overrides=list(cfg.controller.overrides))
    try:
        u: Any = env.unwrapped
        act = onnx_policy(Path(policy)) if isinstance(policy, (str, Path)) else policy(env)
        pol = FilteredPolicy(act, FilterParams.from_config(u.robot_spec, u.robot_cfg))
        r = evaluate(pol, env, cfg.eval.episodes, cfg.eval.seed)
    finally:
        env.close()
    out = {k: v for k, v in r.items() if isinstance(v, float)}
    out["filtered_tick_fraction"] = pol.interventions / max(pol.ticks, 1)
    return out


def onnx_policy(path: Path) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def act(obs: np.ndarray) -> np.ndarray:
        return np.asarray(sess.run(None, {name: np.asarray(obs, np.float32)[None]})[0][0])

    return act
