"""The MuJoCo simulator core shared by LabUtopia (envs/) and the data engine (genesis/).

Nothing here imports from envs/, genesis/ or policy/. Importing a submodule imports MuJoCo.
"""

import os

# Headless machines have no X display: pick EGL offscreen rendering unless the user chose a backend.
# Must happen before the first `import mujoco` anywhere in the process.
os.environ.setdefault("MUJOCO_GL", "egl")
if os.environ["MUJOCO_GL"] == "egl":
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
