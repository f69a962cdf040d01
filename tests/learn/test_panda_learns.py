"""A short panda MBPO run with the shipped preset improves the final distance over random actions (issue 17: it
used to end further from the target than random: 35.5 cm against 34.4 cm, its return falling as it trained).

5000 real steps: with the preset the final distance was 19.9 cm at 2000 steps, 15.0 at 3000, 5.2 at 5000
(tools/bench/sample_efficiency.py, seed 0); at 2000 one run ended level with random (26.2 vs 26.4 cm). The test
ran 3000 steps (13.4 cm when it was written) until the same seed, with the dependencies installed now, ended at
23.8 cm against random's 26.4 cm, short of the 0.85x margin, with mujoco 4.0.1 and 3.17 alike (their panda and
reacher2 trajectories are bit-identical), so one seed at 3000 steps sits inside run-to-run noise; at 5000 steps the
same seed passes, here and in a fresh-clone `.ci/run`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import robodyna
from robodyna.learn.config import load_algo_config
from robodyna.learn.mbpo import train

STEPS = 5000
EPISODES = 20


def final_distances(policy, seeds: range) -> np.ndarray:  # type: ignore[no-untyped-def]
    env = robodyna.make_env("panda")
    out = []
    for s in seeds:
        obs, _ = env.reset(seed=s)
        done = False
        while not done:
            obs, _, term, trunc, info = env.step(policy(obs))
            done = term or trunc
        out.append(info["final_distance_m"])
    env.close()
    return np.asarray(out)


@pytest.mark.heavy
@pytest.mark.timeout(1800)  # 10.5-12.5 min on this 2-core machine; the suite-wide 900 s is too close
def test_short_panda_mbpo_run_improves_final_distance_over_random(tmp_path: Path) -> None:
    cfg = load_algo_config("mbpo", "panda", ["seed=0", f"eval_every={STEPS}", "eval_episodes=1", "sac.num_threads=1",
                                             "checkpoint_every=1000000"])
    res = train(cfg, "panda", tmp_path / "run", STEPS, progress=False, tensorboard=False)
    agent = res.agent
    seeds = range(500, 500 + EPISODES)
    learned = final_distances(lambda o: agent.act(o, deterministic=True), seeds)
    rng = np.random.default_rng(0)
    high = robodyna.make_env("panda").action_space.high
    random = final_distances(lambda o: rng.uniform(-high, high), seeds)
    msg = f"learned {100 * learned.mean():.1f} cm, random {100 * random.mean():.1f} cm (mean final distance)"
    print(msg)
    assert learned.mean() < 0.85 * random.mean(), msg
