package xcom

import (
	"context"
	"errors"
	"fmt"

	"github.com/kubexec/kubexec/podtemplate"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Input is an upstream attempt's value to hand to a downstream task.
type Input struct {
	// Ref is the upstream attempt's Result.XComRef.
	Ref string
	// Env names the main container's environment variable that receives
	// the value's JSON text. When empty, the JSON text is appended to the
	// main container's arguments instead.
	Env string
}

// MaxPassBytes is the largest value Pass hands over: Linux refuses a
// single argument or "NAME=value" environment string of 128 KiB or more.
// Larger values belong in a file or object the task fetches by reference.
const MaxPassBytes = 128<<10 - 1

// Pass fetches each input's value from backend and adds it to spec: as
// the environment variable Input.Env (replacing an entry of that name), or
// appended to spec.Args. Note that spec.Args, once not nil, replaces the
// template's args: set the leading args before calling Pass.
//
// Errors wrap ErrNotFound (the backend has no such value) or ErrTooLarge
// (longer than MaxPassBytes), or are the backend's; on error spec is
// unchanged.
func Pass(ctx context.Context, backend Backend, spec *podtemplate.TaskSpec, inputs ...Input) error {
	if backend == nil || spec == nil {
		return errors.New("xcom: Pass: backend and spec must not be nil")
	}
	env := append([]corev1.EnvVar(nil), spec.Env...)
	args := spec.Args
	if len(inputs) > 0 {
		args = append([]string{}, spec.Args...)
	}
	for i, in := range inputs {
		if in.Ref == "" {
			return fmt.Errorf("xcom: Pass: input %d has no Ref: the upstream attempt produced no value", i)
		}
		if in.Env != "" {
			if errs := validation.IsEnvVarName(in.Env); len(errs) > 0 {
				return fmt.Errorf("xcom: Pass: input %d: %q is not a valid environment variable name: %v", i, in.Env, errs)
			}
		}
		value, err := backend.Get(ctx, in.Ref)
		if err != nil {
			return fmt.Errorf("xcom: Pass: input %d (%s): %w", i, in.Ref, err)
		}
		size := len(value)
		if in.Env != "" {
			size += len(in.Env) + 1
		}
		if size > MaxPassBytes {
			return fmt.Errorf("xcom: Pass: input %d (%s): %w: %d bytes do not fit in one argument or environment variable (at most %d); pass a reference to the value instead",
				i, in.Ref, ErrTooLarge, size, MaxPassBytes)
		}
		if in.Env == "" {
			args = append(args, string(value))
			continue
		}
		replaced := false
		for j := range env {
			if env[j].Name == in.Env {
				env[j] = corev1.EnvVar{Name: in.Env, Value: string(value)}
				replaced = true
			}
		}
		if !replaced {
			env = append(env, corev1.EnvVar{Name: in.Env, Value: string(value)})
		}
	}
	spec.Env, spec.Args = env, args
	return nil
}
