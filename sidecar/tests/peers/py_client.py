"""A real MCP client on the Python SDK (mcp 2.3.0): runs a session against a stdio server command and
prints one JSON line per step, for the Rust tests to check.

usage: py_client.py COMMAND [ARGS...]
"""
import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def out(step, value):
    print(json.dumps({"step": step, "value": value}), flush=True)


async def call(session, name, args):
    try:
        result = await session.call_tool(name, args)
        texts = [c.text for c in result.content if getattr(c, "type", "") == "text"]
        return {"ok": texts, "isError": bool(result.is_error)}
    except Exception as e:  # a JSON-RPC error (a blocked call) surfaces as an exception
        error = getattr(e, "error", None)
        return {
            "error": getattr(error, "message", str(e)),
            "code": getattr(error, "code", None),
            "data": getattr(error, "data", None),
        }


async def main():
    params = StdioServerParameters(command=sys.argv[1], args=sys.argv[2:])
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            out("initialize", init.server_info.name)
            tools = await session.list_tools()
            out("tools", sorted(t.name for t in tools.tools))
            out("echo", await call(session, "echo", {"text": "hello"}))
            out("add", await call(session, "add", {"a": 2, "b": 40}))
            out("blocked", await call(session, "echo", {"text": "rm -rf / --no-preserve-root"}))
            out("secret", await call(session, "read_config", {"name": "prod"}))
            out("after", await call(session, "echo", {"text": "still works"}))


asyncio.run(main())
