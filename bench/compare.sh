#!/usr/bin/env bash
# Runs plexus bench's rpc-latency, rpc-throughput and fanout workloads against plexus and against
# nats-server (through async-nats) in one run and prints plexus ÷ NATS ratios.
#   bench/compare.sh [DURATION_SECONDS] [--pin]
# Latency ratios under 1 and throughput ratios over 1 favour plexus.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-2}"
pin=()
taskset_cmd=()
if [ "${2:-}" = "--pin" ]; then
    pin=(--pin)
    taskset_cmd=(taskset -c 0)
fi

if ! command -v nats-server >/dev/null; then
    echo "== installing nats-server (Debian package)"
    sudo_cmd=()
    [ "$(id -u)" -ne 0 ] && sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get install -y -q nats-server
fi

echo "== building plexus and the NATS client (release)"
cargo build --release -q -p plexus-bus
cargo build --release -q --manifest-path bench/compare/Cargo.toml --target-dir target/compare

out="$(mktemp -d)"
trap 'kill "${nats_pid:-}" 2>/dev/null || true; rm -rf "$out"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"${taskset_cmd[@]}" nats-server -a 127.0.0.1 -p "$port" >"$out/nats.log" 2>&1 &
nats_pid=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
done

echo "== plexus ($secs s per measurement)"
target/release/plexus bench --json --duration "$secs" "${pin[@]}" rpc-latency rpc-throughput fanout | tee "$out/plexus.jsonl"
echo "== nats-server $(nats-server --version 2>&1 | head -1) through async-nats"
"${taskset_cmd[@]}" target/compare/release/plexus-compare nats "nats://127.0.0.1:$port" "$secs" | tee "$out/nats.jsonl"
echo "== plexus ÷ NATS"
target/compare/release/plexus-compare ratios "$out/plexus.jsonl" "$out/nats.jsonl"
