package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/examples/scheduler/driver"
	"github.com/kubexec/kubexec/examples/scheduler/sqlitestore"
	"github.com/kubexec/kubexec/examples/scheduler/termtext"
	"github.com/kubexec/kubexec/examples/scheduler/workflow"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/logs"
)

// cmdExplain says why a task is where it is, in words a person can act on:
// the scheduler's view (state, attempts, reasons and their hints), and,
// with a cluster, its pod's phase, conditions and container states, the
// pod's latest Events, the namespace's quota, and missing permissions.
// Everything it prints that a pod, a node, an Event or a result holds goes
// through termtext.Line.
func cmdExplain(ctx context.Context, o *options, ref string) error {
	store, err := openExisting(ctx, o)
	if err != nil {
		return err
	}
	defer store.Close()
	run, task, err := resolveTask(ctx, store, ref)
	if err != nil {
		return err
	}
	wf, err := workflow.Parse(run.Source, run.Definition)
	if err != nil {
		return err
	}
	w := o.stdout
	var todo []string
	fmt.Fprintf(w, "Task %s of run %s (workflow %s): %s\n", termtext.Line(task.TaskID), termtext.Line(run.ID), termtext.Line(run.Workflow), task.State)

	attempts, err := store.Attempts(ctx, run.Workflow, run.ID, task.TaskID)
	if err != nil {
		return err
	}
	for _, a := range attempts {
		fmt.Fprintf(w, "  attempt %d: pod %s/%s, launched %s", a.Attempt, termtext.Line(a.Namespace), termtext.Line(a.PodName), a.LaunchedAt.Format(time.TimeOnly))
		if a.Result != nil {
			fmt.Fprintf(w, ", %s", describeResult(*a.Result))
		} else {
			fmt.Fprint(w, ", no result yet")
		}
		fmt.Fprintln(w)
	}
	if task.Message != "" {
		fmt.Fprintf(w, "  scheduler: %s\n", termtext.Line(task.Message))
	}

	// The scheduler's side.
	switch task.State {
	case sqlitestore.TaskWaiting:
		var pending []string
		for _, d := range wf.Task(task.TaskID).DependsOn {
			if dt, err := store.GetTask(ctx, run.ID, d); err == nil && dt.State != sqlitestore.TaskSucceeded {
				pending = append(pending, fmt.Sprintf("%s (%s)", d, dt.State))
			}
		}
		if len(pending) == 0 {
			fmt.Fprintln(w, "  Its dependencies are done (or it has none): it waits to be queued by the scheduler.")
			break
		}
		fmt.Fprintf(w, "  It waits for its dependencies: %s.\n", strings.Join(pending, ", "))
		todo = append(todo, "Look at the dependencies first: `scheduler explain "+run.ID+"/"+strings.Split(pending[0], " ")[0]+"`.")
	case sqlitestore.TaskRetryWait:
		fmt.Fprintf(w, "  Attempt %d starts at %s (retry delay).\n", task.Attempt+1, task.NotBefore.Format(time.TimeOnly))
	case sqlitestore.TaskUpstreamFailed:
		todo = append(todo, "Fix the failed dependency, then start a new run.")
	}
	if task.State.Terminal() && task.Reason != "" && task.Reason != kubexec.ReasonSucceeded {
		fmt.Fprintf(w, "  Reason %s: retryable=%t, platform failure=%t.\n", termtext.Line(string(task.Reason)), task.Reason.Retryable(), task.Reason.SystemFailure())
		if h := task.Reason.Hint(); h != "" && hintApplies(attempts) {
			todo = append(todo, h)
		}
	}
	if !run.State.Terminal() && !driverAlive(run) && !task.State.Terminal() {
		fmt.Fprintf(w, "  No scheduler is driving run %s, so nothing moves.\n", run.ID)
		todo = append(todo, fmt.Sprintf("Continue the run: `scheduler --kubeconfig FILE resume %s`.", run.ID))
	}

	// The cluster's side.
	if len(attempts) == 0 {
		if o.kubeconfig != "" && !task.State.Terminal() {
			// Nothing was launched: the executor may not have started
			// (missing permissions), or it cannot create pods.
			cl, err := connect(ctx, o, false)
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "\nNo attempt of %s has been launched. Namespace %s:\n", task.TaskID, run.Namespace)
			// Missing permissions stop everything: they come first.
			perms := explainPermissions(ctx, w, cl, run.Namespace)
			todo = append(append(perms, todo...), explainNoPod(ctx, w, cl, run.Namespace, taskNeeds(wf.Task(task.TaskID)), len(perms) == 0)...)
		}
		printTodo(w, todo)
		return nil
	}
	a := attempts[len(attempts)-1]
	if o.attempt > 0 {
		if a, err = pickAttempt(ctx, store, run, task, o.attempt); err != nil {
			return err
		}
	}
	if path := archivedLogs(o, run, a); path != "" {
		fmt.Fprintf(w, "  Logs of attempt %d: archived in %s (`scheduler logs %s/%s --attempt %d`).\n", a.Attempt, path, run.ID, task.TaskID, a.Attempt)
	}
	// An earlier attempt, or a failed one the task recovered from, has a
	// Reason of its own: its hint applies to it.
	if r := a.Result; r != nil && r.Reason != kubexec.ReasonSucceeded && (r.Reason != task.Reason || !task.State.Terminal()) {
		fmt.Fprintf(w, "  Attempt %d: Reason %s: retryable=%t, platform failure=%t.\n", a.Attempt, termtext.Line(string(r.Reason)), r.Reason.Retryable(), r.Reason.SystemFailure())
		if h := r.Reason.Hint(); h != "" && resultHintApplies(*r) {
			todo = append(todo, h)
		}
	}
	if o.kubeconfig == "" {
		fmt.Fprintln(w, "\nThe pod, its events, quota and permissions: not shown, no --kubeconfig given (the embedded dev cluster lives only while `run` runs).")
		printTodo(w, todo)
		return nil
	}
	cl, err := connect(ctx, o, false)
	if err != nil {
		return err
	}
	if cl.id != run.Cluster {
		return fmt.Errorf("run %s ran on another cluster (kube-system uid %s, not %s): pass the --kubeconfig of that cluster", run.ID, run.Cluster, cl.id)
	}
	fmt.Fprintf(w, "\nPod %s/%s (attempt %d):\n", termtext.Line(a.Namespace), termtext.Line(a.PodName), a.Attempt)
	pod, err := cl.client.CoreV1().Pods(a.Namespace).Get(ctx, a.PodName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		if a.Result != nil {
			fmt.Fprintf(w, "  It is gone: %s", goneWhy(a.Result.Reason))
			if archivedLogs(o, run, a) != "" {
				fmt.Fprintln(w, "; its logs are archived (above).")
			} else {
				fmt.Fprintln(w, "; its logs were not archived, so they are lost.")
				todo = append(todo, fmt.Sprintf("The logs of attempt %d went with its pod: there is no archive of them in %s. The scheduler archives each attempt's logs before it lets its pod go, so the archive was removed since, or this is not the database the run used (pass its --db). To keep pods as well, run with --keep-pods.",
					a.Attempt, logDir(o.db)))
			}
		} else {
			fmt.Fprintln(w, "  It does not exist: the executor has not created it yet.")
			todo = append(todo, explainNoPod(ctx, w, cl, a.Namespace, taskNeeds(wf.Task(task.TaskID)), true)...)
		}
	case err != nil:
		fmt.Fprintf(w, "  Cannot read it: %s\n", termtext.Line(err.Error()))
	default:
		todo = append(todo, explainPod(w, pod)...)
		todo = append(todo, explainNode(ctx, w, cl, pod)...)
		explainEvents(ctx, w, cl, pod)
		// The pod exists, so it passed the quota's admission: the quota
		// is shown, never blamed.
		explainQuota(ctx, w, cl, a.Namespace, nil)
	}
	todo = append(todo, explainPermissions(ctx, w, cl, a.Namespace)...)
	printTodo(w, todo)
	return nil
}

