#!/usr/bin/env bash
# Builds the dev cluster's binaries into the folder given as $1: etcd,
# kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kwok (from
# the Go module proxy, pinned by this folder's go.mod) and every main package
# of this module. A cold build takes about 5-10 minutes on two cores; later builds
# are incremental.
set -euo pipefail
out=${1:?usage: build.sh OUTPUT_FOLDER}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$(dirname "$0")"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v1.37.2 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37"
own=$(go list -f '{{if eq .Name "main"}}{{.ImportPath}}{{end}}' ./... 2>/dev/null || true)
go build -ldflags "$ldflags" -o "$out/" \
	k8s.io/kubernetes/cmd/kube-apiserver \
	k8s.io/kubernetes/cmd/kube-controller-manager \
	k8s.io/kubernetes/cmd/kube-scheduler \
	k8s.io/kubernetes/cmd/kubelet \
	sigs.k8s.io/kwok/cmd/kwok \
	$own
go build -ldflags "$ldflags" -o "$out/etcd" go.etcd.io/etcd/server/v3
