"""Inspection of an episode store: ``info`` (summary) and ``validate`` (every problem, with file/episode/step)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robodyna.data.store import (
    COLUMNS,
    META_FILE,
    SEG_DIR,
    SEG_SUFFIX,
    TMP_PREFIX,
    EpisodeStore,
    StoreError,
    list_segments,
    read_segment_info,
)

# Bits of the ``intervention`` column (a bitmask written by the onboard safety layer).
INTERVENTION_BITS: dict[int, str] = {
    1: "clamped",
    2: "rate_limited",
    4: "workspace_stop",
    8: "watchdog",
    16: "estop",
    32: "nonfinite_rejected",  # policy output NaN/inf or of the wrong shape: the hold action was sent
    64: "soft_joint_limit",  # an action component bent back near a joint position limit
}


@dataclass(frozen=True)
class Problem:
    """One finding of :func:`validate`. ``severity`` is ``error`` or ``warning``."""

    severity: str
    file: str
    message: str
    episode: int | None = None
    step: int | None = None

    def __str__(self) -> str:
        return self.format()

    def format(self, root: str | Path | None = None) -> str:
        """``SEVERITY: FILE [episode E] [step S]: message``, the file relative to ``root`` when inside it
        (omitted when it is ``root`` itself or its ``segments/`` folder and an episode is named)."""
        where = self.file
        if root is not None:
            try:
                where = str(Path(self.file).relative_to(Path(root)))
            except ValueError:
                pass
            if where in (".", SEG_DIR) and self.episode is not None:
                where = ""
        if self.episode is not None:
            where = f"{where} episode {self.episode}".strip()
        if self.step is not None:
            where += f" step {self.step}"
        return f"{self.severity.upper()}: {where}: {self.message}"


def validate(root: str | Path, max_per_kind: int = 50, continuity_tol: float = 1e-5) -> list[Problem]:
    """Check everything and return every problem found (empty list = valid).

    Checks: meta.json; every segment footer and data (schema, widths, NaN/inf per row and column);
    episode indices contiguous from 0; step indices contiguous from 0 within each episode and in order;
    terminated/truncated only on an episode's last row; ``next_obs[t] == obs[t+1]`` within an episode;
    monotonic time non-decreasing; unfinished episodes (warning); leftover temp files (warning).
    ``max_per_kind`` caps repeated findings of the same kind in one file (a final line says how many more).
    """
    root = Path(root)
    out: list[Problem] = []
    try:
        store = EpisodeStore(root)
    except StoreError as exc:
        return [Problem("error", str(root / META_FILE), str(exc))]
    seg_dir = root / SEG_DIR
    if seg_dir.is_dir():
        for name in sorted(os.listdir(seg_dir)):
            if name.startswith(TMP_PREFIX):
                out.append(Problem("warning", str(seg_dir / name), "leftover temp file of an interrupted writer "
                                   "(ignored by readers, removed by the next writer)"))
            elif not name.endswith(SEG_SUFFIX) or not name.startswith("seg-"):
                out.append(Problem("warning", str(seg_dir / name), "unexpected file in segments/ (ignored)"))
    # per-episode state carried across segments: next expected step, last obs-next, last mono time, ended
    state: dict[int, dict[str, Any]] = {}
    seen_order: list[int] = []
    closed: set[int] = set()
    prev_num = -1
    for num, path in list_segments(root):
        f = str(path)
        if num != prev_num + 1:
            out.append(Problem("error", f, f"segment numbers jump from {prev_num} to {num} (segment deleted?)"))
        prev_num = num
        try:
            si = read_segment_info(num, path)
        except StoreError as exc:
            out.append(Problem("error", f, str(exc).split(": ", 1)[-1]))
            continue
        try:
            tr = store.read_segment(si, check_finite=False)
        except StoreError as exc:
            out.append(Problem("error", f, str(exc).split(": ", 1)[-1]))
            continue
        cols = tr.columns()
        ep, st = cols["episode_index"], cols["step_index"]
        # footer vs data
        for e, s0, r0, n in si.ranges:
            if n and (np.any(ep[r0:r0 + n] != e) or np.any(st[r0:r0 + n] != np.arange(s0, s0 + n))):
                out.append(Problem("error", f, "footer row ranges disagree with episode_index/step_index columns",
                                   episode=e))
        # non-finite values, every row and column (capped)
        bad_count = 0
        for name in ("obs", "action", "reward", "next_obs"):
            a = cols[name]
            bad = ~np.isfinite(a) if a.ndim == 1 else ~np.isfinite(a).all(axis=1)
            for r in np.flatnonzero(bad):
                bad_count += 1
                if bad_count <= max_per_kind:
                    out.append(Problem("error", f, f"non-finite value in column {name!r}", int(ep[r]), int(st[r])))
        if bad_count > max_per_kind:
            out.append(Problem("error", f, f"... and {bad_count - max_per_kind} more non-finite rows"))
        # the policy's raw output may be non-finite only where the controller says so (and sent the hold action)
        if "policy_action" in cols:
            raw_bad = ~np.isfinite(cols["policy_action"]).all(axis=1) & ((cols["intervention"] & 32) == 0)
            for r in np.flatnonzero(raw_bad)[:max_per_kind]:
                out.append(Problem("error", f, "non-finite policy_action without the nonfinite_rejected bit",
                                   int(ep[r]), int(st[r])))
        for c in ("time_wall_s", "time_mono_s"):
            nb = np.flatnonzero(~np.isfinite(cols[c]))
            for r in nb[:max_per_kind]:
                out.append(Problem("error", f, f"non-finite {c}", int(ep[r]), int(st[r])))
        # per-row sequencing
        disc = 0
        for e, s0, r0, n in si.ranges:
            stt = state.get(e)
            if stt is None:
                stt = {"next_step": 0, "last_next_obs": None, "last_mono": -np.inf, "ended_at": None}
                state[e] = stt
                seen_order.append(e)
            if e in closed:
                out.append(Problem("error", f, "rows after the episode was closed", e, s0))
            if s0 != stt["next_step"]:
                out.append(Problem("error", f, f"step gap: expected step {stt['next_step']}, found {s0}", e, s0))
            rows = slice(r0, r0 + n)
            o, no = cols["obs"][rows], cols["next_obs"][rows]
            if stt["last_next_obs"] is not None and n:
                if not np.allclose(o[0], stt["last_next_obs"], atol=continuity_tol, equal_nan=True):
                    disc += 1
                    if disc <= max_per_kind:
                        out.append(Problem("warning", f, "obs differs from the previous step's next_obs", e, s0))
            if n > 1:
                jump = ~np.isclose(o[1:], no[:-1], atol=continuity_tol, equal_nan=True).all(axis=1)
                for r in np.flatnonzero(jump):
                    disc += 1
                    if disc <= max_per_kind:
                        out.append(Problem("warning", f, "obs differs from the previous step's next_obs", e,
                                           int(s0 + r + 1)))
            done = cols["terminated"][rows] | cols["truncated"][rows]
            for r in np.flatnonzero(done):
                if stt["ended_at"] is None:
                    stt["ended_at"] = int(s0 + r)
            if stt["ended_at"] is not None and stt["ended_at"] < s0 + n - 1:
                out.append(Problem("error", f, "terminated/truncated before the episode's last row", e,
                                   stt["ended_at"]))
            tm = cols["time_mono_s"][rows]
            back = np.flatnonzero(np.diff(np.concatenate([[stt["last_mono"]], tm])) < 0)
            for r in back[:max_per_kind]:
                out.append(Problem("error", f, "time_mono_s goes backwards", e, int(s0 + r)))
            if n:
                stt["last_next_obs"] = no[-1]
                stt["last_mono"] = tm[-1]
            stt["next_step"] = s0 + n
        if disc > max_per_kind:
            out.append(Problem("warning", f, f"... and {disc - max_per_kind} more discontinuities"))
        for e in si.closed:
            closed.add(e)
    # episode indices
    eps = sorted(state)
    if eps:
        expected = list(range(eps[-1] + 1))
        missing = sorted(set(expected) - set(eps))
        for e in missing:
            out.append(Problem("error", str(seg_dir), "episode index gap: episode missing", e))
        if seen_order != sorted(seen_order):
            out.append(Problem("error", str(seg_dir), f"episodes out of order on disk: {seen_order[:20]}"))
    for e in eps:
        if e not in closed:
            out.append(Problem("warning", str(seg_dir), f"unfinished episode ({state[e]['next_step']} steps; the "
                               "recorder stopped before it ended)", e))
    return out


def info(root: str | Path) -> dict[str, Any]:
    """Summary: episodes, steps, duration, return stats, policy versions, intervention counts."""
    store = EpisodeStore(root)
    eps = store.episodes()
    tr = store.read(check_finite=False)
    cols = tr.columns()
    n = len(tr)
    out: dict[str, Any] = {
        "path": str(store.root),
        "robot": store.meta.robot_name,
        "reality": store.meta.reality,
        "task": store.meta.task,
        "control_hz": store.meta.control_hz,
        "software_version": store.meta.software_version,
        "obs_dim": store.meta.obs_dim,
        "act_dim": store.meta.act_dim,
        "segments": len(store.segments()),
        "episodes": len(eps),
        "unfinished_episodes": [e.index for e in eps if not e.closed],
        "steps": n,
        "duration_s": n / store.meta.control_hz,
        "bytes_on_disk": sum(p.stat().st_size for _, p in list_segments(store.root)),
    }
    if n:
        ep = cols["episode_index"]
        uniq, inv = np.unique(ep, return_inverse=True)
        rets = np.bincount(inv, weights=np.where(np.isfinite(cols["reward"]), cols["reward"], 0.0))
        lens = np.bincount(inv)
        out["return"] = {"mean": float(rets.mean()), "std": float(rets.std()), "min": float(rets.min()),
                         "max": float(rets.max())}
        out["length"] = {"mean": float(lens.mean()), "min": int(lens.min()), "max": int(lens.max())}
        out["wall_span_s"] = float(cols["time_wall_s"].max() - cols["time_wall_s"].min())
        pv, pvc = np.unique(cols["policy_version"], return_counts=True)
        out["policy_versions"] = {str(int(v)): int(c) for v, c in zip(pv, pvc)}
        itv = cols["intervention"]
        counts = {"any": int((itv != 0).sum())}
        for bit, name in INTERVENTION_BITS.items():
            counts[name] = int(((itv & bit) != 0).sum())
        other = int((itv & ~sum(INTERVENTION_BITS)).astype(bool).sum())
        if other:
            counts["other_bits"] = other
        out["interventions"] = counts
        out["terminated"] = int(cols["terminated"].sum())
        out["truncated"] = int(cols["truncated"].sum())
        raw = sum(cols[c].nbytes for c in COLUMNS)
        out["bytes_per_transition"] = out["bytes_on_disk"] / n
        out["raw_bytes_per_transition"] = raw / n
    return out


def format_info(d: dict[str, Any]) -> str:
    """Human-readable rendering of :func:`info`."""
    lines = [f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in d.items()]
    return "\n".join(lines)


def require_valid(root: str | Path, action: str) -> list[Problem]:
    """Run :func:`validate` and raise :class:`StoreError` if the store has errors; return its warnings.

    Every command that reads a store calls this first, so a store with a deleted or corrupt segment, an
    episode gap or bad values is refused, naming the store, the first errors and what was refused (``action``,
    e.g. ``"export it"``), instead of being used with the gap silently carried into the result.
    """
    root = Path(root)
    problems = validate(root)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        shown = "; ".join(p.format(root).split(": ", 1)[1] for p in errors[:3])
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise StoreError(f"{root}: the episode store has {len(errors)} error(s), refusing to {action}: {shown}{more}; "
                         f"`robodyna dataset validate {root}` lists every problem")
    return [p for p in problems if p.severity != "error"]
