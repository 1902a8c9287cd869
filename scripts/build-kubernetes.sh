#!/usr/bin/env bash
# Builds the real Kubernetes programs the e2e suites run — kube-apiserver, kube-proxy and etcd —
# from the Go modules pinned in e2e/kubernetes (go.mod + go.sum), into a cache directory keyed
# by the Kubernetes version:
#   ${KPTS_CACHE:-$HOME/.cache/kube-proxy-ts}/kubernetes-<version>/{kube-apiserver,kube-proxy,etcd}
# Does nothing when the three binaries are already there. Prints the directory on stdout
# (progress goes to stderr), so callers can do: dir=$(scripts/build-kubernetes.sh).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
module_dir="$root/e2e/kubernetes"
etcd_module_dir="$module_dir/etcd"

command -v go >/dev/null || { echo "build-kubernetes: go is not installed" >&2; exit 1; }

# The versions are whatever the committed go.mod files pin; nothing is repeated here.
module_version() { # <go.mod> <module path>
  awk -v m="$2" '$1 == m && $2 ~ /^v/ { print $2; exit } $1 == "require" && $2 == m { print $3; exit }' "$1"
}
k8s_version=$(module_version "$module_dir/go.mod" k8s.io/kubernetes)
etcd_version=$(module_version "$etcd_module_dir/go.mod" go.etcd.io/etcd/server/v3)
[[ -n "$k8s_version" && -n "$etcd_version" ]] || {
  echo "build-kubernetes: cannot read the pinned versions from $module_dir/go.mod and $etcd_module_dir/go.mod" >&2
  exit 1
}

out="${KPTS_CACHE:-$HOME/.cache/kube-proxy-ts}/kubernetes-$k8s_version"
binaries=(kube-apiserver kube-proxy etcd)

have_all() {
  local b
  for b in "${binaries[@]}"; do [[ -x "$out/$b" ]] || return 1; done
}

if have_all; then
  echo "$out"
  exit 0
fi

mkdir -p "$out"
# Build into a scratch directory and move into place at the end, so an interrupted build
# never leaves a binary that looks complete.
scratch=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$scratch"' EXIT

# Stamp the release version the way upstream's hack/lib/version.sh does; without it the
# programs report v0.0.0-master and the API server's /version disagrees with the release.
IFS=. read -r major minor _ <<<"${k8s_version#v}"
version_ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  version_ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  version_ldflags+=" -X $pkg.gitTreeState=clean"
done

export CGO_ENABLED=0
build() { # <module dir> <package> <binary name> <extra ldflags>
  echo "build-kubernetes: building $3 ($2)" >&2
  (cd "$1" && go build -trimpath -ldflags="-s -w$4" -o "$scratch/$3" "$2")
}

build "$module_dir" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$version_ldflags"
build "$module_dir" k8s.io/kubernetes/cmd/kube-proxy kube-proxy "$version_ldflags"
build "$etcd_module_dir" . etcd ""

for b in "${binaries[@]}"; do mv -f "$scratch/$b" "$out/$b"; done
echo "build-kubernetes: kubernetes $k8s_version and etcd $etcd_version are in $out" >&2
echo "$out"
