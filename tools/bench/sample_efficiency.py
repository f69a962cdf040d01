"""Benchmark: real environment steps to reach a return threshold, MBPO vs Dyna vs robodyna SAC vs SB3 SAC.

For every env x algo x seed, train with periodic deterministic evaluation and record the first real step at which
the mean eval return reaches the env's threshold (runs stop there; ``inf`` if never within ``--max-steps``).
Prints a table of medians and ratios (SB3 SAC steps / algo steps), writes JSON and a PNG of the eval curves.
Return hides precision on reach tasks, so every evaluation also records the success rate (final distance under
the task's tolerance) and the mean final distance; the table reports both at the last evaluation, and
``--stop-on success --success-level 0.8`` measures steps to that success rate instead of to the return
threshold. SB3 SAC runs on robodyna robots too (``--envs reacher2 panda --algos mbpo sb3``).
Full runs take hours on 2 CPUs; run small with e.g. ``--seeds 1 --max-steps 1500 --envs reacher2``.
Long runs are often made one (algo, seed) at a time: ``--merge A.json B.json ...`` prints the tables over all of
them (a run stopped before it wrote its JSON merges from its own ``ENV_ALGO_SEED/`` folder, whose ``metrics.csv``
holds every evaluation made). Steps to a success level are right-censored (a run that stops at its cap, or at
its own stop rule, before the level only says it needs more): medians and ratios say so (``>=140000``, ``>=5.00``)
instead of ``inf``.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from _common import (  # tools/bench/ is on sys.path when run as a script
    censored_median,
    censored_ratio,
    first_step_at,
    format_censored,
    relation_of,
    run_from_metrics,
    silence_sb3_logger,
)

from robodyna.learn.config import load_algo_config
from robodyna.learn.envs import make_env, task_fns_for_env
from robodyna.learn.mbpo import evaluate, train

log = logging.getLogger("sample_efficiency")
# reacher2 (with its precision term since issue 17): the IK oracle (robodyna sim --policy oracle) scores +12.4,
# random actions -11.7 (40 episodes each); before the term the oracle scored -4.5 and the threshold was -6.
# panda (150-step episodes): the IK oracle scores -17.1, random actions -56.2 (20 episodes each). Return hides
# precision on reach: measure steps to a success rate with --stop-on success.
DEFAULT_THRESHOLDS = {"Reacher-v5": -5.0, "reacher2": 0.0, "panda": -20.0}
ALGOS = ("mbpo", "dyna", "sac", "sac-rawobs", "sb3", "sb3-alpha0.1", "sb3-her")
# The SB3 baselines ratios are printed against: SB3 SAC as configured (its defaults: α from 1.0), and SB3 SAC with
# α started at 0.1 like robodyna's Reacher-v5 preset (from 1.0 its α takes thousands of updates to fall).
SB3_INIT_ALPHA = {"sb3-alpha0.1": 0.1}
# Variants of a preset: (preset, extra overrides). ``sac-rawobs`` is robodyna SAC without its observation
# normaliser, its critics' LayerNorm and its alpha from 0.1, i.e. configured exactly like SB3's SAC: the like-for-like
# correctness check against SB3.
VARIANTS = {"sac-rawobs": ("sac", ["sac.normalize_obs=false", "sac.critic_layer_norm=false", "sac.init_alpha=1.0"])}


def max_steps_for(algo: str, args: argparse.Namespace) -> int:
    if algo in ("mbpo", "dyna") and args.max_steps_model:  # variants of sac use --max-steps
        return int(args.max_steps_model)
    return int(args.max_steps)


def run_ours(algo: str, env: str, seed: int, args: argparse.Namespace, thr: float, out: Path) -> dict[str, Any]:
    over = [f"seed={seed}", f"eval_every={args.eval_every}", f"eval_episodes={args.eval_episodes}",
            f"checkpoint_every={10**9}", f"sac.num_threads={args.threads}"] + list(args.overrides)
    preset, extra = VARIANTS.get(algo, (algo, []))
    cfg = load_algo_config(preset, env, over + extra)
    t0 = time.perf_counter()
    res = train(cfg, env, out / f"{env}_{algo}_{seed}", max_steps_for(algo, args), progress=False, tensorboard=False,
                on_eval=lambda row: reached(row, thr, args, f"{env} {algo} seed {seed}"))
    curve = [(int(e["step"]), float(e["mean_return"])) for e in res.evals]
    return {"curve": curve, "precision": [precision_of(e) for e in res.evals], "seconds": time.perf_counter() - t0}


def precision_of(ev: dict[str, Any]) -> tuple[int, float, float]:
    """(step, success rate, mean final distance [m]) of an evaluation row (NaN where the env reports none)."""
    return (int(ev["step"]), float(ev.get("success_rate", math.nan)), float(ev.get("mean_final_distance_m", math.nan)))


def reached(ev: dict[str, Any], thr: float, args: argparse.Namespace, tag: str = "") -> bool:
    """Whether a run stops at this evaluation: its return reached the threshold, or (``--stop-on success``) its
    success rate reached ``--success-level``. ``tag`` (env, algo, seed): print the evaluation as progress."""
    if tag:
        print(f"  {tag} step {int(ev['step'])}: return {float(ev['mean_return']):.2f}, success "
              f"{float(ev.get('success_rate', math.nan)):.0%}, final distance "
              f"{100 * float(ev.get('mean_final_distance_m', math.nan)):.2f} cm", flush=True)
    if args.stop_on == "success":
        return float(ev.get("success_rate", -1.0)) >= args.success_level
    return float(ev["mean_return"]) >= thr


class GoalDictEnv(gym.Wrapper):
    """A robodyna reach env as a goal env for SB3's ``HerReplayBuffer`` (the same task knowledge our goal
    relabelling uses): the observation split into ``observation`` (joints and end effector), ``achieved_goal`` (the
    end effector) and ``desired_goal`` (the target); ``compute_reward`` is the task's reward for any goal (the
    distance term recomputed, the action cost carried in ``info``)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.fns = task_fns_for_env(env)
        lay = self.fns.layout
        box = env.observation_space
        assert isinstance(box, gym.spaces.Box)
        od = box.shape[0]  # joints, end effector, target, then any action history (part of the observation)
        part = {"observation": np.r_[0 : lay.ee.stop, lay.history_start : od], "achieved_goal": np.r_[lay.ee],
                "desired_goal": np.r_[lay.target]}
        self.observation_space = gym.spaces.Dict(
            {k: gym.spaces.Box(box.low[s], box.high[s], dtype=np.float32) for k, s in part.items()})
        self._parts = part

    def split(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        return {k: np.asarray(obs[s], np.float32) for k, s in self._parts.items()}

    def reset(self, **kw: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        obs, info = self.env.reset(**kw)
        return self.split(obs), info

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        nxt, r, term, trunc, info = self.env.step(action)
        d = self.fns.distance(nxt)
        info["action_cost"] = -float(r) - float(d) + float(self.fns.precision(d))
        return self.split(nxt), float(r), term, trunc, info

    def compute_reward(self, achieved: np.ndarray, desired: np.ndarray, info: Any) -> np.ndarray:
        d = np.linalg.norm(np.asarray(achieved) - np.asarray(desired), axis=-1)
        cost = (np.array([i["action_cost"] for i in info]) if isinstance(info, (list, np.ndarray))
                else info["action_cost"])
        return (-d - cost + self.fns.precision(d)).astype(np.float32)


def run_sb3(env_name: str, seed: int, args: argparse.Namespace, thr: float, init_alpha: float,
            her: bool = False) -> dict[str, Any]:
    """SB3 SAC; ``her``: with its ``HerReplayBuffer`` (future goals, 4 per transition: SB3's defaults)."""
    from stable_baselines3 import SAC as SB3SAC
    from stable_baselines3 import HerReplayBuffer

    env, eval_env = make_env(env_name), make_env(env_name)
    kw: dict[str, Any] = {}
    if her:
        env = GoalDictEnv(env)
        kw = {"replay_buffer_class": HerReplayBuffer,
              "replay_buffer_kwargs": {"n_sampled_goal": 4, "goal_selection_strategy": "future",
                                       "copy_info_dict": True}}  # the action cost rides in info
    model = SB3SAC("MultiInputPolicy" if her else "MlpPolicy", env, seed=seed, device="cpu", verbose=0,
                   learning_starts=args.sb3_learning_starts, gamma=args.sb3_gamma, tau=args.sb3_tau,
                   ent_coef=f"auto_{init_alpha:g}", **kw)
    silence_sb3_logger(model)
    to_input = env.split if isinstance(env, GoalDictEnv) else (lambda o: o)
    t0, steps, curve, prec = time.perf_counter(), 0, [], []
    while steps < args.max_steps:
        chunk = min(args.eval_every, args.max_steps - steps)
        model.learn(chunk, reset_num_timesteps=False)
        steps += chunk
        ev = evaluate(lambda o: model.predict(to_input(o), deterministic=True)[0], eval_env, args.eval_episodes,
                      seed=seed * 100_003 + steps)
        curve.append((steps, float(ev["mean_return"])))
        prec.append(precision_of({**ev, "step": steps}))
        tag = f"{env_name} sb3 (initial α {init_alpha:g}{', HER' if her else ''}) seed {seed}"
        if reached({**ev, "step": steps}, thr, args, tag):
            break
    return {"curve": curve, "precision": prec, "seconds": time.perf_counter() - t0}


def run_one(job: tuple[str, str, int, argparse.Namespace, float, Path]) -> dict[str, Any]:
    """One (env, algo, seed) run in a worker process with its own torch thread budget."""
    env, algo, seed, args, thr, out = job
    torch.set_num_threads(args.threads)
    if algo.startswith("sb3"):
        r = run_sb3(env, seed, args, thr, SB3_INIT_ALPHA.get(algo, args.sb3_init_alpha), her=algo == "sb3-her")
    else:
        r = run_ours(algo, env, seed, args, thr, out)
    r["steps_to_threshold"] = steps_to(r["curve"], thr)
    r["seconds_to_threshold"] = r["seconds"] if math.isfinite(r["steps_to_threshold"]) else math.inf
    r["steps_to_success"] = steps_to([(s, sr) for s, sr, _ in r["precision"]], args.success_level)
    last = r["precision"][-1] if r["precision"] else (0, math.nan, math.nan)
    r["final_success_rate"], r["final_distance_m"] = last[1], last[2]
    r.update(env=env, algo=algo, seed=seed)
    return r


def steps_to(curve: list[tuple[int, float]], thr: float) -> float:
    return next((float(s) for s, r in curve if r >= thr), math.inf)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--envs", nargs="+", default=["Reacher-v5", "reacher2"])
    ap.add_argument("--algos", nargs="+", default=list(ALGOS), choices=ALGOS)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--seed-list", type=int, nargs="+", default=None, help="run these seeds instead of 0..seeds-1")
    ap.add_argument("--max-steps", type=int, default=20_000)
    ap.add_argument("--max-steps-model", type=int, default=0, help="step cap for mbpo/dyna (default: --max-steps)")
    ap.add_argument("--jobs", type=int, default=1, help="runs in parallel (separate processes)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads per run (default: 2 // jobs, >= 1)")
    ap.add_argument("--eval-every", type=int, default=500)
    ap.add_argument("--eval-episodes", type=int, default=5)
    ap.add_argument("--threshold", action="append", default=[], metavar="ENV=RETURN")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override for the robodyna algos")
    ap.add_argument("--also", type=float, nargs="*", default=[-7.0, -6.0],
                    help="extra (easier) return levels reported from the same curves")
    ap.add_argument("--sb3-learning-starts", type=int, default=1000)
    ap.add_argument("--sb3-gamma", type=float, default=0.99, help="SB3's discount (its default 0.99)")
    ap.add_argument("--sb3-tau", type=float, default=0.005, help="SB3's target-network rate (its default 0.005)")
    ap.add_argument("--sb3-init-alpha", type=float, default=1.0,
                    help="initial entropy coefficient of the sb3 algo, tuned from there (SB3's default 1.0; "
                    "sb3-alpha0.1 always starts at 0.1)")
    ap.add_argument("--stop-on", choices=["return", "success"], default="return",
                    help="stop a run when its eval return reaches the threshold (default) or its success rate "
                    "reaches --success-level")
    ap.add_argument("--success-level", type=float, default=0.8,
                    help="success rate whose first step is reported (steps to success), default 0.8")
    ap.add_argument("--out-dir", default="runs/sample_efficiency")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="run nothing: combine the runs of earlier invocations (their sample_efficiency.json, "
                    "folders holding one, or a stopped run's own ENV_ALGO_SEED folder: its metrics.csv) and print the "
                    "tables over all of them, e.g. MBPO and SB3 run separately")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        summarize(*merge_runs(args.merge), args, out)
        return 0
    args.threads = args.threads or max(1, 2 // args.jobs)
    thresholds = dict(DEFAULT_THRESHOLDS)
    for t in args.threshold:
        k, v = t.split("=", 1)
        thresholds[k] = float(v)
    for env in args.envs:
        if env not in thresholds:
            raise SystemExit(f"no return threshold for {env}: pass --threshold {env}=VALUE")
    seeds = args.seed_list if args.seed_list is not None else list(range(args.seeds))
    jobs = [(env, algo, seed, args, thresholds[env], out)
            for env in args.envs for algo in args.algos for seed in seeds]
    print(f"{len(jobs)} runs, {args.jobs} at a time, {args.threads} torch thread(s) each", flush=True)
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}

    def record(r: dict[str, Any]) -> None:
        results.setdefault(r["env"], {}).setdefault(r["algo"], []).append(r)
        print(f"{r['env']:12s} {r['algo']:12s} seed {r['seed']}: steps to {thresholds[r['env']]:g} = "
              f"{r['steps_to_threshold']:g}, to success {args.success_level:.0%} = {r['steps_to_success']:g}; "
              f"last eval: success {r['final_success_rate']:.0%}, final distance "
              f"{100 * r['final_distance_m']:.2f} cm ({r['seconds']:.0f} s)", flush=True)

    if args.jobs > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor, as_completed

        with ProcessPoolExecutor(args.jobs, mp_context=mp.get_context("spawn")) as pool:
            for fut in as_completed([pool.submit(run_one, j) for j in jobs]):
                record(fut.result())
    else:
        for j in jobs:
            record(run_one(j))
    summarize(results, thresholds, args, out)
    return 0


def merge_runs(paths: list[str]) -> tuple[dict[str, dict[str, list[dict[str, Any]]]], dict[str, float]]:
    """The runs of earlier invocations' ``sample_efficiency.json`` (files or folders holding one), one per (env,
    algo, seed): the same run found twice is an error, not a silent choice."""
    results: dict[str, dict[str, list[dict[str, Any]]]] = {}
    thresholds: dict[str, float] = dict(DEFAULT_THRESHOLDS)
    seen: dict[tuple[str, str, int], Path] = {}
    for raw in paths:
        f = Path(raw)
        if f.is_dir() and not (f / "sample_efficiency.json").is_file() and (f / "metrics.csv").is_file():
            try:  # one run's own folder, stopped before the benchmark wrote its JSON
                run = run_from_metrics(f, ALGOS)
            except (OSError, ValueError) as exc:
                raise SystemExit(f"--merge {raw}: {exc}") from exc
            data: dict[str, Any] = {"results": {run["env"]: {run["algo"]: [run]}}}
            f = f / "metrics.csv"
        else:
            f = f / "sample_efficiency.json" if f.is_dir() else f
            data = {}
        try:
            data = data or json.loads(f.read_text())
            runs = [r for per_algo in data["results"].values() for rs in per_algo.values() for r in rs]
            for r in runs:
                r["curve"], r["precision"], r["env"], r["algo"], r["seed"]  # noqa: B018 - the fields merged
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SystemExit(f"--merge {raw}: not a sample_efficiency.json with runs ({type(exc).__name__}: "
                             f"{exc})") from exc
        thresholds.update({k: float(v) for k, v in data.get("thresholds", {}).items()})
        for r in runs:
            key = (r["env"], r["algo"], int(r["seed"]))
            if key in seen:
                raise SystemExit(f"--merge: {key[0]} {key[1]} seed {key[2]} is in both {seen[key]} and {f}")
            seen[key] = f
            results.setdefault(r["env"], {}).setdefault(r["algo"], []).append(r)
    unknown = sorted(set(results) - set(thresholds))
    if unknown:
        raise SystemExit(f"--merge: no return threshold for {', '.join(unknown)} (a run folder is named ENV_ALGO_SEED; "
                         f"known: {', '.join(sorted(thresholds))})")
    for per_algo in results.values():  # curves were stored as JSON lists; steps-to values follow the thresholds
        for runs in per_algo.values():
            runs.sort(key=lambda r: int(r["seed"]))
    return results, thresholds


def summarize(results: dict[str, dict[str, list[dict[str, Any]]]], thresholds: dict[str, float],
              args: argparse.Namespace, out: Path) -> None:
    """Print the tables (medians over seeds, ratios against the SB3 baselines), write JSON and the curves' PNG."""
    for per_algo in results.values():
        for runs in per_algo.values():
            for r in runs:
                r["steps_to_threshold"] = steps_to([tuple(c) for c in r["curve"]], thresholds[r["env"]])
                r["steps_to_success"] = steps_to([(p[0], p[1]) for p in r["precision"]], args.success_level)
    seeds = sorted({int(r["seed"]) for pa in results.values() for rs in pa.values() for r in rs})
    print(f"\nmedians over {len(seeds)} seeds (step caps: {args.max_steps}, model-based "
          f"{args.max_steps_model or args.max_steps}); ratios = baseline / algo (higher is better), against "
          f"sb3 (x SB3), sb3-alpha0.1 (x SB3α) and sb3-her (x HER: SB3 given the goal knowledge our relabelling uses) "
          "where they ran")
    print(f"{'env':12s} {'algo':12s} {'steps':>8s} {'x SB3':>7s} {'x SB3α':>7s} {'x HER':>7s} {'seconds':>8s} "
          f"{'x SB3':>7s} {'x SB3α':>7s}")
    table: dict[str, dict[str, Any]] = {}
    for env, per_algo in results.items():
        def med(algo: str, key: str, per_algo: dict[str, list[dict[str, Any]]] = per_algo) -> float:
            return float(np.median([r[key] for r in per_algo.get(algo, [])] or [math.nan]))

        for algo in [a for a in ALGOS if a in per_algo]:
            steps, secs = med(algo, "steps_to_threshold"), med(algo, "seconds_to_threshold")
            row: dict[str, float] = {"median_steps": steps, "median_seconds": secs}
            for base, tag in (("sb3", "sb3"), ("sb3-alpha0.1", "sb3_alpha0.1"), ("sb3-her", "sb3_her")):
                for key, mine in (("steps", steps), ("seconds", secs)):
                    theirs = med(base, f"{key}_to_threshold")
                    row[f"{key}_ratio_vs_{tag}"] = theirs / mine if math.isfinite(mine) else math.nan
            table[f"{env}/{algo}"] = row
            print(f"{env:12s} {algo:12s} {steps:>8g} {row['steps_ratio_vs_sb3']:>7.2f} "
                  f"{row['steps_ratio_vs_sb3_alpha0.1']:>7.2f} {row['steps_ratio_vs_sb3_her']:>7.2f} {secs:>8.0f} "
                  f"{row['seconds_ratio_vs_sb3']:>7.2f} "
                  f"{row['seconds_ratio_vs_sb3_alpha0.1']:>7.2f}")
    precision_table(results, args.success_level, table)
    for level in args.also:
        print(f"\nmedian real steps to the easier level {level:g} (same runs)")
        for env, per_algo in results.items():
            meds = {a: float(np.median([steps_to(r["curve"], level) for r in runs])) for a, runs in per_algo.items()}
            for algo in [a for a in ALGOS if a in meds]:
                ratio = meds.get("sb3", math.nan) / meds[algo] if math.isfinite(meds[algo]) else math.nan
                table[f"{env}/{algo}/{level:g}"] = {"median_steps": meds[algo], "steps_ratio_vs_sb3": ratio}
                print(f"{env:12s} {algo:12s} {meds[algo]:>8g} {ratio:>7.2f}")
    (out / "sample_efficiency.json").write_text(json.dumps(
        {"thresholds": thresholds, "table": table, "results": results, "args": vars(args)}, indent=1, default=str))
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4), squeeze=False)
    for ax, (env, per_algo) in zip(axes[0], results.items()):
        for algo, runs in per_algo.items():
            for i, r in enumerate(runs):
                s, ret = zip(*r["curve"]) if r["curve"] else ((), ())
                ax.plot(s, ret, color=f"C{ALGOS.index(algo)}", alpha=0.8, label=algo if i == 0 else None)
        ax.axhline(thresholds[env], color="k", ls="--", lw=1)
        ax.set(title=env, xlabel="real env steps", ylabel="eval return")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "sample_efficiency.png", dpi=100)
    print(f"wrote {out / 'sample_efficiency.json'} and {out / 'sample_efficiency.png'}")


