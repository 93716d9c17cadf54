// Command bench runs kubexec's benchmarks on the dev cluster and writes
// BENCHMARKS.md: `make bench` runs it from the project root.
//
//	go run ./internal/bench [-out BENCHMARKS.md] [-dir _output/bench] [-only launch,e2e,...]
//
// Each group is one `go test` command, run one after the other (each starts
// its own dev cluster), its output shown as it comes and kept in
// -dir/<group>.log. The figures are read from the benchmark result lines
// (`go test -bench` reports them as value-unit pairs) and from the tests'
// log lines, and written as one table: figure, value, target, met,
// and the command that reproduces it. Where a target is missed, the top
// entries of the group's CPU profile follow the table. The file ends up
// printed as the command's last output.
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// figure is one row of the table.
type figure struct {
	name   string
	bench  string // benchmark name without -GOMAXPROCS, or "" for a test log figure
	unit   string // the unit the benchmark reports it in
	format string // how to print the value
	target string // as written in issue 10, or "" for none
	met    func(v float64) bool
}

// group is one go test command and the figures it produces.
type group struct {
	id    string
	title string
	env   []string
	// knobs are environment variables the group's benchmark reads (sizes,
	// subsets); those set when bench runs are passed on and shown in the
	// group's command.
	knobs   []string
	args    []string // after "go test"
	profile string   // the CPU profile -cpuprofile writes, if any
	figures []figure
	// parse reads figures that are not benchmark metrics (a test's log
	// lines) into values keyed by unit.
	parse func(out string, values map[string]float64)
	about string
	// explain says, from the measured values, where the time of a missed
	// target went.
	explain func(values map[string]float64) string
}

