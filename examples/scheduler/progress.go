package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"golang.org/x/term"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/examples/scheduler/driver"
	"github.com/kubexec/kubexec/examples/scheduler/sqlitestore"
	"github.com/kubexec/kubexec/examples/scheduler/termtext"
	"github.com/kubexec/kubexec/examples/scheduler/workflow"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/logs"
)

// progress shows a run while it goes: on a terminal a table redrawn in
// place (per task: state, attempt, duration, detail; and a summary line),
// otherwise one line per event. Notes and details quote pods and results:
// they are printed through termtext.Line, so that the only control
// characters it writes are its own (the redraw's cursor moves).
type progress struct {
	o     *options
	out   io.Writer
	tty   bool
	store *sqlitestore.Store
	wf    *workflow.Workflow
	run   sqlitestore.Run

	// exec tells what each launched attempt is doing.
	exec interface {
		Attempt(kubexec.TaskKey) (executor.AttemptStatus, bool)
	}

	mu    sync.Mutex
	notes []string
	drawn int               // lines of the table on screen (tty)
	last  map[string]string // task -> last printed state (plain)
}

func newProgress(o *options, store *sqlitestore.Store, exec *executor.Executor, wf *workflow.Workflow, run sqlitestore.Run) *progress {
	p := &progress{o: o, out: o.stdout, store: store, exec: exec, wf: wf, run: run, last: map[string]string{}}
	if f, ok := o.stdout.(*os.File); ok && !o.plain && term.IsTerminal(int(f.Fd())) {
		p.tty = true
	}
	return p
}

// Notef records a note for a person; Loop prints it.
func (p *progress) Notef(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.notes = append(p.notes, fmt.Sprintf(format, args...))
}

// Loop shows progress until ctx ends, then shows the last state once more.
func (p *progress) Loop(ctx context.Context) {
	interval := time.Second / 2
	if !p.tty {
		interval = time.Second / 4
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.show(context.Background())
		select {
		case <-ctx.Done():
			p.show(context.Background())
			p.clear()
			return
		case <-t.C:
		}
	}
}

// row is one task as shown while the run goes.
type row struct {
	task, state string
	attempt     int
	dur         time.Duration
	detail      string
}

func (p *progress) rows(ctx context.Context) ([]row, map[string]int, error) {
	tasks, err := p.store.Tasks(ctx, p.run.ID)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	counts := map[string]int{}
	var out []row
	for _, t := range tasks {
		r := row{task: termtext.Line(t.TaskID), state: string(t.State), attempt: t.Attempt}
		if !t.StartedAt.IsZero() {
			end := now
			if !t.FinishedAt.IsZero() {
				end = t.FinishedAt
			}
			r.dur = end.Sub(t.StartedAt)
		}
		switch t.State {
		case sqlitestore.TaskWaiting:
			deps := p.wf.Task(t.TaskID).DependsOn
			if len(deps) > 0 {
				r.detail = "for " + strings.Join(deps, ", ")
			}
		case sqlitestore.TaskLaunched:
			r.state, r.detail = attemptState(p.exec.Attempt(driver.Key(p.run, t.TaskID, t.Attempt)))
		case sqlitestore.TaskRetryWait:
			r.state = "retrying"
			r.detail = fmt.Sprintf("failed; next attempt in %s", max(0, t.NotBefore.Sub(now)).Round(time.Second))
		case sqlitestore.TaskSucceeded:
		default:
			r.detail = string(t.Reason)
			if r.detail == "" {
				r.detail = t.Message
			}
		}
		r.state, r.detail = termtext.Line(r.state), termtext.Line(r.detail)
		counts[r.state]++
		out = append(out, r)
	}
	return out, counts, nil
}

// attemptState names what a launched attempt is doing, from what the
// executor says of it.
func attemptState(st executor.AttemptStatus, tracked bool) (string, string) {
	detail := func(fallback string) string {
		if m := strings.TrimSpace(st.Message); m != "" {
			return driver.OneLine(m, 80)
		}
		return fallback
	}
	switch {
	case !tracked:
		return "finishing", "result saved, the scheduler takes it next"
	case st.State == kubexec.StateQueued:
		return "queued", detail("waiting for a slot")
	case st.State == kubexec.StateLaunching:
		return "queued", "creating the pod"
	case st.State == kubexec.StatePending:
		return "pending", detail("starting on " + st.Node)
	case st.State == kubexec.StateRunning:
		return "running", "on " + st.Node
	}
	return "finishing", string(st.State) + ", saving the result and logs"
}

