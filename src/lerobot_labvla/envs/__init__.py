"""Simulation benchmarks built on `lerobot_labvla.sim` (LabUtopia)."""