func groups(dir string) []group {
	return []group{
		{
			id:    "launch",
			title: "1. Launch throughput",
			args:  []string{"-run", "^$", "-bench", "^BenchmarkLaunchThroughput$", "-benchtime=1x", "./executor/"},
			figures: []figure{
				{"kubexec launches", "BenchmarkLaunchThroughput", "kubexec-creates/s", "%.1f pods/s", "", nil},
				{"bare client-go create loop, same concurrency and token bucket", "BenchmarkLaunchThroughput", "bare-creates/s", "%.1f pods/s", "", nil},
				{"kubexec / bare loop", "BenchmarkLaunchThroughput", "ratio", "%.3f", ">= 0.9", func(v float64) bool { return v >= 0.9 }},
				{"kubexec Queue -> pod created, p50", "BenchmarkLaunchThroughput", "queue-to-created-p50-ms", "%.0f ms", "", nil},
				{"kubexec Queue -> pod created, p99", "BenchmarkLaunchThroughput", "queue-to-created-p99-ms", "%.0f ms", "", nil},
			},
			about: "1,000 pods that no node takes (a nodeSelector no node has), created through kubexec (Queue, Heartbeat) and then by a bare client-go loop, both with 10 concurrent creates and a token bucket of 1,000/s burst 10, on the same API server in the same run.",
		},
		{
			id:      "e2e",
			title:   "2. End to end",
			args:    []string{"-run", "^$", "-bench", "^BenchmarkEndToEnd$", "-benchtime=1x", "-timeout", "30m", "-cpuprofile", dir + "/e2e.cpu.pprof", "-o", dir + "/executor.test", "./executor/"},
			profile: dir + "/e2e.cpu.pprof",
			figures: []figure{
				{"kubexec makespan, {tasks} tasks", "BenchmarkEndToEnd", "kubexec-makespan-s", "%.1f s", "", nil},
				{"batch/v1 Jobs makespan, {tasks} tasks", "BenchmarkEndToEnd", "jobs-makespan-s", "%.1f s", "", nil},
				{"kubexec / Jobs makespan", "BenchmarkEndToEnd", "makespan-vs-jobs", "%.3f", "< 1 (kubexec below the Job controller)", func(v float64) bool { return v < 1 }},
				{"Airflow-like, batch 16, makespan, {tasks} tasks", "BenchmarkEndToEnd", "airflow16-makespan-s", "%.1f s", "", nil},
				{"Airflow-like, batch 1, per task (measured on {airflow1-tasks} tasks)", "BenchmarkEndToEnd", "airflow1-s/task", "%.3f s", "", nil},
				{"Airflow-like, batch 1, makespan for {tasks} tasks (EXTRAPOLATED from the {airflow1-tasks}, not measured)", "BenchmarkEndToEnd", "airflow1-makespan-extrapolated-s", "%.0f s", "", nil},
				{"kubexec pod ended -> result saved, p50", "BenchmarkEndToEnd", "kubexec-end-to-saved-p50-ms", "%.1f ms", "", nil},
				{"kubexec pod ended -> result saved, p99", "BenchmarkEndToEnd", "kubexec-end-to-saved-p99-ms", "%.1f ms", "< 100 ms", func(v float64) bool { return v < 100 }},
				{"kubexec's own metric, end observed -> SaveResult returned, p50", "BenchmarkEndToEnd", "kubexec-observed-to-saved-p50-ms", "%.1f ms", "", nil},
				{"kubexec's own metric, end observed -> SaveResult returned, p99", "BenchmarkEndToEnd", "kubexec-observed-to-saved-p99-ms", "%.1f ms", "", nil},
				{"Jobs pod ended -> Job Complete seen, p50", "BenchmarkEndToEnd", "jobs-end-to-complete-p50-ms", "%.0f ms", "", nil},
				{"Jobs pod ended -> Job Complete seen, p99", "BenchmarkEndToEnd", "jobs-end-to-complete-p99-ms", "%.0f ms", "", nil},
				{"Airflow-like batch 16, pod ended -> result processed, p50", "BenchmarkEndToEnd", "airflow16-end-to-processed-p50-ms", "%.0f ms", "", nil},
				{"Airflow-like batch 16, pod ended -> result processed, p99", "BenchmarkEndToEnd", "airflow16-end-to-processed-p99-ms", "%.0f ms", "", nil},
			},
			about: "1,000 tasks `sh -c \"sleep 0.1\"` (exit 0) on the dev cluster's two process nodes, run one system after the other on the same cluster, each in its own namespace, which is deleted (and waited for) before the next system starts. " +
				"kubexec: its default flow control (creates 20/s burst 30, the Job controller's client settings; other calls 50/s burst 100), Parallelism 1,000, Heartbeat once per second, an in-memory StateStore, pods deleted on success (its default). " +
				"Jobs: one batch/v1 Job per task with the very pod spec kubexec builds, created up front by the benchmark (10 at a time, no client rate limit) and run by the cluster's Job controller (client QPS 20, burst 30); a task is done when the benchmark's watch sees the Job Complete. " +
				"Airflow-like: a loop that every 1 s tick processes the results its watch queued (deleting succeeded pods, as delete_worker_pods=True), then creates up to batch-size pods one request after the other, with at most 32 running (Airflow's defaults); batch 16 on all 1,000 tasks, batch 1 on 100 tasks (1,000 would take 1,000 s), whose makespan for 1,000 is extrapolated, not measured. " +
				"Makespan: from the first Queue / Job create / loop start to the last result. \"Pod ended\": the benchmark's own watch of the namespace first sees the pod Succeeded or Failed (the same for all three); the process node's delay from the process's exit to that status is not in it.",
			explain: explainEndToEnd,
		},
		{
			id:      "kwok",
			title:   "2b. End to end on kwok nodes",
			knobs:   []string{"KUBEXEC_BENCH_KWOK_TASKS", "KUBEXEC_BENCH_KWOK_SYSTEMS", "KUBEXEC_BENCH_AIRFLOW1_TASKS"},
			args:    []string{"-run", "^$", "-bench", "^BenchmarkEndToEndKwok$", "-benchtime=1x", "-timeout", "120m", "-cpuprofile", dir + "/kwok.cpu.pprof", "-o", dir + "/executor.test", "./executor/"},
			profile: dir + "/kwok.cpu.pprof",
			figures: []figure{
				{"bare client-go create loop, time to create {tasks} pods", "BenchmarkEndToEndKwok", "bare-create-s", "%.1f s", "", nil},
				{"kubexec makespan, {tasks} tasks", "BenchmarkEndToEndKwok", "kubexec-makespan-s", "%.1f s", "", nil},
				{"kubexec makespan / bare loop's time to create the same pods", "BenchmarkEndToEndKwok", "makespan-vs-bare-create", "%.3f", "<= 1.15", func(v float64) bool { return v <= 1.15 }},
				{"bare create+release loop (kubexec's writes: create with the finalizer; delete and release patch once ended), makespan", "BenchmarkEndToEndKwok", "bare-release-makespan-s", "%.1f s", "", nil},
				{"kubexec makespan / bare create+release loop's", "BenchmarkEndToEndKwok", "makespan-vs-bare-release", "%.3f", "", nil},
				{"kubexec pods created per second", "BenchmarkEndToEndKwok", "kubexec-created/s", "%.1f pods/s", "", nil},
				{"bare loop pods created per second", "BenchmarkEndToEndKwok", "bare-created/s", "%.1f pods/s", "", nil},
				{"kubexec / bare loop, pods created per second", "BenchmarkEndToEndKwok", "created-vs-bare", "%.3f", "", nil},
				{"batch/v1 Jobs makespan, {tasks} tasks", "BenchmarkEndToEndKwok", "jobs-makespan-s", "%.1f s", "", nil},
				{"kubexec / Jobs makespan", "BenchmarkEndToEndKwok", "makespan-vs-jobs", "%.3f", "< 0.5", func(v float64) bool { return v < 0.5 }},
				{"Airflow-like, batch 16, makespan, {tasks} tasks", "BenchmarkEndToEndKwok", "airflow16-makespan-s", "%.1f s", "", nil},
				{"kubexec / Airflow-like batch 16 makespan", "BenchmarkEndToEndKwok", "makespan-vs-airflow16", "%.3f", "", nil},
				{"Airflow-like, batch 1, per task (measured on {airflow1-tasks} tasks)", "BenchmarkEndToEndKwok", "airflow1-s/task", "%.3f s", "", nil},
				{"Airflow-like, batch 1, makespan for {tasks} tasks (EXTRAPOLATED from the {airflow1-tasks}, not measured)", "BenchmarkEndToEndKwok", "airflow1-makespan-extrapolated-s", "%.0f s", "", nil},
				{"kubexec pod ended -> result saved, p50", "BenchmarkEndToEndKwok", "kubexec-end-to-saved-p50-ms", "%.1f ms", "", nil},
				{"kubexec pod ended -> result saved, p99", "BenchmarkEndToEndKwok", "kubexec-end-to-saved-p99-ms", "%.1f ms", "< 50 ms", func(v float64) bool { return v < 50 }},
				{"kubexec's own metric, end observed -> SaveResult returned, p50", "BenchmarkEndToEndKwok", "kubexec-observed-to-saved-p50-ms", "%.1f ms", "", nil},
				{"kubexec's own metric, end observed -> SaveResult returned, p99", "BenchmarkEndToEndKwok", "kubexec-observed-to-saved-p99-ms", "%.1f ms", "", nil},
				{"Jobs pod ended -> Job Complete seen, p50", "BenchmarkEndToEndKwok", "jobs-end-to-complete-p50-ms", "%.0f ms", "", nil},
				{"Jobs pod ended -> Job Complete seen, p99", "BenchmarkEndToEndKwok", "jobs-end-to-complete-p99-ms", "%.0f ms", "", nil},
				{"Airflow-like batch 16, pod ended -> result processed, p50", "BenchmarkEndToEndKwok", "airflow16-end-to-processed-p50-ms", "%.0f ms", "", nil},
				{"Airflow-like batch 16, pod ended -> result processed, p99", "BenchmarkEndToEndKwok", "airflow16-end-to-processed-p99-ms", "%.0f ms", "", nil},
			},
			about: "The systems of group 2 on a dev cluster of its own whose four nodes are kwok nodes (devcluster Options.KwokNodes): nothing runs, kwok marks each bound pod Running at once and Succeeded 100 ms later (internal/devcluster/kwok-stages.yaml), so the node does not set the pace; the API server, the scheduler and each system's client do. " +
				"One after the other on that cluster, each in its own namespace, emptied and deleted before the next: a bare client-go loop creating the same pods (10 concurrent creates, a token bucket of 1,000/s burst 10; its figure is the time to create them all); the same loop making kubexec's writes (each pod created with the tracking finalizer; once the loop's watch sees it ended, a delete and the patch that labels it done and removes the finalizer, from 8 goroutines, kubexec's default ResultWorkers; makespan to the last pod seen ended, as kubexec's is to the last result saved); " +
				"kubexec with the same create flow control and its other calls under a 1,000/s burst 1,000 bucket, Parallelism = the number of tasks, Heartbeat once per second, pods deleted on success; batch/v1 Jobs and the Airflow-like loops exactly as in group 2. " +
				"Default 10,000 tasks; KUBEXEC_BENCH_KWOK_TASKS changes it and KUBEXEC_BENCH_KWOK_SYSTEMS (bare,kubexec,jobs,airflow) runs a subset. A figure of a system that was not run reads \"not measured\".",
		},
		{
			id:    "watch",
			title: "3. Watch scale",
			args:  []string{"-run", "^$", "-bench", "^BenchmarkWatch10k$", "-benchtime=1x", "./watch/"},
			figures: []figure{
				{"first sync of 10,000 pods, events/s (best of 3)", "BenchmarkWatch10k", "sync-events/s", "%.0f events/s", "", nil},
				{"bare client-go informer, same pods, events/s", "BenchmarkWatch10k", "informer-sync-events/s", "%.0f events/s", "", nil},
				{"sync rate vs informer", "BenchmarkWatch10k", "sync-vs-informer", "%.2f", "", nil},
				{"changes delivered while 2,000 pods are patched, events/s", "BenchmarkWatch10k", "watch-events/s", "%.0f events/s", "", nil},
				{"API server write rate during those patches", "BenchmarkWatch10k", "writes/s", "%.0f writes/s", "", nil},
				{"heap per tracked pod", "BenchmarkWatch10k", "B/pod", "%.0f B", "", nil},
				{"bare informer heap per pod", "BenchmarkWatch10k", "informer-B/pod", "%.0f B", "", nil},
				{"heap vs informer", "BenchmarkWatch10k", "heap-vs-informer", "%.2f", "", nil},
			},
			about: "10,000 pods of one executor (task-shaped: command, 12 env entries, resources, a volume, kubexec's metadata) that no scheduler takes; package watch's Watcher against a bare client-go informer on the same pods.",
		},
		{
			id:    "adoption",
			title: "4. Adoption",
			args:  []string{"-p", "1", "-run", "^$", "-bench", "^(BenchmarkAdoptEnded5000|BenchmarkSweep5000)$", "-benchtime=1x", "./executor/", "./adoption/"},
			figures: []figure{
				{"5,000 ended pods of a dead instance: all results saved, after the adopter's Start", "BenchmarkAdoptEnded5000", "saved-5000-s", "%.2f s", "< 5 s", func(v float64) bool { return v < 5 }},
				{"the same pods all released (deleted, the default GC policy)", "BenchmarkAdoptEnded5000", "released-5000-s", "%.2f s", "", nil},
				{"API requests the adopter sent meanwhile", "BenchmarkAdoptEnded5000", "adopter-requests", "%.0f", "", nil},
				{"relabel of 5,000 settled pods (one Sweep without Settle: the path of pods deleted before they ended)", "BenchmarkSweep5000", "adopt-5000-s", "%.2f s", "", nil},
				{"API calls used by that sweep", "BenchmarkSweep5000", "api-calls", "%.0f", "", nil},
			},
			about: "5,000 Succeeded pods of an executor id with no Lease (dead), with the tracking finalizer. An executor started beside them claims them with one write to the dead id's claim Lease in its first sweep, saves their results from the list and releases them (a delete and a patch each). The relabel sweep, measured alone, is what the pods of a dead instance that are being deleted but have not ended still take: one patch each.",
		},
		{
			id:    "rss",
			title: "5. Memory of an idle executor",
			args:  []string{"-run", "^$", "-bench", "^BenchmarkIdleRSS10k$", "-benchtime=1x", "./internal/bench/rss/"},
			figures: []figure{
				{"RSS of an idle executor tracking {tracked-pods} running pods (steady: two collections after its sync, the last a minute old)", "BenchmarkIdleRSS10k", "rss-MiB", "%.1f MiB", "", nil},
				{"time after the sync of that steady reading", "BenchmarkIdleRSS10k", "steady-after-s", "%.0f s", "", nil},
				{"same process's RSS 15 s after its sync (the first list's garbage not yet collected)", "BenchmarkIdleRSS10k", "rss-synced-MiB", "%.1f MiB", "", nil},
				{"same process's peak RSS (VmHWM, includes the first list)", "BenchmarkIdleRSS10k", "peak-rss-MiB", "%.1f MiB", "", nil},
				{"its live Go heap", "BenchmarkIdleRSS10k", "go-live-heap-MiB", "%.1f MiB", "", nil},
				{"RSS of the same executor tracking 0 pods", "BenchmarkIdleRSS10k", "rss-0-pods-MiB", "%.1f MiB", "", nil},
				{"RSS per tracked pod (difference / {tracked-pods})", "BenchmarkIdleRSS10k", "rss-B/pod", "%.0f B", "<= 5 KiB", func(v float64) bool { return v <= 5120 }},
				{"RSS per tracked pod 150 s after the sync", "BenchmarkIdleRSS10k", "rss-150s-B/pod", "%.0f B", "", nil},
				{"RSS per tracked pod 15 s after the sync", "BenchmarkIdleRSS10k", "rss-synced-B/pod", "%.0f B", "", nil},
				{"live Go heap per tracked pod (difference / {tracked-pods})", "BenchmarkIdleRSS10k", "heap-B/pod", "%.0f B", "<= 2 KiB", func(v float64) bool { return v <= 2048 }},
			},
			about: "The executor runs in a child process (the test binary re-executed) with kubexec's defaults, Heartbeat once per second; the parent reads VmRSS from /proc/PID/status 15 s after the sync, when the garbage of the first list is still uncollected (an idle process allocates too little to need a collection), 150 s after it, and once the Go runtime has run two collections since the sync (its periodic one comes every 2 minutes) and the last is a minute old, so that its scavenger has returned the freed memory: that last figure is the memory an idle executor keeps, and the one the target is for (a single collection late in the first 150 s leaves the scavenger no time, which the 150 s figure shows). The child's live heap is read after a full collection, last. " +
				"The 10,000 pods are built by kubexec's own builder for this executor's id (command, env, resources, tracking finalizer) but no node runs them: their scheduler name matches no scheduler, and their status is set through the pods/status subresource to what a kubelet reports for a running pod (phase Running, a running container, conditions, IPs). " +
				"To the executor they are running pods picked up from an earlier run with its id; there are no processes. The baseline is the same child in an empty namespace.",
		},
		{
			id:    "crash",
			title: "6. Crash and restart (correctness at scale)",
			env:   []string{"KUBEXEC_CRASH_ATTEMPTS=500"},
			args:  []string{"-run", "^TestCrashAndRestart$", "-count=1", "-v", "-timeout", "20m", "./executor/"},
			figures: []figure{
				{"attempts", "", "attempts", "%.0f", "", nil},
				{"SIGKILLs of the executor process (plus one etcd compaction and API server restart)", "", "kills", "%.0f", "", nil},
				{"results saved (exactly one per attempt), 0 finalizers left", "", "results", "%.0f", "500 of 500", func(v float64) bool { return v == 500 }},
				{"idempotent repeat saves after restarts", "", "repeats", "%.0f", "", nil},
			},
			parse: func(out string, values map[string]float64) {
				m := regexp.MustCompile(`(\d+) attempts, (\d+) kills, (\d+) results, (\d+) idempotent repeat saves`).FindStringSubmatch(out)
				if m == nil || !strings.Contains(out, "--- PASS: TestCrashAndRestart") {
					return
				}
				for i, k := range []string{"attempts", "kills", "results", "repeats"} {
					values[k], _ = strconv.ParseFloat(m[i+1], 64)
				}
			},
			about: "Not a speed figure: the executor runs in a child process over 500 attempts (sleep 0.2-2.6 s, every fourth exits 2) and is SIGKILLed at up to 10 random moments, restarted each time with the same id and a durable store; once etcd is compacted and the API server restarted. The test fails unless every attempt has exactly one result and no pod keeps the tracking finalizer.",
		},
	}
}

