#!/usr/bin/env bash
# make security: bandit on src/ (skips justified in .bandit.yaml), then a dependency audit
# of requirements.lock with pip-audit. The audit needs the vulnerability database
# (pypi.org's JSON API or OSV); where it is unreachable this says so and exits 0, so the
# static part still gates. Exit 1 on a bandit finding or a known-vulnerable dependency.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="${SECURITY_VENV:-.venv-security}/bin"

echo "== bandit (src/)"
"$BIN/bandit" -q -c .bandit.yaml -r src
echo "bandit: no findings"

echo "== pip-audit (requirements.lock)"
set +e
out="$("$BIN/pip-audit" --requirement requirements.lock --strict --progress-spinner off 2>&1)"
rc=$?
set -e
if grep -qiE "could not be audited|connection|timed out|name resolution" <<<"$out"; then
  echo "pip-audit: the vulnerability database is unreachable from this machine; nothing was"
  echo "audited. Run 'make security' where pypi.org (or OSV) is reachable, e.g. in the"
  echo "upstream CI."
  exit 0
fi
printf '%s\n' "$out"
exit "$rc"
