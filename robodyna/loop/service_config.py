"""The trainer service's configuration (``trainer:`` of a loop config), validated when it is built."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from robodyna.learn.select import SCORES
from robodyna.loop.refresh import RefreshConfig

WarmStart = Literal["agent_model", "agent_model_buffer", "fresh"]

#: The trainer's default algo overrides (``trainer.algo_overrides``; the presets name their own lists), each general
#: to fine-tuning a simulation policy on a real robot: the robot's own safety filter inside the policy (the robot
#: filters every action it gets), SAC's step size cut tenfold, half of every SAC batch real (the robot's own
#: transitions anchor the critic), refits ended after a number of gradient steps (not wall time, so the model does
#: not depend on machine load). A reacher2 loop config naming nothing but robot and profile (laggy, 2000 real steps,
#: 3 seeds, 200 targets): 72.5 / 83.5 / 86.5 %, 1.10 / 0.96 / 0.91 cm, 91 % of the success gap and 89 % of the
#: distance gap (the tuned preset: 95 %, 89.6 % over six seeds); with the training preset as it is, 64 / 50 / 58.5 %,
#: 1.36 / 1.88 / 1.48 cm (29 %, 34 %). The critics at ten times the actor's step size (two timescales, Konda &
#: Tsitsiklis 2000; stop 52): the same config, seeds 0-11, 95.7 % / 92.8 % of the gaps against 83.8 % / 81.8 % without
#: (paired +11.8 / +11.0 points, SE 7.2 / 5.5).
FINE_TUNING = ("policy_filter=true", "sac.lr=0.00003", "sac.critic_lr=0.0003", "real_ratio=0.5",
               "ensemble.max_fit_batches=200")


@dataclass(frozen=True)
class ServiceConfig:
    """The trainer service's knobs (``trainer:`` of a loop config)."""

    algo: str = "mbpo"  # algo preset (its robots.<robot> section applies) or YAML path
    # --set style overrides of the algo config; a list a config gives replaces this default, a fine-tuning recipe
    # that knows nothing of the robot or the profile (FINE_TUNING)
    algo_overrides: list[str] = field(default_factory=lambda: list(FINE_TUNING))
    warm_start: WarmStart = "agent_model"  # from the stage-1 checkpoint: agent+model, +its real buffer, or fresh
    real_step_budget: int = 2000  # real transitions to learn from in total
    update_chunk: int = 100  # SAC updates between two looks at the queue and the signals
    export_every_updates: int = 0  # also export+push every N updates (0: once per round, before each refresh)
    return_horizon: int = 0  # model-predicted return horizon for the return gap (0: the episode length)
    refresh: RefreshConfig = field(default_factory=RefreshConfig)
    robot_wait_s: float = 600.0  # give up when no robot connects within this long
    # Lockstep rounds: SAC waits while a refresh (or the robot's first episodes) is outstanding, and the rows are
    # ingested in one piece once all of them have arrived, so every update, refit and decision happens at the same
    # real-step and update counts however fast either side runs: a run is repeatable bit for bit on a busy machine
    # (results budgeted in real steps give the same answer). false (before stop 55): SAC goes on while the robot
    # collects, and how many updates fit in that time depends on the machine. Laggy reacher2, seeds 0-17: level
    # with the preset's runs without it (docs/loop_results.md "Measured since (stop 55)").
    lockstep: bool = True
    # SAC updates wait until the model buffer holds a batch of rollouts branched by a model refit on this robot's
    # data (MBPO §4: the policy learns from model rows plus real_ratio real ones). Without the wait, the first
    # refit period's few hundred real rows alone get updates_per_step updates each and overfit the sim critic.
    updates_wait_for_model: bool = True
    num_threads: int = 1
    tensorboard: bool = True  # also write the service's metrics (metrics.csv always) as TensorBoard under tb/
    # The adapted policy (pushed last, once the budget is spent) has the actor weights averaged over the last N
    # pushed policies and the final one (SWA: Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima"):
    # one SAC iterate swings by ~10 success points between neighbouring rounds, and the budget's end can fall on
    # a bad one (laggy, 2000 real steps: final 52 %, the five versions before it 67-72 %). 0: the last iterate.
    final_average_versions: int = 4
    # The first N SAC updates after the warm start train the critics only (SAC.freeze_actor): the simulation
    # critic first learns the real robot's values of the policy that collects the data; 0: off. Not in a preset:
    # panda on laggy (seed 0, 3000 real steps) ended at 2.09 cm / 40 % with 5000 (1.99 cm / 46 % without); its
    # policy, unchanged through the warm-up, fell to 12.99 cm / 19 % within the 2500 updates after it.
    critic_warmup_updates: int = 0
    # SAC's step size falls linearly from sac.lr at the first update to sac.lr x lr_final_frac at the budget's last
    # one (updates_per_step x real_step_budget updates), so the adapted policy is not one large step's iterate
    # (annealed step sizes, Robbins & Monro 1951; as in the linear decay of PPO's and SB3's schedules); null: constant.
    lr_final_frac: float | None = None
    # How the adapted policy (pushed once the budget is spent) is chosen. "average": the averaged actor above.
    # "model": the candidate with the highest model-predicted return (robodyna/learn/select.py; ME-TRPO's policy
    # validation, Kurutach et al. 2018 §4.3) among the simulation policy, every pushed version and that average,
    # each rolled out for an episode in the final model from `selection_starts` real episode starts with fresh
    # goals; a learner without a model falls back to "average". SAC's iterates do not improve monotonically: on
    # laggy reacher2 one run's versions went 45 -> 53 -> 29 -> 40 % real success, and their model returns followed.
    # "window": the average over the last k pushed versions (the final one included; k = 1: the final iterate,
    # k = all: every version since the simulation policy) with the k whose averaged actor the model scores best
    # (as above): how far back to average depends on the run (its pushes, its iterates), not on a fixed N. On 15
    # finished validated runs (laggy reacher2 drift and fixed, six seeds each; panda, three) it ended closer than the
    # fixed window of 5 on 12 and level on 3 (mean final distance: reacher2 1.07 -> 0.98 cm, success 81 -> 83 %;
    # panda 0.58 -> 0.50 cm), hence the default; a learner without a model falls back to "average".
    final_selection: Literal["average", "model", "window"] = "window"
    selection_starts: int = 200
    # What the final selection ranks candidates by (robodyna/learn/select.py SCORES): "return", the model-predicted
    # return; "final_distance" (reach), the model-predicted end-effector-to-target distance after the episode's last
    # step, the precision reach is scored by. Push validation scores by return either way. Laggy reacher2, 36
    # finished runs (tools/bench/final_selection.py ranks each run's windows both ways): +1.9 / +0.8 points of the
    # success / distance gaps (SE 1.6 / 1.0), not significant, so not the default (docs/loop_results.md "Two more
    # levers").
    selection_score: Literal["return", "final_distance"] = "return"
    # "model": before a round's policy is pushed, the model scores it against the deployed one from the same real
    # starts (as above); one it predicts to do worse is not pushed, and SAC's actor goes back to the deployed
    # weights (ME-TRPO's policy validation, Kurutach et al. 2018 §4.3; validation.csv). "off": every round pushes.
    # Measured on laggy reacher2 (six seeds: 91 % / 84 % of the gaps against 76 % / 72 %) and panda (three: 97 % / 59 %
    # against 57 % / 32 %), hence the default; a learner without a model (SAC) pushes every round.
    push_validation: Literal["off", "model"] = "model"
    # What SAC trains on from after a rejected round: "deployed", the deployed policy's actor weights (the rejected
    # iterate is dropped); "continue", its own last iterate (the robot keeps the deployed policy either way). Laggy
    # reacher2, 24 seeds: 87.2 % / 81.4 % of the gaps with "continue" against the preset's 90.5 % / 85.9 %
    # (docs/loop_results.md).
    rejected_actor: Literal["deployed", "continue"] = "deployed"
    # With rejected_actor "deployed": "reset" also forgets Adam's moments of the actor (SAC.reset_actor_moments), which
    # the steps of the rejected iterate built up and would otherwise carry on from the deployed weights; "keep": as
    # before. Laggy reacher2, seeds 0-5: +3.1 / +0.2 points of the success / distance gaps (SE 5.7 / 3.8) against the
    # preset's reruns: not kept (docs/loop_results.md "Five more levers").
    rejected_moments: Literal["keep", "reset"] = "keep"
    # After a rejected round the next N SAC updates train the critics only (SAC.freeze_actor), so the actor leaves
    # the deployed weights again only after the critic has caught up with the latest real data; 0: off. 100 on laggy
    # reacher2, seeds 0-5 and 12-17: +5.8 / +4.0 points of the gaps (SE 3.9 / 2.6) against the preset's reruns, 95.2 %
    # / 88.6 %: the best of these levers, not significant, so not the default (docs/loop_results.md "Five more levers");
    # the reacher2 preset sets it with sac.critic_lr since stop 51 (docs/loop_results.md "Two timescales").
    rejected_critic_warmup_updates: int = 0
    # How many of the round's SAC iterates push validation scores: the latest and the ones before it, one every
    # `update_chunk` updates since the last validation. The one the model predicts best is pushed if it does at
    # least as well as the deployed one (and SAC goes on from it); 1: the latest iterate only. 3 on laggy reacher2,
    # seeds 0-5 and 12-17: 93.1 % / 85.7 % of the gaps against the preset's 89.5 % / 84.5 % on the same seeds
    # (paired +3.7 / +1.2 points, SE 2.1 / 1.1): a hint, not significant, so not the default (docs/loop_results.md).
    validation_candidates: int = 1
    # Shorter steps push validation also scores: each fraction f in (0, 1) adds the candidate deployed + f x (latest
    # iterate - deployed), a backtracking line search along SAC's step (TRPO: Schulman et al. 2015, Appendix C); the
    # one pushed is the model's best of all candidates if at least as good as the deployed one, and SAC goes on from
    # it. [1.0]: the iterates only (as before). [1.0, 0.5, 0.25] on laggy reacher2 (seeds 0-4) pushed more rounds and
    # lost: -3.2 / -8.1 points of the gaps (SE 3.7 / 2.1) against the preset's reruns (docs/loop_results.md "Five more
    # levers").
    validation_step_fractions: list[float] = field(default_factory=lambda: [1.0])
    # What push validation compares candidates and the deployed policy by (the scores of `selection_score`):
    # "return", the model-predicted return; "final_distance" (reach), the predicted distance after the last step.
    # Laggy reacher2, seeds 0-5 and 12-17: -0.4 / -1.9 points of the gaps (SE 3.4 / 3.0) against the preset's reruns:
    # not kept (docs/loop_results.md "Five more levers").
    validation_score: Literal["return", "final_distance"] = "return"
    # After N rounds rejected in a row the next round pushes its best candidate unvalidated: the model is fitted on
    # the deployed policy's own data and may favour it over any policy it has seen no data of (on laggy reacher2 most
    # runs rejected every round of the budget's second half), so the robot tries one (an exploration push; the final
    # selection still chooses among all pushed versions). 0: never (as before). 4 on laggy reacher2 (seeds 0-5): 1-3
    # forced pushes per run, then validation passes again (15-24 rounds pushed, not 3-17), +2.2 / -0.8 points of the
    # gaps (SE 6.5 / 2.3): not kept (docs/loop_results.md "Five more levers").
    validation_max_rejections: int = 0

    def __post_init__(self) -> None:
        if self.warm_start not in ("agent_model", "agent_model_buffer", "fresh"):
            raise ValueError(f"trainer.warm_start: agent_model, agent_model_buffer or fresh, got {self.warm_start!r}")
        if self.real_step_budget < 1 or self.update_chunk < 1 or self.export_every_updates < 0:
            raise ValueError("trainer: real_step_budget and update_chunk >= 1, export_every_updates >= 0")
        if self.critic_warmup_updates < 0:
            raise ValueError(f"trainer.critic_warmup_updates: >= 0, got {self.critic_warmup_updates}")
        if self.lr_final_frac is not None and not 0 < self.lr_final_frac <= 1:
            raise ValueError(f"trainer.lr_final_frac: the final step size's fraction of sac.lr, in (0, 1] (null: "
                             f"constant), got {self.lr_final_frac}")
        if self.rejected_actor not in ("deployed", "continue"):
            raise ValueError(f"trainer.rejected_actor: deployed or continue, got {self.rejected_actor!r}")
        if self.rejected_moments not in ("keep", "reset"):
            raise ValueError(f"trainer.rejected_moments: keep or reset, got {self.rejected_moments!r}")
        if self.rejected_critic_warmup_updates < 0:
            raise ValueError(f"trainer.rejected_critic_warmup_updates: >= 0, got {self.rejected_critic_warmup_updates}")
        if self.validation_candidates < 1:
            raise ValueError(f"trainer.validation_candidates: the round's iterates push validation scores, >= 1, "
                             f"got {self.validation_candidates}")
        if not self.validation_step_fractions or not all(0 < f <= 1 for f in self.validation_step_fractions):
            raise ValueError(f"trainer.validation_step_fractions: fractions of the step to the latest iterate, each in "
                             f"(0, 1], at least one, got {self.validation_step_fractions}")
        if self.push_validation not in ("off", "model"):
            raise ValueError(f"trainer.push_validation: off or model, got {self.push_validation!r}")
        if self.final_selection not in ("average", "model", "window") or self.selection_starts < 1:
            raise ValueError(f"trainer.final_selection: average, model or window, got {self.final_selection!r}; "
                             f"trainer.selection_starts >= 1, got {self.selection_starts}")
        if self.validation_max_rejections < 0:
            raise ValueError(f"trainer.validation_max_rejections: >= 0 (0: never forced), got "
                             f"{self.validation_max_rejections}")
        if self.validation_score not in SCORES:
            raise ValueError(f"trainer.validation_score: one of {', '.join(SCORES)}, got {self.validation_score!r}")
        if self.selection_score not in SCORES:
            raise ValueError(f"trainer.selection_score: one of {', '.join(SCORES)}, got {self.selection_score!r}")
        if self.final_average_versions < 0:
            raise ValueError(f"trainer.final_average_versions: the versions averaged into the adapted policy besides "
                             f"the final one, >= 0 (0: the final one as is), got {self.final_average_versions}")


#: The network shapes a warm start must keep: the simulation checkpoint's, whatever the preset says today (a preset
#: whose defaults changed after the checkpoint was made still warm-starts from it).
WARM_START_SHAPES = ("sac.hidden", "sac.layers", "sac.critic_layer_norm", "ensemble.n_members",
                     "ensemble.n_elites", "ensemble.hidden", "ensemble.layers", "model_inputs")


def warm_start_shapes(cfg: dict[str, Any]) -> list[str]:
    """``--set`` overrides that give a new learner the network shapes of a checkpoint's learner ``config``."""
    out = []
    for key in WARM_START_SHAPES:
        node = cfg
        for part in key.split("."):
            node = node[part]
        out.append(f"{key}={json.dumps(node)}")
    return out