// goneWhy says why the pod of an attempt that ended with reason is gone.
func goneWhy(reason kubexec.Reason) string {
	switch reason {
	case kubexec.ReasonSucceeded:
		return "deleted after its result was saved (succeeded pods are deleted once their logs are archived, unless --keep-pods)"
	case kubexec.ReasonDeletedExternally:
		return "deleted by someone other than the scheduler before it finished; its tracking finalizer held it until its result was saved"
	case kubexec.ReasonFailed, kubexec.ReasonOOMKilled, kubexec.ReasonDeadlineExceeded, kubexec.ReasonXComFailed:
		return "deleted after its result was saved (failed pods are kept until `scheduler cleanup`, or someone deleted it)"
	}
	return "deleted by the executor once the attempt's outcome was known (" + termtext.Line(string(reason)) + "), before its result was saved, so that a retry never runs beside it"
}

// printTodo prints what to do, one line each. The advice quotes names
// and messages from the cluster, so each line goes through termtext.Line.
func printTodo(w io.Writer, todo []string) {
	if len(todo) == 0 {
		return
	}
	fmt.Fprintln(w, "\nWhat to do:")
	for _, t := range dedupe(todo) {
		fmt.Fprintln(w, "  - "+termtext.Line(t))
	}
}

// explainPod describes the pod's phase, conditions and containers. The
// pod's status is written by its node and by anyone allowed to update pod
// statuses: its strings may be empty, cut anywhere, very long, or hold
// control characters, and are printed through termtext.Line.
func explainPod(w io.Writer, pod *corev1.Pod) []string {
	var todo []string
	line := termtext.Line
	node := line(pod.Spec.NodeName)
	if node == "" {
		node = "none yet"
	}
	fmt.Fprintf(w, "  phase %s, node %s, created %s ago", line(string(pod.Status.Phase)), node, time.Since(pod.CreationTimestamp.Time).Round(time.Second))
	if pod.DeletionTimestamp != nil {
		fmt.Fprint(w, ", being deleted")
	}
	if pod.Labels[kubexec.LabelDone] == kubexec.DoneValue {
		fmt.Fprint(w, ", result saved (kept for inspection)")
	}
	fmt.Fprintln(w)
	if pod.Status.Reason != "" || pod.Status.Message != "" {
		fmt.Fprintf(w, "  status: %s\n", line(pod.Status.Reason+" "+pod.Status.Message))
		if pod.Status.Reason == "Evicted" {
			todo = append(todo, "The pod was evicted (node pressure): the scheduler retries such platform failures without using the task's retries.")
		}
	}
	for _, c := range pod.Status.Conditions {
		if c.Status == corev1.ConditionTrue {
			continue
		}
		fmt.Fprintf(w, "  condition %s=%s", line(string(c.Type)), line(string(c.Status)))
		if r := line(c.Reason); r != "" {
			fmt.Fprintf(w, " %s", r)
		}
		if m := line(c.Message); m != "" {
			fmt.Fprintf(w, ": %s", m)
		}
		fmt.Fprintln(w)
		if c.Type == corev1.PodScheduled && c.Reason == corev1.PodReasonUnschedulable {
			todo = append(todo, unschedulableAdvice(pod, c.Message))
		}
	}
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range statuses {
		switch {
		case cs.State.Waiting != nil:
			wt := cs.State.Waiting
			fmt.Fprintf(w, "  container %s: waiting, %s: %s\n", line(cs.Name), line(wt.Reason), line(wt.Message))
			switch wt.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName":
				todo = append(todo, fmt.Sprintf("The image %q cannot be pulled: check its name and tag, that the registry has it, and imagePullSecrets for private registries.", cs.Image))
			case "CreateContainerConfigError", "CreateContainerError":
				todo = append(todo, "The container cannot be created from its configuration: usually a Secret or ConfigMap (or a key in it) it refers to is missing in the namespace; the message names it.")
			case "ContainerCreating":
				todo = append(todo, "The container is being created; if it stays so, its volumes cannot be mounted: the pod's Events below say which.")
			}
		case cs.State.Running != nil:
			fmt.Fprintf(w, "  container %s: running since %s\n", line(cs.Name), cs.State.Running.StartedAt.Format(time.TimeOnly))
		case cs.State.Terminated != nil:
			t := cs.State.Terminated
			fmt.Fprintf(w, "  container %s: terminated, %s, exit code %d", line(cs.Name), line(t.Reason), t.ExitCode)
			if m := line(t.Message); m != "" {
				fmt.Fprintf(w, ": %s", m)
			}
			fmt.Fprintln(w)
			if t.Reason == "OOMKilled" {
				lim := "none"
				for _, c := range pod.Spec.Containers {
					if c.Name == cs.Name {
						if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
							lim = q.String()
						}
					}
				}
				todo = append(todo, fmt.Sprintf("Container %s used more memory than its limit (%s): raise resources.limits.memory, or make the task use less.", cs.Name, lim))
			} else if t.Reason == "ContainerStatusUnknown" {
				todo = append(todo, fmt.Sprintf("Container %s was lost with its node (ContainerStatusUnknown): not the task's fault; the attempt ends Disrupted and the scheduler retries it without using the task's retries.", cs.Name))
			} else if t.ExitCode != 0 && pod.DeletionTimestamp == nil {
				todo = append(todo, fmt.Sprintf("The task's own code failed (exit code %d): read its logs with `scheduler logs`.", t.ExitCode))
			}
		}
	}
	return todo
}

