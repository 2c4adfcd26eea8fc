"""``python -m fulmen.launcher ...`` is ``fulmen ...`` (``launch`` when the first word is not a command)."""

from __future__ import annotations

import sys

from fulmen.launcher.cli import launch_main, main

COMMANDS = ("launch", "status", "logs", "cancel", "list", "events", "report", "sweep", "-h", "--help")

if __name__ == "__main__":
    argv = sys.argv[1:]
    sys.exit(main() if argv and argv[0] in COMMANDS else launch_main())
