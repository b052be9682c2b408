"""Dataflow Flex Template entry point (``FLEX_TEMPLATE_PYTHON_PY_FILE``).

The Flex Template launcher runs ``python launcher.py --runner=DataflowRunner --project=… --region=…
--temp_location=… --staging_location=… [--sdk_container_image=…] --<parameter>=<value> …``. Every
template parameter is a ``newsmon`` flag of the same name, except ``command``: it picks the
subcommand (``replay``, ``watch`` or ``stream``; default ``stream``) and is removed here. The rest goes
to ``pipelines.cli.main`` unchanged, which keeps its own flags and hands the unknown ones (the runner
options) to Beam. The process exits with ``main``'s return code, so a user error (exit 2) fails the
launch and its one-line message is in the launcher log.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

COMMANDS = ("replay", "watch", "stream")
DEFAULT_COMMAND = "stream"
EXIT_USAGE = 2


class LaunchError(ValueError):
    """The launch arguments cannot name a newsmon pipeline."""


def split_command(argv: Sequence[str]) -> tuple[str, list[str]]:
    """``(command, remaining arguments)``: takes ``--command=X`` or ``--command X`` out of ``argv``.

    Options given as two tokens (``--name value``) are joined into ``--name=value``: every argument the
    Flex Template launcher passes is an option, so a bare value always belongs to the option before
    it, and a joined form cannot be mistaken for a positional argument of a subcommand.
    """
    args = _join_option_values(argv)
    command: str | None = None
    rest: list[str] = []
    for arg in args:
        if arg == "--command":
            raise LaunchError("--command needs a value: replay, watch or stream")
        if arg.startswith("--command="):
            if command is not None:
                raise LaunchError("--command given more than once")
            command = arg.split("=", 1)[1].strip()
            continue
        rest.append(arg)
    command = command or DEFAULT_COMMAND
    if command not in COMMANDS:
        raise LaunchError(f"--command={command}: must be one of {', '.join(COMMANDS)}")
    return command, rest


def _join_option_values(argv: Sequence[str]) -> list[str]:
    joined: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--") and "=" not in arg and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            joined.append(f"{arg}={argv[i + 1]}")
            i += 2
            continue
        joined.append(arg)
        i += 1
    return joined


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``newsmon COMMAND …`` for the launcher's arguments; returns its exit code."""
    try:
        command, rest = split_command(sys.argv[1:] if argv is None else argv)
    except LaunchError as exc:
        print(f"newsmon launcher: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # INFO before newsmon configures logging (basicConfig is then a no-op), so Beam's job submission
    # messages reach the launcher log in Cloud Logging.
    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
    from pipelines import cli  # looked up at call time: tests replace cli.main

    return cli.main([command, *rest])


if __name__ == "__main__":
    sys.exit(main())
