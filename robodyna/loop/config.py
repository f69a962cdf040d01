"""The typed loop config (``configs/loops/<name>.yaml``, validated at load by :func:`robodyna.config.load_config`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from robodyna.config import load_config
from robodyna.loop.service_config import ServiceConfig
from robodyna.paths import configs_root


@dataclass(frozen=True)
class Stage1Config:
    """Stage 1: a policy and a model trained in nominal simulation — by the loop, or a named checkpoint."""

    checkpoint: str | None = None  # an existing simulation checkpoint (last.pt of robodyna train); relative: repo
    algo: str = "mbpo"
    steps: int = field(default=4000, metadata={"ge": 1})  # simulation steps when the loop trains it
    algo_overrides: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ControllerSection:
    """The "real" robot's side."""

    trainer: str = ""  # tcp://HOST:PORT of a remote trainer ("": the loop starts one on loopback)
    robot_id: str = "robot0"
    first_episodes: int = field(default=2, metadata={"ge": 1})  # episodes of the sim-only policy to start with
    pace: bool = False  # run at the robot's real rate (a simulated "real" robot need not)
    seed: int = 7
    overrides: list[str] = field(default_factory=list)  # robot.yaml overrides (--set) of the "real" robot


@dataclass(frozen=True)
class EvalConfig:
    """Sim-only vs adapted on the "real" robot (evaluation episodes are not learnt from nor budgeted)."""

    episodes: int = field(default=20, metadata={"ge": 1})
    seed: int = 12345


@dataclass(frozen=True)
class InjectConfig:
    """A dynamics change injected mid-run: the first episode that starts once the controller's store holds
    ``after_real_steps`` rows runs on ``reality`` (the controller switches its simulated robot, ``--reality-change``),
    so the change falls on the same real step however fast either side runs."""

    after_real_steps: int = 0  # 0: none
    reality: str = ""


@dataclass(frozen=True)
class LoopConfig:
    name: str = "loop"
    robot: str = "reacher2"
    reality: str = "weak"  # the reality profile standing in for the real robot
    seed: int = 0
    stage1: Stage1Config = field(default_factory=Stage1Config)
    trainer: ServiceConfig = field(default_factory=ServiceConfig)
    controller: ControllerSection = field(default_factory=ControllerSection)
    eval: EvalConfig = field(default_factory=EvalConfig)
    inject: InjectConfig = field(default_factory=InjectConfig)
    timeout_s: float = field(default=3600.0, metadata={"gt": 0})  # stop cleanly (with a report) after this long


def resolve_loop_config(name_or_path: str | Path) -> Path:
    """``reacher2`` -> ``configs/loops/reacher2.yaml``; a path is returned as is."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml"):
        return p
    return configs_root() / "loops" / f"{name_or_path}.yaml"


def load_loop_config(name_or_path: str | Path, overrides: list[str] | None = None) -> LoopConfig:
    return load_config(LoopConfig, resolve_loop_config(name_or_path), overrides)
