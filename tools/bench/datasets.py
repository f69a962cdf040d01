"""Benchmark of the episode store (robodyna.data.store) against plain pyarrow on the same columns.

Measures: per-transition append cost on the recording thread (median of several runs), append throughput
(including the background segment writes landing), append_batch throughput, full-read throughput, bytes on
disk per transition vs raw array bytes, and append throughput while another process reads the store.

Full reads are compared like with like: ``EpisodeStore.read()`` of the store written by ``append_batch`` vs
plain pyarrow reading the very same segment files (same rows) into the same numpy columns; a third number is
plain pyarrow on one monolithic Arrow file of the same rows (no per-file costs at all: a lower bound). Each
side gets one untimed warm-up read first; the median of ``--runs`` timed reads is reported.

    python tools/bench/datasets.py [--n 200000] [--runs 5] [--json out/bench_datasets.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from robodyna.data.batch import Batch
from robodyna.data.store import (
    COLUMNS,
    EpisodeStore,
    EpisodeWriter,
    StoreMeta,
    arrow_schema,
    columns_to_table,
    list_segments,
    table_to_columns,
)

OBS, ACT, EP_LEN = 23, 7, 1000


def make_data(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    obs = rng.standard_normal((n + 1, OBS)).astype(np.float32)
    step = np.arange(n) % EP_LEN
    return {
        "obs": obs[:-1], "action": rng.uniform(-1, 1, (n, ACT)).astype(np.float32),
        "reward": rng.standard_normal(n).astype(np.float32), "next_obs": obs[1:].copy(),
        "terminated": np.zeros(n, bool), "truncated": step == EP_LEN - 1,
        "time_wall_s": time.time() + np.arange(n) * 1e-3, "time_mono_s": np.arange(n) * 1e-3,
        "episode_index": np.arange(n) // EP_LEN, "step_index": step, "policy_version": np.zeros(n, np.int64),
        "intervention": np.zeros(n, np.int32), "policy_action": np.zeros((n, ACT), np.float32),
    }


def meta() -> StoreMeta:
    return StoreMeta("bench", [f"o{i}" for i in range(OBS)], ["-"] * OBS, [f"a{i}" for i in range(ACT)],
                     ["N*m"] * ACT, 1000.0)


def append_loop(root: Path, d: dict[str, np.ndarray], flush_every: int) -> tuple[float, float]:
    """Per-row appends. Returns (seconds in the append loop, seconds until every segment landed)."""
    obs, act, rew, nobs, trunc = d["obs"], d["action"], d["reward"], d["next_obs"], d["truncated"].tolist()
    rows = [(obs[i], act[i], float(rew[i]), nobs[i], trunc[i]) for i in range(len(rew))]
    w = EpisodeWriter(root, meta(), flush_every=flush_every)
    app = w.append
    t0 = time.perf_counter()
    for o, a, r, no, tr in rows:
        app(o, a, r, no, False, tr)
    t1 = time.perf_counter()
    w.close()
    t2 = time.perf_counter()
    return t1 - t0, t2 - t0


def loop_overhead(d: dict[str, np.ndarray]) -> float:
    """Cost of the benchmark's own loop (iterating prepared rows, calling a no-op)."""
    obs, act, rew, nobs, trunc = d["obs"], d["action"], d["reward"], d["next_obs"], d["truncated"].tolist()
    rows = [(obs[i], act[i], float(rew[i]), nobs[i], trunc[i]) for i in range(len(rew))]

    def noop(o: object, a: object, r: object, no: object, te: object, tr: object) -> None:
        return None

    t0 = time.perf_counter()
    for o, a, r, no, tr in rows:
        noop(o, a, r, no, False, tr)
    return time.perf_counter() - t0


