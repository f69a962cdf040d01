"""Typed configs of the learning core (``configs/algo/*.yaml``), loaded with :func:`robodyna.config.load_config`.

One :class:`AlgoConfig` describes MBPO, classic Dyna and model-free SAC: they are presets of the same loop
(MBPO, Janner et al. 2019, Alg. 2). A YAML file may carry a ``robots:`` section keyed by robot (or gym id) name
whose values are partial configs merged over the defaults before ``--set`` overrides are applied.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from robodyna.config import ConfigError, load_config, read_yaml

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "algo"

#: A period of real robot time: a whole number of transitions (``250``), of episodes (``"5 episodes"``) or of
#: seconds of robot time (``"2.5 s"``), so that a preset means the same on a robot with other episode lengths or
#: control rates. Resolved to transitions by :meth:`AlgoConfig.in_steps`.
Period = int | str
_PERIOD_RE = r"(\d+(?:\.\d+)?)\s*(episodes?|s)"
_PERIOD_HELP = "must be a whole number of transitions, 'N episodes' or 'T s' (seconds of robot time)"
_PERIOD: dict[str, Any] = {"ge": 1, "pattern": _PERIOD_RE, "pattern_help": _PERIOD_HELP}
#: What ``"auto"`` means on a goal task: half of every SAC batch gets other goals, half of those the goal the
#: transition reached (HER's "future"-style hits teach precision). Measured on reacher2, seeds 0-2, real steps to
#: return -6 with MBPO: 3750/4500/3750 with these, 4250/4500/8000 without (README, "Presets in episodes").
AUTO_GOAL_RELABEL = {"goal_relabel_ratio": 0.5, "achieved_goal_ratio": 0.5}
PERIOD_FIELDS = ("start_steps", "epoch_length", "model_train_every", "rollout_every", "eval_every",
                 "checkpoint_every", "log_every")


def period_steps(value: Period, episode_steps: int, control_hz: float) -> int:
    """Transitions in a period (at least 1): ``"5 episodes"`` with 50-step episodes -> 250."""
    if isinstance(value, int):
        return value
    m = re.fullmatch(_PERIOD_RE, value.strip())
    if m is None:
        raise ConfigError("", "period", value, _PERIOD_HELP)
    n, unit = float(m.group(1)), m.group(2)
    steps = n * episode_steps if unit.startswith("episode") else n * control_hz
    return max(1, int(math.ceil(steps - 1e-9)))


@dataclass(frozen=True)
class EnsembleConfig:
    """Probabilistic dynamics ensemble (PETS/MBPO, Janner et al. 2019 §4; Chua et al. 2018)."""

    n_members: int = field(default=7, metadata={"ge": 1})
    n_elites: int = field(default=5, metadata={"ge": 1})
    hidden: int = field(default=200, metadata={"ge": 1})
    layers: int = field(default=4, metadata={"ge": 1})
    lr: float = field(default=1e-3, metadata={"gt": 0})
    weight_decay: float = field(default=5e-5, metadata={"ge": 0})
    batch_size: int = field(default=256, metadata={"ge": 1})
    holdout_ratio: float = field(default=0.2, metadata={"gt": 0, "lt": 1})
    holdout_cap: int = field(default=5000, metadata={"ge": 1})
    patience: int = field(default=5, metadata={"ge": 1})
    min_rel_improvement: float = field(default=0.01, metadata={"ge": 0})
    # held-out score that early stopping watches: "nll" (the training objective; trains the variance too) or
    # "mse" of the mean (MBPO's reference code; stops as soon as the mean fits, leaving the variance untrained)
    early_stop_on: Literal["nll", "mse"] = "nll"
    max_epochs: int = field(default=200, metadata={"ge": 1})
    # gradient steps per fit (one minibatch per member each): the fit ends after the epoch that reaches it. Unlike
    # max_epochs it bounds a fit's cost whatever the data size, and unlike max_fit_seconds it does not depend on load
    max_fit_batches: int | None = field(default=None, metadata={"ge": 1})
    # wall-time safety net: a fit that ends on it depends on machine load, so presets keep it far above a normal fit
    max_fit_seconds: float = field(default=600.0, metadata={"gt": 0})
    learn_logvar_bounds: bool = True
    logvar_max_init: float = 0.5
    logvar_min_init: float = -10.0
    bound_penalty: float = field(default=0.01, metadata={"ge": 0})
    bootstrap: bool = True
    # input/output standardisation: re-estimated from the data at every fit ("every_fit"), or kept from the first
    # fit on ("first_fit"; a model warm-started from simulation then keeps the simulation data's wide statistics
    # instead of those of a few real episodes, whose near-constant columns, e.g. a handful of targets, would
    # standardise every other value far out of range and void the warm start)
    normalizer: Literal["every_fit", "first_fit"] = "every_fit"

    def __post_init__(self) -> None:
        if self.n_elites > self.n_members:
            raise ConfigError("", "n_elites", self.n_elites, f"must be <= n_members ({self.n_members})")
        if self.logvar_min_init >= self.logvar_max_init:
            raise ConfigError("", "logvar_min_init", self.logvar_min_init, "must be < logvar_max_init")


@dataclass(frozen=True)
class SACConfig:
    """Soft actor-critic (Haarnoja et al. 2018, 'SAC: Algorithms and Applications' §5 with automatic α)."""

    hidden: int = field(default=256, metadata={"ge": 1})
    layers: int = field(default=2, metadata={"ge": 1})
    lr: float = field(default=3e-4, metadata={"gt": 0})
    # the critics' own step size (None: ``lr`` for every parameter). Fine-tuning on another system, the critics must
    # learn the new values while the actor moves slowly (the two-timescale actor-critic: Konda & Tsitsiklis 2000;
    # TD3 §5.2 updates the actor less often for the same reason)
    critic_lr: float | None = field(default=None, metadata={"gt": 0})
    batch_size: int = field(default=256, metadata={"ge": 2})
    gamma: float = field(default=0.99, metadata={"ge": 0, "le": 1})
    tau: float = field(default=0.005, metadata={"gt": 0, "le": 1})
    init_alpha: float = field(default=1.0, metadata={"gt": 0})
    auto_alpha: bool = True
    target_entropy: float | None = None  # None -> -|A|
    normalize_obs: bool = True
    num_threads: int = field(default=1, metadata={"ge": 1})
    # hidden-layer matmuls in bfloat16, fp32 outputs; "auto": when the CPU has bf16 instructions (AVX512-BF16/AMX)
    bf16_hidden: bool | Literal["auto"] = False
    actor_update_every: int = field(default=1, metadata={"ge": 1})  # delayed policy updates (TD3 §5.2; REDQ)
    critic_layer_norm: bool = False  # LayerNorm before every hidden ReLU of the critics (DroQ §4; RLPD §3.2)
    # the update's losses and gradients through torch.compile (inductor, fused C++ kernels); "auto": when a C++
    # compiler is on PATH, falling back to eager (with a warning) if compilation fails
    compile: bool | Literal["auto"] = False


@dataclass(frozen=True)
class AlgoConfig:
    """One loop, three presets: ``mbpo`` (branched policy rollouts), ``dyna`` (k=1, buffer actions), ``sac``."""

    algo: Literal["mbpo", "dyna", "sac"] = "mbpo"
    use_model: bool = True
    rollout_actions: Literal["policy", "buffer"] = "policy"
    start_steps: Period = field(default=5000, metadata=_PERIOD)
    epoch_length: Period = field(default=1000, metadata=_PERIOD)
    model_train_every: Period = field(default=250, metadata=_PERIOD)
    rollout_batch: int = field(default=100_000, metadata={"ge": 1})  # start states per rollout round
    # real steps between rollout rounds (None: with every refit, as in MBPO); rounds between refits branch the
    # latest policy through the current model
    rollout_every: Period | None = field(default=None, metadata=_PERIOD)
    rollout_schedule: tuple[int, int, int, int] = (20, 100, 1, 1)  # epoch0, epoch1, k0, k1 (MBPO App. C)
    rollout_obs_margin: float | None = field(default=0.5, metadata={"ge": 0})  # None: no bound check
    rollout_uncertainty_penalty: float = field(default=0.0, metadata={"ge": 0})  # MOPO λ: r - λ‖σ‖ on model rows
    rollout_constraints: bool = True  # project model predictions onto the task's known state constraints
    rollout_max_std: float | None = field(default=None, metadata={"gt": 0})  # drop model rows with ‖σ‖ above this
    rollout_goal_relabel: float = field(default=0.0, metadata={"ge": 0, "le": 1})  # fresh goals for rollout starts
    # state: only the task's dynamics columns feed the ensemble; coordinates: the ensemble predicts the task's joint
    # angles and velocities (robodyna.learn.coords)
    model_inputs: Literal["obs", "state", "coordinates"] = "obs"
    model_retain_epochs: int = field(default=1, metadata={"ge": 1})
    model_buffer_eviction: Literal["fifo", "flush_on_refit"] = "fifo"
    real_ratio: float = field(default=0.05, metadata={"ge": 0, "le": 1})
    updates_per_step: int = field(default=20, metadata={"ge": 0})
    # HER-style relabelling (Andrychowicz et al. 2017, §3.3), goal tasks only; "auto": AUTO_GOAL_RELABEL on a task
    # that declares its goals, 0 on any other (resolved by :meth:`for_task`)
    goal_relabel_ratio: float | Literal["auto"] = field(default=0.0, metadata={"ge": 0, "le": 1})
    achieved_goal_ratio: float | Literal["auto"] = field(default=0.0, metadata={"ge": 0, "le": 1})  # the reached goal
    # fraction of every SAC batch moved into a random equivalent frame of the task (tasks with a symmetry only)
    symmetry_augment_ratio: float = field(default=0.0, metadata={"ge": 0, "le": 1})
    # the robot's onboard safety filter inside the policy (robodyna.learn.action_filter): every action the learner
    # acts with, rolls out, bootstraps from or exports is already filtered, as the controller would (robot tasks only)
    policy_filter: bool = False
    real_buffer_size: int = field(default=1_000_000, metadata={"ge": 1})
    min_real_for_model: int = field(default=200, metadata={"ge": 1})
    eval_every: Period = field(default=1000, metadata=_PERIOD)
    eval_episodes: int = field(default=5, metadata={"ge": 1})
    checkpoint_every: Period = field(default=5000, metadata=_PERIOD)
    log_every: Period = field(default=250, metadata=_PERIOD)
    model_error_horizon: int = field(default=5, metadata={"ge": 1})
    max_abs_q: float = field(default=1e5, metadata={"gt": 0})
    seed: int = 0
    ensemble: EnsembleConfig = field(default_factory=EnsembleConfig)
    sac: SACConfig = field(default_factory=SACConfig)

    def __post_init__(self) -> None:
        e0, e1, k0, k1 = self.rollout_schedule
        if e1 < e0 or k0 < 1 or k1 < 1:
            raise ConfigError("", "rollout_schedule", list(self.rollout_schedule), "need epoch1 >= epoch0, k >= 1")
        if self.achieved_goal_ratio not in ("auto", 0) and self.goal_relabel_ratio == 0:
            raise ConfigError("", "achieved_goal_ratio", self.achieved_goal_ratio,
                              "a share of the relabelled rows: needs goal_relabel_ratio > 0")

    def in_steps(self, episode_steps: int, control_hz: float) -> AlgoConfig:
        """This config with every period (:data:`PERIOD_FIELDS`) in real transitions."""
        resolved: dict[str, Any] = {f: period_steps(getattr(self, f), episode_steps, control_hz)
                                    for f in PERIOD_FIELDS if getattr(self, f) is not None}
        return dataclasses.replace(self, **resolved)

    def for_task(self, has_goals: bool) -> AlgoConfig:
        """This config with every ``"auto"`` task option decided for a task that does (not) declare its goals."""
        auto: dict[str, Any] = {f: (AUTO_GOAL_RELABEL[f] if has_goals else 0.0)
                for f in AUTO_GOAL_RELABEL if getattr(self, f) == "auto"}
        return dataclasses.replace(self, **auto) if auto else self

    def ratio(self, name: str) -> float:
        v = getattr(self, name)
        if not isinstance(v, float):
            raise ValueError(f"{name}={v!r} is not decided for a task yet (AlgoConfig.for_task)")
        return v

    def steps(self, name: str) -> int:
        v = getattr(self, name)
        if not isinstance(v, int):
            raise ValueError(f"{name}={v!r} is not resolved to transitions yet (AlgoConfig.in_steps)")
        return v

    def rollout_length(self, epoch: float) -> int:
        """k at a given epoch: linear from k0 to k1 between epoch0 and epoch1 (MBPO App. C)."""
        e0, e1, k0, k1 = self.rollout_schedule
        if epoch <= e0 or e1 == e0:
            return int(k0 if epoch <= e0 else k1)
        frac = min(1.0, (epoch - e0) / (e1 - e0))
        return int(round(k0 + frac * (k1 - k0)))

    @property
    def rollout_period(self) -> int:
        """Real steps between rollout rounds."""
        return self.steps("model_train_every" if self.rollout_every is None else "rollout_every")

    def model_buffer_size(self, k: int) -> int:
        """FIFO size that holds ``model_retain_epochs`` epochs of rollouts of length k (MBPO §4)."""
        per_epoch = max(1, self.steps("epoch_length") // self.rollout_period) * self.rollout_batch * k
        return per_epoch * self.model_retain_epochs


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def resolve_config_path(algo: str | Path) -> Path:
    """``mbpo`` -> ``configs/algo/mbpo.yaml``; a path is returned as is."""
    p = Path(algo)
    if p.suffix in (".yaml", ".yml"):
        return p
    return CONFIG_DIR / f"{algo}.yaml"


def load_algo_config(algo: str | Path, robot: str | None = None, overrides: list[str] | None = None) -> AlgoConfig:
    """Load a preset, merge its ``robots.<robot>`` section, apply ``--set`` overrides, validate.

    Every robot section is validated too, so a typo in an unused section still fails at load time.
    """
    path = resolve_config_path(algo)
    data = read_yaml(path)
    robots = data.pop("robots", None) or {}
    if not isinstance(robots, dict):
        raise ConfigError(str(path), "robots", robots, "expected a mapping keyed by robot name")
    for name, section in robots.items():
        if not isinstance(section, dict):
            raise ConfigError(str(path), f"robots.{name}", section, "expected a mapping")
        load_config(AlgoConfig, _merge(data, section), source=f"{path} (robots.{name})")
    if robot is not None and robot in robots:
        data = _merge(data, robots[robot])
    return load_config(AlgoConfig, data, overrides, source=str(path))