// explainEndToEnd reads the end-to-end figures that missed their targets
// against the ones that locate the time.
func explainEndToEnd(v map[string]float64) string {
	var parts []string
	if v["makespan-vs-jobs"] >= 1 {
		parts = append(parts, fmt.Sprintf("kubexec's makespan (%.1f s) was not below the Jobs' (%.1f s). "+
			"The table logged by the run gives, per system, the pods created and ended per second and the p50 of each stage: "+
			"where created/s is well above ended/s, the process nodes set the pace (bound->ended grows with the backlog), not the launcher.",
			v["kubexec-makespan-s"], v["jobs-makespan-s"]))
	}
	if p99 := v["kubexec-end-to-saved-p99-ms"]; p99 >= 100 {
		own := v["kubexec-observed-to-saved-p99-ms"]
		if own >= p99/2 {
			parts = append(parts, fmt.Sprintf("Of the %.0f ms p99 from a pod's end to its saved result, %.0f ms (kubexec's own metric) are inside the executor, "+
				"between its watch delivering the end and SaveResult returning. SaveResult on the benchmark's in-memory store is a map insert, so that time is waiting: "+
				"for a result worker or the executor's lock. The run's token bucket and API round-trip lines show what the executor's API calls waited for.", p99, own))
		} else {
			parts = append(parts, fmt.Sprintf("Of the %.0f ms p99 from a pod's end to its saved result, only %.0f ms (kubexec's own metric) are between the executor's watch delivering the end and SaveResult returning: "+
				"the rest is before that, from the API server's watch to the executor's watch handler.", p99, own))
		}
	}
	return strings.Join(parts, "\n\n")
}

