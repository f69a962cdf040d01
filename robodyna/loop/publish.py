"""Policies out of the trainer service: export as ONNX, push validation, the final selection, the push.

:class:`PolicyOut` is the part of :class:`~robodyna.loop.trainer.TrainerService` that decides which actor weights
the robot gets and sends them: each round's policy is pushed only if the model predicts it at least as good as the
deployed one from the same real starts (``push_validation``; ME-TRPO §4.3), and once the budget is spent the adapted
policy is the model's pick among the last pushed ones or their average (``final_selection``). Every decision goes
to a CSV in the service's directory (``validation.csv``, ``selection.csv``, ``policies.csv``, ``policy_results.csv``).
"""

from __future__ import annotations

import logging
import os
import queue
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from robodyna.learn.learner import Learner
from robodyna.learn.logger import RunLogger
from robodyna.loop.final import (
    actor_candidates,
    actor_restored,
    averaged_state,
    final_candidates,
    score_actors,
    stepped_state,
)
from robodyna.loop.refresh import append_csv
from robodyna.loop.service_config import ServiceConfig

if TYPE_CHECKING:
    from robodyna.transport.trainer import TrainerServer

log = logging.getLogger(__name__)


class PolicyOut:
    """Export, validate, select and push policies (the service's state it reads and writes is declared here)."""

    cfg: ServiceConfig
    out: Path
    learner: Learner
    metrics: RunLogger
    server: TrainerServer
    task_fns: Any
    episode_steps: int
    round: int
    real_steps: int
    updates_at_export: int
    pushed_version: int
    recent_actors: list[dict[str, torch.Tensor]]
    deployed_actor: dict[str, torch.Tensor] | None
    iterates: list[tuple[int, dict[str, torch.Tensor]]]
    rejected_in_a_row: int
    # pushed versions no robot has answered for yet: version -> (the version deployed before it, its actor weights,
    # the pushed actor weights); a refusal puts the one before back (``_refused``)
    unconfirmed: dict[int, tuple[int, dict[str, torch.Tensor] | None, dict[str, torch.Tensor] | None]]

    def episode_starts(self) -> np.ndarray:
        """The first observation of every real episode the service has (the service keeps them)."""
        raise NotImplementedError

    def export_and_push(self, reason: str) -> int:
        lr = self.learner
        before = (self.pushed_version, self.deployed_actor)
        path = lr.export(self.out / "policies" / f"policy_v{lr.policy_version + 1}.onnx")
        self._keep_actor(lr.policy_version)
        n = self.cfg.final_average_versions
        if n and self.deployed_actor is not None:
            self.recent_actors = [*self.recent_actors, self.deployed_actor][-(n + 1):]
        self._push(path, reason)
        self.unconfirmed = {v: u for v, u in self.unconfirmed.items() if v > lr.policy_version - 10}
        self.unconfirmed[lr.policy_version] = (*before, self.deployed_actor)
        return lr.policy_version

    def _selecting(self) -> bool:
        return self.cfg.final_selection in ("model", "window") and self.learner.model is not None

    def _keep_actor(self, version: int) -> None:
        """The actor weights of a pushed version: the deployed one (for ``push_validation``) and, for the final
        selection, ``policies/actor_vN.pt``."""
        self.deployed_actor = averaged_state([self.learner.agent.actor.state_dict()])
        if self._selecting():
            torch.save(self.deployed_actor, self.out / "policies" / f"actor_v{version}.pt")

    def _note_iterate(self) -> None:
        """Keep SAC's current actor as a candidate for the next push validation (``validation_candidates``)."""
        k = self.cfg.validation_candidates
        if k > 1 and self.cfg.push_validation == "model":
            self.iterates = [*self.iterates, (self.learner.n_updates,
                                              averaged_state([self.learner.agent.actor.state_dict()]))][-k:]

    def _passes_validation(self) -> bool:
        """``push_validation``: does the model predict the round's best iterate (the latest alone, or the last
        ``validation_candidates``) to do at least as well as the deployed one? If so the actor is that iterate;
        if not it goes back to the deployed weights (``rejected_actor``)."""
        lr = self.learner
        earlier, self.iterates = self.iterates, []
        if self.cfg.push_validation != "model" or lr.model is None or self.deployed_actor is None:
            return True
        starts = self.episode_starts()
        if len(starts) == 0:
            return True
        k = self.cfg.validation_candidates
        before = [(n, st) for n, st in earlier if n < lr.n_updates][-(k - 1):] if k > 1 else []
        latest = averaged_state([lr.agent.actor.state_dict()])
        cands = [*before, (lr.n_updates, latest)]
        steps = [1.0] * len(cands)  # the fraction of the step from the deployed weights to the iterate
        for f in self.cfg.validation_step_fractions:
            if f != 1.0:  # a shorter step towards the latest iterate
                cands.append((lr.n_updates, stepped_state(self.deployed_actor, latest, f)))
                steps.append(f)
        scores = score_actors(lr, self.task_fns, [*(st for _, st in cands), self.deployed_actor], starts,
                              self.cfg.selection_starts, self.episode_steps)[self.cfg.validation_score]
        best, old = int(np.argmax(scores[:-1])), float(scores[-1])
        new = float(scores[best])
        ok = bool(new >= old)
        cap = self.cfg.validation_max_rejections
        forced = not ok and cap > 0 and self.rejected_in_a_row >= cap
        if forced:  # the model has seen only the deployed policy's data for `cap` rounds: try its best candidate
            ok = True
        self.rejected_in_a_row = 0 if ok else self.rejected_in_a_row + 1
        append_csv(self.out / "validation.csv", {"round": self.round, "real_steps": self.real_steps,
                                                  "updates": lr.n_updates, "deployed_version": self.pushed_version,
                                                  "candidate_score": new, "deployed_score": old,
                                                  "pushed": int(ok), "candidates": len(cands),
                                                  "candidate_updates": cands[best][0],
                                                  "candidate_step": steps[best], "score": self.cfg.validation_score,
                                                  "forced": int(forced), "wall_s": time.time()})
        if forced:
            log.info("round %d: %d rounds rejected in a row: pushing the round's best candidate (%.3g < %.3g) "
                     "so the robot collects data off the deployed policy", self.round, cap, new, old)
        if ok and best != len(before):
            lr.agent.actor.load_state_dict(cands[best][1])  # SAC goes on from the candidate pushed
            log.info("round %d: pushing %.3g of the step to the iterate of update %d, the model's best of the "
                     "round's %d candidates", self.round, steps[best], cands[best][0], len(cands))
        if not ok:
            back = self.cfg.rejected_actor == "deployed"
            if back:
                lr.agent.actor.load_state_dict(self.deployed_actor)
                if self.cfg.rejected_moments == "reset":
                    lr.agent.reset_actor_moments()
            lr.agent.freeze_actor(self.cfg.rejected_critic_warmup_updates)
            log.info("round %d: the model predicts the new policy worse than v%d (%.3g < %.3g): not pushed%s",
                     self.round, self.pushed_version, new, old,
                     f", actor back to v{self.pushed_version}" if back else "")
        return ok

    def export_final_and_push(self) -> int | None:
        """Push the adapted policy once the budget is spent (``final_selection``): the averaged actor, or the
        candidate the model scores best (:func:`robodyna.loop.final.score_actors`)."""
        if not self._selecting():
            return self.export_average_and_push()
        lr = self.learner
        cands = final_candidates(self.cfg.final_selection, actor_candidates(self.out / "policies"), self.recent_actors,
                                 lr.policy_version)
        starts = self.episode_starts()
        if len(cands) < 2 or len(starts) == 0:
            log.warning("final selection: %d candidate(s), %d real episode starts: pushing the average instead",
                        len(cands), len(starts))
            return self.export_average_and_push()
        scores = score_actors(lr, self.task_fns, [st for _, st in cands], starts, self.cfg.selection_starts,
                              self.episode_steps)[self.cfg.selection_score]
        best = int(np.argmax(scores))
        for (name, _), sc in zip(cands, scores):
            append_csv(self.out / "selection.csv", {"candidate": name, "score": self.cfg.selection_score,
                                                     "model_score": float(sc),
                                                     "chosen": int(name == cands[best][0]),
                                                     "starts": self.cfg.selection_starts, "wall_s": time.time()})
        with actor_restored(lr):  # training state stays the last iterate
            lr.agent.actor.load_state_dict(cands[best][1])
            path = lr.export(self.out / "policies" / f"policy_v{lr.policy_version + 1}.onnx")
        self._push(path, f"selected {cands[best][0]} (model {self.cfg.selection_score} score {scores[best]:.3g}, "
                               f"max over {len(cands)})")
        return lr.policy_version

    def export_average_and_push(self) -> int | None:
        """Export and push the next version with the actor weights averaged over the last pushed policies (the
        final one included; ``final_average_versions``); None when fewer than two are kept."""
        lr, actors = self.learner, self.recent_actors
        if len(actors) < 2:
            return None
        with actor_restored(lr):  # training state stays the last iterate
            lr.agent.actor.load_state_dict(averaged_state(actors))
            path = lr.export(self.out / "policies" / f"policy_v{lr.policy_version + 1}.onnx")
        self._push(path, f"average of v{lr.policy_version - len(actors)}-v{lr.policy_version - 1}")
        return lr.policy_version

    def _push(self, path: Path, reason: str) -> None:
        lr = self.learner
        data = path.read_bytes()
        self.server.push_policy(lr.policy_version, data, {"round": str(self.round), "reason": reason,
                                                           "real_steps": str(self.real_steps)})
        self.pushed_version = lr.policy_version
        self.updates_at_export = lr.n_updates
        self.metrics.scalars(self.real_steps, {"policy/version": lr.policy_version, "policy/updates": lr.n_updates})
        append_csv(self.out / "policies.csv", {"version": lr.policy_version, "round": self.round,
                                                 "real_steps": self.real_steps, "updates": lr.n_updates,
                                                 "reason": reason, "wall_s": time.time()})
        log.info("pushed policy v%d (%s, %d real steps, %d updates)", lr.policy_version, reason, self.real_steps,
                 lr.n_updates)

    def _policy_results(self) -> None:
        while True:
            try:
                robot, v, ok, reason = self.server.policy_results.get_nowait()
            except queue.Empty:
                return
            append_csv(self.out / "policy_results.csv", {"robot": robot, "version": v, "accepted": int(ok),
                                                          "reason": reason, "wall_s": time.time()})
            if ok:
                self.unconfirmed.pop(v, None)
            else:
                self._refused(int(v), robot, reason)

    def _refused(self, version: int, robot: str, reason: str) -> None:
        """``robot`` refused pushed ``version`` and runs the policy it had: the version is not deployed. Its files
        move to ``policies/refused/`` (kept, but out of the final selection, the loop's evaluation and a restart's
        reading) and its actor leaves the averaged final policy's versions; if it is the last push, the deployed
        policy is the one before it again: push validation's reference, and SAC's actor goes back to it (a refusal
        of non-finite weights would otherwise refuse every later push too). With several robots one refusal is
        enough."""
        pol = self.out / "policies"
        (pol / "refused").mkdir(exist_ok=True)
        for name in (f"policy_v{version}.onnx", f"actor_v{version}.pt"):
            if (pol / name).is_file():
                os.replace(pol / name, pol / "refused" / name)
        entry = self.unconfirmed.pop(version, None)
        if entry is None:  # a final push, or answered after a restart: only its files
            log.error("robot %s refused policy v%d (%s); moved to policies/refused/", robot, version, reason)
            return
        prev_version, prev_actor, refused_actor = entry
        self.recent_actors = [a for a in self.recent_actors if a is not refused_actor]
        if version == self.pushed_version:
            self.pushed_version, self.deployed_actor = prev_version, prev_actor
            if prev_actor is not None:
                self.learner.agent.actor.load_state_dict(prev_actor)
        log.error("robot %s refused policy v%d (%s): the deployed policy is v%d again; files in policies/refused/",
                  robot, version, reason, self.pushed_version)
