"""Policies scored in the learned model (robodyna/learn/select.py) and what the trainer does with the scores:
``push_validation`` keeps a policy the model predicts worse off the robot, ``final_selection`` keeps every pushed
actor as a candidate. Real MuJoCo, the shipped checkpoint's real ensemble and agent, a store from the real recorder."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robodyna.data.batch import Batch
from robodyna.learn.checkpoint import load_checkpoint
from robodyna.learn.config import load_algo_config
from robodyna.learn.envs import episode_steps_for_env, make_env, obs_names_for_env, spec_for_env, task_fns_for_env
from robodyna.learn.learner import Learner
from robodyna.learn.rollouts import branched_rollout
from robodyna.learn.select import model_scores, selection_starts
from robodyna.loop.final import episode_starts, opening_rows
from robodyna.loop.trainer import ServiceConfig, TrainerService, warm_start_shapes

ROOT = Path(__file__).resolve().parents[2]
CKPT = ROOT / "configs" / "loops" / "checkpoints" / "reacher2_sim.pt"


@pytest.fixture(scope="module")
def sim_learner() -> tuple[Learner, np.ndarray]:
    env = make_env("reacher2")
    try:
        spec, names, fns = spec_for_env(env), obs_names_for_env(env), task_fns_for_env(env)
        T = episode_steps_for_env(env)
        st = load_checkpoint(CKPT, spec, names)["learner"]
        lr = Learner(load_algo_config("mbpo", "reacher2", [*warm_start_shapes(st["config"]), "sac.compile=false",
                                                           "policy_filter=true"]), spec, names, fns, T)
        lr.agent.load_state_dict(st["sac"])
        assert lr.model is not None
        lr.model.load_state_dict(st["model"])
        starts = np.asarray([env.reset(seed=i)[0] for i in range(8)], np.float32)
    finally:
        env.close()
    return lr, starts


def test_the_model_scores_the_trained_policy_above_doing_nothing_with_common_random_numbers(
        sim_learner: tuple[Learner, np.ndarray]) -> None:
    lr, starts = sim_learner
    assert lr.model is not None
    x0 = selection_starts(starts, lr.task_fns, 64, np.random.default_rng(0))
    trained = lambda o: lr.agent.act(o, deterministic=True)  # noqa: E731
    idle = lambda o: np.zeros((len(o), lr.spec.act_dim), np.float32)  # noqa: E731
    s = model_scores(lr.model, lr.task_fns, x0, [trained, idle, trained], lr.episode_steps, seed=3)["return"]
    assert s[0] > s[1] + 1.0  # reaching beats holding still by a margin, in the model as on the robot
    assert s[0] == s[2]  # the same policy, the same draws: only policies make scores differ
    other = model_scores(lr.model, lr.task_fns, x0, [trained], lr.episode_steps, seed=4)["return"]
    assert other[0] != s[0]  # ... and the draws are not all the same


def test_the_final_distance_score_is_minus_the_mean_distance_the_model_predicts_after_the_last_step(
        sim_learner: tuple[Learner, np.ndarray]) -> None:
    lr, starts = sim_learner
    assert lr.model is not None
    fns = lr.task_fns
    x0 = selection_starts(starts, fns, 32, np.random.default_rng(0))
    trained = lambda o: lr.agent.act(o, deterministic=True)  # noqa: E731
    idle = lambda o: np.zeros((len(o), lr.spec.act_dim), np.float32)  # noqa: E731
    T = lr.episode_steps
    s = model_scores(lr.model, fns, x0, [trained, idle], T, seed=5, reps=2)
    assert set(s) == {"return", "final_distance"}
    assert s["final_distance"][0] > s["final_distance"][1] + 0.02  # the trained arm ends centimetres nearer
    # the same rollouts by hand: the rows of the last step, their distance to the target, averaged over reps
    z = np.zeros(len(x0), np.float32)
    start = Batch.create(x0, np.zeros((len(x0), lr.spec.act_dim), np.float32), z, x0, z.astype(bool), z.astype(bool))
    ends = []
    for r in range(2):
        ro = branched_rollout(lr.model, start, T, fns, np.random.default_rng(5 + r), policy=lambda o, g: trained(o))
        assert ro.truncated.sum() == len(x0)
        ends.append(fns.distance(ro.next_obs[ro.truncated]).mean())
    assert s["final_distance"][0] == pytest.approx(-float(np.mean(ends)), rel=1e-6)
    # a task without an end-effector distance is scored by return only
    no_distance = type("NoDistance", (), {k: getattr(fns, k) for k in ("reward", "terminated", "action_history",
                                                                        "push_action", "constrain")})()
    assert set(model_scores(lr.model, no_distance, x0, [trained], 2, seed=5)) == {"return"}


def test_selection_starts_take_fresh_goals_and_refuse_bad_starts(sim_learner: tuple[Learner, np.ndarray]) -> None:
    lr, starts = sim_learner
    fns = lr.task_fns
    x0 = selection_starts(starts, fns, 20, np.random.default_rng(1))
    assert x0.shape == (20, starts.shape[1])
    lay = fns.layout
    np.testing.assert_array_equal(x0[:, : lay.target.start], starts[np.arange(20) % 8, : lay.target.start])
    assert not np.allclose(x0[:8, lay.target], starts[:, lay.target])  # new targets
    bad = starts.copy()
    bad[2, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        selection_starts(bad, fns, 4, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"\[N, obs_dim\]"):
        selection_starts(starts[0], fns, 4, np.random.default_rng(0))


def _last_row(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return dict(zip(lines[0].split(","), lines[-1].split(",")))


def _service_dir_with_recorded_episodes(tmp_path: Path) -> Path:
    """Trainer keys in ``tmp_path/keys`` and a service directory whose store holds 3 real episodes, recorded by the
    real recorder on the laggy profile."""
    from robodyna.transport.keys import generate_keys

    generate_keys(tmp_path / "keys", "trainer")
    out = tmp_path / "svc"
    subprocess.run([sys.executable, "-m", "robodyna.cli.main", "record", "--robot", "reacher2", "--reality", "laggy",
                    "--policy", "random", "--episodes", "3", "--out", str(out / "store" / "robot0")],
                   check=True, cwd=ROOT, capture_output=True)
    return out


def _validating_service(tmp_path: Path, **cfg: Any) -> tuple[Path, TrainerService]:
    """A trainer service warm-started from the shipped checkpoint, validating pushes in the model, over a store of 3
    recorded laggy episodes (``_service_dir_with_recorded_episodes``); ``cfg`` overrides its ServiceConfig."""
    out = _service_dir_with_recorded_episodes(tmp_path)
    base: dict[str, Any] = {"algo_overrides": ["sac.compile=false", "policy_filter=true"], "push_validation": "model",
                            "final_selection": "model", "selection_starts": 32}
    svc = TrainerService("reacher2", out, "tcp://127.0.0.1:0", tmp_path / "keys", ServiceConfig(**{**base, **cfg}),
                         init_checkpoint=CKPT)
    return out, svc


def test_push_validation_keeps_a_policy_the_model_predicts_worse_off_the_robot_and_restores_the_deployed_actor(
        tmp_path: Path) -> None:
    out, svc = _validating_service(tmp_path)
    assert len(episode_starts(out / "store", len(svc.obs_names))) == 3
    sim_version = svc.learner.policy_version
    assert (out / "policies" / f"actor_v{sim_version}.pt").is_file()  # the simulation actor is a candidate
    actor = svc.learner.agent.actor
    deployed = {k: v.clone() for k, v in actor.state_dict().items()}
    assert svc._passes_validation()  # the deployed actor itself: as good as itself
    with torch.no_grad():  # a broken update: every weight zero, the same action whatever the target
        for p in actor.parameters():
            p.zero_()
    assert not svc._passes_validation()
    for k, v in actor.state_dict().items():
        assert torch.equal(v, deployed[k]), k  # back to the deployed weights
    rows = (out / "validation.csv").read_text().splitlines()
    assert rows[0].startswith("round,") and rows[-1].split(",")[6] == "0" and rows[1].split(",")[6] == "1"
    svc.cfg = dataclasses.replace(svc.cfg, rejected_actor="continue")  # SAC goes on from its own iterate
    with torch.no_grad():
        for p in actor.parameters():
            p.zero_()
    assert not svc._passes_validation()
    assert all(not p.any() for p in actor.parameters())  # kept, only kept off the robot
    # validated by the predicted final distance: the broken actor ends farther off than the deployed one
    svc.cfg = dataclasses.replace(svc.cfg, validation_score="final_distance")
    assert not svc._passes_validation()
    row = _last_row(out / "validation.csv")
    assert row["score"] == "final_distance"
    assert -0.05 < float(row["deployed_score"]) < 0 and float(row["candidate_score"]) < float(row["deployed_score"])


def test_a_rejected_round_can_forget_the_actors_adam_moments_and_warm_up_the_critic_before_the_actor_moves(
        tmp_path: Path) -> None:
    out, svc = _validating_service(tmp_path, rejected_moments="reset", rejected_critic_warmup_updates=50)
    agent = svc.learner.agent
    rng = np.random.default_rng(0)
    n, o, a = 64, agent.obs_dim, agent.act_dim
    obs = svc.episode_starts()[rng.integers(0, 3, n)]
    batch = Batch.create(obs, rng.uniform(agent.low, agent.high, (n, a)).astype(np.float32),
                         rng.standard_normal(n).astype(np.float32), obs + 0.01 * rng.standard_normal((n, o)),
                         np.zeros(n, bool), np.zeros(n, bool))
    assert svc._passes_validation() and agent.actor_frozen_until <= agent.n_updates  # a push freezes nothing
    for _ in range(3):
        agent.update(batch)
    actor_p, critic_p = list(agent.actor.parameters()), list(agent.critic.parameters())
    assert all(len(agent.optim.state[p]) > 0 for p in actor_p + critic_p)  # moments built up by the updates
    with torch.no_grad():  # a broken update: every weight zero
        for p in actor_p:
            p.zero_()
    assert not svc._passes_validation()
    assert all(p not in agent.optim.state or len(agent.optim.state[p]) == 0 for p in actor_p)  # forgotten
    assert all(len(agent.optim.state[p]) > 0 for p in critic_p)  # the critics keep theirs
    assert agent.actor_frozen_until == agent.n_updates + 50
    before = [p.clone() for p in actor_p]
    agent.update(batch)  # a critic-only update: the actor stays, its moments start again only when it moves
    assert all(torch.equal(p, q) for p, q in zip(actor_p, before))
    agent.actor_frozen_until = agent.n_updates
    agent.update(batch)  # the first actor step after the reset: Adam from zero moments
    assert all(int(agent.optim.state[p]["step"]) == 1 for p in actor_p)


def test_validation_with_step_fractions_pushes_a_shorter_step_the_model_prefers_and_sac_goes_on_from_it(
        tmp_path: Path) -> None:
    out, svc = _validating_service(tmp_path, validation_step_fractions=[1.0, 0.5])
    actor = svc.learner.agent.actor
    good = {k: v.clone() for k, v in actor.state_dict().items()}
    weights = {k for k, _ in actor.named_parameters()}
    # deployed: every weight zero (the same action whatever the target); SAC's step overshoots to twice the good
    # weights, so half of it lands exactly on them
    svc.deployed_actor = {k: torch.zeros_like(v) if k in weights else v.clone() for k, v in good.items()}
    with torch.no_grad():
        for p in actor.parameters():
            p.mul_(2.0)
    assert svc._passes_validation()
    row = _last_row(out / "validation.csv")
    assert (row["pushed"], row["candidates"], row["candidate_step"]) == ("1", "2", "0.5")
    assert all(torch.equal(v, good[k]) for k, v in actor.state_dict().items())  # SAC goes on from the half step


def test_after_max_rejections_in_a_row_the_rounds_best_candidate_is_pushed_once_and_the_count_starts_again(
        tmp_path: Path) -> None:
    out, svc = _validating_service(tmp_path, validation_max_rejections=2)
    actor = svc.learner.agent.actor

    def broken_round() -> tuple[bool, dict[str, str]]:
        with torch.no_grad():  # a broken update: every weight zero
            for p in actor.parameters():
                p.zero_()
        return svc._passes_validation(), _last_row(out / "validation.csv")

    pushed = []
    for _ in range(5):
        ok, row = broken_round()
        pushed.append((ok, row["pushed"], row["forced"]))
    assert pushed == [(False, "0", "0"), (False, "0", "0"), (True, "1", "1"), (False, "0", "0"), (False, "0", "0")]


@pytest.mark.parametrize("key", ["selection_score", "validation_score"])
def test_a_final_distance_ranking_is_refused_at_start_on_a_task_without_a_distance(tmp_path: Path, key: str) -> None:
    cfg = ServiceConfig(**{key: "final_distance"})
    with pytest.raises(ValueError, match=rf"trainer\.{key}: final_distance .*Pendulum-v1"):
        TrainerService("Pendulum-v1", tmp_path / "svc", "tcp://127.0.0.1:0", tmp_path / "keys", cfg)


def test_validation_with_several_candidates_pushes_the_rounds_best_iterate_and_sac_goes_on_from_it(
        tmp_path: Path) -> None:
    out, svc = _validating_service(tmp_path, validation_candidates=3)
    lr, actor = svc.learner, svc.learner.agent.actor
    deployed = {k: v.clone() for k, v in actor.state_dict().items()}

    def iterate(n: int, broken: bool, note: bool = True) -> None:
        lr.n_updates = n
        if broken:  # a broken update: every weight zero
            with torch.no_grad():
                for p in actor.parameters():
                    p.zero_()
        if note:
            svc._note_iterate()

    # round 1: the deployed weights at update 100, then broken iterates, the latest (400) too
    iterate(100, False), iterate(200, True), iterate(300, True), iterate(400, True, note=False)
    assert not svc._passes_validation()  # 100 is not among the last three: rejected
    assert (_last_row(out / "validation.csv")["pushed"], _last_row(out / "validation.csv")["candidates"]) == ("0", "3")
    assert all(torch.equal(v, deployed[k]) for k, v in actor.state_dict().items())  # back to the deployed weights
    assert svc.iterates == []  # the next round's candidates start afresh
    # round 2: the deployed weights at update 500, then broken ones: the first is the round's best
    iterate(500, False), iterate(600, True), iterate(700, True, note=False)
    assert svc._passes_validation()
    assert all(torch.equal(v, deployed[k]) for k, v in actor.state_dict().items())  # SAC goes on from it
    row = _last_row(out / "validation.csv")
    assert (row["pushed"], row["candidates"], row["candidate_updates"]) == ("1", "3", "500")


def test_a_restarted_trainer_validates_its_first_push_against_the_policy_it_had_deployed(tmp_path: Path) -> None:
    out, svc = _validating_service(tmp_path, final_selection="average", final_average_versions=2)
    stored = episode_starts(out / "store", len(svc.obs_names))
    np.testing.assert_array_equal(svc.episode_starts(), stored)  # kept as rows arrive, as the store holds them
    actor = svc.learner.agent.actor
    pushed = []
    for _ in range(4):  # four pushed versions, each a different actor
        with torch.no_grad():
            for prm in actor.parameters():
                prm.add_(0.01 * torch.randn_like(prm))
        svc.export_and_push("round")
        pushed.append({k: v.clone() for k, v in actor.state_dict().items()})
        if len(pushed) == 3:
            svc._save()  # the fourth push is the last thing the trainer does before a crash: not checkpointed
    resumed = TrainerService("reacher2", out, "tcp://127.0.0.1:0", tmp_path / "keys", svc.cfg, init_checkpoint=CKPT)
    assert resumed.pushed_version == svc.pushed_version == svc.learner.policy_version
    np.testing.assert_array_equal(resumed.episode_starts(), stored)  # rebuilt from the store the checkpoint saw
    assert resumed.deployed_actor is not None  # read back from the pushed ONNX
    for k, v in pushed[-1].items():
        assert torch.equal(resumed.deployed_actor[k], v), k
    assert len(resumed.recent_actors) == 3  # the averaged final policy's versions are back too
    for got, want in zip(resumed.recent_actors, pushed[1:]):
        assert all(torch.equal(got[k], want[k]) for k in want)
    with torch.no_grad():  # a broken update after the restart is still kept off the robot
        for prm in resumed.learner.agent.actor.parameters():
            prm.zero_()
    assert not resumed._passes_validation()
    rows = (out / "validation.csv").read_text().splitlines()
    assert rows[-1].split(",")[3] == str(svc.pushed_version)  # compared with the version deployed before it
    resumed.export_and_push("round")  # no version number is used twice
    assert resumed.learner.policy_version == svc.pushed_version + 1


def test_episode_openings_found_batch_by_batch_are_those_of_the_whole_recording() -> None:
    ep = np.repeat(np.arange(7), [3, 1, 5, 2, 2, 4, 1])
    whole = opening_rows(ep)
    assert whole.sum() == 7 and whole[0]
    for cuts in ([4], [1, 2, 9], [3, 8, 12, 17]):
        parts, prev = [], None
        for chunk in np.split(ep, cuts):
            parts.append(opening_rows(chunk, prev))
            prev = int(chunk[-1])
        np.testing.assert_array_equal(np.concatenate(parts), whole)
    assert len(opening_rows(ep[:0], 3)) == 0


@pytest.mark.parametrize("key,value", [("push_validation", "sometimes"), ("final_selection", "best"),
                                       ("selection_starts", "0"), ("selection_score", "reward"),
                                       ("rejected_actor", "never"), ("validation_candidates", "0"),
                                       ("rejected_moments", "zero"), ("rejected_critic_warmup_updates", "-1"),
                                       ("validation_step_fractions", "[1.0,0]"), ("validation_step_fractions", "[]"),
                                       ("validation_score", "success"), ("validation_max_rejections", "-1")])
def test_a_bad_validation_or_selection_setting_is_refused_naming_the_key(key: str, value: str) -> None:
    from robodyna.loop.config import load_loop_config

    with pytest.raises(ValueError, match=rf"trainer\.{key}"):
        load_loop_config("reacher2", [f"trainer.{key}={value}"])


def test_window_candidates_average_the_last_k_pushed_versions(tmp_path: Path) -> None:
    from robodyna.loop.final import actor_candidates, final_candidates, window_candidates

    g = torch.Generator().manual_seed(0)
    versions = [(f"v{v}", {"w": torch.randn(3, 2, generator=g), "b": torch.randn(2, generator=g)}) for v in (3, 4, 5)]
    cands = window_candidates(versions)
    assert [n for n, _ in cands] == ["v5", "average of v4-v5", "average of v3-v5"]
    for k, (_, st) in enumerate(cands, start=1):
        for key in ("w", "b"):
            torch.testing.assert_close(st[key], torch.stack([s[key] for _, s in versions[-k:]]).mean(0))
    cands[0][1]["w"].zero_()  # a copy: the pushed version's weights stay as they were
    assert versions[-1][1]["w"].abs().sum() > 0
    assert window_candidates([]) == []
    for name, st in versions:  # the trainer's files: every pushed version's actor
        torch.save(st, tmp_path / f"actor_{name}.pt")
    torch.save(versions[0][1], tmp_path / "actor_v10.pt")  # by version number, not by file name
    names = [n for n, _ in final_candidates("window", actor_candidates(tmp_path), [], 10)]
    assert names == ["v10", "average of v5-v10", "average of v4-v10", "average of v3-v10"]
    recent = [versions[1][1], versions[2][1]]
    model = final_candidates("model", actor_candidates(tmp_path), recent, 5)
    assert [n for n, _ in model] == ["v3", "v4", "v5", "v10", "average of v4-v5"]
    torch.testing.assert_close(model[-1][1]["w"], (recent[0]["w"] + recent[1]["w"]) / 2)


def test_with_defer_rejected_a_policy_change_refresh_waits_while_validation_rejects_the_rounds_policy(
        tmp_path: Path) -> None:
    from robodyna.loop.refresh import Decision, RefreshConfig

    out, svc = _validating_service(tmp_path, refresh=RefreshConfig(defer_rejected=True, min_updates_between=100))
    svc.updates_at_export = -1  # as after a round's SAC updates: a new policy to push
    actor = svc.learner.agent.actor
    with torch.no_grad():  # a broken update: every weight zero
        for p in actor.parameters():
            p.zero_()
    assert svc._pre_validate(Decision(True, "policy_age", 3.0)) is False  # rejected: deferred
    assert svc.scheduler.updates_at_defer == svc.learner.n_updates
    assert any(p.any() for p in actor.parameters())  # the actor is back at the deployed weights
    rows = len((out / "validation.csv").read_text().splitlines())
    with torch.no_grad():
        for p in actor.parameters():
            p.zero_()
    # the model's error on new data, the update cap, max_updates: never deferred, validated only at the push
    for reason in ("model_error_ratio", "update_cap", "max_updates"):
        assert svc._pre_validate(Decision(True, reason, 9.0)) is None
    assert len((out / "validation.csv").read_text().splitlines()) == rows
    actor.load_state_dict(svc.deployed_actor)
    assert svc._pre_validate(Decision(True, "return_gap", 0.9)) is True  # passes: the refresh goes, pushing it
    svc.cfg = dataclasses.replace(svc.cfg, refresh=RefreshConfig(defer_rejected=False))
    with torch.no_grad():
        for p in actor.parameters():
            p.zero_()
    assert svc._pre_validate(Decision(True, "policy_age", 3.0)) is None  # off: nothing deferred or validated yet
    assert len((out / "validation.csv").read_text().splitlines()) == rows + 1


def test_a_pushed_policy_the_robot_refuses_is_not_taken_as_deployed_and_its_version_is_not_used_again(
        tmp_path: Path) -> None:
    """A real controller process refuses a pushed policy whose weights are non-finite (its test inference); the
    trainer then holds the version before it as deployed (validation's reference, SAC's actor, the final policy's
    versions), moves the refused files to ``policies/refused/`` and, restarted, neither deploys nor reuses it."""
    import os
    import signal

    from robodyna.loop.final import actor_candidates
    from robodyna.transport.keys import generate_keys
    from tests.transport.conftest import until

    generate_keys(tmp_path / "keys", "arm1")
    out, svc = _validating_service(tmp_path, final_selection="window", final_average_versions=4)
    lr, actor = svc.learner, svc.learner.agent.actor
    lr.export(tmp_path / "start.onnx", version=lr.policy_version)
    svc.server.start()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, "-m", "robodyna.cli.main", "controller", "--robot", "reacher2",
                             "--policy", str(tmp_path / "start.onnx"), "--record", str(tmp_path / "rec"),
                             "--no-pace", "--episodes", "1", "--idle", "--trainer", svc.server.endpoint, "--keys",
                             str(tmp_path / "keys"), "--robot-id", "arm1"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

    def answers() -> list[dict[str, str]]:
        svc._policy_results()
        p = out / "policy_results.csv"
        lines = p.read_text().splitlines() if p.exists() else []
        return [dict(zip(lines[0].split(","), ln.split(","))) for ln in lines[1:]]

    try:
        assert until(lambda: int(svc.server.status()["robots"].get("arm1", {}).get("persisted_seq", 0)) >= 50, 60)
        with torch.no_grad():
            for prm in actor.parameters():
                prm.add_(0.01 * torch.randn_like(prm))
        good = svc.export_and_push("round")
        good_actor = {k: v.clone() for k, v in actor.state_dict().items()}
        assert until(lambda: len(answers()) == 1, 30) and answers()[0]["accepted"] == "1"
        with torch.no_grad():  # a broken update: the controller's test inference is not finite
            for prm in actor.parameters():
                prm.fill_(float("nan"))
        bad = svc.export_and_push("round")
        svc._save()  # checkpointed with the refused version as the last push, before the answer comes
        assert until(lambda: not svc.server.policy_results.empty(), 30)
        rows = answers()
        assert (rows[-1]["version"], rows[-1]["accepted"]) == (str(bad), "0") and "finite" in rows[-1]["reason"]
        assert svc.pushed_version == good
        for k, v in good_actor.items():
            assert torch.equal(actor.state_dict()[k], v) and torch.equal(svc.deployed_actor[k], v), k
        assert all(torch.isfinite(a[k]).all() for a in svc.recent_actors for k in a)  # the refused one left
        assert (out / "policies" / "refused" / f"policy_v{bad}.onnx").is_file()
        assert not (out / "policies" / f"policy_v{bad}.onnx").exists()
        assert [n for n, _ in actor_candidates(out / "policies")][-1] == f"v{good}"
        resumed = TrainerService("reacher2", out, "tcp://127.0.0.1:0", tmp_path / "keys", svc.cfg,
                                 init_checkpoint=CKPT)
        assert resumed.pushed_version == good and resumed.learner.policy_version == bad
        assert resumed.deployed_actor is not None
        assert all(torch.equal(resumed.deployed_actor[k], v) for k, v in good_actor.items())
        nxt = svc.export_and_push("round")  # SAC went on from the deployed weights: the next push is accepted
        assert nxt == bad + 1 and until(lambda: len(answers()) == 3, 30) and answers()[-1]["accepted"] == "1"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        svc.server.stop()
    assert proc.returncode == 0, err[-2000:]


def test_the_policy_shift_signal_is_zero_at_a_push_and_grows_as_sacs_actor_leaves_the_deployed_one(
        tmp_path: Path) -> None:
    out, svc = _validating_service(tmp_path)
    actor = svc.learner.agent.actor
    assert svc.signals()["policy_shift"] == 0.0  # the deployed (simulation) actor itself
    shifts = []
    for scale in (0.01, 0.03):  # a growing step away from the deployed weights, on the 150 real states
        with torch.no_grad():
            for prm in actor.parameters():
                prm.add_(scale * torch.randn_like(prm))
        svc.learner.n_updates += 1  # a new state of learning (the signals are cached per state)
        shifts.append(svc.signals()["policy_shift"])
    assert 0.0 < shifts[0] < shifts[1] <= 2.0
    svc.export_and_push("round")  # pushed: the deployed policy is the current actor again
    assert svc.signals()["policy_shift"] == 0.0
    svc._log_signals()  # logged with the others
    assert float(_last_row(out / "signals.csv")["policy_shift"]) == 0.0