// result is what one group's run produced.
type result struct {
	g        group
	values   map[string]float64 // unit -> value
	notes    []string
	err      error
	duration time.Duration
	command  string
	logFile  string
}

func main() {
	log.SetFlags(0)
	out := flag.String("out", "BENCHMARKS.md", "the report to write")
	dir := flag.String("dir", "_output/bench", "folder for the runs' logs and profiles")
	only := flag.String("only", "", "comma-separated group ids to run (launch,e2e,kwok,watch,adoption,rss,crash); default all")
	goCmd := flag.String("go", "go", "the go command")
	flag.Parse()
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		log.Fatal(err)
	}

	started := time.Now()
	loadBefore := loadAverage()
	var results []result
	for _, g := range groups(*dir) {
		if *only != "" && !contains(strings.Split(*only, ","), g.id) {
			continue
		}
		results = append(results, run(*goCmd, *dir, g))
	}
	report := render(results, *goCmd, started, loadBefore)
	if err := os.WriteFile(*out, []byte(report), 0o644); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("\n==> wrote %s\n\n%s", *out, report)
	for _, r := range results {
		if r.err != nil {
			log.Fatalf("bench: group %s failed: %v (log: %s)", r.g.id, r.err, r.logFile)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if strings.TrimSpace(x) == s {
			return true
		}
	}
	return false
}

