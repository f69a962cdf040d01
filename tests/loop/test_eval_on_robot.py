"""The loop scores policies on the "real" robot as its controller runs them: behind the safety filter."""

from __future__ import annotations

from typing import Any

import numpy as np

from robodyna.learn.mbpo import evaluate
from robodyna.loop.config import load_loop_config
from robodyna.loop.run import evaluate_on_robot
from robodyna.onboard.filter import FilteredPolicy, FilterParams
from robodyna.tasks.env import make_env


class _BangBang:
    """Full torque, alternating sign every tick: what the rate limiter exists for."""

    def __init__(self, env: Any) -> None:
        self.high = np.asarray(env.action_space.high)
        self.k = 0

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.k += 1
        return self.high * (1 if self.k % 2 else -1)


def test_every_action_scored_passes_the_filter_from_the_hold_action_each_episode() -> None:
    env = make_env("reacher2")
    u: Any = env.unwrapped
    params = FilterParams.from_config(u.robot_spec, u.robot_cfg)
    high = params.high.copy()
    pol = FilteredPolicy(lambda obs: high, params)  # full torque all the time
    r = evaluate(pol, env, 3, 0)
    env.close()
    for t in r["trajectories"]:
        a = np.asarray(t.action, np.float64)
        np.testing.assert_allclose(a[0], params.hold + params.max_change_per_tick)  # ramped from the hold action
        assert (np.abs(np.diff(a, axis=0)) <= params.max_change_per_tick + 1e-6).all()
        np.testing.assert_allclose(a[1], high)  # full torque after the ramp (until a soft joint limit bends it)
    assert 0 < pol.interventions < pol.ticks == 150


def test_the_loop_evaluation_goes_through_the_filter() -> None:
    cfg = load_loop_config("reacher2", ["eval.episodes=2"])
    bang = evaluate_on_robot(cfg, "laggy", _BangBang)
    still = evaluate_on_robot(cfg, "laggy", lambda env: (lambda obs: np.zeros(2)))
    assert bang["filtered_tick_fraction"] == 1.0
    assert still["filtered_tick_fraction"] == 0.0
    assert {"mean_final_distance_m", "success_rate", "mean_return"} <= bang.keys()


def test_an_onnx_file_is_scored_as_the_policy_it_holds(tmp_path: Any) -> None:
    """``evaluate_on_robot`` takes an ONNX path as well as a policy factory; the stage-1 checkpoint's export is the
    sim-only policy the loop scores."""
    from robodyna.loop.run import export_checkpoint_policy, onnx_policy, repo_path

    cfg = load_loop_config("reacher2", ["eval.episodes=3"])
    assert cfg.stage1.checkpoint
    path = tmp_path / "sim_only.onnx"
    assert export_checkpoint_policy("reacher2", repo_path(cfg.stage1.checkpoint), path) >= 1
    by_path = evaluate_on_robot(cfg, "laggy", path)
    by_factory = evaluate_on_robot(cfg, "laggy", lambda env: onnx_policy(path))
    still = evaluate_on_robot(cfg, "laggy", lambda env: (lambda obs: np.zeros(2)))
    assert by_path == by_factory
    assert by_path["mean_final_distance_m"] < still["mean_final_distance_m"]  # a trained policy, not a stand-in
