"""CLI verbs of the learning core: ``train``, ``eval``, ``export`` (registered by ``robodyna.cli.main``).

``train`` refuses what would silently lose or mislabel a run: a run directory that already holds a run
(without ``--resume`` or ``--overwrite``), ``--resume`` without a checkpoint, with another algorithm, reality or
``--init-data``, or with ``--steps`` not beyond the checkpoint's step. It says how many SAC updates ran and warns
when none did (an untrained policy is still exported, labelled as such).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robodyna.cli.args import CLIError, positive_int, quiet_libraries

log = logging.getLogger(__name__)

# What a training run writes into its run directory (``--overwrite`` removes exactly these).
RUN_FILES = ("last.pt", "policy.onnx", "config.yaml", "metrics.csv", "tb")


def _add_target(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--robot", help="robodyna robot name (robots/<name>) or robot folder")
    g.add_argument("--env", help="registered Gymnasium id with a continuous (Box) action space, e.g. Reacher-v5")
    p.add_argument("--reality", default=None, help="reality profile (configs/realities/<name>.yaml)")


def register(subparsers: Any) -> None:
    """Add ``train``, ``eval`` and ``export`` to an argparse subparsers object."""
    p = subparsers.add_parser("train", help="train MBPO / Dyna / SAC on a robot or gym env")
    _add_target(p)
    p.add_argument("--algo", default=None, help="mbpo | dyna | sac, or a path to an algo YAML (default mbpo; "
                   "with --resume, the run's own)")
    p.add_argument("--steps", type=positive_int, required=True,
                   help="real environment steps in total (with --resume: including the steps already done)")
    p.add_argument("--run-dir", required=True, help="output folder (config, metrics.csv, tb/, last.pt, policy.onnx)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="algo config override, e.g. --set sac.batch_size=128 (robot.yaml values: see README)")
    p.add_argument("--seed", type=int, default=None)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    g.add_argument("--overwrite", action="store_true",
                   help=f"replace the run already in RUN_DIR (removes its {', '.join(RUN_FILES)})")
    p.add_argument("--init-data", default=None, metavar="DIR",
                   help="episode store (same robot) that warm-starts the real buffer and the model of a new run")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("eval", help="evaluate an ONNX policy or a training checkpoint")
    p.add_argument("--policy", required=True, help="policy.onnx or a training checkpoint (last.pt)")
    _add_target(p)
    p.add_argument("--episodes", type=positive_int, default=10)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser("export", help="export a checkpoint's deterministic policy to ONNX")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--policy-version", type=int, default=None,
                   help="integer version written into the policy (default: the checkpoint's, else 1)")
    p.set_defaults(func=cmd_export)


def make_box_env(name: str, reality: str | None = None) -> Any:
    """The env ``name`` (robot or Gymnasium id), refusing one whose actions are not a continuous Box."""
    import gymnasium as gym

    from robodyna.learn.envs import make_env

    env = make_env(name, reality=reality)
    if not isinstance(env.action_space, gym.spaces.Box):
        env.close()
        raise CLIError(f"{name}: its action space is {env.action_space}; robodyna drives continuous actions "
                       "only (a gymnasium.spaces.Box), e.g. Reacher-v5 or a robot folder")
    return env


def preset_key(name: str) -> str:
    """The name an algo preset's ``robots:`` section uses for ``--robot NAME``: for a robot folder given by
    path (e.g. an edited copy), the ``name`` in its ``robot.yaml``."""
    import yaml

    yml = Path(name) / "robot.yaml"
    if yml.is_file():
        data = yaml.safe_load(yml.read_text())
        if isinstance(data, dict) and isinstance(data.get("name"), str):
            return data["name"]
    return name


def _check_resume(args: argparse.Namespace, name: str, run_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The config to continue with and the checkpoint, or a :class:`CLIError` saying why the run cannot resume."""
    from robodyna.config import load_config
    from robodyna.learn.config import AlgoConfig

    ckpt = run_dir / "last.pt"
    if not ckpt.is_file():
        held = [f for f in RUN_FILES if (run_dir / f).exists()]
        raise CLIError(f"--resume: {ckpt} does not exist, so there is no run to continue"
                       + (f" ({run_dir} holds {', '.join(held)} but no checkpoint)" if held else "")
                       + "; drop --resume to start a new run" + (" (with --overwrite)" if held else ""))
    if args.init_data is not None:
        raise CLIError("--init-data warm-starts a new run only; the resumed run keeps the buffer in "
                       f"{ckpt} (drop --init-data, or start a fresh --run-dir)")
    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    saved = run_dir / "config.yaml"
    cfg = load_config(AlgoConfig, saved, overrides) if saved.exists() else None
    if cfg is not None:
        _check_algo(args, name, run_dir, cfg)
    from robodyna.learn.checkpoint import read_checkpoint  # imports torch: after the checks that need none

    st = read_checkpoint(ckpt)
    if cfg is None:
        cfg = load_config(AlgoConfig, st["config"], overrides, source=f"{ckpt} (config)")
        _check_algo(args, name, run_dir, cfg)
    m = st["meta"]
    if m.get("env") not in (None, name):
        raise CLIError(f"--resume: {ckpt} is a run on {m['env']!r}, not {name!r}")
    if m.get("reality") != args.reality:
        raise CLIError(f"--resume: {ckpt} was trained with --reality {m.get('reality') or '(none)'}, not "
                       f"{args.reality or '(none)'}; resume with the same reality, or start a fresh --run-dir")
    at = int(st["learner"]["counters"]["real"])
    if at >= args.steps:
        raise CLIError(f"--resume: {run_dir} is already at step {at}; --steps is the total number of real "
                       f"steps, so pass more than {at} to train further (`robodyna export "
                       f"{ckpt} --out FILE` re-exports its policy)")
    return cfg, st


