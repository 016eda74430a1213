"""The MCP server (`tunefleet mcp`): tunefleet's planning, runs, past results and restore as MCP
tools for an AI agent, with the command line's safety rules (docs/mcp.md)."""
