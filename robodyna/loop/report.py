"""``report.md`` of a loop run, with PNG plots from the run's CSV files (matplotlib, Agg backend)."""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from robodyna.learn.mbpo import format_eval
from robodyna.loop.refresh import SIGNALS

log = logging.getLogger(__name__)
TIMING = ("rate_hz", "target_hz", "period_p50_us", "period_p99_us", "overhead_p99_us", "inference_p99_us",
          "deadline_misses", "interventions")


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _col(rows: list[dict[str, str]], key: str) -> np.ndarray:
    out = []
    for r in rows:
        try:
            out.append(float(r.get(key, "nan") or "nan"))
        except ValueError:
            out.append(float("nan"))
    return np.asarray(out, np.float64)


def controller_status(run_dir: Path) -> dict[str, Any]:
    """The last controller process's final status (its stdout JSON), or {}."""
    for p in sorted((run_dir / "controller").glob("status_*.json"), key=lambda p: int(p.stem.split("_")[1]),
                    reverse=True):
        try:
            return dict(json.loads(p.read_text()))
        except (ValueError, OSError):
            continue
    return {}


def events(run_dir: Path) -> list[dict[str, Any]]:
    """The loop's ``events.jsonl`` rows (unreadable lines skipped: the log of a run killed mid-write may end in
    half a line)."""
    out = []
    path = run_dir / "events.jsonl"
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if isinstance(e, dict):
            out.append(e)
    return out


