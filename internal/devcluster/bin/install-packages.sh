#!/usr/bin/env bash
# Installs the Debian packages the dev cluster's kubelet node runs, when one
# is missing: containerd and runc (the container runtime), the CNI plugins
# (the loopback plugin), busybox-static (the image the node's pods run),
# util-linux (unshare, nsenter, flock) and iproute2. Needs root and Debian's
# package archive; prints what it installs.
set -euo pipefail
need=()
for p in /usr/bin/containerd:containerd /usr/sbin/runc:runc \
	/usr/lib/cni/loopback:containernetworking-plugins /bin/busybox:busybox-static \
	/usr/bin/nsenter:util-linux /usr/sbin/ip:iproute2; do
	[ -e "${p%%:*}" ] || need+=("${p##*:}")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
	echo "the kubelet node needs Debian packages ${need[*]}: run as root, or apt-get install them" >&2
	exit 1
fi
echo "installing ${need[*]} for the kubelet node"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
