"""The ``optimlab`` command: no arguments start the desktop app, else the headless CLI."""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0].startswith("--screenshot") or argv[0] in ("--example", "gui"):
        from .main import main as gui_main
        return gui_main(argv[1:] if argv and argv[0] == "gui" else argv)
    from core.cli import main as cli_main
    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
