"""CLI verbs of the learning core: ``train``, ``eval``, ``export`` (registered by ``robodyna.cli.main``)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _add_target(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--robot", help="robodyna robot name (robots/<name>)")
    g.add_argument("--env", help="registered Gymnasium id, e.g. Reacher-v5")
    p.add_argument("--reality", default=None, help="reality profile (configs/realities/<name>.yaml)")


def register(subparsers: Any) -> None:
    """Add ``train``, ``eval`` and ``export`` to an argparse subparsers object."""
    p = subparsers.add_parser("train", help="train MBPO / Dyna / SAC on a robot or gym env")
    _add_target(p)
    p.add_argument("--algo", default="mbpo", help="mbpo | dyna | sac, or a path to an algo YAML")
    p.add_argument("--steps", type=int, required=True, help="real environment steps in total")
    p.add_argument("--run-dir", required=True, help="output folder (config, metrics.csv, tb/, last.pt, policy.onnx)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    p.add_argument("--init-data", default=None, metavar="DIR",
                   help="episode store (same robot) that warm-starts the real buffer and the model")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser("eval", help="evaluate an ONNX policy or a training checkpoint")
    p.add_argument("--policy", required=True, help="policy.onnx or a training checkpoint (last.pt)")
    _add_target(p)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_eval)

    p = subparsers.add_parser("export", help="export a checkpoint's deterministic policy to ONNX")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)
    p.add_argument("--policy-version", type=int, default=None,
                   help="integer version written into the policy (default: the checkpoint's, else 1)")
    p.set_defaults(func=cmd_export)


def cmd_train(args: argparse.Namespace) -> int:
    from robodyna.config import ConfigError, load_config
    from robodyna.learn.config import AlgoConfig, load_algo_config
    from robodyna.learn.mbpo import train
    from robodyna.learn.sac import DivergenceError

    name = args.robot or args.env
    overrides = list(args.overrides) + ([f"seed={args.seed}"] if args.seed is not None else [])
    saved = Path(args.run_dir) / "config.yaml"
    try:
        if args.resume and saved.exists():
            cfg = load_config(AlgoConfig, saved, overrides)
        else:
            cfg = load_algo_config(args.algo, name, overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        res = train(cfg, name, args.run_dir, args.steps, reality=args.reality, resume=args.resume,
                    progress=not args.no_progress, init_data=args.init_data,
                    export_to=Path(args.run_dir) / "policy.onnx")
    except DivergenceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    assert res.learner is not None
    onnx_path = res.run_dir / "policy.onnx"
    last = res.evals[-1] if res.evals else {}
    print(f"trained {cfg.algo} on {name} for {res.steps} steps; eval return {last.get('mean_return', float('nan')):.3f}"
          f" ± {last.get('std_return', float('nan')):.3f}; checkpoint {res.checkpoint}; policy {onnx_path}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from robodyna.learn.envs import make_env, obs_names_for_env, spec_for_env
    from robodyna.learn.mbpo import agent_from_checkpoint, evaluate, format_eval

    name = args.robot or args.env
    env = make_env(name, reality=args.reality)
    path = Path(args.policy)
    try:
        if path.suffix == ".onnx":
            from robodyna.onboard.policy import OnnxPolicy

            onnx_policy = OnnxPolicy(path, spec_for_env(env), obs_names_for_env(env))
            policy: Callable[[Any], Any] = onnx_policy
        else:
            agent, _ = agent_from_checkpoint(path, env)

            def agent_policy(o: Any) -> Any:
                return agent.act(o, deterministic=True)

            policy = agent_policy
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    res = evaluate(policy, env, args.episodes, seed=args.seed)
    res.pop("trajectories")
    res.update({"policy": str(path), "env": name, "reality": args.reality})
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{name}, {args.episodes} episodes: {format_eval(res)}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    import json as _json

    from robodyna.learn.export import export_policy
    from robodyna.learn.mbpo import agent_from_checkpoint
    from robodyna.spec import RobotSpec

    try:
        agent, st = agent_from_checkpoint(args.checkpoint)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    meta = st["meta"]
    spec = RobotSpec.from_dict(_json.loads(meta["robot_spec"]))
    out = export_policy(agent, spec, list(meta["obs_names"]), args.out,
                        policy_version=args.policy_version if args.policy_version is not None
                        else max(1, int(st["learner"]["counters"]["policy_version"])), run_id=meta["run_id"])
    print(f"exported {spec.name} policy (step {st['learner']['counters']['real']}) to {out}")
    return 0
