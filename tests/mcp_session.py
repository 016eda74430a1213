"""Talk to a real `tunefleet mcp` the way an MCP client does: the SDK's own Client over stdio,
the server a child process. Every call is kept (tool, arguments, answer, progress
notifications with their arrival times) so a test can assert on it and write the transcript."""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "Error executing tool "


def params(*args: str, runs: Path, env: dict[str, str] | None = None):
    """`tunefleet mcp ARGS` as a child process, from this checkout, with this test's history and
    policy store (the SDK gives a child only a minimal environment; the rest is passed here)."""
    from mcp.client.stdio import StdioServerParameters

    keep = {k: os.environ[k] for k in ("TUNEFLEET_HISTORY", "TUNEFLEET_POLICY_STORE") if k in os.environ}
    environ = {"PYTHONPATH": str(ROOT), "TUNEFLEET_RUNS": str(runs), "COLUMNS": "200", **keep, **(env or {})}
    return StdioServerParameters(command=sys.executable, args=["-m", "controller.cli", "mcp", *args], env=environ,
                                 cwd=str(ROOT))


@dataclass
class Call:
    tool: str
    arguments: dict[str, Any]
    started: float
    seconds: float = 0.0
    error: str | None = None
    answer: Any = None
    progress: list[dict[str, Any]] = field(default_factory=list)


class Session:
    """One connected client and every call it made."""

    def __init__(self, client) -> None:
        self.client = client
        self.calls: list[Call] = []

    async def call(self, tool: str, **arguments: Any) -> Call:
        call = Call(tool, arguments, time.monotonic())

        async def heard(progress: float, total: float | None, message: str | None) -> None:
            call.progress.append({"progress": progress, "message": message, "at": time.monotonic()})

        result = await self.client.call_tool(tool, arguments, progress_callback=heard)
        call.seconds = time.monotonic() - call.started
        if result.is_error:
            text = result.content[0].text
            call.error = text[len(PREFIX) + len(tool) + 2:] if text.startswith(f"{PREFIX}{tool}: ") else text
        else:
            call.answer = result.structured_content
        self.calls.append(call)
        return call

    async def ok(self, tool: str, **arguments: Any) -> Any:
        """The answer of a call that must succeed."""
        call = await self.call(tool, **arguments)
        assert call.error is None, f"{tool}: {call.error}"
        return call.answer

    def transcript(self) -> list[dict[str, Any]]:
        t0 = self.calls[0].started if self.calls else 0.0
        return [{"t": round(c.started - t0, 3), "request": {"tool": c.tool, "arguments": c.arguments},
                 "seconds": round(c.seconds, 3),
                 "progress": [{"t": round(p["at"] - t0, 3), "progress": p["progress"], "message": p["message"]}
                              for p in c.progress],
                 "response": {"error": c.error} if c.error is not None else c.answer} for c in self.calls]

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.transcript(), indent=2) + "\n")


@asynccontextmanager
async def serving(*args: str, runs: Path, env: dict[str, str] | None = None):
    from mcp import Client

    async with Client(params(*args, runs=runs, env=env)) as client:
        yield Session(client)
