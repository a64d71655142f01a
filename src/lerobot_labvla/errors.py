"""One exception family and one CLI wrapper, so every entry point fails the same way.

The rule (shared/STYLE.md): a bad value raises an error naming the value, what was expected and
the fix; a CLI prints that as one line on stderr and exits 2, with the traceback only under
`--debug` (or `LABVLA_DEBUG=1`).
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class LabVLAError(ValueError):
    """A user-facing error: the message alone says what was wrong and how to fix it."""


def _debug_requested(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("LABVLA_DEBUG", "") not in ("", "0")


def one_line(exc: BaseException) -> str:
    """`Type: message` on a single line (newlines in the message are folded)."""
    msg = " ".join(str(exc).split()) or repr(exc)
    return f"{type(exc).__name__}: {msg}"


def cli_errors(main: Callable[..., T]) -> Callable[..., T]:
    """Wrap a console-script `main`: user errors become one stderr line and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        argv = sys.argv[1:]
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        except (LabVLAError, FileNotFoundError, ValueError, KeyError, OSError) as exc:
            if _debug_requested(argv):
                raise
            print(f"error: {one_line(exc)}", file=sys.stderr)
            raise SystemExit(2) from None

    return wrapper


def install_excepthook() -> None:
    """Print uncaught `LabVLAError`s as one line in LeRobot's own CLIs (lerobot-train, -eval, ...).

    LeRobot's CLIs import the plugin before parsing, so this is the one place where the plugin can
    keep a bad `--policy.*` value from ending in a page of traceback without patching LeRobot.
    Other exceptions keep the default hook, and `LABVLA_DEBUG=1` restores full tracebacks.
    """
    previous = sys.excepthook
    if getattr(previous, "_labvla", False):
        return

    def hook(exc_type, exc, tb):
        root = exc
        seen = set()
        while root is not None and not isinstance(root, LabVLAError) and id(root) not in seen:
            seen.add(id(root))
            root = root.__cause__ or root.__context__
        if isinstance(root, LabVLAError) and not _debug_requested(sys.argv[1:]):
            print(f"error: {one_line(root)}", file=sys.stderr)
            return
        previous(exc_type, exc, tb)

    hook._labvla = True  # type: ignore[attr-defined]
    sys.excepthook = hook
