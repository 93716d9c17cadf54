#!/usr/bin/env bash
# Runs `make test` RUNS times in a row (default 3) with a CPU hog beside it:
# one busy loop per core, started here and stopped by pid when this script
# ends. Prints each run's time and the slowest tests of each run; stops at
# the first failure. Logs go to _output/test-loaded/.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-3}
out=_output/test-loaded
mkdir -p "$out"
hogs=()
stop_hogs() {
	for pid in "${hogs[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${hogs[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap stop_hogs EXIT
for _ in $(seq "$(nproc)"); do
	(while :; do :; done) &
	hogs+=($!)
done
echo "test-loaded: ${#hogs[@]} busy loops (pids ${hogs[*]}); $runs runs of make test"
for i in $(seq "$runs"); do
	log="$out/run-$i.log"
	start=$(date +%s)
	if ! make test GOTESTFLAGS=-v >"$log" 2>&1; then
		echo "test-loaded: run $i FAILED after $(( $(date +%s) - start )) s; see $log"
		grep -E '^(--- FAIL|FAIL|panic)' "$log" | head -40 || true
		exit 1
	fi
	echo "test-loaded: run $i passed in $(( $(date +%s) - start )) s; slowest tests:"
	grep -E '^\s*--- PASS: ' "$log" | sed -E 's/.*--- PASS: ([^ ]+) \(([0-9.]+)s\)/\2 \1/' | sort -rn | sed -n '1,8s/^/    /p'
done
