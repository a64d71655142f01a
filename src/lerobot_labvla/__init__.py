"""LabVLA for LeRobot.

Importing the package registers the `LabUtopia/<Task>-v0` gymnasium ids (cheap: entry points are
strings). The LeRobot registrations (`--policy.type=labvla`, `--env.type=labutopia`, processor
steps) are in `lerobot_labvla.plugin`, which LeRobot's plugin discovery imports through the
`lerobot_policy_labvla` shim; import it yourself to use the registries from Python.
"""

from lerobot_labvla.envs.labutopia import register_gym_envs

register_gym_envs()