var stateOrder = []string{"succeeded", "running", "pending", "queued", "finishing", "retrying", "waiting", "failed", "upstream_failed", "cancelled"}

func summary(runID string, counts map[string]int, elapsed time.Duration) string {
	var parts []string
	for _, s := range stateOrder {
		if n := counts[s]; n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, s))
		}
	}
	return fmt.Sprintf("%s: %s · %s", termtext.Line(runID), strings.Join(parts, ", "), elapsed.Round(time.Second))
}

func (p *progress) show(ctx context.Context) {
	rows, counts, err := p.rows(ctx)
	p.mu.Lock()
	defer p.mu.Unlock()
	notes := p.notes
	p.notes = nil
	now := time.Now()
	if !p.tty {
		for _, n := range notes {
			fmt.Fprintf(p.out, "%s  note: %s\n", now.Format("15:04:05"), termtext.Line(n))
		}
		if err != nil {
			return
		}
		for _, r := range rows {
			key := fmt.Sprintf("%s %d", r.state, r.attempt)
			if p.last[r.task] == key {
				continue
			}
			p.last[r.task] = key
			line := fmt.Sprintf("%s  %-16s %-15s", now.Format("15:04:05"), r.task, r.state)
			if r.attempt > 0 {
				line += fmt.Sprintf(" attempt %d", r.attempt)
			}
			if r.detail != "" {
				line += "  " + r.detail
			}
			fmt.Fprintln(p.out, strings.TrimRight(line, " "))
		}
		return
	}
	var b bytes.Buffer
	if p.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\x1b[J", p.drawn)
	}
	for _, n := range notes {
		fmt.Fprintf(&b, "%s  %s\n", now.Format("15:04:05"), termtext.Line(n))
	}
	if err != nil {
		p.drawn = 0
		p.out.Write(b.Bytes())
		return
	}
	var tb bytes.Buffer
	tw := tabwriter.NewWriter(&tb, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tSTATE\tATTEMPT\tTIME\tDETAIL")
	for _, r := range rows {
		att, dur := "-", "-"
		if r.attempt > 0 {
			att = fmt.Sprint(r.attempt)
		}
		if r.dur > 0 {
			dur = r.dur.Round(time.Second).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.task, r.state, att, dur, r.detail)
	}
	tw.Flush()
	fmt.Fprintln(&tb, summary(p.run.ID, counts, now.Sub(p.run.CreatedAt)))
	// Lines cut to the terminal's width, so that none wraps and the
	// redraw moves up exactly over the table.
	table := tb.String()
	if f, ok := p.out.(*os.File); ok {
		if width, _, err := term.GetSize(int(f.Fd())); err == nil && width > 1 {
			lines := strings.Split(strings.TrimSuffix(table, "\n"), "\n")
			for i, l := range lines {
				if r := []rune(l); len(r) >= width {
					lines[i] = string(r[:width-1])
				}
			}
			table = strings.Join(lines, "\n") + "\n"
		}
	}
	p.drawn = strings.Count(table, "\n")
	b.WriteString(table)
	p.out.Write(b.Bytes())
}

// clear removes the live table, for the final one.
func (p *progress) clear() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.tty && p.drawn > 0 {
		fmt.Fprintf(p.out, "\x1b[%dA\x1b[J", p.drawn)
		p.drawn = 0
	}
}

// printFinal prints the run's table: each task's state, attempts, time,
// reason and where its logs are; then notes on retries and failures.
func printFinal(ctx context.Context, o *options, store *sqlitestore.Store, cl *cluster, wf *workflow.Workflow, run sqlitestore.Run) {
	fmt.Fprintln(o.stdout)
	writeRunTable(ctx, o.stdout, o.db, store, cl, run)
	fmt.Fprintln(o.stdout)
	end := run.FinishedAt
	if end.IsZero() {
		end = time.Now()
	}
	fmt.Fprintf(o.stdout, "Run %s %s in %s: %s\n", termtext.Line(run.ID), run.State, end.Sub(run.CreatedAt).Round(100*time.Millisecond), termtext.Line(run.Message))
	switch {
	case cl != nil && cl.dev != nil:
		fmt.Fprintf(o.stdout, "Logs: `scheduler logs %s/TASK` reads them from the archives in %s; the embedded dev cluster stops now, taking its pods with it.\n", run.ID, logDir(o.db))
	case o.keepPods:
		fmt.Fprintf(o.stdout, "Logs: `scheduler logs %s/TASK`, from the pod while it exists (pods in namespace %s are kept until `scheduler cleanup`), else from the archive in %s.\n", run.ID, run.Namespace, logDir(o.db))
	default:
		fmt.Fprintf(o.stdout, "Logs: `scheduler logs %s/TASK`, from the pod while it exists (failed pods in namespace %s are kept until `scheduler cleanup`), else from the archive in %s.\n", run.ID, run.Namespace, logDir(o.db))
	}
}

