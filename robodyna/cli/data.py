"""CLI verbs of the data layer: ``record``, ``replay``, ``dataset info|validate|merge|split|export|import``,
``model fit``. Registered by :mod:`robodyna.cli.main` through :func:`register`.

Every verb that reads a store validates it first (:func:`robodyna.data.validate.require_valid`) and refuses a
store with errors; its warnings (e.g. unfinished episodes, which are used) are logged. Verbs that write a new
store or dataset refuse an output that already holds something.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from robodyna.cli.args import CLIError, nonnegative_int, open_fraction, positive_int

log = logging.getLogger(__name__)


def _valid_store(path: str, action: str) -> None:
    """Refuse a store with errors (naming them); log its warnings."""
    from robodyna.data.validate import require_valid

    warnings = require_valid(path, action)
    if warnings:
        log.warning("%s: %d warning(s), e.g. %s (`robodyna dataset validate %s` lists them)", path, len(warnings),
                    warnings[0].format(path), path)


def _new_output(path: str, flag: str) -> None:
    """Refuse an output folder that exists and is not empty (a new store or dataset never lands on data)."""
    p = Path(path)
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise CLIError(f"{flag} {path}: already exists and is not empty; give a new folder (nothing was written)")


def _record(a: argparse.Namespace) -> int:
    from robodyna.onboard.record import record

    res = record(a.robot, a.policy, a.episodes, a.out, reality=a.reality, resume=a.resume, seed=a.seed,
                 overrides=a.set, task=a.task, progress=not a.no_progress)
    print(json.dumps(res, allow_nan=False))
    return 0


def _replay(a: argparse.Namespace) -> int:
    from robodyna.data.replay import plot_replay, replay

    _valid_store(a.dir, "replay it")
    res = replay(a.dir, a.robot, episode=a.episode, reality=a.reality, overrides=a.set)
    print("step  joint_err_rad  ee_err_mm")
    every = max(1, len(res.joint_err_rad) // 20)
    for t in range(0, len(res.joint_err_rad), every):
        print(f"{t:<5} {res.joint_err_rad[t]:.3e}      {res.ee_err_m[t] * 1000:.3f}")
    print(json.dumps(res.summary()))
    if a.out:
        plot_replay(res, a.out, title=f"replay of {a.dir} ep {a.episode} on {a.robot} ({a.reality or 'nominal'})")
        print(f"wrote {a.out}")
    return 0


def _info(a: argparse.Namespace) -> int:
    from robodyna.data.validate import format_info, info

    _valid_store(a.dir, "summarise it (its counts would leave out what is missing)")
    d = info(a.dir)
    print(json.dumps(d, indent=2) if a.json else format_info(d))
    return 0


def _validate(a: argparse.Namespace) -> int:
    from robodyna.data.validate import validate

    problems = validate(a.dir)
    for p in problems:
        print(p.format(a.dir))  # files relative to the store, named once below
    errors = sum(p.severity == "error" for p in problems)
    print(f"{a.dir}: {errors} error(s), {len(problems) - errors} warning(s)")
    return 1 if errors else 0


def _merge(a: argparse.Namespace) -> int:
    from robodyna.data.ops import merge

    _new_output(a.out, "--out")
    for d in a.dirs:
        _valid_store(d, "merge it")
    print(json.dumps(merge(a.dirs, a.out, allow_different_robots=not a.same_robot)))
    return 0


def _split(a: argparse.Namespace) -> int:
    from robodyna.data.ops import split

    _new_output(a.train, "--train")
    _new_output(a.val, "--val")
    _valid_store(a.dir, "split it")
    res = split(a.dir, a.train, a.val, val_fraction=a.val_fraction, seed=a.seed)
    print(json.dumps({"train_episodes": len(res["train"]), "validation_episodes": len(res["validation"]),
                      "validation": res["validation"]}))
    return 0


def _export(a: argparse.Namespace) -> int:
    if a.format == "minari":
        from robodyna.data.export_minari import export_minari

        did = export_minari(a.dir, a.out, dataset_id=a.id)
        root = Path(a.out).resolve()
        print(f"wrote Minari dataset {did!r} under {root} (MINARI_DATASETS_PATH={root} "
              f"python -c \"import minari; minari.load_dataset('{did}')\")")
    else:
        from robodyna.data.export_lerobot import export_lerobot

        info = export_lerobot(a.dir, a.out, task=a.task)
        print(f"wrote LeRobot {info['codebase_version']} dataset to {a.out}: {info['total_episodes']} episodes, "
              f"{info['total_frames']} frames")
    return 0


def _import(a: argparse.Namespace) -> int:
    from robodyna.data.export_minari import import_minari

    _new_output(a.out, "--out")
    print(json.dumps(import_minari(a.source, a.out, datasets_root=a.datasets_root, robot_name=a.robot)))
    return 0


def _fit(a: argparse.Namespace) -> int:
    from robodyna.learn.fit import fit_model, format_fit_table

    _valid_store(a.dataset, "fit a model on it")
    res = fit_model(a.dataset, a.out, robot=a.robot, k=a.k, val_fraction=a.val_fraction, seed=a.seed,
                    overrides=a.set, png=a.png, algo=a.algo)
    print(format_fit_table(res))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``record``, ``replay``, ``dataset`` and ``model`` sub-commands."""
    p = subparsers.add_parser("record", help="record episodes of a policy into an episode store")
    p.add_argument("--robot", required=True, help="robot name or folder")
    p.add_argument("--reality", default=None, help="reality profile name or yaml (simulated robots)")
    p.add_argument("--policy", required=True, help="POLICY.onnx, random or scripted")
    p.add_argument("--episodes", type=positive_int, required=True,
                   help="episodes to record (added ones with --resume)")
    p.add_argument("--out", required=True, help="store directory")
    p.add_argument("--resume", action="store_true", help="append to an existing store (e.g. after a crash)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--task", default="reach")
    p.add_argument("--set", action="append", default=[], metavar="K=V", help="robot.yaml override")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_record)

    p = subparsers.add_parser("replay", help="replay recorded actions open loop and report divergence")
    p.add_argument("dir")
    p.add_argument("--robot", required=True)
    p.add_argument("--reality", default=None)
    p.add_argument("--episode", type=nonnegative_int, default=0)
    p.add_argument("--out", default=None, help="PNG plot of the divergence")
    p.add_argument("--set", action="append", default=[], metavar="K=V")
    p.set_defaults(func=_replay)

    ds = subparsers.add_parser("dataset", help="inspect, validate, merge, split, export, import episode stores")
    dsub = ds.add_subparsers(dest="dataset_cmd", required=True)
    p = dsub.add_parser("info", help="summary of a store")
    p.add_argument("dir")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info)
    p = dsub.add_parser("validate", help="list every problem (exit 1 on errors)")
    p.add_argument("dir")
    p.set_defaults(func=_validate)
    p = dsub.add_parser("merge", help="merge stores (re-indexed) into a new store")
    p.add_argument("dirs", nargs="+")
    p.add_argument("--out", required=True)
    p.add_argument("--same-robot", action="store_true", help="also require identical robot names")
    p.set_defaults(func=_merge)
    p = dsub.add_parser("split", help="split into train/validation stores by episode")
    p.add_argument("dir")
    p.add_argument("--train", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--val-fraction", type=open_fraction, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_split)
    p = dsub.add_parser("export", help="export as Minari or LeRobot v3.0")
    p.add_argument("dir")
    p.add_argument("--format", choices=["minari", "lerobot"], required=True)
    p.add_argument("--out", required=True, help="Minari datasets root / LeRobot dataset folder")
    p.add_argument("--id", default=None, help="Minari dataset id (default robodyna/<robot>-<task>-v0)")
    p.add_argument("--task", default=None, help="LeRobot task text")
    p.set_defaults(func=_export)
    p = dsub.add_parser("import", help="import a Minari dataset into a new store")
    p.add_argument("source", help="Minari dataset id or dataset folder")
    p.add_argument("--format", choices=["minari"], default="minari")
    p.add_argument("--out", required=True)
    p.add_argument("--datasets-root", default=None, help="Minari datasets root (default $MINARI_DATASETS_PATH)")
    p.add_argument("--robot", default=None, help="robot name to store (default: the dataset name)")
    p.set_defaults(func=_import)

    md = subparsers.add_parser("model", help="offline dynamics model fitting")
    msub = md.add_subparsers(dest="model_cmd", required=True)
    p = msub.add_parser("fit", help="fit the dynamics ensemble on a store; k-step error on held-out episodes")
    p.add_argument("--dataset", required=True)
    p.add_argument("--robot", default=None, help="refuse a store recorded on another robot")
    p.add_argument("--out", required=True, help="model file (.pt); a .json report is written beside it")
    p.add_argument("--k", type=positive_int, default=10, help="k-step error horizon (>= 1)")
    p.add_argument("--val-fraction", type=open_fraction, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--png", default=None)
    p.add_argument("--algo", default=None, help="take the ensemble settings from this algo preset or YAML "
                   "(its `ensemble:` section; default: EnsembleConfig defaults)")
    p.add_argument("--set", action="append", default=[], metavar="K=V",
                   help="EnsembleConfig override, e.g. --set n_members=5 (validated like config files)")
    p.set_defaults(func=_fit)
