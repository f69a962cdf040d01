"""CLI verbs of the transport layer: ``keys generate``, ``trainer`` (receive, persist, ack, print status),
``stream`` (a robot's store to a trainer) and ``link-demo`` (keys, a trainer and N emulated robots on loopback).
Registered by :mod:`robodyna.cli.main` through :func:`register`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def _stop_event() -> threading.Event:
    """Set on SIGINT/SIGTERM (a clean stop: the trainer acks nothing it has not persisted anyway)."""
    ev = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        ev.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    return ev


def _keys_generate(a: argparse.Namespace) -> int:
    from robodyna.transport.keys import generate_keys

    paths = generate_keys(a.out, a.name, overwrite=a.overwrite)
    print(json.dumps({k: str(v) for k, v in paths.items()}))
    return 0


def _format_status(st: dict[str, Any]) -> str:
    lines = [f"trainer {st['endpoint']}: {len(st['robots'])} robot(s) {json.dumps(st['counters'])}"]
    for rid, r in sorted(st["robots"].items()):
        c = r["counters"]
        rejects = {k[9:]: v for k, v in c.items() if k.startswith("rejected_")}
        lines.append(f"  {rid:<16} {'up  ' if r['connected'] else 'down'} persisted={r['persisted_seq']:<10} "
                     f"lag={r['lag_rows']:<8} dup_rows={c.get('duplicate_rows', 0):<6} "
                     f"seen={r['last_seen_s']}s rejects={rejects} policy={r['policy'].get('version')}")
    return "\n".join(lines)


def _trainer(a: argparse.Namespace) -> int:
    if a.learn:
        return _trainer_service(a)
    if not a.store:
        raise ValueError("--store DIR is required (or --learn LOOP_CONFIG --out DIR for the learning service)")
    from robodyna.transport.keys import TrainerKeys
    from robodyna.transport.trainer import TrainerConfig, TrainerServer

    expected = None
    if a.robot:
        from robodyna.identity import Identity
        from robodyna.robots.registry import robot_folder
        from robodyna.spec import RobotSpec, load_robot_config

        cfg, _ = load_robot_config(robot_folder(a.robot))
        expected = Identity.of(RobotSpec.from_config(cfg, engine="mujoco"))
    if a.insecure:
        log.warning("--insecure: no encryption, any client may inject data, robots will refuse every policy")
        keys = None
    else:
        if not a.keys:
            raise ValueError("--keys DIR is required (robodyna keys generate --out DIR --name trainer); "
                             "--insecure only for debugging")
        keys = TrainerKeys.load(a.keys, a.name, a.allow or None)
        if not keys.allowed:
            raise ValueError(f"no robot public keys allowed: put ROBOT.key files in {a.keys} or pass --allow")
        log.info("allowing robots %s", sorted(keys.allowed.values()))
    stop = _stop_event()
    cfg_t = TrainerConfig(heartbeat_s=a.heartbeat, deadline_s=a.deadline)
    srv = TrainerServer(a.bind, a.store, keys, expected=expected, config=cfg_t, insecure=a.insecure).start()
    print(json.dumps({"listening": srv.endpoint, "store": str(a.store)}), flush=True)
    end = time.monotonic() + a.duration if a.duration else None
    try:
        while not stop.is_set() and (end is None or time.monotonic() < end):
            stop.wait(a.status_every if a.status_every > 0 else 1.0)
            if a.status_every > 0:
                st = srv.status()
                print(json.dumps(st) if a.json else _format_status(st), flush=True)
            while not srv.batches.empty():  # no learner yet: the store is the output
                srv.batches.get_nowait()
    finally:
        srv.stop()
    return 0


def _trainer_service(a: argparse.Namespace) -> int:
    """``robodyna trainer --learn CONFIG --out DIR``: the trainer service (network thread + ONE training thread
    around the Learner), configured by a loop config's ``trainer:`` section."""
    from robodyna.loop.config import load_loop_config
    from robodyna.loop.trainer import TrainerService

    if not a.out or not a.keys:
        raise ValueError("--learn needs --out DIR (service directory) and --keys DIR")
    cfg = load_loop_config(a.learn)
    svc = TrainerService(cfg.robot, a.out, a.bind, a.keys, cfg.trainer, init_checkpoint=a.init_checkpoint,
                         seed=cfg.seed, first_episodes=cfg.controller.first_episodes)
    stop = _stop_event()
    def watch() -> None:
        stop.wait()
        svc.stop()

    threading.Thread(target=watch, daemon=True).start()
    summary = svc.run()
    print(json.dumps(summary), flush=True)
    return 0 if summary["done"] or stop.is_set() else 1


def _stream(a: argparse.Namespace) -> int:
    from robodyna.transport.keys import RobotKeys
    from robodyna.transport.robot import RobotLink

    keys = None if a.insecure else RobotKeys.load(a.keys, a.name, a.trainer_name)
    stop = _stop_event()
    link = RobotLink(a.trainer, a.store, a.robot_id or a.name, keys, insecure=a.insecure).start()
    end = time.monotonic() + a.duration if a.duration else None
    try:
        while not stop.is_set() and (end is None or time.monotonic() < end):
            stop.wait(a.status_every)
            print(json.dumps(link.status()), flush=True)
    finally:
        link.stop()
    return 0


