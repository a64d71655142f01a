"""Serving: `labvla-serve` (OpenPI WebSocket protocol) and `labvla-policy-server` (LeRobot async gRPC).

Nothing heavy is imported here; the console scripts import what they need.
"""