// unschedulableAdvice says what to change for a pod that no node takes,
// from the scheduler's message (which names each node's objection). The
// message may have any shape: what it does not name is left out.
func unschedulableAdvice(pod *corev1.Pod, msg string) string {
	var fixes []string
	if strings.Contains(msg, "affinity/selector") {
		if len(pod.Spec.NodeSelector) > 0 {
			var sel []string
			for k, v := range pod.Spec.NodeSelector {
				sel = append(sel, k+"="+v)
			}
			sort.Strings(sel)
			fixes = append(fixes, fmt.Sprintf("no node has the labels of its nodeSelector (%s): fix the task's nodeSelector or affinity, or label a node (`kubectl get nodes --show-labels`)", strings.Join(sel, ", ")))
		} else {
			fixes = append(fixes, "no node matches its node affinity: fix the task's affinity, or label a node (`kubectl get nodes --show-labels`)")
		}
	}
	if strings.Contains(msg, "Insufficient ") {
		// "Insufficient cpu, 1 Insufficient memory.": the word after
		// each "Insufficient " names a resource, when there is one.
		var res []string
		for _, f := range strings.Split(msg, "Insufficient ")[1:] {
			words := strings.Fields(f)
			if len(words) == 0 {
				continue
			}
			if name := strings.TrimRight(words[0], ".,"); name != "" {
				res = append(res, name)
			}
		}
		what := "resources"
		if len(res) > 0 {
			what = strings.Join(dedupe(res), " and ")
		}
		fixes = append(fixes, fmt.Sprintf("no node has enough free %s for its requests: lower the task's resources.requests, or add capacity (`kubectl describe nodes` shows what is allocated)", what))
	}
	if strings.Contains(msg, "taint") {
		fixes = append(fixes, "the nodes have taints it does not tolerate: add tolerations to the task's podOverride, or use untainted nodes")
	}
	if len(fixes) == 0 {
		return "No node can take the pod: lower its resources requests, or fix its nodeSelector, affinity or tolerations (the condition's message says which), or add capacity."
	}
	return "No node can take the pod: " + strings.Join(fixes, "; ") + ". It fails as Unschedulable if this lasts the pending timeout (5m by default)."
}