def injected_changes(run_dir: Path, ev: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """The dynamics changes the loop injected (``events.jsonl``'s ``dynamics_change`` rows; ``ev``: those rows
    already read)."""
    return [e for e in (events(run_dir) if ev is None else ev) if e.get("event") == "dynamics_change"
            and "real_steps" in e]


def stored_rows(root: Path) -> int | None:
    """The rows an episode store holds; None before it is created or when it cannot be read (logged)."""
    from robodyna.data.store import EpisodeStore

    if not (root / "meta.json").is_file():
        return None
    try:
        return EpisodeStore(root).num_transitions
    except Exception as exc:  # noqa: BLE001 - a damaged store is reported, not fatal to the report
        log.warning("report: cannot count the rows of %s: %s", root, exc)
        return None


def incidents(run_dir: Path, ev: list[dict[str, Any]] | None = None,
              metrics: list[dict[str, str]] | None = None) -> list[str]:
    """What went wrong during the loop, one sentence each: either side's process exiting early (``events.jsonl``;
    the loop restarted it), refresh requests re-sent because nobody answered them (``trainer/metrics.csv``
    ``refresh/resent``), pushed policies the robot refused (``trainer/policy_results.csv``). ``ev``, ``metrics``:
    those files' rows already read."""
    out = []
    ev = events(run_dir) if ev is None else ev
    metrics = _rows(run_dir / "trainer" / "metrics.csv") if metrics is None else metrics
    for side in ("trainer", "controller"):
        codes = [e.get("code") for e in ev if e.get("event") == f"{side}_exited"]
        if codes:
            out.append(f"The {side} process exited early {len(codes)} time{'s' * (len(codes) > 1)} (exit codes "
                       f"{', '.join(map(str, codes))}; `events.jsonl`, `{side}/{side}.log`); the loop restarted it.")
    resent = [r for r in metrics if r.get("key") == "refresh/resent"]
    if resent:
        out.append(f"{len(resent)} refresh request{'s were' if len(resent) > 1 else ' was'} re-sent after "
                   "`trainer.refresh.request_timeout_s` without an answer (the robot was away or had restarted).")
    refused = [r for r in _rows(run_dir / "trainer" / "policy_results.csv") if r.get("accepted") == "0"]
    if refused:
        out.append(f"The robot refused {len(refused)} pushed polic{'ies' if len(refused) > 1 else 'y'} and kept the "
                   f"one it ran (first: v{refused[0].get('version')}, {refused[0].get('reason')}; "
                   "`trainer/policy_results.csv`; the trainer did not count it as deployed and moved its files to "
                   "`trainer/policies/refused/`).")
    return out


def real_data_accounting(run_dir: Path, robot_id: str) -> str:
    """Whether every row the controller recorded is in the trainer's store ("" before the controller recorded)."""
    recorded = stored_rows(run_dir / "controller" / "record")
    received = stored_rows(run_dir / "trainer" / "store" / robot_id)
    if recorded is None:
        return ""
    if received is not None and received >= recorded:
        return f"Every one of the {recorded} rows the controller recorded is in the trainer's store."
    return (f"The controller recorded {recorded} rows, the trainer's store holds {received or 0}: the rest stay in "
            "`controller/record` (`robodyna loop --resume` sends them).")


def detected_changes(run_dir: Path, metrics: list[dict[str, str]] | None = None) -> list[tuple[float, int, bool]]:
    """The dynamics changes the trainer detected (``refresh.forget_on_change_ratio``): (real steps, real rows it
    forgot, whether it restarted from the stage-1 agent and model), from the ``drift/forgotten_rows`` and
    ``drift/restarted`` rows of ``trainer/metrics.csv`` (a half-written last row skipped; ``metrics``: its rows
    already read)."""
    forgot: dict[float, int] = {}
    restarted: set[float] = set()
    for r in _rows(run_dir / "trainer" / "metrics.csv") if metrics is None else metrics:
        try:
            if r.get("key") == "drift/forgotten_rows":
                forgot[float(r["step"])] = int(float(r["value"]))
            elif r.get("key") == "drift/restarted" and float(r["value"]) > 0:
                restarted.add(float(r["step"]))
        except (TypeError, ValueError):
            continue
    return [(at, n, at in restarted) for at, n in forgot.items()]


def write_report(run_dir: Path, cfg: Any, result: dict[str, Any]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = run_dir / "plots"
    plots.mkdir(exist_ok=True)
    td = run_dir / "trainer"
    eps, refresh, sig = _rows(td / "real_episodes.csv"), _rows(td / "refresh.csv"), _rows(td / "signals.csv")
    ev = result["eval"]
    summary = result["summary"]
    ev_rows, metric_rows = events(run_dir), _rows(td / "metrics.csv")  # each read once
    changes = injected_changes(run_dir, ev_rows)
    detected = detected_changes(run_dir, metric_rows)

    # 1. real return / final distance / success vs real steps (per round)
    fig, ax = plt.subplots(1, 3, figsize=(14, 3.6))
    if eps:
        rnd, steps = _col(eps, "round"), _col(eps, "real_steps")
        for i, (k, lab) in enumerate((("return", "return"), ("final_distance_m", "final distance (m)"),
                                      ("success", "success rate"))):
            y = _col(eps, k)
            ax[i].plot(steps, y, ".", alpha=0.4, label="episode")
            xs, ys = [], []
            for r in np.unique(rnd):
                m = rnd == r
                xs.append(steps[m].max())
                ys.append(np.nanmean(y[m]))
            ax[i].plot(xs, ys, "o-", label="round mean")
            ax[i].set_xlabel("real steps")
            ax[i].set_ylabel(lab)
        ax[0].legend()
    fig.suptitle("the \"real\" robot during the loop (episodes it learnt from)")
    fig.tight_layout()
    fig.savefig(plots / "real_vs_steps.png", dpi=90)
    plt.close(fig)

    # 2. sim-only vs adapted
    fig, ax = plt.subplots(1, 3, figsize=(10, 3.2))
    for i, (k, lab) in enumerate((("mean_return", "return"), ("mean_final_distance_m", "final distance (m)"),
                                  ("success_rate", "success rate"))):
        vals = [ev["sim_only"].get(k, np.nan), ev["adapted"].get(k, np.nan)]
        ax[i].bar(["sim-only", "adapted"], vals, color=["tab:gray", "tab:green"])
        ax[i].set_title(lab)
    fig.suptitle(f"on the \"real\" robot ({ev['reality']}), {ev['episodes']} evaluation episodes")
    fig.tight_layout()
    fig.savefig(plots / "sim_only_vs_adapted.png", dpi=90)
    plt.close(fig)

    # 3. model error over time, 4. drift signals with refresh events
    fig, ax = plt.subplots(1, 1, figsize=(7, 3.4))
    if sig:
        ax.semilogy(_col(sig, "real_steps"), _col(sig, "new_error"), ".-", label="1-step error, newest real data")
        ax.semilogy(_col(sig, "real_steps"), _col(sig, "fitted_error"), ".-", label="1-step error, fitted data")
        for c in changes:
            ax.axvline(float(c["real_steps"]), color="r", ls=":", lw=1, label=f"dynamics change ({c['reality']})")
        for i, (at, _, _) in enumerate(detected):
            ax.axvline(at, color="k", ls="-.", lw=1, label="change detected" if i == 0 else None)
        ax.legend()
    else:  # a loop that stopped before the first refit on real data
        ax.text(0.5, 0.5, "no model fit on real data yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("real steps")
    ax.set_ylabel("model MSE")
    fig.tight_layout()
    fig.savefig(plots / "model_error.png", dpi=90)
    plt.close(fig)

    thr = {k: float(getattr(cfg.trainer.refresh, k)) for k in SIGNALS}
    fig, ax = plt.subplots(len(thr), 1, figsize=(8, 2.2 * len(thr)), sharex=True)
    for i, k in enumerate(thr):
        if sig:
            ax[i].plot(_col(sig, "updates"), _col(sig, k), ".-")
            if k in ("model_error_ratio", "state_novelty"):
                ax[i].set_yscale("log")
        if thr[k] < 1e5:  # a threshold this high means the signal is only logged
            ax[i].axhline(thr[k], color="r", ls="--", lw=1)
        ax[i].set_ylabel(k)
        for r in refresh:
            ax[i].axvline(float(r["updates"]), color="k" if r["reason"] == k else "0.8", lw=0.8)
    ax[-1].set_xlabel("SAC updates (vertical lines: refresh requests; black: triggered by this signal)")
    fig.tight_layout()
    fig.savefig(plots / "drift_signals.png", dpi=90)
    plt.close(fig)

    # 5. controller timing and interventions
    cs = controller_status(run_dir)
    loop = cs.get("loop", {})
    fig, ax = plt.subplots(1, 1, figsize=(6, 3))
    inter = cs.get("interventions", {})
    ax.bar(list(inter) or ["none"], list(inter.values()) or [0])
    ax.set_title("safety interventions (last controller process)")
    fig.tight_layout()
    fig.savefig(plots / "interventions.png", dpi=90)
    plt.close(fig)

    reasons: dict[str, int] = {}
    for r in refresh:
        reasons[r["reason"]] = reasons.get(r["reason"], 0) + 1
    validation = _rows(td / "validation.csv")
    kept_off = sum(r["pushed"] == "0" for r in validation)
    validated = (f"Validated pushes: the model predicted {kept_off} of {len(validation)} rounds' policies worse than "
                 "the deployed one; those were not pushed (`trainer/validation.csv`)." if validation else
                 "Every round's policy was pushed (no `push_validation`).")
    change_text = ""
    for c in changes:
        after = [r["reason"] for r in refresh if float(r["real_steps"]) > float(c["real_steps"])]
        change_text += (f" Dynamics change injected at {c['real_steps']} real steps (the robot became "
                        f"`{c['reality']}`): of the {len(after)} refresh requests after it, "
                        f"{after.count('model_error_ratio')} were triggered by the model-error signal (red dotted "
                        "line in the model-error plot).")
    for at, forgot, restarted in detected:
        change_text += (f" **The trainer detected a dynamics change at {at:.0f} real steps** (the newest rows "
                        f"predicted over {cfg.trainer.refresh.forget_on_change_ratio:g} x worse than the model's "
                        "error level, its fitted error or its error on the last new episodes if higher): it forgot "
                        f"the {forgot} real rows before it (the store keeps them) and "
                        + ("restarted the agent and the model from the stage-1 checkpoint" if restarted else
                           "went on from the agent it had") + " (black dash-dotted line in the model-error plot).")
    pushed = _rows(td / "policies.csv")
    made = (f" The adapted policy (v{pushed[-1]['version']}): {pushed[-1]['reason']} (`trainer/policies.csv`"
            + (", every candidate's model score in `trainer/selection.csv`)." if (td / "selection.csv").is_file()
               else ").")) if pushed else ""
    lines = [
        f"# Loop report: {cfg.name}", "",
        f"Robot `{cfg.robot}`, \"real\" robot = reality profile `{ev['reality']}`; real-step budget "
        f"{cfg.trainer.real_step_budget}; trainer done: {summary.get('done')}."
        + (f" **The loop stopped early: {summary['error']}** (every recorded row is in the stores; "
           "`robodyna loop --resume` continues it)." if summary.get("error") else ""), "",
        "## Sim-only vs adapted on the \"real\" robot", "",
        f"Evaluation: {ev['episodes']} episodes each (not learnt from, not budgeted).", "",
        "Scored as the controller runs each policy: every action through the robot's safety filter (the share of "
        "ticks it changed in brackets).", "",
        f"- sim-only ({ev['sim_only']['policy']}): {format_eval(ev['sim_only'])}"
        f" ({ev['sim_only'].get('filtered_tick_fraction', float('nan')):.0%} filtered)",
        f"- adapted ({ev['adapted']['policy']}): {format_eval(ev['adapted'])}"
        f" ({ev['adapted'].get('filtered_tick_fraction', float('nan')):.0%} filtered)", "",
        "![](plots/sim_only_vs_adapted.png)", "",
        "## Real robot during the loop", "",
        f"Real steps learnt from: {summary.get('real_steps')}; rounds: {summary.get('rounds')}; "
        f"policy versions pushed: {summary.get('sim_policy_version')} -> {summary.get('policy_version')}; "
        f"learner counters: `{json.dumps(summary.get('counters', {}))}`. {validated}{made}", "",
        "![](plots/real_vs_steps.png)", "",
        "## Model error and drift signals", "",
        f"Refresh requests by trigger: `{json.dumps(reasons)}` (every decision: `trainer/refresh.csv`).{change_text}",
        "",
        "![](plots/model_error.png)", "", "![](plots/drift_signals.png)", "",
        "## Controller", "",
        f"Loop timing (last controller process): `{json.dumps({k: loop.get(k) for k in TIMING if k in loop})}`; "
        f"faults `{json.dumps(cs.get('faults', {}))}`, stops {len(cs.get('stops', []))}, swaps "
        f"{len(cs.get('swaps', []))}, rejected policies {len(cs.get('rejections', []))}.", "",
        "![](plots/interventions.png)", "",
        "## Incidents", "",
        " ".join([*(incidents(run_dir, ev_rows, metric_rows)
                    or ["None: no process exited early, no refresh request was re-sent, the robot took every pushed "
                        "policy."]),
                  real_data_accounting(run_dir, cfg.controller.robot_id)]).strip(),
        "",
        "## Files", "",
        "`config.yaml` (resolved), `events.jsonl`, `trainer/` (log, real-data store, `learner.pt`, `policies/` every "
        "ONNX version, CSVs), `controller/` (log, record store, status), `eval.json`.", "",
    ]
    out = run_dir / "report.md"
    out.write_text("\n".join(lines))
    return out
