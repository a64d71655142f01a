"""LabUtopia: six laboratory manipulation tasks x {id, ood} on the MuJoCo sim core.

This module stays light (no MuJoCo): the plugin imports it to register the gymnasium ids.
"""

# Task name -> gymnasium id (the fixed names users type; shared/DESIGN.md).
GYM_IDS: dict[str, str] = {
    "pick_up": "LabUtopia/PickUp-v0",
    "press_button": "LabUtopia/PressButton-v0",
    "open_door": "LabUtopia/OpenDoor-v0",
    "pour_liquid": "LabUtopia/PourLiquid-v0",
    "heat_beaker": "LabUtopia/HeatBeaker-v0",
    "transport_beaker": "LabUtopia/TransportBeaker-v0",
}
SPLIT_NAMES = ("id", "ood")
FPS = 20  # control rate: 10 physics substeps of 5 ms
CAMERAS = ("front", "side", "wrist")  # three slots, like the official evaluator's camera_1..3_rgb
OBS_TYPES = ("pixels_agent_pos", "agent_pos")
ACTION_DIMS = {"ee_delta": 7, "joint": 8}  # ee_delta: [dpos(3), drot(3), gripper]; joint: [q(7), gripper]
STATE_DIM = 8  # 7 joint angles + gripper opening
ENTRY_POINT = "lerobot_labvla.envs.labutopia.env:LabUtopiaEnv"


def register_gym_envs() -> None:
    """Register `LabUtopia/<Task>-v0` with gymnasium (entry points as strings: nothing heavy loads)."""
    import gymnasium as gym

    for task, gym_id in GYM_IDS.items():
        if gym_id not in gym.registry:
            gym.register(id=gym_id, entry_point=ENTRY_POINT, kwargs={"task": task}, disable_env_checker=True)
