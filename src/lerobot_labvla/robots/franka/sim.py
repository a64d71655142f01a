"""franky-sim on loopback for tests and benchmarks, optionally injecting libfranka reflexes.

`python -m lerobot_labvla.robots.franka.sim robot [--hostname 127.0.0.1] [--reflex-after S] [--reflexes N]`
starts franky-sim's MuJoCo FR3 behind the real libfranka TCP/UDP protocol and prints
`ready <hostname>` once a client can connect. `... sim cameras --port P` publishes test frames the
way LeRobot's ZMQ camera (`--robot.cameras='{front: {type: zmq, server_address: 127.0.0.1, ...}}'`)
reads them: JSON `{"timestamps", "images": {name: base64 JPEG}}` on a PUB socket. franky-sim never faults by itself, so `--reflex-after`
makes the robot side abort a running motion the way the controller does on a reflex: the robot
mode goes to `Reflex` with the `joint_reflex` error bit set, the Move command is answered with
`ReflexAborted`, and the state stays faulted until the client sends libfranka's automatic error
recovery command. Needs the `[franka]` extra (franky-sim and its runtime deps).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

# Index of `joint_reflex` in libfranka's 41-entry error array (franka/errors.h, franky.Errors order).
JOINT_REFLEX_BIT = 6


def _reflex_server_class(reflex_after_s: float | None, reflexes: int):
    """A FrankaRobotServer that aborts a motion with a reflex `reflex_after_s` after it started."""
    from franky_sim.franka_robot_protocol import (
        AutomaticErrorRecoveryCommand,
        AutomaticErrorRecoveryStatus,
        MoveStatus,
        RobotCommand,
        RobotMode,
    )
    from franky_sim.franka_robot_server import FrankaRobotServer
    from franky_sim.franka_server import BaseCommand

    errors = tuple(i == JOINT_REFLEX_BIT for i in range(41))

    class ReflexRecovery(AutomaticErrorRecoveryCommand):
        def handle(self, server):
            server.in_reflex = False
            self.reply(AutomaticErrorRecoveryStatus.kSuccess)

    class ReflexServer(FrankaRobotServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            # franky-sim acknowledges recovery without modelling errors; ours clears the injected one.
            self._FrankaServer__command_class_map[RobotCommand.kAutomaticErrorRecovery] = ReflexRecovery
            self.in_reflex = False
            self.reflexes_left = reflexes
            self.motion_started_at: float | None = None
            self.last_errors = (False,) * 41

        def _post_process_commands(self):
            super()._post_process_commands()
            if not self.current_motion_id:
                self.motion_started_at = None
                return
            now = time.monotonic()
            if self.motion_started_at is None:
                self.motion_started_at = now
            if reflex_after_s is not None and self.reflexes_left > 0 and now - self.motion_started_at >= reflex_after_s:
                self.reflexes_left -= 1
                self.in_reflex = True
                self.last_errors = errors
                motion_id = self.current_motion_id
                self.stop_motion(send_preemption_signal=False)
                BaseCommand.send_response(self._tcp_socket, RobotCommand.kMove, motion_id, MoveStatus.kReflexAborted)
                self.reset_current_motion_id()
                print(f"injected reflex (motion {motion_id})", flush=True)

        @property
        def robot_state(self):
            state = super().robot_state
            if self.in_reflex:
                return state.replace(robot_mode=RobotMode.kReflex, current_errors=errors, last_motion_errors=errors)
            return state.replace(last_motion_errors=self.last_errors)

    return ReflexServer


def serve(hostname: str | None = None, reflex_after_s: float | None = None, reflexes: int = 1) -> None:
    """Run franky-sim until SIGTERM/SIGINT; prints `ready <hostname>` when it accepts clients."""
    import franky_sim
    from franky_sim import simulation_server
    from franky_sim.mujoco_simulator import MujocoSimulator

    simulation_server.FrankaRobotServer = _reflex_server_class(reflex_after_s, reflexes)
    kwargs = {"hostname_candidates": [hostname]} if hostname else {}
    stop = False

    def _stop(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with MujocoSimulator(enable_visualization=False) as sim:
        robot = sim.add_robot()
        with franky_sim.SimulationServer(sim, **kwargs) as server:
            print(f"ready {robot.hostname}", flush=True)
            while not stop:
                server.run_once()


def publish_frames(port: int, names: list[str], width: int, height: int, fps: float) -> None:
    """Publish a moving test pattern per camera on tcp://127.0.0.1:`port` until SIGTERM/SIGINT."""
    import base64
    import json

    import cv2
    import numpy as np
    import zmq

    stop = False

    def _stop(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    sock = zmq.Context.instance().socket(zmq.PUB)
    sock.setsockopt(zmq.SNDHWM, 2)
    sock.bind(f"tcp://127.0.0.1:{port}")
    print(f"ready 127.0.0.1:{port}", flush=True)
    ramp = np.linspace(0, 255, width, dtype=np.float32)
    i = 0
    while not stop:
        t = time.perf_counter()
        images = {}
        for k, name in enumerate(names):
            img = np.empty((height, width, 3), np.uint8)
            img[..., 0] = np.roll(ramp, 3 * i).astype(np.uint8)  # a bar moving right, so frames differ
            img[..., 1] = (40 * k) % 256
            img[..., 2] = i % 256
            images[name] = base64.b64encode(cv2.imencode(".jpg", img)[1].tobytes()).decode()
        sock.send_string(json.dumps({"timestamps": {n: time.time() for n in names}, "images": images}))
        i += 1
        time.sleep(max(0.0, 1.0 / fps - (time.perf_counter() - t)))
    sock.close(0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    robot = sub.add_parser("robot", help="franky-sim FR3 + Franka Hand on a loopback address")
    robot.add_argument("--hostname", default=None, help="loopback address to bind (default: first free 127.x.y.z)")
    robot.add_argument("--reflex-after", type=float, default=None, help="abort a motion with a reflex after S s")
    robot.add_argument("--reflexes", type=int, default=1, help="how many reflexes to inject (default 1)")
    cams = sub.add_parser("cameras", help="test frames for LeRobot's ZMQ camera")
    cams.add_argument("--port", type=int, required=True)
    cams.add_argument("--names", default="front,wrist", help="comma-separated camera names")
    cams.add_argument("--size", default="96x64", help="WIDTHxHEIGHT")
    cams.add_argument("--fps", type=float, default=30.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.what == "cameras":
        width, height = (int(v) for v in args.size.lower().split("x"))
        publish_frames(args.port, args.names.split(","), width, height, args.fps)
        return
    if args.hostname and not args.hostname.startswith("127."):
        parser.error(f"--hostname {args.hostname}: the simulator binds loopback addresses only (127.x.y.z)")
    try:
        serve(args.hostname, args.reflex_after, args.reflexes)
    except ImportError as e:
        print(f"error: franky-sim is not installed ({e}); pip install 'lerobot_policy_labvla[franka]'", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
