# mcp-guard: the commands that work today. `make help` lists them.
#
# Everything tests download or build (the kube-apiserver built from Debian's sources, later npm/PyPI
# peers and the guest kernel) lives in $(MCP_GUARD_CACHE), outside the clone, keyed by version: the
# first `make test` on a machine builds it (~6 min, plus ~5 min for the static agent the QEMU kernel tests
# boot, see docs/kernel-tests.md), later runs take seconds.

CARGO ?= cargo
export MCP_GUARD_CACHE ?= $(HOME)/.cache/mcp-guard

.PHONY: help bpf-tools build test gen check-generated fmt fmt-check lint check-policies apiserver peers kernel test-kernel node e2e e2e-node demo bench corpus check-corpus images clean

help: ## Show the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 20

bpf-tools: ## Install the BPF toolchain (clang-19, libbpf-dev, bpftool) when clang-19 is missing.
	@if command -v clang-19 >/dev/null 2>&1 && [ -f /usr/include/bpf/bpf_helpers.h ] && command -v bpftool >/dev/null 2>&1; then \
	  echo "bpf-tools: clang-19, libbpf-dev and bpftool are installed"; \
	else \
	  echo "bpf-tools: apt-get install -y --no-install-recommends clang-19 libbpf-dev bpftool"; \
	  apt-get install -y --no-install-recommends clang-19 libbpf-dev bpftool \
	    || { apt-get update && apt-get install -y --no-install-recommends clang-19 libbpf-dev bpftool; }; \
	fi

build: bpf-tools ## Build every crate and binary.
	$(CARGO) build --workspace --all-targets --locked

gen: ## Regenerate committed artifacts (the CRD in crds/ and in the Helm chart).
	$(CARGO) run -q --locked -p mcp-guard-crds --bin crdgen

check-generated: ## Fail when a generated file is stale.
	$(CARGO) run -q --locked -p mcp-guard-crds --bin crdgen -- --check

fmt: ## Format the code.
	$(CARGO) fmt --all

fmt-check: ## Fail on unformatted code.
	$(CARGO) fmt --all -- --check

lint: bpf-tools ## clippy with warnings as errors.
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) clippy -p mcp-guard-e2e --test scenario --locked -- -D warnings

check-policies: ## Check every library policy with the shipped checker.
	$(CARGO) run -q --locked -p mcp-guard-policy -- check policies/library/*.yaml

apiserver: ## Build (once, cached) the real kube-apiserver + etcd the e2e tests run.
	@e2e/harness/apiserver-build.sh >/dev/null

peers: ## Install (once, cached) the real MCP servers (npm, PyPI) and the tools (Helm's engine, Prometheus) the tests run.
	@e2e/harness/npm-peers.sh >/dev/null
	@e2e/harness/py-peers.sh >/dev/null
	@e2e/harness/helm-sdk.sh >/dev/null
	@e2e/harness/prometheus.sh >/dev/null

kernel: ## Build (once, cached) the QEMU guest for the kernel tests: Debian's kernel, the static agent, initramfs.
	@node-agent/harness/kernel-build.sh >/dev/null

test-kernel: kernel ## The agent in a QEMU guest with BPF LSM: files, exec, network, events, probe (docs/kernel-tests.md).
	$(CARGO) test --locked -p mcp-guard-agent --test kernel_qemu -- --nocapture

check-corpus: ## Validate the corpus files (format, session rules, secret markers).
	@python3 sidecar/tests/corpus/validate.py >/dev/null

node: ## Build (once, cached) the single-node Kubernetes the node e2e runs: kubelet & co. from Debian's sources, containerd, runc, CNI.
	@e2e/harness/node-build.sh >/dev/null

e2e: ## The e2e scenario against the cluster KUBECONFIG points at (chart values for it in MCP_GUARD_E2E_VALUES; docs/e2e.md).
	$(CARGO) test --locked -p mcp-guard-e2e --test scenario

e2e-node: ## The e2e scenario on a real node on this host (root): build, images, start, chart, scenario, teardown.
	@e2e/harness/e2e-node.sh

# The kernel tests (test-kernel) run inside `cargo test --workspace` (node-agent/tests/kernel_qemu.rs);
# the `kernel` prerequisite installs QEMU and busybox-static when missing and builds the guest first.
# The node e2e needs root (a kubelet, containerd, BPF): part of `make test` where it can run.
test: bpf-tools fmt-check lint check-generated check-policies check-corpus apiserver peers kernel ## Everything CI runs.
	$(CARGO) test --workspace --locked
	@if [ -n "$$MCP_GUARD_SKIP_E2E_NODE" ]; then echo "e2e-node: skipped (MCP_GUARD_SKIP_E2E_NODE)"; \
	elif [ "$$(uname -s)" = Linux ] && [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory e2e-node; \
	else echo "e2e-node: skipped (needs root on Linux)"; fi

demo: ## The proxy in front of a real MCP server with a library policy: allowed and blocked calls (no cluster).
	@$(CARGO) build -q --release --locked -p mcp-guard-proxy -p mcp-guard-policy --bins --examples
	@scripts/demo.sh

corpus: ## Detection and false-positive rates on the labeled corpus (sidecar/tests/corpus), per detector.
	@python3 sidecar/tests/corpus/validate.py >/dev/null
	$(CARGO) test -q --locked -p mcp-guard-proxy --test corpus -- --nocapture

bench: bpf-tools ## Latency and throughput: direct, bare relay, mcp-guard-proxy, agent-bom (stdio); BPF program cost (root); see docs/benchmarks.md.
	$(CARGO) build -q --release --locked -p mcp-guard-proxy --bins --examples
	@e2e/harness/npm-peers.sh >/dev/null && e2e/harness/py-peers.sh >/dev/null
	$(CARGO) bench -q --locked -p mcp-guard-proxy --bench latency
	$(CARGO) bench -q --locked -p mcp-guard-agent --bench bpf

images: ## Build the images with Docker (where a Docker engine exists, e.g. GitHub Actions); e2e-node packs the same without Docker.
	@for t in proxy operator agent; do \
	  docker build -f images/Dockerfile --target $$t -t mcp-guard-$$t:dev . || exit 1; done
	docker build -f images/mcp-server-everything.Dockerfile -t mcp-server-everything:dev images

clean: ## Remove build output (the cache in $(MCP_GUARD_CACHE) stays).
	$(CARGO) clean
