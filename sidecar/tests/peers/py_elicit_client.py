"""A real MCP client on the Python SDK (mcp 2.3.0) that answers elicitation requests, for testing the
proxy's ASK flow. Prints one JSON line per step; the elicitation callback's behaviour comes from argv.

usage: py_elicit_client.py ANSWER COMMAND [ARGS...]     ANSWER: accept | decline | slow
       py_elicit_client.py ANSWER http://HOST:PORT/mcp   (Streamable HTTP)
"""
import asyncio
import json
import sys

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

ANSWER = sys.argv[1]
asked = []


def out(step, value):
    print(json.dumps({"step": step, "value": value}), flush=True)


async def on_elicit(context, params):
    asked.append(params.message)
    if ANSWER == "slow":
        await asyncio.sleep(3)
    if ANSWER == "accept":
        return types.ElicitResult(action="accept", content={"approve": True})
    return types.ElicitResult(action="decline")


async def call(session, name, args):
    try:
        result = await session.call_tool(name, args)
        return {"ok": [c.text for c in result.content if getattr(c, "type", "") == "text"]}
    except Exception as e:
        error = getattr(e, "error", None)
        return {"error": getattr(error, "message", str(e)), "code": getattr(error, "code", None),
                "rule": (getattr(error, "data", None) or {}).get("rule")}


async def main():
    if sys.argv[2].startswith("http://"):
        connect = streamable_http_client(sys.argv[2])
    else:
        connect = stdio_client(StdioServerParameters(command=sys.argv[2], args=sys.argv[3:]))
    async with connect as streams:
        async with ClientSession(streams[0], streams[1], elicitation_callback=on_elicit) as session:
            await session.initialize()
            await session.list_tools()
            out("first", await call(session, "echo", {"message": "deploy to production"}))
            out("asked_first", len(asked))
            out("same_again", await call(session, "echo", {"message": "deploy to production"}))
            out("asked_again", len(asked))
            out("other_args", await call(session, "echo", {"message": "deploy to production now"}))
            out("asked_total", len(asked))
            out("question", asked[0] if asked else "")


asyncio.run(main())
