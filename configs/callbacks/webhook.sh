#!/bin/sh
# Post each role change (and start, stop, restart, reload) to a webhook, e.g. a chat channel or
# an incident tool: a pgha (or Patroni) callback.
#
#   postgresql:
#     callbacks:
#       on_role_change: /etc/pgha/webhook.sh https://hooks.example.com/T000/B000/XXXX
#
# The agent appends <action> <role> <scope>. The body is JSON:
#   {"text": "...", "action": ..., "role": ..., "scope": ..., "host": ..., "time": ...}
# curl gives up after 5 s; the agent kills any callback that outlives postgresql.callbacks.timeout.
set -eu
[ $# -ge 4 ] || { echo "usage: $0 URL ACTION ROLE SCOPE" >&2; exit 2; }
url=$1 action=$2 role=$3 scope=$4
host=$(hostname)
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
body=$(printf '{"text":"pgha %s: %s is now %s (%s)","action":"%s","role":"%s","scope":"%s","host":"%s","time":"%s"}' \
    "$scope" "$host" "$role" "$action" "$action" "$role" "$scope" "$host" "$now")
exec curl -fsS --max-time 5 -H 'Content-Type: application/json' --data "$body" "$url"
