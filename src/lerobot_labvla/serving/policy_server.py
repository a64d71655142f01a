"""`labvla-policy-server`: LeRobot's async-inference gRPC `policy_server`, able to serve plugin policies.

LeRobot 0.6.1's server checks a hard-coded allow-list (`async_inference.constants.SUPPORTED_POLICIES`)
and never imports third-party plugins, so `--policy_type=labvla` from `robot_client` is refused. This
launcher registers the plugins, adds every registered plugin policy type to that list in place (the
server module holds the same list object) and runs LeRobot's unchanged `serve()` with its own flags:
`--host --port --fps --inference_latency --obs_queue_timeout`.
"""

from __future__ import annotations

from lerobot_labvla.errors import LabVLAError, cli_errors


def allow_plugin_policies() -> list[str]:
    """Register plugins and extend LeRobot's async allow-list with their policy types; returns the list."""
    import lerobot.policies  # noqa: F401  registers LeRobot's own policy configs
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    try:
        from lerobot.async_inference import constants
    except ImportError as exc:  # grpcio is LeRobot's `grpcio-dep` extra
        raise LabVLAError(f"LeRobot's async inference needs grpcio ({exc}); pip install 'lerobot[grpcio-dep]'") from None
    builtin_module = "lerobot."
    for name, cls in PreTrainedConfig.get_known_choices().items():
        if not cls.__module__.startswith(builtin_module) and name not in constants.SUPPORTED_POLICIES:
            constants.SUPPORTED_POLICIES.append(name)
    if "labvla" not in constants.SUPPORTED_POLICIES:
        constants.SUPPORTED_POLICIES.append("labvla")
    return constants.SUPPORTED_POLICIES


@cli_errors
def main() -> None:
    allow_plugin_policies()
    try:
        from lerobot.async_inference.policy_server import serve
    except ImportError as exc:
        raise LabVLAError(f"LeRobot's async inference needs grpcio ({exc}); pip install 'lerobot[grpcio-dep]'") from None
    serve()  # draccus parses sys.argv: --host --port --fps --inference_latency --obs_queue_timeout


if __name__ == "__main__":
    main()
