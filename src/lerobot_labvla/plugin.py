"""Registration with LeRobot: what `lerobot-train/-eval/-record/...` need before they parse flags.

LeRobot's plugin discovery imports the `lerobot_policy_labvla` distribution's module, which imports
this one. It registers the `labvla` policy config, its processor steps (needed before
`policy_*processor.json` can be loaded), the `labutopia` env config, and the one-line error hook.
It lives here rather than in `lerobot_labvla/__init__.py` because these imports pull in torch and
LeRobot (~0.9 GB, ~4 s): every console script (`labutopia`, `labvla-data`, ...) runs the package
`__init__` and most of them need none of it.
"""

from lerobot_labvla.errors import install_excepthook

install_excepthook()

from lerobot_labvla.envs.labutopia import configuration as _labutopia_config  # noqa: E402,F401  ("labutopia")
from lerobot_labvla.policy import processor_labvla  # noqa: E402,F401  (labvla_* processor steps)
from lerobot_labvla.policy.configuration_labvla import LabVLAConfig  # noqa: E402,F401  ("labvla")
from lerobot_labvla.robots import franka as _franka  # noqa: E402,F401  ("franka", "spacemouse", "franka_scripted")
