"""The ``blox`` command: the root app, every command module registered on it, and the console entry point.

Each module of :mod:`blox_env.cli` adds its commands with ``register(app)``; the order below is the
order of ``blox --help``.
"""

from __future__ import annotations

import typer
from rich.console import Console

from blox_env.cli import bench, build, data, predictors, proxies, space, study, train
from blox_env.errors import BloxError

app = typer.Typer(help="blox-env: the BLOX macro NAS benchmark.", no_args_is_help=True, add_completion=False)
for _module in (space, data, train, build, proxies, bench, study, predictors):
    _module.register(app)


def main() -> None:
    """Console entry point: user errors print one clear line and exit 2, no traceback."""
    try:
        app()
    except BloxError as exc:
        from rich.text import Text

        # a Text is never parsed as markup or emoji codes: file data such as "[/oops]" prints verbatim
        Console(stderr=True).print(Text.assemble(("error:", "red"), " ", str(exc)), soft_wrap=True)
        raise SystemExit(2) from None


if __name__ == "__main__":
    main()
