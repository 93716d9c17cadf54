package executor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// PermissionError lists the permissions the executor's identity lacks. Start
// returns it; executor/rbac.yaml holds a Role that grants them all.
type PermissionError struct {
	// Missing holds one entry per verb, resource and namespace, such as
	// `create pods in namespace "etl"`.
	Missing []string
}

// ErrPermission is wrapped by *PermissionError.
var ErrPermission = errors.New("executor: missing permissions")

func (e *PermissionError) Error() string {
	return fmt.Sprintf("executor: the executor's identity lacks %d permission(s): %s. Bind it to the Role in executor/rbac.yaml in each namespace it uses",
		len(e.Missing), strings.Join(e.Missing, "; "))
}

// Unwrap returns ErrPermission.
func (e *PermissionError) Unwrap() error { return ErrPermission }

// requiredPermission is one verb on one resource the executor uses.
type requiredPermission struct {
	group, resource, subresource, verb string
}

// podPermissions are what every executor calls on pods, in each namespace
// of Config.Namespaces.
var podPermissions = []requiredPermission{
	{"", "pods", "", "create"},
	{"", "pods", "", "get"},
	{"", "pods", "", "list"},
	{"", "pods", "", "watch"},
	{"", "pods", "", "patch"},
	{"", "pods", "", "delete"},
}

// Permissions of optional features, required only when configured.
var (
	// logPermission: Config.LogArchiver reads the pods' logs.
	logPermission = requiredPermission{"", "pods", "log", "get"}
	// execPermission: Config.XCom reads the sidecar's value by exec.
	execPermission = requiredPermission{"", "pods", "exec", "create"}
)

// requiredPermissions are what the executor configured by cfg calls in each
// namespace of Config.Namespaces.
func requiredPermissions(cfg Config) []requiredPermission {
	perms := slices.Clone(podPermissions)
	if cfg.LogArchiver != nil {
		perms = append(perms, logPermission)
	}
	if cfg.XCom != nil {
		perms = append(perms, execPermission)
	}
	return perms
}

// leasePermissions are what the executor needs in Config.LeaseNamespace.
var leasePermissions = []requiredPermission{
	{"coordination.k8s.io", "leases", "", "get"},
	{"coordination.k8s.io", "leases", "", "create"},
	{"coordination.k8s.io", "leases", "", "update"},
	{"coordination.k8s.io", "leases", "", "list"},
	{"coordination.k8s.io", "leases", "", "delete"},
}

// checkPermissions asks the API server, with SelfSubjectAccessReviews,
// whether the executor may do what it needs in every configured namespace,
// and returns one error that lists everything missing.
func (e *Kubernetes) checkPermissions(ctx context.Context) error {
	type check struct {
		ns    string
		perms []requiredPermission
	}
	var checks []check
	for _, ns := range e.cfg.Namespaces {
		checks = append(checks, check{ns, requiredPermissions(e.cfg)})
	}
	checks = append(checks, check{e.cfg.LeaseNamespace, leasePermissions})
	var missing []string
	for _, c := range checks {
		ns := c.ns
		for _, p := range c.perms {
			review := &authorizationv1.SelfSubjectAccessReview{
				Spec: authorizationv1.SelfSubjectAccessReviewSpec{
					ResourceAttributes: &authorizationv1.ResourceAttributes{
						Namespace:   ns,
						Verb:        p.verb,
						Group:       p.group,
						Resource:    p.resource,
						Subresource: p.subresource,
					},
				},
			}
			got, err := e.client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("executor: checking permissions: %w", err)
			}
			if !got.Status.Allowed {
				missing = append(missing, describePermission(p, ns))
			}
		}
	}
	if len(missing) > 0 {
		return &PermissionError{Missing: missing}
	}
	return nil
}

func describePermission(p requiredPermission, ns string) string {
	res := p.resource
	if p.subresource != "" {
		res += "/" + p.subresource
	}
	if p.group != "" {
		res += "." + p.group
	}
	where := fmt.Sprintf("in namespace %q", ns)
	if ns == "" {
		where = "in all namespaces"
	}
	return fmt.Sprintf("%s %s %s", p.verb, res, where)
}
