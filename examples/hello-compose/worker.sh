#!/bin/sh
# The worker: does its job every few seconds and leaves a heartbeat. `worker check` is its
# healthcheck: healthy while the heartbeat is younger than 30 seconds.
set -eu
heartbeat=/tmp/heartbeat

if [ "${1:-}" = check ]; then
    [ -f "$heartbeat" ] && [ $(( $(date +%s) - $(cat "$heartbeat") )) -lt 30 ]
    exit
fi

echo "worker: started"
while :; do
    # Written aside and renamed: the check never reads a half-written file.
    date +%s > "$heartbeat.new" && mv "$heartbeat.new" "$heartbeat"
    sleep 5
done
