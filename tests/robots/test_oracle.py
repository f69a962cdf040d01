"""The scripted reach oracle (IK + joint control with the engine's own model) reaches within the task's tolerance
on >= 90% of seeded episodes for every shipped robot: the reach task is well posed on each (``robodyna sim
--policy oracle`` is the reference learned policies are compared against)."""

from __future__ import annotations

import numpy as np
import pytest

import robodyna
from robodyna.onboard.record import make_policy
from robodyna.robots import list_robots, load_robot_config, robot_folder

EPISODES = 20
# Every shipped robot folder in its default engine, and panda in PyBullet too (its IK then runs on PyBullet's own
# kinematics). reacher2_socket is skipped: it declares no engine model (a driver plugin talking to an emulator),
# and the oracle needs the engine's kinematics; the arm it reaches is reacher2, covered here.
# reacher2 in PyBullet is not asserted: measured 90% (27/30 seeds), too close to the bar for a test.
CASES = [(name, None) for name in list_robots() if load_robot_config(robot_folder(name))[0].engines] + [
    ("panda", "pybullet")
]


def test_every_shipped_robot_with_an_engine_is_covered() -> None:
    names = {n for n, _ in CASES}
    assert {"reacher2", "panda"} <= names
    skipped = set(list_robots()) - names
    assert skipped == {"reacher2_socket"}, skipped


@pytest.mark.parametrize(("name", "engine"), CASES)
def test_oracle_reaches_within_tolerance_on_90_percent_of_seeded_episodes(name: str, engine: str | None) -> None:
    env = robodyna.make_env(name, "reach", engine=engine)
    policy, desc, _ = make_policy("oracle", env, seed=0)
    assert desc == "oracle"
    finals = []
    for ep in range(EPISODES):
        obs, _ = env.reset(seed=1000 + ep)
        done = False
        while not done:
            action = policy(obs)
            assert env.action_space.contains(action.astype(np.float32)), action  # respects the action mode's box
            obs, _, term, trunc, info = env.step(action)
            done = term or trunc
        finals.append(info["final_distance_m"])
    env.close()
    tol = env.unwrapped.task_fns.tolerance_m
    rate = float(np.mean(np.asarray(finals) < tol))
    assert rate >= 0.9, f"{name}/{engine}: oracle success {rate:.0%}, median final {np.median(finals) * 100:.2f} cm"


def test_oracle_refuses_a_gymnasium_env() -> None:
    env = robodyna.make_env("Reacher-v5")
    with pytest.raises(ValueError, match="robodyna robots running the reach task"):
        make_policy("oracle", env, seed=0)
