#!/usr/bin/env bash
# cluster.sh up|down: runs the dev cluster in the background for people
# (make cluster-up / make cluster-down). State lives in .devcluster/ in the
# project root; the kubeconfig is at .devcluster/cluster/kubeconfig.
# NODES (default 1) and NODE_KIND (process, kubelet, both or kwok; default
# process) choose the nodes.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
state="$root/.devcluster"
pidfile="$state/pid"
running() { [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; }

case "${1:-}" in
up)
	mkdir -p "$state"
	if running; then
		echo "the dev cluster is already running (pid $(cat "$pidfile"))"
		echo "$state/cluster/kubeconfig"
		exit 0
	fi
	(cd "$root" && go build -o _output/bin/devcluster ./internal/devcluster/cmd/devcluster)
	rm -f "$state/cluster/ready"
	nohup "$root/_output/bin/devcluster" up --dir "$state/cluster" --nodes "${NODES:-1}" --node-kind "${NODE_KIND:-process}" \
		>"$state/devcluster.log" 2>&1 </dev/null &
	echo $! >"$pidfile"
	for _ in $(seq 1 1800); do
		if [ -f "$state/cluster/ready" ]; then
			echo "the dev cluster is up (pid $(cat "$pidfile")); stop it with: make cluster-down"
			echo "kubectl --kubeconfig $state/cluster/kubeconfig get nodes"
			echo "$state/cluster/kubeconfig"
			exit 0
		fi
		if ! running; then
			echo "the dev cluster did not start; its log:" >&2
			tail -n 40 "$state/devcluster.log" >&2
			exit 1
		fi
		sleep 0.1
	done
	echo "the dev cluster was not ready after 3 minutes; see $state/devcluster.log" >&2
	exit 1
	;;
down)
	if ! running; then
		echo "the dev cluster is not running"
		rm -f "$pidfile"
		exit 0
	fi
	pid=$(cat "$pidfile")
	kill -TERM "$pid"
	for _ in $(seq 1 600); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$pidfile"; echo "the dev cluster is stopped"; exit 0; }
		sleep 0.1
	done
	echo "the dev cluster (pid $pid) did not stop within 60 s; sending SIGKILL" >&2
	kill -KILL "$pid"
	rm -f "$pidfile"
	;;
*)
	echo "usage: $0 up|down" >&2
	exit 2
	;;
esac
