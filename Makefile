# kubexec: the two commands a new user needs are `make run` and `make test`.
GO ?= go
BIN := $(CURDIR)/_output/bin
# staticcheck, pinned, from the Go module proxy (built once, then cached).
STATICCHECK := $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
export KUBEXEC_DEVCLUSTER_BIN := $(BIN)

.PHONY: run test test-unit test-loaded devcluster vet docs cluster-up cluster-down fmt bench

## run: build the dev cluster, then run the example scheduler's sample
## workflow on it (the scheduler starts the dev cluster, follows the run,
## prints the final table and stops the cluster).
run: devcluster
	$(GO) -C examples/scheduler run . run workflows/sample.yaml

## test: build the dev cluster, then vet (go vet, gofmt, staticcheck), check the docs and run every
## test with -race.
test: devcluster vet docs
	$(GO) test -race -count=1 -timeout 30m $(GOTESTFLAGS) ./...
	cd examples/scheduler && $(GO) vet ./... && $(STATICCHECK) ./... && $(GO) test -race -count=1 -timeout 30m $(GOTESTFLAGS) ./...

## test-unit: the fast loop, to run after every change: every test that
## needs no dev cluster (go test -short), in both modules, without building
## the dev cluster's binaries. The tests that need a cluster skip themselves
## (devcluster.Main starts none with -short); `make test` runs them all.
test-unit:
	$(GO) test -short -count=1 $(GOTESTFLAGS) ./...
	cd examples/scheduler && $(GO) test -short -count=1 $(GOTESTFLAGS) ./...

## test-loaded: run `make test` three times in a row beside a CPU hog (one
## busy loop per core), as on a busy CI machine; prints each run's time and
## slowest tests. RUNS=n changes the count.
test-loaded:
	bash internal/testloaded.sh

## bench: build the dev cluster, then run the benchmarks (launch, end to
## end on process nodes and on kwok nodes, watch, adoption, memory, crash)
## and write BENCHMARKS.md from their output. ~15 min on two cores without
## the kwok group; that group's 10,000 tasks take much longer (the Job
## controller's 20 requests/s set its pace).
bench: devcluster
	$(GO) run ./internal/bench -go $(GO) -out BENCHMARKS.md -dir _output/bench

## devcluster: build etcd, kube-apiserver, kube-controller-manager,
## kube-scheduler, the kubelet, kwok and the process node into _output/bin (cold:
## ~10-15 min), and install the Debian packages the kubelet node runs
## (containerd, runc, ...) if missing.
devcluster:
	bash internal/devcluster/bin/install-packages.sh
	bash internal/devcluster/bin/build.sh $(BIN)

## docs: check that every Mermaid block in docs/*.md parses (a node script
## in docs/check; its npm packages come from its package-lock.json, installed
## once with npm ci). The example scheduler's tests check the rest of the
## guide: its commands exist, its examples are current, every Config field
## is described.
docs: docs/check/node_modules/.package-lock.json
	cd docs/check && node check.mjs

docs/check/node_modules/.package-lock.json: docs/check/package-lock.json
	cd docs/check && npm ci --no-audit --no-fund

vet:
	$(GO) vet ./...
	$(STATICCHECK) ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

## cluster-up: start a dev cluster in the background; prints its kubeconfig.
## NODE_KIND=kubelet runs the real kubelet (with containerd and runc)
## instead of the process node; NODE_KIND=both runs one of each;
## NODE_KIND=kwok runs kwok nodes (simulated: they run nothing).
cluster-up: devcluster
	bash internal/devcluster/cluster.sh up

## cluster-down: stop the cluster started by cluster-up.
cluster-down:
	bash internal/devcluster/cluster.sh down

fmt:
	gofmt -w $$(git ls-files '*.go')
