# The MCP server the e2e scenario guards: the reference server-everything from npm, pinned to the
# version the other tests use (e2e/harness/npm-peers.sh), on Node.js 20.
#   docker build -f images/mcp-server-everything.Dockerfile -t mcp-server-everything:dev images
# Without Docker, e2e/harness/oci-images.sh packs the same layout (node at /usr/local/bin/node, the
# package under /app/node_modules, uid 65532) from this machine's Node.js and the npm cache.
FROM node:20-bookworm-slim
ARG MCP_VERSION=2026.8.31
WORKDIR /app
RUN npm install --omit=dev --no-audit --no-fund --loglevel=error \
      "@modelcontextprotocol/server-everything@${MCP_VERSION}" \
 && npm cache clean --force
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/node", "/app/node_modules/@modelcontextprotocol/server-everything/dist/index.js"]
CMD ["streamableHttp"]