// writeRunTable writes the table of run's tasks. The LOGS column says
// where the logs of each task's latest attempt are: its archive (in the
// log folder of the database db), else its pod; with a cluster, whether
// that pod still exists. Cells and notes go through termtext.Line.
func writeRunTable(ctx context.Context, w io.Writer, db string, store *sqlitestore.Store, cl *cluster, run sqlitestore.Run) {
	tasks, err := store.Tasks(ctx, run.ID)
	if err != nil {
		fmt.Fprintf(w, "cannot read the run's tasks: %s\n", termtext.Line(err.Error()))
		return
	}
	sink, err := logs.NewFileSink(logDir(db))
	if err != nil {
		fmt.Fprintf(w, "cannot open the log archives: %s\n", termtext.Line(err.Error()))
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tSTATE\tATTEMPTS\tTIME\tREASON\tLOGS")
	var notes []string
	for _, t := range tasks {
		attempts, _ := store.Attempts(ctx, run.Workflow, run.ID, t.TaskID)
		dur := "-"
		if !t.StartedAt.IsZero() {
			end := t.FinishedAt
			if end.IsZero() {
				end = time.Now()
			}
			dur = end.Sub(t.StartedAt).Round(100 * time.Millisecond).String()
		}
		reason := string(t.Reason)
		if reason == "" {
			reason = "-"
		}
		where := "-"
		if n := len(attempts); n > 0 {
			last := attempts[n-1]
			where = logsWhere(ctx, sink, cl, driver.Key(run, t.TaskID, last.Attempt), last)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", termtext.Line(t.TaskID), t.State, len(attempts), dur, termtext.Line(reason), termtext.Line(where))
		for i, a := range attempts {
			// The last attempt's outcome is in the task's message below.
			last := i == len(attempts)-1 && t.State.Terminal() && t.State != sqlitestore.TaskSucceeded
			if a.Result != nil && a.Result.Reason != kubexec.ReasonSucceeded && !last {
				notes = append(notes, fmt.Sprintf("%s: %s", t.TaskID, describeResult(*a.Result)))
			}
		}
		switch t.State {
		case sqlitestore.TaskFailed, sqlitestore.TaskUpstreamFailed, sqlitestore.TaskCancelled:
			if t.Message != "" {
				notes = append(notes, fmt.Sprintf("%s: %s", t.TaskID, t.Message))
			}
		}
		if t.State == sqlitestore.TaskFailed && t.Reason.Hint() != "" && hintApplies(attempts) {
			notes = append(notes, fmt.Sprintf("%s: what to do: %s", t.TaskID, t.Reason.Hint()))
		}
	}
	tw.Flush()
	if len(notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range dedupe(notes) {
			fmt.Fprintln(w, "  "+termtext.Line(n))
		}
	}
}

// hintApplies reports whether the Reason's hint fits the latest of
// attempts (see resultHintApplies).
func hintApplies(attempts []sqlitestore.Attempt) bool {
	if n := len(attempts); n > 0 && attempts[n-1].Result != nil {
		return resultHintApplies(*attempts[n-1].Result)
	}
	return true
}

// resultHintApplies reports whether the hint of r's Reason fits r: Failed's
// hint is about a container's exit code, so it does not fit a pod that
// failed before any container exited (ContainerExited false), whose
// message says what to do instead.
func resultHintApplies(r kubexec.Result) bool {
	return r.Reason != kubexec.ReasonFailed || r.ContainerExited
}

// describeResult says how an attempt ended, on one line, with the
// result's message (from its pod) through termtext.Line.
func describeResult(r kubexec.Result) string {
	s := fmt.Sprintf("attempt %d ended %s", r.Key.Attempt, termtext.Line(string(r.Reason)))
	if r.Reason == kubexec.ReasonFailed && r.ContainerExited {
		s += fmt.Sprintf(" (exit code %d", r.ExitCode)
		if c := termtext.Line(r.Container); c != "" {
			s += " in container " + c
		}
		s += ")"
	}
	if m := termtext.Line(r.Message); m != "" {
		s += ": " + m
	}
	return s
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
