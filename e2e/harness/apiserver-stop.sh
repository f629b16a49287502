#!/usr/bin/env bash
# Stops what apiserver-start.sh started in RUN_DIR, by its pid files only.
#   usage: apiserver-stop.sh RUN_DIR [--purge]
RUN=${1:?usage: apiserver-stop.sh RUN_DIR [--purge]}
for n in kube-apiserver etcd; do
  f=$RUN/$n.pid; [ -f "$f" ] || continue; pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$f"
done
[ "${2:-}" = --purge ] && rm -rf "$RUN"
exit 0
