"""LabVLA for LeRobot. Importing this registers the plugin with LeRobot's registries.

Light imports only: configs and processor steps (LeRobot needs them registered before it parses
`--policy.type` / loads `policy_*processor.json`); models, MuJoCo and servers load lazily.
Each block below belongs to one part of the package.
"""

from lerobot_labvla.errors import install_excepthook

install_excepthook()

# --- policy (issue 3) ---
from lerobot_labvla.policy.configuration_labvla import LabVLAConfig  # noqa: E402,F401  ("labvla")
from lerobot_labvla.policy import processor_labvla  # noqa: E402,F401  (labvla_* processor steps)
# --- envs/labutopia (issue 4) ---
from lerobot_labvla.envs.labutopia import register_gym_envs  # noqa: E402  (LabUtopia/<Task>-v0, lazy)
from lerobot_labvla.envs.labutopia import configuration as _labutopia_config  # noqa: E402,F401  ("labutopia")

register_gym_envs()
# --- robots/franka (later issue) ---
