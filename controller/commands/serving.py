"""The command that serves tunefleet to AI agents: `tunefleet mcp` (controller/mcpserver/).

The SDK is imported inside the command, so `tunefleet --help` does not load it. The server's
options are the operator's: which inventory by default, how hosts are reached, where runs go.
A client chooses goals, specs and budgets, never host keys or SSH settings.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import typer

from controller.commands.common import (
    AcceptOpt,
    ModelOpt,
    SSHConfigOpt,
    TimeoutOpt,
    WorkersOpt,
    _reach,
)
from controller.errors import UserError


def mcp(
    hosts: Path | None = typer.Option(None, "--hosts", "-i", help="The inventory a tool uses when the client "
                                         "names none."),
    read_only: bool = typer.Option(False, "--read-only", help="Offer only the tools that change nothing on any host "
                                   "(no start_run, cancel_run or restore)."),
    transport: str = typer.Option("stdio", "--transport", help="stdio (the client starts this command), or http "
                                  "(streamable HTTP on --bind:--port)."),
    bind: str = typer.Option("127.0.0.1", "--bind", help="http: the address to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="http: the port to listen on."),
    runs_dir: Path | None = typer.Option(None, "--runs-dir", help="Where runs are kept (default: ./runs, or "
                                            "TUNEFLEET_RUNS)."),
    catalog_file: Path | None = typer.Option(None, "--catalog", help="Extra tunables (YAML/JSON)."),
    model: str | None = ModelOpt,
    accept_new_host_keys: bool = AcceptOpt,
    connect_timeout: float = TimeoutOpt,
    ssh_config: Path | None = SSHConfigOpt,
    workers: str = WorkersOpt,
) -> None:
    """Serve tunefleet to AI agents over MCP: plan, start, watch, cancel and export runs (docs/mcp.md)."""
    from controller.runs import DEFAULT_ROOT

    if transport not in ("stdio", "http"):
        raise UserError(f"--transport {transport}: choose stdio or http")
    if hosts is not None and not hosts.exists():
        raise UserError(f"--hosts {hosts}: no such file or folder")
    if catalog_file is not None:
        from controller.frontend import load_catalog

        load_catalog(catalog_file)  # a bad catalog fails now, not at the first tool call
    from controller.mcpserver.server import build
    from controller.mcpserver.tools import Settings, Tools

    settings = Settings(hosts=hosts.resolve() if hosts else None, catalog_file=catalog_file, model=model,
                        runs_root=Path(runs_dir or DEFAULT_ROOT).resolve(),
                        reach=_reach(accept_new_host_keys, connect_timeout, workers, ssh_config))
    tools = Tools(settings)
    server = build(tools, read_only=read_only)
    if not read_only:
        tools.warm()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if transport == "stdio":
            server.run("stdio")
        else:
            server.run("streamable-http", host=bind, port=port)
    except KeyboardInterrupt:
        pass
    finally:
        # A run still going when the client leaves is cancelled and its hosts restored.
        running = [r for r in tools.board.all() if not r.over]
        if running:
            print(f"tunefleet mcp: cancelling {len(running)} run(s) and restoring their hosts", file=sys.stderr)
        tools.shutdown()


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