// explainNode says when the pod's node is not Ready: its pods' states are
// then stale.
func explainNode(ctx context.Context, w io.Writer, cl *cluster, pod *corev1.Pod) []string {
	if pod.Spec.NodeName == "" || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	node, err := cl.client.CoreV1().Nodes().Get(ctx, pod.Spec.NodeName, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		fmt.Fprintf(w, "  node %s: it no longer exists\n", termtext.Line(pod.Spec.NodeName))
		return []string{fmt.Sprintf("The pod's node %s is gone: the pod garbage collector deletes the pod, and the attempt ends Disrupted; the scheduler retries it without using the task's retries.", pod.Spec.NodeName)}
	case err != nil:
		fmt.Fprintf(w, "  node %s: cannot read it: %s\n", termtext.Line(pod.Spec.NodeName), termtext.Line(err.Error()))
		return nil
	}
	for _, c := range node.Status.Conditions {
		if c.Type != corev1.NodeReady || c.Status == corev1.ConditionTrue {
			continue
		}
		fmt.Fprintf(w, "  node %s: Ready=%s %s: %s\n", termtext.Line(node.Name), termtext.Line(string(c.Status)), termtext.Line(c.Reason), termtext.Line(c.Message))
		return []string{fmt.Sprintf("The pod's node %s is not ready (%s): what the pod shows is its last report, and its containers may be dead. If the node comes back, its lost pods are reported failed; if not, they are evicted after their tolerationSeconds for the node.kubernetes.io/unreachable taint (300 s unless the pod sets it). Either way the attempt ends Disrupted and the scheduler retries it without using the task's retries. Check the node: `kubectl describe node %s`.",
			node.Name, c.Reason, node.Name)}
	}
	return nil
}

