# mcp-guard: the commands that work today. `make help` lists them.
#
# Everything tests download or build (the kube-apiserver built from Debian's sources, later npm/PyPI
# peers and the guest kernel) lives in $(MCP_GUARD_CACHE), outside the clone, keyed by version: the
# first `make test` on a machine builds it (~6 min), later runs take seconds.

CARGO ?= cargo
export MCP_GUARD_CACHE ?= $(HOME)/.cache/mcp-guard
POLICY := target/debug/mcp-guard-policy

.PHONY: help build test gen check-generated fmt fmt-check lint check-policies apiserver demo clean

help: ## Show the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

build: ## Build every crate and binary.
	$(CARGO) build --workspace --all-targets --locked

gen: ## Regenerate committed artifacts (the CRD in crds/ and in the Helm chart).
	$(CARGO) run -q --locked -p mcp-guard-crds --bin crdgen

check-generated: ## Fail when a generated file is stale.
	$(CARGO) run -q --locked -p mcp-guard-crds --bin crdgen -- --check

fmt: ## Format the code.
	$(CARGO) fmt --all

fmt-check: ## Fail on unformatted code.
	$(CARGO) fmt --all -- --check

lint: ## clippy with warnings as errors.
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

check-policies: ## Check every library policy with the shipped checker.
	$(CARGO) run -q --locked -p mcp-guard-policy -- check policies/library/*.yaml

apiserver: ## Build (once, cached) the real kube-apiserver + etcd the e2e tests run.
	@e2e/harness/apiserver-build.sh >/dev/null

test: fmt-check lint check-generated check-policies apiserver ## Everything CI runs.
	$(CARGO) test --workspace --locked

demo: ## Check the policy library, show field-path errors, compile a policy (no cluster needed).
	@$(CARGO) build -q --locked -p mcp-guard-policy
	@scripts/demo.sh $(POLICY)

clean: ## Remove build output (the cache in $(MCP_GUARD_CACHE) stays).
	$(CARGO) clean