def _link_demo(a: argparse.Namespace) -> int:
    """Keys generated automatically (security on), a trainer and N robots recording random episodes of a
    simulated robot on loopback, streamed and persisted; prints the trainer's status."""
    from robodyna.data.store import EpisodeStore
    from robodyna.onboard.record import record
    from robodyna.transport.keys import RobotKeys, TrainerKeys, generate_keys
    from robodyna.transport.robot import RobotLink
    from robodyna.transport.trainer import TrainerServer

    out = Path(a.out)
    kd = out / "keys"
    names = [f"robot{i}" for i in range(a.robots)]
    for n in ["trainer", *names]:
        if not (kd / f"{n}.key_secret").exists():
            generate_keys(kd, n)
    srv = TrainerServer("tcp://127.0.0.1:0", out / "trainer", TrainerKeys.load(kd)).start()
    links = []
    recorders = []
    for i, n in enumerate(names):
        store = out / n
        t = threading.Thread(target=record, args=(a.robot, "random", a.episodes, store),
                             kwargs={"seed": i, "progress": False, "resume": store.exists()}, daemon=True)
        t.start()
        recorders.append(t)
        links.append(RobotLink(srv.endpoint, store, n, RobotKeys.load(kd, n)).start())
    try:
        while any(t.is_alive() for t in recorders):
            time.sleep(1.0)
            print(_format_status(srv.status()), flush=True)
        for lk, n in zip(links, names):  # everything recorded, acknowledged (durable on the trainer)
            if not lk.wait_acked(EpisodeStore(out / n).num_transitions, 30.0):
                log.error("%s: not everything acknowledged within 30 s: %s", n, lk.status())
        print(_format_status(srv.status()))
    finally:
        for lk in links:
            lk.stop()
        srv.stop()
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``keys``, ``trainer``, ``stream`` and ``link-demo``."""
    ks = subparsers.add_parser("keys", help="key pairs for the robot-trainer link")
    ksub = ks.add_subparsers(dest="keys_cmd", required=True)
    p = ksub.add_parser("generate", help="CURVE key pair + Ed25519 policy-signing pair for NAME")
    p.add_argument("--out", required=True, help="keys directory")
    p.add_argument("--name", required=True, help="trainer, or the robot's id")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_keys_generate)

    p = subparsers.add_parser("trainer", help="receive robots' transitions, persist them, acknowledge")
    p.add_argument("--bind", default="tcp://*:5555", help="ZeroMQ endpoint to listen on")
    p.add_argument("--store", default=None, help="root of the trainer's real-data stores (one per robot)")
    p.add_argument("--learn", default=None, metavar="LOOP_CONFIG",
                   help="run the learning service (configs/loops/NAME.yaml's trainer section): ingest, learn, push")
    p.add_argument("--out", default=None, metavar="DIR", help="--learn: the service directory (store, policies, CSVs)")
    p.add_argument("--init-checkpoint", default=None, metavar="CKPT",
                   help="--learn: simulation checkpoint to warm-start from (ignored when DIR holds a learner.pt)")
    p.add_argument("--keys", default=None, help="keys directory (trainer's keys; robots' public *.key allowed)")
    p.add_argument("--name", default="trainer", help="the trainer's key name in --keys")
    p.add_argument("--allow", nargs="*", default=None, metavar="ROBOT.key",
                   help="robot public key files to allow (default: every *.key in --keys but the trainer's)")
    p.add_argument("--robot", default=None, help="robot name/folder every hello must match (link identity)")
    p.add_argument("--status-every", type=float, default=5.0, help="print status every S seconds (0: never)")
    p.add_argument("--json", action="store_true", help="status as JSON lines")
    p.add_argument("--heartbeat", type=float, default=0.5)
    p.add_argument("--deadline", type=float, default=3.0)
    p.add_argument("--duration", type=float, default=0.0, help="stop after S seconds (0: until SIGINT/SIGTERM)")
    p.add_argument("--insecure", action="store_true", help="no CURVE, no signatures (debugging only)")
    p.set_defaults(func=_trainer)

    p = subparsers.add_parser("stream", help="stream a robot's episode store to a trainer (the controller's link)")
    p.add_argument("--store", required=True)
    p.add_argument("--trainer", required=True, help="tcp://HOST:PORT")
    p.add_argument("--keys", default=None)
    p.add_argument("--name", required=True, help="this robot's key name (and id)")
    p.add_argument("--robot-id", default=None)
    p.add_argument("--trainer-name", default="trainer")
    p.add_argument("--status-every", type=float, default=5.0)
    p.add_argument("--duration", type=float, default=0.0)
    p.add_argument("--insecure", action="store_true")
    p.set_defaults(func=_stream)

    p = subparsers.add_parser("link-demo", help="keys + trainer + N simulated robots streaming on loopback")
    p.add_argument("--out", required=True)
    p.add_argument("--robots", type=int, default=2)
    p.add_argument("--robot", default="reacher2")
    p.add_argument("--episodes", type=int, default=5)
    p.set_defaults(func=_link_demo)