def reader_proc(root: str, stop: mp.synchronize.Event, out: mp.Queue) -> None:  # type: ignore[name-defined]
    """Trainer stand-in: tails the store and re-reads it fully, until told to stop."""
    while not (Path(root) / "meta.json").exists():
        time.sleep(0.001)
    store = EpisodeStore(root)
    tail = store.tail()
    got = full = 0
    while not stop.is_set():
        tr = tail.poll()
        if tr is not None:
            got += len(tr)
        full += len(store.read())
    tr = tail.poll()
    got += 0 if tr is None else len(tr)
    out.put((got, full))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200_000, help="transitions per run")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--flush-every", type=int, default=4096)
    ap.add_argument("--json", default="out/bench_datasets.json")
    args = ap.parse_args(argv)
    n = args.n
    d = make_data(n)
    raw_bytes = sum(d[c].nbytes for c in COLUMNS) / n
    tmp = Path(tempfile.mkdtemp(prefix="bench_ds_"))
    res: dict[str, Any] = {"n": n, "obs_dim": OBS, "act_dim": ACT, "flush_every": args.flush_every}
    try:
        over = statistics.median(loop_overhead(d) for _ in range(args.runs)) / n
        per, thr = [], []
        for r in range(args.runs):
            root = tmp / f"loop{r}"
            t_loop, t_all = append_loop(root, d, args.flush_every)
            per.append(t_loop / n)
            thr.append(n / t_all)
        res["append_us_per_transition_median"] = statistics.median(per) * 1e6
        res["append_us_per_transition_minus_loop_overhead"] = (statistics.median(per) - over) * 1e6
        res["bench_loop_overhead_us"] = over * 1e6
        res["store_append_transitions_per_s"] = statistics.median(thr)
        # batch append
        batch = Batch(**{k: d[k] for k in ("obs", "action", "reward", "next_obs", "terminated", "truncated")})
        bt = []
        for r in range(args.runs):
            root = tmp / f"batch{r}"
            t0 = time.perf_counter()
            with EpisodeWriter(root, meta(), flush_every=args.flush_every, flush_on_episode_end=False) as w:
                w.append_batch(batch, time_wall_s=d["time_wall_s"], time_mono_s=d["time_mono_s"])
            bt.append(n / (time.perf_counter() - t0))
        res["store_append_batch_transitions_per_s"] = statistics.median(bt)
        # plain pyarrow: the same columns as one table in one Arrow IPC file (same codec), and as parquet
        schema = arrow_schema(OBS, ACT)
        pw, pqw = [], []
        for r in range(args.runs):
            t0 = time.perf_counter()
            table = columns_to_table(d, schema)
            with pa.OSFile(str(tmp / f"plain{r}.arrow"), "wb") as f:
                with ipc.new_file(f, schema, options=ipc.IpcWriteOptions(compression="lz4")) as wr:
                    wr.write_table(table)
            pw.append(n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            pq.write_table(columns_to_table(d, schema), tmp / f"plain{r}.parquet", compression="zstd")
            pqw.append(n / (time.perf_counter() - t0))
        res["pyarrow_write_transitions_per_s"] = statistics.median(pw)
        res["pyarrow_parquet_write_transitions_per_s"] = statistics.median(pqw)
        # reads, like with like: the store's full read of its segments vs plain pyarrow reading the same
        # segment files into the same numpy columns (no footer parsing, schema or NaN/inf checks); and, as a
        # lower bound, plain pyarrow on one monolithic Arrow file holding the same n rows.
        seg_paths = [p for _, p in list_segments(tmp / "batch0")]
        sr: list[float] = []
        pr: list[float] = []
        p1: list[float] = []
        store = EpisodeStore(tmp / "batch0")
        for r in range(args.runs + 1):  # run 0 is an untimed warm-up of all three (page cache, allocator)
            if r == 1:
                for lst in (sr, pr, p1):
                    lst.clear()
            t0 = time.perf_counter()
            tr = EpisodeStore(tmp / "batch0").read()
            sr.append(len(tr) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            tables = [ipc.open_file(pa.memory_map(str(p))).read_all() for p in seg_paths]
            cols = table_to_columns(pa.concat_tables(tables).combine_chunks())
            pr.append(len(cols["reward"]) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            one = table_to_columns(ipc.open_file(pa.memory_map(str(tmp / "plain0.arrow"))).read_all())
            p1.append(len(one["reward"]) / (time.perf_counter() - t0))
        assert len(tr) == len(cols["reward"]) == len(one["reward"]) == n
        assert np.array_equal(tr.batch.obs, d["obs"]) and np.array_equal(cols["obs"], d["obs"])
        res["store_read_transitions_per_s"] = statistics.median(sr)
        res["pyarrow_read_transitions_per_s"] = statistics.median(pr)
        res["pyarrow_read_one_file_transitions_per_s"] = statistics.median(p1)
        disk = sum(p.stat().st_size for p in (tmp / "loop0" / "segments").iterdir())
        res["store_bytes_per_transition"] = disk / n
        res["pyarrow_bytes_per_transition"] = (tmp / "plain0.arrow").stat().st_size / n
        res["pyarrow_parquet_bytes_per_transition"] = (tmp / "plain0.parquet").stat().st_size / n
        res["raw_bytes_per_transition"] = raw_bytes
        res["store_segments"] = len(store.segments())
        # append while another process reads (tail + full re-reads)
        ctx = mp.get_context("spawn")
        stop, q = ctx.Event(), ctx.Queue()
        root = tmp / "concurrent"
        proc = ctx.Process(target=reader_proc, args=(str(root), stop, q))
        proc.start()
        t_loop, t_all = append_loop(root, d, args.flush_every)
        stop.set()
        got, full = q.get(timeout=120)
        proc.join()
        res["append_while_reading_transitions_per_s"] = n / t_all
        res["append_while_reading_us_per_transition"] = t_loop / n * 1e6
        res["reader_tailed_rows"] = got
        res["reader_full_read_rows"] = full
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"episode store benchmark: {n} transitions, obs {OBS}, action {ACT}, median of {args.runs} runs")
    print(f"  recording thread cost     : {res['append_us_per_transition_median']:.2f} us/transition "
          f"({res['append_us_per_transition_minus_loop_overhead']:.2f} us without the bench loop; goal < 5 us)")
    print(f"  append (per row, landed)  : {res['store_append_transitions_per_s']:,.0f} transitions/s  "
          f"= {res['store_append_transitions_per_s'] / 1000:.1f}x a 1 kHz robot")
    print(f"  append_batch              : {res['store_append_batch_transitions_per_s']:,.0f} transitions/s")
    print(f"  plain pyarrow IPC write   : {res['pyarrow_write_transitions_per_s']:,.0f} transitions/s  "
          f"(store per-row / pyarrow = {res['store_append_transitions_per_s'] / res['pyarrow_write_transitions_per_s']:.2f}, "  # noqa: E501
          f"batch / pyarrow = {res['store_append_batch_transitions_per_s'] / res['pyarrow_write_transitions_per_s']:.2f})")  # noqa: E501
    print(f"  plain pyarrow parquet     : {res['pyarrow_parquet_write_transitions_per_s']:,.0f} transitions/s, "
          f"{res['pyarrow_parquet_bytes_per_transition']:.1f} bytes/transition (zstd)")
    nseg = res["store_segments"]
    print(f"  full read, store          : {res['store_read_transitions_per_s']:,.0f} transitions/s  "
          f"(EpisodeStore.read(): {nseg} lz4 segment files + footers, schema and NaN/inf checks -> numpy Batch)")
    print(f"  full read, pyarrow        : {res['pyarrow_read_transitions_per_s']:,.0f} transitions/s  "
          f"(the same {nseg} segment files, same {n} rows: memory_map + read_all, concat_tables, combine_chunks, "
          f"to numpy; no checks)  store/pyarrow = "
          f"{res['store_read_transitions_per_s'] / res['pyarrow_read_transitions_per_s']:.2f}")
    print(f"  full read, pyarrow 1 file : {res['pyarrow_read_one_file_transitions_per_s']:,.0f} transitions/s  "
          f"(one monolithic lz4 Arrow file of the same {n} rows, zero-copy views; lower bound)  store/this = "
          f"{res['store_read_transitions_per_s'] / res['pyarrow_read_one_file_transitions_per_s']:.2f}")
    print(f"  bytes/transition          : store {res['store_bytes_per_transition']:.1f}, pyarrow IPC "
          f"{res['pyarrow_bytes_per_transition']:.1f}, raw arrays {raw_bytes:.1f}  "
          f"(store/raw = {res['store_bytes_per_transition'] / raw_bytes:.2f})")
    print(f"  append while reading      : {res['append_while_reading_transitions_per_s']:,.0f} transitions/s  "
          f"= {res['append_while_reading_transitions_per_s'] / 1000:.1f}x a 1 kHz robot (goal >= 10x); "
          f"{res['append_while_reading_us_per_transition']:.2f} us/transition on the recording thread; reader tailed "
          f"{res['reader_tailed_rows']} rows")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    print(f"  wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