// archivedLogs returns the file of attempt a's log archive, or "".
func archivedLogs(o *options, run sqlitestore.Run, a sqlitestore.Attempt) string {
	sink, err := logs.NewFileSink(logDir(o.db))
	if err != nil {
		return ""
	}
	return archivePath(sink, driver.Key(run, a.TaskID, a.Attempt))
}

// explainEvents prints the pod's latest Events. Anyone who may create
// Events in the namespace writes their text: it is printed through
// termtext.Line.
func explainEvents(ctx context.Context, w io.Writer, cl *cluster, pod *corev1.Pod) {
	list, err := cl.client.CoreV1().Events(pod.Namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.Set{"involvedObject.name": pod.Name, "involvedObject.uid": string(pod.UID)}.AsSelector().String(),
	})
	if err != nil {
		fmt.Fprintf(w, "  events: cannot list them: %s\n", termtext.Line(err.Error()))
		return
	}
	events := list.Items
	sort.Slice(events, func(i, j int) bool { return eventTime(events[i]).Before(eventTime(events[j])) })
	if len(events) > 8 {
		events = events[len(events)-8:]
	}
	if len(events) == 0 {
		fmt.Fprintln(w, "  events: none")
		return
	}
	fmt.Fprintln(w, "  latest events:")
	for _, e := range events {
		count := ""
		if e.Count > 1 {
			count = fmt.Sprintf(" (x%d)", e.Count)
		}
		fmt.Fprintf(w, "    %s %-7s %s: %s%s\n", eventTime(e).Format(time.TimeOnly), termtext.Line(e.Type), termtext.Line(e.Reason), termtext.Line(e.Message), count)
	}
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}

// explainNoPod looks for why a queued attempt has no pod; need is what
// its pod would add to the namespace's quota. permsOK: the permissions
// were found complete (or not checked yet).
func explainNoPod(ctx context.Context, w io.Writer, cl *cluster, ns string, need corev1.ResourceList, permsOK bool) []string {
	if _, err := cl.client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		fmt.Fprintf(w, "  The namespace %s does not exist.\n", ns)
		return []string{fmt.Sprintf("Create the namespace %s.", ns)}
	}
	todo := explainQuota(ctx, w, cl, ns, need)
	if len(todo) == 0 && permsOK {
		todo = append(todo, "If the quota and permissions are fine, the executor may be backing off after API server errors: run the scheduler with -v to see its create attempts.")
	}
	return todo
}

// taskNeeds is what one pod of t adds to a ResourceQuota's usage, under
// the names quotas use: pods and count/pods, requests.X (and plain X) for
// its requests, limits.X for its limits.
func taskNeeds(t *workflow.Task) corev1.ResourceList {
	need := corev1.ResourceList{
		corev1.ResourcePods:               resource.MustParse("1"),
		corev1.ResourceName("count/pods"): resource.MustParse("1"),
	}
	if t == nil {
		return need
	}
	add := func(prefix string, m map[corev1.ResourceName]string) {
		for name, v := range m {
			q, err := resource.ParseQuantity(v)
			if err != nil {
				continue
			}
			need[corev1.ResourceName(prefix+string(name))] = q
			if prefix == "requests." {
				need[name] = q
			}
		}
	}
	add("requests.", t.Requests)
	add("limits.", t.Limits)
	return need
}

