"""The learning core: dynamics ensemble, SAC, branched rollouts and the MBPO/Dyna/SAC training loop.

Importing this package is light (no torch): the heavy modules (``ensemble``, ``sac``, ``mbpo``, ``export``) are
imported explicitly by their users.
"""

from __future__ import annotations

from robodyna.learn.envs import make_env, obs_names_for_env, spec_for_env, task_fns_for_env

__all__ = ["make_env", "obs_names_for_env", "spec_for_env", "task_fns_for_env"]
