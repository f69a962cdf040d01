"""Benchmark: onboard policy inference and controller tick overhead.

1. Inference latency (one observation, p50/p99 in µs) of the exported 256x256 SAC actor for reacher2, in the same
   run: onnxruntime (one intra-op thread, as the controller runs it) vs torch eager (one thread, inference mode)
   vs a numpy forward pass of the same weights. The three outputs are checked to agree.
2. The controller (``robodyna.onboard.controller.Controller``) on reacher2 (MuJoCo), paced in real time, recording
   into a store, at each ``--hz``: tick overhead (everything but physics and the wait: observe, record, inference,
   filter, send's checks, flush; p50/p99 in µs) and deadline misses over ``--seconds``. Each rate runs an A/B, in
   the same process and in alternating order over ``--reps``, and the medians' ratios are printed: ``--ab
   writer`` (default) the store written by a child process (the controller's default) against a thread of the
   controller's process (the competitor: it shares the loop's GIL); ``--ab rt`` the control thread under
   ``SCHED_FIFO`` at ``--rt-priority`` against the normal scheduler (both with the writer process; needs root
   or CAP_SYS_NICE); ``--ab warm`` the pre-deadline warm-up as a dry run of the whole tick (``warmup="tick"``,
   the default) against its pure calls only (``"calls"``: inference, filter, reward), switched every
   ``--block-s`` inside one run (the host's load drifts over seconds; alternating blocks cancel it), the ticks of
   each block counted for its variant (SCHED_FIFO at ``--rt-priority`` where permitted). ``--spin-us`` sets the
   pre-deadline warm-up's time (default: the controller's).

3. The raw limit, in the same run: a bare loop of the three calls a tick cannot do without (``observe_into``,
   ``OnnxPolicy.run_one``, ``send_action``), paced on the same deadlines (same warm-up and busy-wait) and unpaced.
   Its observe + inference time is the floor of the tick overhead; the tick's overhead p99 is printed as a ratio
   of the paced floor's. (Measured here: pacing alone, i.e. sleeping between ticks, makes each of the three calls
   3-4x slower than back to back on this VM.)

Goal (issue 13): tick overhead p99 <= 100 µs and < 0.5 % deadline misses at 1 kHz. Prints a table, writes JSON.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import write_json  # tools/bench/ is on sys.path when run as a script

from robodyna.learn.config import SACConfig
from robodyna.learn.export import export_policy
from robodyna.learn.sac import SAC
from robodyna.onboard.controller import Controller
from robodyna.onboard.policy import OnnxPolicy
from robodyna.onboard.timing import Deadlines, RealtimeError, check_realtime
from robodyna.robots.registry import load_robot, robot_folder
from robodyna.spec import RobotSpec, StateLayout, load_robot_config, rate_overrides
from robodyna.tasks import robot_task


def spec_at(robot: str, hz: float) -> RobotSpec:
    cfg, _ = load_robot_config(robot_folder(robot))
    cfg, _ = load_robot_config(robot_folder(robot), rate_overrides(cfg.physics_hz, hz))
    return RobotSpec.from_config(cfg, cfg.engine)


def make_agent(spec: RobotSpec, obs_dim: int, seed: int = 0) -> SAC:
    agent = SAC(obs_dim, spec.act_dim, spec.action_low_array, spec.action_high_array,
                SACConfig(hidden=256, layers=2, compile=False), seed=seed)
    rng = np.random.default_rng(seed)
    agent.set_obs_normalizer(rng.normal(0, 0.1, obs_dim), rng.uniform(0.5, 2.0, obs_dim))
    return agent


def pct(xs: list[float]) -> tuple[float, float]:
    a = np.asarray(xs) * 1e6
    return float(np.percentile(a, 50)), float(np.percentile(a, 99))


def bench_inference(agent: SAC, policy: OnnxPolicy, n: int, obs: np.ndarray) -> dict[str, tuple[float, float]]:
    torch.set_num_threads(1)
    det = agent.deterministic_policy().eval()
    layers = [(w.detach().numpy().astype(np.float32), b.detach().numpy().astype(np.float32))
              for w, b in agent.actor.layers()]
    mean = agent.actor.obs_mean.numpy().astype(np.float32)
    std = agent.actor.obs_std.numpy().astype(np.float32)
    scale = ((agent.high - agent.low) / 2).astype(np.float32)
    offset = ((agent.high + agent.low) / 2).astype(np.float32)
    a = agent.act_dim

    def numpy_forward(o: np.ndarray) -> np.ndarray:
        h = (o - mean) / std
        for w, b in layers[:-1]:
            h = np.maximum(h @ w.T + b, 0.0)
        w, b = layers[-1]
        m = (h @ w[:a].T) + b[:a]
        return np.tanh(m) * scale + offset

    sess, name = policy.session, policy._input
    o1 = obs[None].astype(np.float32)
    t1 = torch.from_numpy(o1)
    ref = sess.run(None, {name: o1})[0][0]
    with torch.inference_mode():
        np.testing.assert_allclose(det(t1).numpy()[0], ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(numpy_forward(o1)[0], ref, rtol=1e-4, atol=1e-5)

    def timeit(fn: object) -> list[float]:
        f = fn  # type: ignore[assignment]
        for _ in range(200):
            f()  # type: ignore[operator]
        out = []
        for _ in range(n):
            t = time.perf_counter()
            f()  # type: ignore[operator]
            out.append(time.perf_counter() - t)
        return out

    res = {}
    res["onnxruntime"] = pct(timeit(lambda: sess.run(None, {name: o1})))
    res["ort_run_one"] = pct(timeit(lambda: policy.run_one(o1[0])))  # pre-bound buffers (IOBinding)
    with torch.inference_mode():
        res["torch_eager"] = pct(timeit(lambda: det(t1)))
    res["numpy"] = pct(timeit(lambda: numpy_forward(o1)))
    return res


def bench_setup(robot: str, hz: float, tmp: Path, **kw: Any) -> Controller:
    """A paced, recording controller on ``robot`` at ``hz`` with a fresh SAC actor exported for it (5 s episodes;
    ``kw``: the Controller's options under test)."""
    spec = spec_at(robot, hz)
    names = robot_task(robot).obs_names  # the robot's own layout (its action history included)
    path = export_policy(make_agent(spec, obs_dim=len(names)), spec, names, tmp / f"policy-{hz:g}.onnx",
                         policy_version=1)
    return Controller(robot, path, tmp / f"store-{hz:g}", pace=True, hz=hz, episode_steps=int(hz * 5),
                      stats_every_s=1e9, **kw)


def bench_controller(robot: str, hz: float, seconds: float, tmp: Path, spin_us: float | None = None,
                     writer: str = "process", rt_priority: int | None = None) -> dict[str, Any]:
    c = bench_setup(robot, hz, tmp, spin_us=spin_us, writer_process=writer == "process", rt_priority=rt_priority)
    steps = int(seconds * hz)
    st = c.run(steps=steps)
    loop = st["loop"]
    return {"hz": hz, "writer": writer, "rt_priority": rt_priority, "spin_us": c.spin_s * 1e6, "ticks": loop["ticks"],
            "overhead_p50_us": loop["overhead_p50_us"],
            "overhead_p99_us": loop["overhead_p99_us"], "period_p50_us": loop["period_p50_us"],
            "period_p99_us": loop["period_p99_us"], "jitter_us": loop["jitter_us"],
            "inference_p50_us": loop["inference_p50_us"], "inference_p99_us": loop["inference_p99_us"],
            "deadline_misses": loop["deadline_misses"],
            "deadline_miss_pct": 100.0 * loop["deadline_misses"] / max(1, loop["ticks"] + loop["deadline_misses"]),
            "watchdog_holds": loop["watchdog_faults"], "record_dropped": loop["record_dropped"]}


def bench_warmup(robot: str, hz: float, seconds: float, tmp: Path, spin_us: float | None, rt_priority: int | None,
                 modes: tuple[str, str], block_s: float) -> list[dict[str, Any]]:
    """One paced, recording run whose ``warmup`` alternates between ``modes`` every ``block_s``; the tick overheads
    of each block (its first 5 ticks dropped) are summarised per mode."""
    c = bench_setup(robot, hz, tmp, spin_us=spin_us, rt_priority=rt_priority, warmup=modes[0])
    steps = min(int(seconds * hz), c.stats.capacity)  # every tick stays in the stats ring
    marks: list[tuple[int, str]] = [(0, modes[0])]
    done = threading.Event()

    def switch() -> None:
        i = 1
        while not done.wait(block_s):
            c.warmup = modes[i % 2]  # type: ignore[assignment]
            marks.append((c.stats.n, modes[i % 2]))
            i += 1

    th = threading.Thread(target=switch, daemon=True)
    th.start()
    st = c.run(steps=steps)
    done.set()
    th.join()
    n = c.stats.n
    over = c.stats.overhead[:n] * 1e6
    out = []
    for mode in modes:
        parts = [over[a + 5:b] for (a, m), (b, _) in zip(marks, [*marks[1:], (n, "")]) if m == mode and b > a + 5]
        x = np.concatenate(parts) if parts else np.zeros(0)
        out.append({"hz": hz, "variant": mode, "rt_priority": rt_priority, "spin_us": c.spin_s * 1e6,
                    "ticks": int(x.size), "blocks": len(parts),
                    "overhead_p50_us": float(np.percentile(x, 50)), "overhead_p99_us": float(np.percentile(x, 99)),
                    "deadline_misses": st["loop"]["deadline_misses"], "record_dropped": st["loop"]["record_dropped"]})
    return out


def bench_floor(robot: str, policy: OnnxPolicy, hz: float, seconds: float, spin_s: float) -> dict[str, float]:
    """The raw limit: the three calls a tick cannot do without (read the robot, run the policy, step the robot),
    in a bare loop paced like the controller's (same Deadlines, warm-up, busy-wait) and in the same loop unpaced.
    Their ``observe + inference`` time is the floor of the controller's tick overhead on this machine."""
    cfg, _ = load_robot_config(robot_folder(robot))
    r = load_robot(robot_folder(robot), overrides=rate_overrides(cfg.physics_hz, hz))
    r.reset()
    obs = np.zeros(policy.obs_dim, np.float32)
    zero = np.zeros(policy.act_dim)
    pc = time.perf_counter
    res: dict[str, float] = {"hz": hz, "spin_us": spin_s * 1e6}
    try:
        for paced in (True, False):
            dl = Deadlines(1.0 / hz, paced, spin_s=spin_s)
            out = []
            for _ in range(int(seconds * hz)):
                dl.wait(lambda: policy.run_one(obs))
                t = pc()
                r.observe_into(obs[: StateLayout(r.spec.n_joints).size])
                policy.run_one(obs)
                out.append(pc() - t)
                r.send_action(zero)
                dl.advance(time.monotonic())
            p50, p99 = pct(out)
            key = "paced" if paced else "unpaced"
            res[f"{key}_p50_us"], res[f"{key}_p99_us"] = p50, p99
            if paced:
                res["deadline_misses"] = dl.missed
    finally:
        r.close()
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--robot", default="reacher2")
    ap.add_argument("--hz", type=float, nargs="+", default=[500.0, 1000.0])
    ap.add_argument("--seconds", type=float, default=60.0, help="controller run per rate")
    ap.add_argument("--inference-calls", type=int, default=20000)
    ap.add_argument("--spin-us", type=float, default=None,
                    help="controller warms up and busy-waits this long before a deadline (default: the controller's)")
    ap.add_argument("--reps", type=int, default=1, help="runs per rate and variant (alternating; medians printed)")
    ap.add_argument("--ab", choices=["writer", "rt", "warm"], default="writer",
                    help="writer: store writer process vs thread; rt: SCHED_FIFO control thread vs normal; "
                         "warm: warm-up as a dry run of the tick vs its pure calls, alternating inside each run")
    ap.add_argument("--block-s", type=float, default=0.5, help="--ab warm: seconds per alternating block")
    ap.add_argument("--rt-priority", type=int, default=50, help="SCHED_FIFO priority of --ab rt (1-99)")
    ap.add_argument("--json-out", default="out/controller_bench.json")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        spec = spec_at(args.robot, 50.0 if args.robot == "reacher2" else args.hz[0])
        names = robot_task(args.robot).obs_names
        agent = make_agent(spec, obs_dim=len(names))
        path = export_policy(agent, spec, names, tmp / "policy.onnx", policy_version=1)
        pol = OnnxPolicy(path)
        obs = np.random.default_rng(1).normal(0, 0.3, pol.obs_dim).astype(np.float32)
        inf = bench_inference(agent, pol, args.inference_calls, obs)
        print(f"inference, one observation, 256x256 SAC actor ({args.inference_calls} calls, 1 thread):")
        for k, (p50, p99) in inf.items():
            print(f"  {k:12s} p50 {p50:7.1f} us   p99 {p99:7.1f} us")
        if args.ab == "warm":
            runs = []
            try:
                check_realtime(args.rt_priority)
                prio: int | None = args.rt_priority
            except RealtimeError as exc:
                print(f"(normal scheduler: {exc})")
                prio = None
            for hz in args.hz:
                for rep in range(args.reps):
                    modes = ("tick", "calls") if rep % 2 == 0 else ("calls", "tick")
                    got = bench_warmup(args.robot, hz, args.seconds, tmp / f"warm{hz:g}-{rep}", args.spin_us, prio,
                                       modes, args.block_s)
                    runs += got
                    print(f"controller {args.robot} {hz:g} Hz, {args.seconds:g} s paced, recording, "
                          f"{'SCHED_FIFO ' + str(prio) if prio else 'normal scheduler'}, warm-up switched every "
                          f"{args.block_s:g} s: " + "; ".join(
                              f"{r['variant']} p50 {r['overhead_p50_us']:.0f} us p99 {r['overhead_p99_us']:.0f} us "
                              f"({r['ticks']} ticks)" for r in got) + f"; deadline misses {got[0]['deadline_misses']}",
                          flush=True)
                med = {v: {k: float(np.median([r[k] for r in runs if r["hz"] == hz and r["variant"] == v]))
                           for k in ("overhead_p50_us", "overhead_p99_us")} for v in ("tick", "calls")}
                a, b = med["tick"], med["calls"]
                print(f"{hz:g} Hz, medians of {args.reps}: warm-up tick p50/p99 {a['overhead_p50_us']:.0f}/"
                      f"{a['overhead_p99_us']:.0f} us; calls {b['overhead_p50_us']:.0f}/{b['overhead_p99_us']:.0f} us;"
                      f" overhead p99 tick / calls {a['overhead_p99_us'] / b['overhead_p99_us']:.2f}, p50 "
                      f"{a['overhead_p50_us'] / b['overhead_p50_us']:.2f}", flush=True)
            write_json(args.json_out, {"inference_us": {k: {"p50": v[0], "p99": v[1]} for k, v in inf.items()},
                                       "warmup": runs})
            return 0
        # variant name -> (writer, SCHED_FIFO priority); the first is the candidate, the second its competitor
        variants = {"process": ("process", None), "thread": ("thread", None)} if args.ab == "writer" else \
            {f"fifo{args.rt_priority}": ("process", args.rt_priority), "normal": ("process", None)}
        va, vb = variants
        runs, floors = [], []
        for hz in args.hz:
            for rep in range(args.reps):
                for name in ((va, vb) if rep % 2 == 0 else (vb, va)):
                    writer, prio = variants[name]
                    sub = tmp / f"{name}{rep}"
                    r = bench_controller(args.robot, hz, args.seconds, sub, args.spin_us, writer, prio)
                    r["variant"] = name
                    runs.append(r)
                    print(f"controller {args.robot} {hz:g} Hz, {args.seconds:g} s paced (spin {r['spin_us']:g} us), "
                          f"recording (writer {writer}, {'SCHED_FIFO ' + str(prio) if prio else 'normal scheduler'})"
                          f": tick overhead p50 {r['overhead_p50_us']:.0f} us p99 "
                          f"{r['overhead_p99_us']:.0f} us; period p50 {r['period_p50_us']:.0f} p99 "
                          f"{r['period_p99_us']:.0f} us (jitter {r['jitter_us']:.0f} us); deadline misses "
                          f"{r['deadline_misses']} ({r['deadline_miss_pct']:.3f} %); watchdog holds "
                          f"{r['watchdog_holds']}; rows dropped {r['record_dropped']}", flush=True)
            f = bench_floor(args.robot, OnnxPolicy(tmp / f"{va}0" / f"policy-{hz:g}.onnx"), hz, args.seconds / 2,
                            runs[-1]["spin_us"] * 1e-6)
            floors.append(f)
            print(f"raw limit {hz:g} Hz (spin {f['spin_us']:g} us): observe + inference alone, paced p50 "
                  f"{f['paced_p50_us']:.0f} us p99 {f['paced_p99_us']:.0f} us ({f['deadline_misses']} misses); "
                  f"the same loop unpaced p50 {f['unpaced_p50_us']:.0f} us p99 {f['unpaced_p99_us']:.0f} us")
            med = {v: {k: float(np.median([r[k] for r in runs if r["hz"] == hz and r["variant"] == v]))
                       for k in ("overhead_p50_us", "overhead_p99_us", "deadline_miss_pct", "period_p99_us")}
                   for v in (va, vb)}
            a, b = med[va], med[vb]
            print(f"{hz:g} Hz, medians of {args.reps}: {va} p50/p99 {a['overhead_p50_us']:.0f}/"
                  f"{a['overhead_p99_us']:.0f} us, period p99 {a['period_p99_us']:.0f} us, misses "
                  f"{a['deadline_miss_pct']:.2f} %; {vb} {b['overhead_p50_us']:.0f}/{b['overhead_p99_us']:.0f} us, "
                  f"period p99 {b['period_p99_us']:.0f} us, misses {b['deadline_miss_pct']:.2f} %; overhead p99 {va} / "
                  f"{vb} {a['overhead_p99_us'] / b['overhead_p99_us']:.2f}, period p99 "
                  f"{a['period_p99_us'] / b['period_p99_us']:.3f}; {va} p99 / raw-limit paced p99 "
                  f"{a['overhead_p99_us'] / f['paced_p99_us']:.1f}", flush=True)
    write_json(args.json_out, {"inference_us": {k: {"p50": v[0], "p99": v[1]} for k, v in inf.items()},
                               "controller": runs, "raw_limit": floors})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
