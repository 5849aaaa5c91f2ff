"""``python -m blox_env.cli``: the ``blox`` command (for environments without the console script on PATH)."""

from blox_env.cli import main

main()