def _check_algo(args: argparse.Namespace, name: str, run_dir: Path, cfg: Any) -> None:
    """Refuse ``--algo`` naming another algorithm than the run being resumed."""
    from robodyna.learn.config import load_algo_config

    if args.algo is not None:
        asked = load_algo_config(args.algo, preset_key(name)).algo
        if asked != cfg.algo:
            raise CLIError(f"--resume: {run_dir} is a {cfg.algo} run; it cannot continue as {asked} (drop --algo "
                           f"to continue it as {cfg.algo}, or start a fresh --run-dir)")


def cmd_train(args: argparse.Namespace) -> int:
    name = args.robot or args.env
    run_dir = Path(args.run_dir)
    st: dict[str, Any] | None = None
    if args.resume:
        cfg, st = _check_resume(args, name, run_dir)
    else:
        held = [f for f in RUN_FILES if (run_dir / f).exists()]
        if held and not args.overwrite:
            raise CLIError(f"{run_dir} already holds a run ({', '.join(held)}); pass --resume to continue it, a "
                           "fresh --run-dir to start a new one, or --overwrite to replace it")
        from robodyna.learn.config import load_algo_config

        overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
        cfg = load_algo_config(args.algo or "mbpo", preset_key(name), overrides)
        if args.init_data is not None:
            from robodyna.data.validate import require_valid

            require_valid(args.init_data, "warm-start training from it (--init-data)")
    env = make_box_env(name, args.reality)
    if args.overwrite:
        for f in RUN_FILES:
            target = run_dir / f
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
        log.info("--overwrite: removed the previous run's files in %s", run_dir)

    from robodyna.learn.mbpo import train
    from robodyna.learn.sac import DivergenceError

    quiet_libraries(again=True)  # importing torch reset its loggers' levels
    start_step = int(st["learner"]["counters"]["real"]) if st else 0
    updates_before = int(st["learner"]["counters"]["updates"]) if st else 0
    try:
        res = train(cfg, name, run_dir, args.steps, reality=args.reality, resume=args.resume,
                    progress=not args.no_progress, init_data=args.init_data, export_to=run_dir / "policy.onnx")
    except DivergenceError as exc:
        print(f"robodyna train: error: {exc}", file=sys.stderr)
        return 3
    learner = res.learner
    assert learner is not None
    updates = learner.n_updates - updates_before
    onnx_path = run_dir / "policy.onnx"
    env.close()
    last = res.evals[-1] if res.evals else {}
    ran = res.steps - start_step
    what = f"for {ran} steps" + (f" (steps {start_step + 1}-{res.steps})" if start_step else "")
    ret = (f"eval return {last['mean_return']:.3f} ± {last.get('std_return', 0.0):.3f}"
           if "mean_return" in last else "no evaluation")
    print(f"trained {cfg.algo} on {name} {what} with {updates} SAC update(s); {ret}; checkpoint {res.checkpoint}; "
          f"policy {onnx_path}")
    if updates == 0:
        explore, n_init = learner.start_steps, learner.n_init
        print(f"robodyna train: warning: no SAC update ran, so {onnx_path} is an untrained policy: the first "
              f"{explore} steps explore with random actions (start_steps={learner.cfg.start_steps}"
              + (f", less {n_init} --init-data transitions" if n_init else "")
              + f"); train for more than {explore} steps (--resume continues this run) or --set start_steps=N",
              file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from robodyna.learn.envs import obs_names_for_env, spec_for_env
    from robodyna.learn.mbpo import agent_from_checkpoint, evaluate, format_eval

    name = args.robot or args.env
    env = make_box_env(name, args.reality)
    path = Path(args.policy)
    if path.suffix == ".onnx":
        from robodyna.onboard.policy import OnnxPolicy

        onnx_policy = OnnxPolicy(path, spec_for_env(env), obs_names_for_env(env))
        policy: Callable[[Any], Any] = onnx_policy
    else:
        agent, _ = agent_from_checkpoint(path, env)

        def agent_policy(o: Any) -> Any:
            return agent.act(o, deterministic=True)

        policy = agent_policy
    res = evaluate(policy, env, args.episodes, seed=args.seed)
    res.pop("trajectories")
    res.update({"policy": str(path), "env": name, "reality": args.reality})
    if args.json:
        print(json.dumps(res, allow_nan=False))
    else:
        print(f"{name}, {args.episodes} episodes: {format_eval(res)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import json as _json

    from robodyna.learn.export import export_policy
    from robodyna.learn.mbpo import agent_from_checkpoint
    from robodyna.spec import RobotSpec

    quiet_libraries(again=True)  # importing torch reset its loggers' levels
    agent, st = agent_from_checkpoint(args.checkpoint)
    meta = st["meta"]
    spec = RobotSpec.from_dict(_json.loads(meta["robot_spec"]))
    out = export_policy(agent, spec, list(meta["obs_names"]), args.out,
                        policy_version=args.policy_version if args.policy_version is not None
                        else max(1, int(st["learner"]["counters"]["policy_version"])), run_id=meta["run_id"])
    n_up = int(st["learner"]["counters"]["updates"])
    print(f"exported {spec.name} policy (step {st['learner']['counters']['real']}, {n_up} SAC update(s)) to {out}")
    if n_up == 0:
        print(f"robodyna export: warning: {args.checkpoint} has had no SAC update: the exported policy is untrained",
              file=sys.stderr)
    return 0
