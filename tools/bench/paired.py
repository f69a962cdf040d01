"""Two sim2real variants compared seed by seed: the paired difference of their gaps recovered, with its standard error.

``tools/bench/sim2real.py`` writes one ``results.json`` per call; the variants of one seed see the same targets and
the same stage-1 checkpoint, so the difference between two variants on one seed takes out what the seed itself
does (its targets, its sim-only score, its oracle). Comparisons across many calls (several ``--out`` folders, some
variants rerun on some seeds) used to be paired by hand; this does it::

    python tools/bench/paired.py --a runs/drift/results.json --a-variant loop \\
        --b runs/fixed/results.json --b-variant fixed

A seed counts when both sides have it (key: profile, seed, budget); a seed given twice on one side takes the
file named last. Prints one line per seed and the means with standard errors (sample SD / sqrt(n)); ``--json``
writes them. On laggy reacher2 the paired difference of two variants has a standard deviation of 9-15 points of
the gaps per seed (docs/loop_results.md), so a mean difference below about two standard errors says "level".
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

METRICS = ("success_rate", "mean_final_distance_m")
Key = tuple[str, int, int]


def load_rows(paths: list[str | Path], variant: str) -> dict[Key, dict[str, Any]]:
    """The rows of ``results.json`` files that hold ``variant`` (with its gaps), by (profile, seed, budget)."""
    rows: dict[Key, dict[str, Any]] = {}
    for p in paths:
        data = json.loads(Path(p).read_text())
        if not isinstance(data, list):
            raise ValueError(f"{p}: not a sim2real results.json (a list of rows)")
        for r in data:
            if variant in r and "oracle" in r:
                rows[(str(r["profile"]), int(r["seed"]), int(r["budget"]))] = r
    return rows


def _mean_se(xs: list[float]) -> tuple[float, float]:
    n = len(xs)
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else float("nan")
    return m, sd / math.sqrt(n)


def paired(a: dict[Key, dict[str, Any]], va: str, b: dict[Key, dict[str, Any]], vb: str) -> dict[str, Any]:
    """Per seed, each side's gap recovered (percent, as the bench computes it: against that seed's sim-only policy
    and oracle) and their difference a − b; the means, and the paired difference's standard error."""
    keys = sorted(set(a) & set(b))
    if not keys:
        raise ValueError(f"no seed has both {va!r} and {vb!r} (with an oracle) in the files given")
    seeds, out = [], {}
    for k in keys:
        ra, rb = a[k][va], b[k][vb]
        row: dict[str, Any] = {"profile": k[0], "seed": k[1], "budget": k[2]}
        for m in METRICS:
            ga, gb = 100 * ra[f"gap_recovered_{m}"], 100 * rb[f"gap_recovered_{m}"]
            row[m] = {"a": ra[m], "b": rb[m], "gap_a": ga, "gap_b": gb, "diff": ga - gb}
        row["identical"] = all(ra[m] == rb[m] for m in METRICS)
        seeds.append(row)
    for m in METRICS:
        ma, sa = _mean_se([s[m]["gap_a"] for s in seeds])
        mb, sb = _mean_se([s[m]["gap_b"] for s in seeds])
        md, sd = _mean_se([s[m]["diff"] for s in seeds])
        out[m] = {"gap_a": ma, "se_a": sa, "gap_b": mb, "se_b": sb, "diff": md, "se_diff": sd}
    return {"a": va, "b": vb, "n": len(seeds), "identical": sum(s["identical"] for s in seeds), "seeds": seeds,
            "mean": out}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", nargs="+", required=True, help="results.json files holding variant a")
    ap.add_argument("--a-variant", default="loop")
    ap.add_argument("--b", nargs="+", required=True, help="results.json files holding variant b")
    ap.add_argument("--b-variant", default="fixed")
    ap.add_argument("--json", default=None, help="write the comparison here")
    args = ap.parse_args(argv)
    res = paired(load_rows(args.a, args.a_variant), args.a_variant, load_rows(args.b, args.b_variant), args.b_variant)
    s, d = "success_rate", "mean_final_distance_m"
    print(f"{'profile':10s} {'seed':>4s}  success a / b (gap a / b)          distance cm a / b (gap a / b)")
    for r in res["seeds"]:
        print(f"{r['profile']:10s} {r['seed']:4d}  {100 * r[s]['a']:5.1f} / {100 * r[s]['b']:5.1f} % "
              f"({r[s]['gap_a']:6.1f} / {r[s]['gap_b']:6.1f})   {100 * r[d]['a']:.2f} / {100 * r[d]['b']:.2f} "
              f"({r[d]['gap_a']:6.1f} / {r[d]['gap_b']:6.1f}){'  identical' if r['identical'] else ''}")
    for m in (s, d):
        x = res["mean"][m]
        print(f"{m}: gap recovered {res['a']} {x['gap_a']:.1f} % (SE {x['se_a']:.1f}), {res['b']} {x['gap_b']:.1f} % "
              f"(SE {x['se_b']:.1f}); paired difference {x['diff']:+.1f} points (SE {x['se_diff']:.1f}), "
              f"n = {res['n']}, identical runs {res['identical']}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
