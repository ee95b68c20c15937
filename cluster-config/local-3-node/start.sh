#!/usr/bin/env bash
# Starts a 3-node Herald cluster on loopback, each node with its own data directory under
# ./herald-cluster (override with HERALD_CLUSTER_DIR). Stop it with Ctrl-C.
#   node 1: clients 127.0.0.1:50051, metrics 127.0.0.1:9464 (starts the cluster)
#   node 2: clients 127.0.0.1:50052, metrics 127.0.0.1:9465 (joins node 1)
#   node 3: clients 127.0.0.1:50053, metrics 127.0.0.1:9466 (joins node 1)
set -euo pipefail
herald=${HERALD_BIN:-herald}
dir=${HERALD_CLUSTER_DIR:-./herald-cluster}
export HERALD_CLUSTER_SECRET=${HERALD_CLUSTER_SECRET:-change-me-local-secret}
mkdir -p "$dir"
trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT INT TERM
"$herald" serve --data-dir "$dir/node1" --listen 127.0.0.1:50051 --metrics-listen 127.0.0.1:9464 &
sleep 2
"$herald" serve --data-dir "$dir/node2" --listen 127.0.0.1:50052 --metrics-listen 127.0.0.1:9465 --join 127.0.0.1:50051 &
"$herald" serve --data-dir "$dir/node3" --listen 127.0.0.1:50053 --metrics-listen 127.0.0.1:9466 --join 127.0.0.1:50051 &
wait
