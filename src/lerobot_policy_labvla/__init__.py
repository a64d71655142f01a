"""Discovery shim: LeRobot imports the module named like the distribution (`lerobot_policy_labvla`)."""

import lerobot_labvla.plugin  # noqa: F401  (registration side effects)
