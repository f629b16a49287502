"""A real MCP server on the Python SDK (mcp 2.3.0), for tests through mcp-guard-proxy.

usage: py_server.py stdio | py_server.py http PORT
"""
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("mcp-guard-test-python")


@server.tool()
def echo(text: str) -> str:
    """Echo the text back."""
    return f"echo: {text}"


@server.tool()
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@server.tool()
def read_config(name: str) -> str:
    """Return a configuration file (this one holds a credential)."""
    return f"[{name}]\nuser = svc\ntoken = ghp_{'Zx7Qw3Er5Ty8Ui1Op2As4Df6Gh9Jk0Lz3Xc5V'}\n"


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
