"""The `tunefleet` command. Thin: it parses options, calls the library, prints results; the
commands live in controller/commands/ by what they act on.

Heavy libraries (torch, stable-baselines3, ray, openai, optuna) are imported only inside the
commands that use them, so `tunefleet --help` stays instant.
"""

from __future__ import annotations

import sys

import typer

from controller.commands import fleet, past, plans, running, serving
from controller.commands.common import VERBOSITY
from controller.errors import TunefleetError, UserError

app = typer.Typer(
    name="tunefleet",
    help="Tune Linux hosts by experiment: learn kernel settings from real benchmarks across a fleet.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)

# Set once by the global --quiet / --verbose options (see _global).


@app.callback()
def _global(
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only results and errors: no plan, no progress."),
    verbose: bool = typer.Option(False, "--verbose", "-v",
                                 help="Also one line per benchmark evaluation, and debug logs."),
) -> None:
    """Tune Linux hosts by experiment: learn kernel settings from real benchmarks across a fleet.

    NO_COLOR=1 turns colour off."""
    if quiet and verbose:
        raise UserError("--quiet and --verbose contradict each other; choose one")
    VERBOSITY.update(quiet=quiet, verbose=verbose)
    if verbose:
        import logging

        logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")


for command in (fleet.check, fleet.install, fleet.hosts, plans.profiles, fleet.restore, fleet.audit, plans.plan,
                running.run, running.chat, past.report, past.runs, past.show, past.export, serving.mcp):
    app.command()(command)


def main() -> None:
    try:
        app()
    except TunefleetError as e:
        print(f"tunefleet: error: {e}", file=sys.stderr)
        sys.exit(2 if isinstance(e, UserError) else 1)
    except KeyboardInterrupt:
        print("tunefleet: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
