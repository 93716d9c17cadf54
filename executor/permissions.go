package executor

import (
	"context"
	"errors"
	"fmt"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
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
	return fmt.Sprintf("executor: the executor's identity lacks %d permission(s): %s. Bind it to the Role in executor/rbac.yaml in each namespace it runs pods in, and to the Role in executor/rbac-lease.yaml in its Lease namespace",
		len(e.Missing), strings.Join(e.Missing, "; "))
}

// Unwrap returns ErrPermission.
func (e *PermissionError) Unwrap() error { return ErrPermission }

// Permission is one verb on one resource in one namespace ("" for all
// namespaces) that an executor uses.
type Permission struct {
	Namespace, Group, Resource, Subresource, Verb string
}

// String says it as the PermissionError lists it, such as `create pods in
// namespace "etl"`.
func (p Permission) String() string {
	res := p.Resource
	if p.Subresource != "" {
		res += "/" + p.Subresource
	}
	if p.Group != "" {
		res += "." + p.Group
	}
	where := fmt.Sprintf("in namespace %q", p.Namespace)
	if p.Namespace == "" {
		where = "in all namespaces"
	}
	return fmt.Sprintf("%s %s %s", p.Verb, res, where)
}

// Features are the optional parts of an executor that need permissions of
// their own.
type Features struct {
	// LogArchive: Config.LogArchiver is set (get pods/log).
	LogArchive bool
	// XCom: Config.XCom is set (create pods/exec).
	XCom bool
	// ProvenanceSecret: the provenance key is kept in a Secret in the
	// Lease namespace (Config.ProvenanceKey nil and provenance not
	// disabled: get and create secrets).
	ProvenanceSecret bool
}

// RequiredPermissions returns what an executor watching namespaces, with
// its Lease in leaseNamespace and the given features, needs: what Start
// checks. Hosts and tools (a permission check of their own, or a Role
// generated for a deployment) use it to ask the same questions.
func RequiredPermissions(namespaces []string, leaseNamespace string, f Features) []Permission {
	pod := []string{"create", "get", "list", "watch", "patch", "delete"}
	var out []Permission
	for _, ns := range namespaces {
		for _, verb := range pod {
			out = append(out, Permission{Namespace: ns, Resource: "pods", Verb: verb})
		}
		if f.LogArchive {
			out = append(out, Permission{Namespace: ns, Resource: "pods", Subresource: "log", Verb: "get"})
		}
		if f.XCom {
			out = append(out, Permission{Namespace: ns, Resource: "pods", Subresource: "exec", Verb: "create"})
		}
	}
	for _, verb := range []string{"get", "create", "update", "list", "delete"} {
		out = append(out, Permission{Namespace: leaseNamespace, Group: "coordination.k8s.io", Resource: "leases", Verb: verb})
	}
	if f.ProvenanceSecret {
		for _, verb := range []string{"get", "create"} {
			out = append(out, Permission{Namespace: leaseNamespace, Resource: "secrets", Verb: verb})
		}
	}
	return out
}

// MissingPermissions asks the API server, with one SelfSubjectAccessReview
// each, which of perms the client's identity lacks.
func MissingPermissions(ctx context.Context, client kubernetes.Interface, perms []Permission) ([]Permission, error) {
	var missing []Permission
	for _, p := range perms {
		review := &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Namespace:   p.Namespace,
					Verb:        p.Verb,
					Group:       p.Group,
					Resource:    p.Resource,
					Subresource: p.Subresource,
				},
			},
		}
		got, err := client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, review, metav1.CreateOptions{})
		if err != nil {
			return nil, fmt.Errorf("executor: checking permissions: %w", err)
		}
		if !got.Status.Allowed {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// checkPermissions returns one *PermissionError that lists everything the
// executor's identity lacks.
func (e *Executor) checkPermissions(ctx context.Context) error {
	perms := RequiredPermissions(e.cfg.Namespaces, e.cfg.LeaseNamespace, Features{
		LogArchive:       e.cfg.LogArchiver != nil,
		XCom:             e.cfg.XCom != nil,
		ProvenanceSecret: !e.cfg.DisableProvenance && e.cfg.ProvenanceKey == nil,
	})
	missing, err := MissingPermissions(ctx, e.client, perms)
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		err := &PermissionError{}
		for _, p := range missing {
			err.Missing = append(err.Missing, p.String())
		}
		return err
	}
	return nil
}
