#!/bin/sh
# kubexec-pod-net: the kubelet node's CNI plugin. It gives each pod an eth0
# whose veth peer stays inside the pod's own network namespace, with an
# address from 10.244.0.0/24, so containerd sees a pod IP and no packet can
# leave the pod: nothing is connected to the host. Addresses are files in
# the network config's stateDir, each holding the container id it is lent to.
set -eu
conf=$(cat)
field() { printf '%s' "$conf" | tr -d '\n' | sed -n "s/.*\"$1\" *: *\"\([^\"]*\)\".*/\1/p"; }
version=$(field cniVersion)
state=$(field stateDir)
fail() {
	printf '{"cniVersion":"%s","code":%s,"msg":"%s"}\n' "${version:-1.0.0}" "$1" "$2"
	exit 1
}
case "${CNI_COMMAND:-}" in
VERSION)
	printf '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}\n'
	exit 0
	;;
ADD) ;;
DEL)
	[ -n "$state" ] && [ -d "$state" ] || exit 0
	exec 9>"$state/lock"
	flock 9
	for f in "$state"/10.*; do
		[ -f "$f" ] && [ "$(cat "$f")" = "$CNI_CONTAINERID" ] && rm -f "$f"
	done
	if [ -n "${CNI_NETNS:-}" ] && [ -e "$CNI_NETNS" ]; then
		nsenter --net="$CNI_NETNS" ip link del "$CNI_IFNAME" 2>/dev/null || true
	fi
	exit 0
	;;
CHECK | GC | STATUS) exit 0 ;;
*) fail 4 "unknown CNI_COMMAND ${CNI_COMMAND:-}" ;;
esac

[ -n "$state" ] || fail 7 "the network config has no stateDir"
mkdir -p "$state"
exec 9>"$state/lock"
flock 9
addr=
for f in "$state"/10.*; do
	[ -f "$f" ] && [ "$(cat "$f")" = "$CNI_CONTAINERID" ] && addr=${f##*/}
done
if [ -z "$addr" ]; then
	for i in $(seq 2 254); do
		if [ ! -e "$state/10.244.0.$i" ]; then
			addr=10.244.0.$i
			printf '%s' "$CNI_CONTAINERID" >"$state/$addr"
			break
		fi
	done
fi
[ -n "$addr" ] || fail 11 "no free address in 10.244.0.0/24"
ns=$CNI_NETNS
peer=kx$(printf '%s' "$CNI_CONTAINERID" | cut -c1-10)
nsenter --net="$ns" ip link add "$CNI_IFNAME" type veth peer name "$peer" >&2 ||
	fail 11 "create the veth pair in $ns"
nsenter --net="$ns" ip addr add "$addr/24" dev "$CNI_IFNAME" >&2
nsenter --net="$ns" ip link set "$peer" up >&2
nsenter --net="$ns" ip link set "$CNI_IFNAME" up >&2
nsenter --net="$ns" ip link set lo up >&2
mac=$(nsenter --net="$ns" ip -o link show "$CNI_IFNAME" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
if [ "$version" = "0.3.0" ] || [ "$version" = "0.3.1" ] || [ "$version" = "0.4.0" ]; then
	ipver='"version":"4",'
else
	ipver=
fi
printf '{"cniVersion":"%s","interfaces":[{"name":"%s","mac":"%s","sandbox":"%s"}],"ips":[{%s"address":"%s/24","interface":0}]}\n' \
	"${version:-1.0.0}" "$CNI_IFNAME" "$mac" "$ns" "$ipver" "$addr"
