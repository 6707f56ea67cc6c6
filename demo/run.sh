#!/usr/bin/env bash
# `make demo`: a local broker, the daemon on the default config.yaml with its SQLite target,
# the example events published through `syncd publish`, the synced rows shown — then everything
# it started is stopped again. Run from the repository root after `make venv`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
STATE=var
BROKER_DIR=$STATE/demo-broker
DAEMON_PID=

cleanup() {
    if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
        kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true
    fi
    activemq/syncd-broker stop "$BROKER_DIR" >/dev/null || true
}
trap cleanup EXIT

mkdir -p "$STATE"
rm -f "$STATE"/warehouse.db*
echo "== starting a local ActiveMQ broker on 127.0.0.1:61613 ($BROKER_DIR)"
activemq/syncd-broker start "$BROKER_DIR" 61613
echo "== creating the demo's target tables (demo/schema.sql) in $STATE/warehouse.db"
"$BIN/python" -c 'import sqlite3,sys; sqlite3.connect(sys.argv[1]).executescript(open(sys.argv[2]).read())' \
    "$STATE/warehouse.db" demo/schema.sql
echo "== syncd check -c config.yaml"
"$BIN/syncd" check -c config.yaml
echo "== syncd run -c config.yaml (log: $STATE/demo-syncd.log)"
"$BIN/syncd" run -c config.yaml 2>"$STATE/demo-syncd.log" &
DAEMON_PID=$!
echo "== syncd publish -c config.yaml demo/events.jsonl"
"$BIN/syncd" publish -c config.yaml demo/events.jsonl
echo "== the target, once the last event is applied:"
"$BIN/python" demo/show.py "$STATE/warehouse.db"
echo
kill -TERM "$DAEMON_PID"; wait "$DAEMON_PID" || true
echo "== the daemon's own count, from its log:"
grep "syncd stopped" "$STATE/demo-syncd.log" || true
echo
echo "Customer 1 carries its newest name; its duplicated update was skipped. Customer 2 kept"
echo "\"Bo Chen-Park\" although a stale update (an older seq) arrived after it. Customer 3 was"
echo "deleted; order 101 was soft-deleted (deleted_at); customer 4 came from a snapshot read."
echo "contact holds only the customers the contacts mapping's filter lets in (BR, DE: not 2),"
echo "their e-mails masked and their dates cast from ISO text or days since 1970."