// run runs one group's command, showing and keeping its output.
func run(goCmd, dir string, g group) result {
	r := result{g: g, values: map[string]float64{}, logFile: dir + "/" + g.id + ".log"}
	for _, k := range g.knobs {
		if v := os.Getenv(k); v != "" {
			g.env = append(g.env, k+"="+v)
		}
	}
	r.g = g
	r.command = commandLine(g)
	fmt.Printf("\n==> %s\n    %s\n", g.title, r.command)
	logf, err := os.Create(r.logFile)
	if err != nil {
		r.err = err
		return r
	}
	defer logf.Close()
	var buf bytes.Buffer
	cmd := exec.Command(goCmd, append([]string{"test"}, g.args...)...)
	cmd.Env = append(os.Environ(), g.env...)
	w := io.MultiWriter(os.Stdout, logf, &buf)
	cmd.Stdout, cmd.Stderr = w, w
	start := time.Now()
	r.err = cmd.Run()
	r.duration = time.Since(start)
	fmt.Printf("==> %s: %s in %s\n", g.id, status(r.err), r.duration.Round(time.Second))
	output := buf.String()
	parseBench(output, r.values)
	if g.parse != nil {
		g.parse(output, r.values)
	}
	r.notes = benchLogs(output)
	return r
}

func status(err error) string {
	if err != nil {
		return "FAILED (" + err.Error() + ")"
	}
	return "ok"
}