// explainQuota prints the namespace's ResourceQuotas. With need (what a
// pod not yet created would add), it says which quota refuses that pod:
// one whose used plus need exceeds hard. Without need (the pod exists, so
// the quota admitted it) it blames none.
func explainQuota(ctx context.Context, w io.Writer, cl *cluster, ns string, need corev1.ResourceList) []string {
	quotas, err := cl.client.CoreV1().ResourceQuotas(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		fmt.Fprintf(w, "  quota: cannot list ResourceQuotas in %s: %s\n", termtext.Line(ns), termtext.Line(err.Error()))
		return nil
	}
	if len(quotas.Items) == 0 {
		fmt.Fprintf(w, "  quota: namespace %s has no ResourceQuota\n", termtext.Line(ns))
		return nil
	}
	var todo []string
	for _, q := range quotas.Items {
		var parts []string
		names := make([]string, 0, len(q.Status.Hard))
		for name := range q.Status.Hard {
			names = append(names, string(name))
		}
		sort.Strings(names)
		for _, n := range names {
			name := corev1.ResourceName(n)
			hard, used := q.Status.Hard[name], q.Status.Used[name]
			parts = append(parts, fmt.Sprintf("%s %s/%s", name, used.String(), hard.String()))
			want, ok := need[name]
			if !ok {
				continue
			}
			after := used.DeepCopy()
			after.Add(want)
			if after.Cmp(hard) > 0 {
				todo = append(todo, fmt.Sprintf("ResourceQuota %s has no room for the task's pod: %s is %s of %s and the pod needs %s. New pods are refused until others end: raise the quota, lower the task's resources or the parallelism.",
					q.Name, name, used.String(), hard.String(), want.String()))
			}
		}
		fmt.Fprintf(w, "  quota %s: %s\n", termtext.Line(q.Name), termtext.Line(strings.Join(parts, ", ")))
	}
	return todo
}

// explainPermissions checks, with SelfSubjectAccessReviews, what the
// scheduler's executor needs in ns (the same list its Start checks: pods,
// pods/log for the log archive, pods/exec for XCom, Leases), and what
// explain itself reads (events).
func explainPermissions(ctx context.Context, w io.Writer, cl *cluster, ns string) []string {
	// The scheduler keeps its Lease and provenance key in the task
	// namespace.
	need := executor.RequiredPermissions([]string{ns}, ns, executor.Features{LogArchive: true, XCom: true, ProvenanceSecret: true})
	missing, err := executor.MissingPermissions(ctx, cl.client, need)
	if err != nil {
		fmt.Fprintf(w, "  permissions: cannot check them: %s\n", termtext.Line(err.Error()))
		return nil
	}
	var todo []string
	if len(missing) == 0 {
		fmt.Fprintf(w, "  permissions: this identity may do all the executor needs in %s\n", termtext.Line(ns))
	} else {
		var names []string
		for _, p := range missing {
			names = append(names, p.String())
		}
		fmt.Fprintf(w, "  permissions: the executor's identity lacks: %s\n", termtext.Line(strings.Join(names, "; ")))
		todo = append(todo, fmt.Sprintf("Grant the scheduler's identity the Roles in kubexec's executor/rbac.yaml (pods) and executor/rbac-lease.yaml (Leases, the provenance key's Secret) in namespace %s (missing: %s); the run's executor cannot start without them.", ns, strings.Join(names, "; ")))
	}
	events, err := executor.MissingPermissions(ctx, cl.client, []executor.Permission{{Namespace: ns, Resource: "events", Verb: "list"}})
	if err == nil && len(events) > 0 {
		fmt.Fprintf(w, "  permissions: explain cannot list events in %s (not needed by the executor; grant list events to see them here)\n", ns)
	}
	return todo
}
