#!/usr/bin/env bash
# Pause, resume, inspect or restart the pulling agents of one namespace.
#
#   scripts/control-agent.sh pause|resume|status|restart
#
# Environment: NAMESPACE (default: the context's namespace), DEPLOYMENT (pulling-agent),
# SELECTOR (app.kubernetes.io/name=pulling-agent), WAIT_SECONDS (60), METHOD (configmap | api).
#   configmap: the seed's method - update the agent-control ConfigMap (persists across
#              restarts; kubelet delivers it in 60-90 s) and signal every pod (immediate).
#   api:       the cluster control document through an agent's API (every agent, fast,
#              audited); the token is read inside the pod (the agent's API_TOKENS), or
#              PULLING_AGENT_TOKEN is passed on stdin - never on a command line.
set -euo pipefail

DEPLOYMENT="${DEPLOYMENT:-pulling-agent}"
SELECTOR="${SELECTOR:-app.kubernetes.io/name=pulling-agent}"
WAIT_SECONDS="${WAIT_SECONDS:-60}"
METHOD="${METHOD:-configmap}"

if [[ -t 1 ]]; then
  GREEN=$'\e[32m'; RED=$'\e[31m'; YELLOW=$'\e[33m'; RESET=$'\e[0m'
else
  GREEN=""; RED=""; YELLOW=""; RESET=""
fi

die() { printf '%s%s%s\n' "$RED" "error: $*" "$RESET" >&2; exit 1; }
info() { printf '%s\n' "$*"; }
ok() { printf '%s✓ %s%s\n' "$GREEN" "$*" "$RESET"; }
warn() { printf '%s%s%s\n' "$YELLOW" "$*" "$RESET"; }

usage() {
  # the header comment, up to the first line of code
  awk 'NR == 1 { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$0"
  exit 2
}

command -v kubectl >/dev/null 2>&1 || die "kubectl not found: install it (https://kubernetes.io/docs/tasks/tools/)"
kubectl config current-context >/dev/null 2>&1 || die "no current kubectl context: run 'kubectl config use-context NAME'"
NAMESPACE="${NAMESPACE:-$(kubectl config view --minify -o jsonpath='{..namespace}' 2>/dev/null || true)}"
NAMESPACE="${NAMESPACE:-default}"
K=(kubectl --namespace "$NAMESPACE")

pods() {
  "${K[@]}" get pods -l "$SELECTOR" -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}'
}

pod_state() {
  "${K[@]}" exec "$1" -- sh -c 'head -n 1 /tmp/health/liveness 2>/dev/null || echo unknown'
}

set_configmap() {
  "${K[@]}" create configmap agent-control --from-literal=state="$1" -o yaml --dry-run=client \
    | "${K[@]}" apply -f - >/dev/null
  info "ConfigMap updated to '$1'"
}

signal_pods() {
  local signal="$1" pod
  for pod in $(pods); do
    "${K[@]}" exec "$pod" -- kill "-$signal" 1
    info "SIG$signal signal sent to $pod"
  done
}

cluster_command() {
  local pod
  pod="$(pods | head -n 1)"
  [[ -n "$pod" ]] || die "no pod matches $SELECTOR in namespace $NAMESPACE"
  local args=(ctl "$1" --reason "control-agent.sh by ${USER:-unknown}" --wait "$WAIT_SECONDS")
  if [[ -n "${PULLING_AGENT_TOKEN:-}" ]]; then
    # through stdin: a token on a command line shows in ps and in the API server's audit log
    # shellcheck disable=SC2016  # expanded by the pod's shell
    printf '%s\n' "$PULLING_AGENT_TOKEN" | "${K[@]}" exec -i "$pod" -- sh -c \
      'read -r PULLING_AGENT_TOKEN && export PULLING_AGENT_TOKEN && exec pulling-agent "$@"' \
      sh "${args[@]}"
  else
    # inside the pod, ctl takes an admin token from the agent's own API_TOKENS
    "${K[@]}" exec "$pod" -- pulling-agent "${args[@]}"
  fi
}

wait_for() {
  local wanted="$1" deadline=$((SECONDS + WAIT_SECONDS)) pod state pending
  printf 'Waiting for agents to be %s' "$wanted"
  while ((SECONDS < deadline)); do
    pending=0
    for pod in $(pods); do
      state="$(pod_state "$pod")"
      [[ "$state" == "$wanted" ]] || pending=$((pending + 1))
    done
    if ((pending == 0)); then
      printf '\n'
      return 0
    fi
    printf '.'
    sleep 2
  done
  printf '\n'
  return 1
}

do_pause() {
  info "Pausing agent..."
  if [[ "$METHOD" == "api" ]]; then cluster_command pause; else set_configmap pause; signal_pods USR1; fi
  if wait_for paused; then ok "Agent successfully paused"; else die "not every agent paused within ${WAIT_SECONDS}s (see: $0 status)"; fi
}

do_resume() {
  info "Resuming agent..."
  if [[ "$METHOD" == "api" ]]; then cluster_command resume; else set_configmap resume; signal_pods USR2; fi
  if wait_for running; then ok "Agent successfully resumed"; else die "not every agent resumed within ${WAIT_SECONDS}s (see: $0 status)"; fi
}

do_status() {
  local pod
  info "Namespace: $NAMESPACE"
  info "ConfigMap agent-control: $("${K[@]}" get configmap agent-control -o jsonpath='{.data.state}' 2>/dev/null || echo '(none)')"
  for pod in $(pods); do
    info ""
    info "== $pod: $(pod_state "$pod" | tr '[:lower:]' '[:upper:]')"
    local health
    if health="$("${K[@]}" exec "$pod" -- sh -c 'cat /tmp/health/liveness; test -f /tmp/health/readiness && echo ready=yes || echo ready=no')"; then
      printf '%s\n' "$health"
      # the seed's "status | grep documents": this pod's document counters on one line
      info "documents: $(printf '%s\n' "$health" | grep -E '^(claimed|processed|retried|failed|released)=' | tr '\n' ' ')"
    else
      warn "health files unreadable"
    fi
    "${K[@]}" logs "$pod" --tail=200 | grep -i -E 'paus|resum' | tail -n 3 || true
  done
}

do_restart() {
  "${K[@]}" rollout restart "deployment/$DEPLOYMENT"
  "${K[@]}" rollout status "deployment/$DEPLOYMENT" --timeout="${WAIT_SECONDS}s"
  ok "Deployment restarted"
}

case "${1:-}" in
  pause) do_pause ;;
  resume) do_resume ;;
  status) do_status ;;
  restart) do_restart ;;
  *) usage ;;
esac
