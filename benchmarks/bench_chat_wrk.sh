#!/usr/bin/env bash
# Chat turns under wrk (a C client, so the server keeps the CPU): starts `whyrec serve` on
# BUNDLE, opens SESSIONS sessions, then runs wrk at each concurrency for SECONDS.
#   benchmarks/bench_chat_wrk.sh BUNDLE [SESSIONS=512] [SECONDS=8] [LEVELS="1 8 32 64"]
set -euo pipefail
bundle="$1"; sessions="${2:-512}"; seconds="${3:-8}"; levels="${4:-1 8 32 64}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
whyrec serve --bundle "$bundle" --db "$work/chat.sqlite" --port "$port" --rate-limit 0 \
    --log-level warning ${WHYREC_SERVE_ARGS:-} >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 180); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 1; done
for _ in $(seq "$sessions"); do
    curl -sf -X POST "http://127.0.0.1:$port/v1/sessions" -H 'Content-Type: application/json' -d '{}' |
        python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["session_id"], d["token"])'
done >"$work/sessions.txt"
export WHYREC_WRK_SESSIONS="$work/sessions.txt"
for clients in $levels; do
    printf 'chat turn C=%-3s ' "$clients"
    wrk -t1 -c"$clients" -d"${seconds}s" --latency -s "$here/wrk_chat.lua" "http://127.0.0.1:$port" |
        grep -E '^\s+(50|99)%|Requests/sec|Non-2xx|Socket errors' | tr -s ' \n' ' '
    echo
done
