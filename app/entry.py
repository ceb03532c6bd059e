"""The ``optimlab`` command: a CLI subcommand (run, branches, compare, explain, export, optimizers,
examples, listen, inspect, resume) runs headless; anything else (nothing, a file or example to open,
window options) starts the desktop app. The list is written out here, not read from ``core.cli``'s
parser, so that starting the window does not wait for the CLI's imports (torch); a test keeps the two
the same."""
from __future__ import annotations

import sys

CLI_COMMANDS = ("run", "branches", "compare", "explain", "export", "optimizers", "examples", "listen", "inspect",
                "resume", "-h", "--help")


def wants_cli(argv: list[str]) -> bool:
    return bool(argv) and argv[0] in CLI_COMMANDS


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if wants_cli(argv):
        from core.cli import main as cli_main
        return cli_main(argv)
    from .main import main as gui_main
    return gui_main(argv[1:] if argv and argv[0] == "gui" else argv)


if __name__ == "__main__":
    sys.exit(main())