def precision_table(results: dict[str, dict[str, list[dict[str, Any]]]], level: float,
                    table: dict[str, dict[str, Any]]) -> None:
    """Real steps to success rate ``level`` per algo: the median over seeds and its ratio against SB3 SAC and SB3 +
    HER, with runs that stopped short counted as lower bounds (``>=``: needs more than it ran), and per seed where
    both ran the seed; the success rate and mean final distance at each run's last evaluation."""
    print(f"\nprecision (medians over seeds): real steps to success {level:.0%} (>=: a run stopped before it, so "
          "the value is a lower bound), ratio baseline / algo, and success rate / mean final distance at each run's "
          "last evaluation")
    print(f"{'env':12s} {'algo':12s} {'seeds':>5s} {'steps':>9s} {'x SB3':>7s} {'x HER':>7s} {'success':>8s} "
          f"{'final cm':>9s}  per seed: steps (x HER, x SB3)")
    for env, per_algo in results.items():
        steps = {a: {int(r["seed"]): first_step_at(r["precision"], level) for r in runs}
                 for a, runs in per_algo.items()}
        meds = {a: censored_median(list(v.values())) for a, v in steps.items()}
        nan = (math.nan, True)
        for algo in [a for a in ALGOS if a in per_algo]:
            runs = per_algo[algo]
            (st, exact) = meds[algo]
            vs_sb3, vs_her = (censored_ratio(meds.get(b, nan), meds[algo]) if b != algo else (1.0, "=")
                              for b in ("sb3", "sb3-her"))
            sr = float(np.median([r["final_success_rate"] for r in runs]))
            fd = float(np.median([r["final_distance_m"] for r in runs]))
            per_seed = []
            for seed, s in sorted(steps[algo].items()):
                rel = [format_censored(*censored_ratio(steps[b][seed], s), fmt="{:.1f}")
                       for b in ("sb3-her", "sb3") if b != algo and seed in steps.get(b, {})]
                per_seed.append(f"{seed}: {format_censored(s[0], relation_of(s[1]))}"
                                + (f" ({', '.join(rel)})" if rel else ""))
            table[f"{env}/{algo}/success"] = {
                "median_steps_to_success": st, "median_exact": float(exact),
                "steps_ratio_vs_sb3": vs_sb3[0], "steps_ratio_vs_sb3_relation": vs_sb3[1],
                "steps_ratio_vs_sb3_her": vs_her[0], "steps_ratio_vs_sb3_her_relation": vs_her[1],
                "median_final_success_rate": sr, "median_final_distance_m": fd}
            print(f"{env:12s} {algo:12s} {len(runs):>5d} {format_censored(st, relation_of(exact)):>9s} "
                  f"{format_censored(*vs_sb3, fmt='{:.2f}'):>7s} {format_censored(*vs_her, fmt='{:.2f}'):>7s} "
                  f"{sr:>8.0%} {100 * fd:>9.2f}  {'; '.join(per_seed)}")


if __name__ == "__main__":
    raise SystemExit(main())
