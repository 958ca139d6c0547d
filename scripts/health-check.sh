#!/usr/bin/env bash
# Check an agent's health files.
#
#   scripts/health-check.sh            # inside the container: $HEALTH_DIR (/tmp/health)
#   scripts/health-check.sh POD        # a pod, through kubectl (NAMESPACE honoured)
#
# Exit 0 when the liveness file is fresher than MAX_AGE seconds (30) and has no
# unhealthy= line, 1 when not, 2 on wrong usage. Prints the state, readiness and the
# liveness details.
set -euo pipefail

MAX_AGE="${MAX_AGE:-30}"
HEALTH_DIR="${HEALTH_DIR:-/tmp/health}"

# shellcheck disable=SC2016  # expanded by the inner shell, not this one
check='
  f="$1/liveness"; max="$2"
  [ -f "$f" ] || { echo "UNHEALTHY: no liveness file at $f"; exit 1; }
  age=$(( $(date +%s) - $(stat -c %Y "$f") ))
  state=$(head -n 1 "$f")
  if [ -f "$1/readiness" ]; then ready=yes; else ready=no; fi
  echo "state=$state ready=$ready liveness_age=${age}s"
  sed -n "2,\$p" "$f"
  [ "$age" -le "$max" ] || { echo "UNHEALTHY: liveness is ${age}s old (max ${max}s)"; exit 1; }
  reason=$(sed -n "s/^unhealthy=//p" "$f" | head -n 1)
  [ -z "$reason" ] || { echo "UNHEALTHY: $reason"; exit 1; }
  echo HEALTHY
'

if [[ $# -gt 1 ]]; then
  sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
if [[ $# -eq 1 ]]; then
  command -v kubectl >/dev/null 2>&1 || { echo "error: kubectl not found" >&2; exit 2; }
  args=(kubectl)
  [[ -n "${NAMESPACE:-}" ]] && args+=(--namespace "$NAMESPACE")
  exec "${args[@]}" exec "$1" -- sh -c "$check" sh /tmp/health "$MAX_AGE"
fi
exec sh -c "$check" sh "$HEALTH_DIR" "$MAX_AGE"
