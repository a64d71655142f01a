"""Tests import the package's synthetic dataset builder under this short name."""

from lerobot_labvla.synthetic import make_dataset  # noqa: F401
