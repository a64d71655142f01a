"""Real robots for `lerobot-record` / `lerobot-rollout` (`--robot.type=franka`)."""
