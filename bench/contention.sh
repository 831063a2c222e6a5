#!/usr/bin/env bash
# The contention benchmark: N processes counting in one shared region, on one
# hot key and on distinct keys, lock-free and (for comparison) under the lock.
# Reports counts per second at each N and the ratio to N = 1, in one run.
#
#   bench/contention.sh [SECONDS_PER_RUN] [N...]    default: 1 second, N = 1 2 4 8
#
# Throughput only scales up to the machine's cores; on a shared machine, run it
# when it is quiet.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p shared-map-engine --example contention
echo "# Contention ($(nproc) cores, $(date -u +%Y-%m-%d))"
echo
target/release/examples/contention "$@"