// commandLine is the group's command as a person types it in the
// project root.
func commandLine(g group) string {
	parts := append([]string{}, g.env...)
	parts = append(parts, "go", "test")
	for _, a := range g.args {
		if strings.ContainsAny(a, "^$*|() ") {
			a = "'" + a + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+\d+\s+(.*)$`)

// parseBench reads the value-unit pairs of benchmark result lines into
// values, keyed by unit (the units of a group's benchmarks are distinct).
func parseBench(out string, values map[string]float64) {
	for line := range strings.Lines(out) {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(line))
		if m == nil {
			continue
		}
		f := strings.Fields(m[3])
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				values[f[i+1]] = v
			}
		}
	}
}

var logPrefix = regexp.MustCompile(`^\s{4}\S+\.go:\d+: `)

// benchLogs returns the benchmarks' log lines (under "--- BENCH:"), without
// their file:line prefixes.
func benchLogs(out string) []string {
	var notes []string
	in := false
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "--- BENCH:"):
			in = true
		case in && strings.HasPrefix(line, "    "):
			if loc := logPrefix.FindString(line); loc != "" {
				notes = append(notes, line[len(loc):])
			} else {
				notes = append(notes, strings.TrimPrefix(line, "        "))
			}
		default:
			in = false
		}
	}
	return notes
}

func render(results []result, goCmd string, started time.Time, loadBefore string) string {
	var b strings.Builder
	total := time.Since(started)
	fmt.Fprintf(&b, "# kubexec benchmarks\n\n")
	fmt.Fprintf(&b, "Written by `make bench` (internal/bench) on %s. Do not edit by hand: run `make bench` again.\n\n", started.UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "- Machine: %d cores (%s), %s memory, %s/%s\n", runtime.NumCPU(), cpuModel(), memTotal(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "- %s; commit %s\n", goVersion(goCmd), gitCommit())
	fmt.Fprintf(&b, "- Load average (1, 5, 15 min) before: %s; after: %s. The machine is shared: absolute times vary from run to run, which is why every comparison is a ratio against a baseline measured in the same run on the same dev cluster.\n", loadBefore, loadAverage())
	fmt.Fprintf(&b, "- `make bench` took %s (dev cluster binaries already built).\n", total.Round(time.Second))
	fmt.Fprintf(&b, "- Every command runs from the project root after `make devcluster`; each starts its own dev cluster.\n\n")

	fmt.Fprintf(&b, "## Figures\n\n")
	fmt.Fprintf(&b, "| Figure | Value | Target (issue 10) | Met? | Command |\n|---|---|---|---|---|\n")
	var missed []result
	for _, r := range results {
		groupMissed := false
		for _, f := range r.g.figures {
			v, ok := r.values[f.unit]
			value := "not measured"
			if ok {
				value = fmt.Sprintf(f.format, v)
			}
			target, met := "—", "—"
			if f.target != "" {
				target = f.target
				switch {
				case !ok:
					met = "**no** (not measured)"
					groupMissed = true
				case f.met(v):
					met = "yes"
				default:
					met = "**no**"
					groupMissed = true
				}
			}
			fmt.Fprintf(&b, "| %s: %s | %s | %s | %s | `%s` |\n", r.g.title, sizes(f.name, r.values), value, target, met, r.command)
		}
		if groupMissed {
			missed = append(missed, r)
		}
	}
	fmt.Fprintf(&b, "\nA dash means issue 10 sets no target for the figure: it is reported for comparison.\n")

	for _, r := range results {
		fmt.Fprintf(&b, "\n## %s\n\n%s\n\n", r.g.title, r.g.about)
		fmt.Fprintf(&b, "Command: `%s` — %s in %s.\n", r.command, status(r.err), r.duration.Round(time.Second))
		if len(r.notes) > 0 {
			fmt.Fprintf(&b, "\nLogged by the run:\n\n```\n%s\n```\n", strings.TrimRight(strings.Join(r.notes, "\n"), "\n"))
		}
		if r.err != nil {
			fmt.Fprintf(&b, "\nThe command failed; the end of its output (full log in %s):\n\n```\n%s\n```\n", r.logFile, tail(r.logFile, 40))
		}
	}

	if len(missed) > 0 {
		fmt.Fprintf(&b, "\n## Missed targets: where the time goes\n")
		for _, r := range missed {
			fmt.Fprintf(&b, "\n### %s\n\n", r.g.title)
			if r.g.explain != nil {
				fmt.Fprintf(&b, "%s\n\n", r.g.explain(r.values))
			}
			if r.g.profile == "" {
				fmt.Fprintf(&b, "No CPU profile was taken for this group; rerun its command with `-cpuprofile cpu.pprof` and read it with `go tool pprof -top cpu.pprof`.\n")
				continue
			}
			top, err := exec.Command(goCmd, "tool", "pprof", "-top", "-nodecount=25", r.g.profile).CombinedOutput()
			if err != nil {
				fmt.Fprintf(&b, "`go tool pprof -top %s` failed: %v\n", r.g.profile, err)
				continue
			}
			fmt.Fprintf(&b, "CPU profile of the benchmark process (kubexec, the baselines' clients and the benchmark's own watches; not the API server), `go tool pprof -top -nodecount=25 %s`:\n\n```\n%s```\n", r.g.profile, top)
		}
	}
	return b.String()
}

var sizeRef = regexp.MustCompile(`\{([a-z0-9-]+)\}`)

// sizes replaces {unit} in a figure's name with that measured value (the
// benchmarks report their sizes, which environment variables can change),
// written with thousands separators.
func sizes(name string, values map[string]float64) string {
	return sizeRef.ReplaceAllStringFunc(name, func(ref string) string {
		v, ok := values[ref[1:len(ref)-1]]
		if !ok {
			return "?"
		}
		digits := strconv.FormatInt(int64(v), 10)
		for i := len(digits) - 3; i > 0; i -= 3 {
			digits = digits[:i] + "," + digits[i:]
		}
		return digits
	})
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], ", ")
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return fmt.Sprintf("%.1f GiB", kb/(1<<20))
		}
	}
	return "unknown"
}

func goVersion(goCmd string) string {
	out, err := exec.Command(goCmd, "version").Output()
	if err != nil {
		return "go version unknown"
	}
	return strings.TrimSpace(string(out))
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += " (with uncommitted changes in the working tree)"
	}
	return c
}
