// Package podtemplate builds the pod that runs one task attempt.
//
// A [Builder] turns a [TaskSpec] (the attempt's key, image, command, env,
// resources, namespace, volumes, files, working directory, deadline, user
// and an optional per-task [Override]) into a
// *corev1.Pod ready to create. [Template], made with [New], is the standard
// Builder; [BuilderFunc] adapts a function for hosts that build pods
// themselves.
//
// # Merge order
//
// Each layer wins over the ones before it:
//
//	template  <-  task spec  <-  override  <-  middleware  <-  kubexec metadata
//
// The layers, in order:
//
//  1. Template: the base pod, from a YAML file ([LoadTemplate],
//     [ParseTemplate]; kind Pod or PodTemplate, decoded strictly), from
//     code, or [DefaultTemplate]. It must have a main container, named
//     "base" unless Config.MainContainer says otherwise.
//  2. Task spec: the main container gets the spec's image, command, args,
//     working directory, user and group (when set), its env entries by
//     name, its requests and limits by resource, and its volume mounts by
//     mount path; the pod gets its volumes by name and its active deadline;
//     the spec's namespace replaces the template's. TaskSpec.Files become
//     annotations of the pod, projected by a downwardAPI volume and
//     mounted file by file (see [File]); those annotations are the
//     builder's alone: a template or an override that sets one is
//     refused, a middleware's changes to them are undone.
//  3. Override: a partial pod merged with Kubernetes strategic-merge-patch
//     semantics, as kubectl does. Containers, init containers, volumes and
//     env are merged by name (volume mounts by mountPath), so an override
//     can change the main container's image or add a sidecar without
//     restating the template. Explicit values win, including false, 0 and
//     "" (unlike Airflow's pod_override, where only truthy values win and
//     lists merge by position); null removes a field; "$patch: replace"
//     and "$patch: delete" work as in kubectl. In a merged list the
//     template's entries come first, where they were, then the override's
//     additions in its order (Airflow's order): an override's init
//     container runs after the template's, and its env var can refer to
//     the template's with $(VAR). An override entry with a template
//     entry's name changes it in place; a list with "$patch: replace" or a
//     "$setElementOrder" directive has the order the override gives.
//     Lists without a merge key (command, args, envFrom, tolerations) are
//     replaced whole. An override is written as
//     YAML ([ParseOverride]) or as a typed pod ([OverrideFromPod]). After
//     the merge the main container is moved to the front of the containers
//     and, unless one is set, named kubectl's default container
//     ([DefaultContainerAnnotation]).
//  4. Middleware: Config.Middleware functions run in order on the merged pod
//     (Airflow's pod mutation hook). They see the final name, labels and
//     annotations; an error fails the build.
//  5. Kubexec metadata: the name, labels, annotations and tracking finalizer
//     of [kubexec.ApplyMetadata] are applied last, so neither a template,
//     an override nor a middleware can change how the executor finds its
//     pods. A namespace still empty then becomes Config.Namespace, and an
//     empty restartPolicy becomes Never.
//
// For example, with the template
//
//	spec:
//	  initContainers:
//	  - name: proxy
//	    image: proxy:1
//	    restartPolicy: Always
//	  containers:
//	  - name: base
//	    image: python:3.13
//	    env: [{name: MODE, value: batch}]
//
// the task spec {Image: "python:3.14", Command: ["python", "job.py"]}, and
// the override
//
//	spec:
//	  automountServiceAccountToken: false
//	  initContainers:
//	  - name: proxy
//	    $patch: delete
//	  containers:
//	  - name: base
//	    env: [{name: MODE, value: ""}]
//
// the main container "base" runs python:3.14 with the command
// "python job.py" and MODE set to the empty string, the proxy is gone, and
// no service account token is mounted.
//
// Sidecars belong in initContainers with restartPolicy Always (native
// sidecars): Kubernetes stops them when the main container ends, so the pod
// ends with the attempt. A second regular container keeps the pod running
// until it exits by itself.
//
// # Validation
//
// Before any API call, the built pod is checked for what can be checked
// locally: names and namespaces, label and annotation syntax and size,
// unique container and volume names, images, resource quantities (requests
// not above limits), volume mounts that name a volume, security contexts
// the server rejects (privileged with allowPrivilegeEscalation false), a
// container that would run as root under runAsNonRoot (the kubelet would
// not start it), restartPolicy Never (a pod is exactly one attempt), and
// the task spec's own fields: paths, ids, the deadline, and files that fit
// in the pod's annotations ([MaxFilesBytes]) without colliding with another
// mount. Problems come back together in a
// *[ValidationError] whose details say what to fix. What only the cluster
// knows (Pod Security admission, quotas, webhooks) is left to the API
// server; a server-side dry run (metav1.DryRunAll) checks it without
// creating anything.
//
// # Errors
//
// Errors wrap [ErrInvalidTemplate], [ErrInvalidOverride], [ErrInvalidPod] or
// [ErrMiddleware] for errors.Is, and are typed for errors.As:
// *[DecodeError] names the source and field, *[ValidationError] lists the
// problems by field path, *[MiddlewareError] carries the middleware's own
// error. An invalid key is a *[kubexec.KeyError].
package podtemplate
