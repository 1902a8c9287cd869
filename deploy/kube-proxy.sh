#!/bin/sh
# /usr/local/bin/kube-proxy in the image (the path kubeadm's DaemonSet runs). Before starting the
# proxy it points the image's iptables, ip6tables and their -save/-restore at the flavour the node
# uses, as upstream's iptables-wrapper decides it, so that `kubectl exec ... iptables-save` shows
# the rules the proxy wrote. The proxy itself detects the flavour on its own as well.
# POSIX sh only: the image has no bash.
set -eu

hint='^:(KUBE-IPTABLES-HINT|KUBE-KUBELET-CANARY)'

# count PATTERN COMMAND...: lines matching PATTERN in the output of the commands (missing ones count 0).
count() {
  pattern=$1
  shift
  for cmd in "$@"; do
    # shellcheck disable=SC2086 # the command and its arguments are split on purpose
    $cmd 2>/dev/null || true
  done | grep -cE "$pattern" || true
}

# The kubelet leaves a chain in the mangle table of the flavour it uses; look at nft first (the
# cheaper read, and the common case), then at legacy (whose save cannot be limited to mangle
# without creating that table). Without a hint, the flavour holding more rules wins; nft on a tie.
if [ "$(count "$hint" 'iptables-nft-save -t mangle' 'ip6tables-nft-save -t mangle')" -gt 0 ]; then
  mode=nft
elif [ "$(count "$hint" iptables-legacy-save ip6tables-legacy-save)" -gt 0 ]; then
  mode=legacy
elif [ "$(count '^-' iptables-legacy-save ip6tables-legacy-save)" -gt "$(count '^-' iptables-nft-save ip6tables-nft-save)" ]; then
  mode=legacy
else
  mode=nft
fi

for tool in iptables ip6tables; do
  if ! update-alternatives --set "$tool" "/usr/sbin/$tool-$mode" >/dev/null 2>&1; then
    echo "kube-proxy: cannot select /usr/sbin/$tool-$mode as $tool; iptables-save in this container may not show the proxy's rules" >&2
  fi
done

# Through its interpreter line, which carries the V8 options the daemon runs with.
exec "${KUBE_PROXY_CLI:-/opt/kube-proxy/dist/cli.js}" "$@"
