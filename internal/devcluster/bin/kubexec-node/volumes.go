package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kubernetes/third_party/forked/golang/expansion"
)

// volumeError is a pod volume that cannot be set up. A permanent one (an
// unsupported volume type) makes the containers wait with reason
// CreateContainerConfigError; the others (a missing ConfigMap, say) with
// ContainerCreating, and the setup is tried again.
type volumeError struct {
	msg       string
	permanent bool
}

func (e *volumeError) Error() string { return e.msg }

// volume is a set-up pod volume: a host folder (or file, for hostPath).
type volume struct {
	path     string
	readOnly bool // configMap, secret, downwardAPI and projected volumes
}

const supportedVolumes = "emptyDir, configMap, secret, downwardAPI, projected (secret, configMap, downwardAPI, serviceAccountToken), hostPath"

// setupVolumes materialises the pod's volumes under the pod folder.
func (r *podRuntime) setupVolumes(ctx context.Context, pod *corev1.Pod) (map[string]volume, error) {
	out := make(map[string]volume, len(pod.Spec.Volumes))
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(r.dir, "volumes", v.Name)
		src := v.VolumeSource
		var err error
		switch {
		case src.EmptyDir != nil:
			err = os.MkdirAll(dir, 0o777)
			if err == nil {
				err = os.Chmod(dir, 0o777)
			}
			out[v.Name] = volume{path: dir}
		case src.HostPath != nil:
			err = checkHostPath(src.HostPath)
			out[v.Name] = volume{path: src.HostPath.Path}
		case src.ConfigMap != nil, src.Secret != nil, src.DownwardAPI != nil, src.Projected != nil:
			var files []volumeFile
			files, err = r.volumeFiles(ctx, pod, v)
			if err == nil {
				err = writeVolume(dir, files)
			}
			out[v.Name] = volume{path: dir, readOnly: true}
		default:
			return nil, &volumeError{permanent: true, msg: fmt.Sprintf(
				"volume %q is of type %s, which the kubexec process node does not support (it supports %s)",
				v.Name, volumeType(src), supportedVolumes)}
		}
		if err != nil {
			var ve *volumeError
			if errors.As(err, &ve) {
				return nil, ve
			}
			return nil, &volumeError{msg: fmt.Sprintf("MountVolume.SetUp failed for volume %q : %v", v.Name, err)}
		}
	}
	return out, nil
}

// volumeType is the JSON name of the volume source in use.
func volumeType(src corev1.VolumeSource) string {
	v := reflect.ValueOf(src)
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			name, _, _ := strings.Cut(v.Type().Field(i).Tag.Get("json"), ",")
			return name
		}
	}
	return "unknown"
}

func checkHostPath(hp *corev1.HostPathVolumeSource) error {
	t := corev1.HostPathUnset
	if hp.Type != nil {
		t = *hp.Type
	}
	fi, err := os.Stat(hp.Path)
	exists := err == nil
	switch t {
	case corev1.HostPathUnset:
		return nil
	case corev1.HostPathDirectoryOrCreate:
		if !exists {
			return os.MkdirAll(hp.Path, 0o755)
		}
		if !fi.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", hp.Path)
		}
	case corev1.HostPathDirectory:
		if !exists || !fi.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a directory", hp.Path)
		}
	case corev1.HostPathFileOrCreate:
		if !exists {
			if err := os.MkdirAll(filepath.Dir(hp.Path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(hp.Path, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			return f.Close()
		}
		if fi.IsDir() {
			return fmt.Errorf("hostPath type check failed: %s is not a file", hp.Path)
		}
	case corev1.HostPathFile:
		if !exists || !fi.Mode().IsRegular() {
			return fmt.Errorf("hostPath type check failed: %s is not a file", hp.Path)
		}
	case corev1.HostPathSocket:
		if !exists || fi.Mode()&fs.ModeSocket == 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a socket file", hp.Path)
		}
	case corev1.HostPathCharDev:
		if !exists || fi.Mode()&fs.ModeCharDevice == 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a character device", hp.Path)
		}
	case corev1.HostPathBlockDev:
		if !exists || fi.Mode()&fs.ModeDevice == 0 || fi.Mode()&fs.ModeCharDevice != 0 {
			return fmt.Errorf("hostPath type check failed: %s is not a block device", hp.Path)
		}
	}
	return nil
}

type volumeFile struct {
	path string
	data []byte
	mode os.FileMode
}

func fileMode(item *int32, def *int32) os.FileMode {
	switch {
	case item != nil:
		return os.FileMode(*item)
	case def != nil:
		return os.FileMode(*def)
	}
	return 0o644
}

// volumeFiles is the content of a configMap, secret, downwardAPI or
// projected volume.
func (r *podRuntime) volumeFiles(ctx context.Context, pod *corev1.Pod, v corev1.Volume) ([]volumeFile, error) {
	src := v.VolumeSource
	switch {
	case src.ConfigMap != nil:
		return r.configMapFiles(ctx, pod, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, src.ConfigMap.DefaultMode)
	case src.Secret != nil:
		return r.secretFiles(ctx, pod, src.Secret.SecretName, src.Secret.Items, src.Secret.Optional, src.Secret.DefaultMode)
	case src.DownwardAPI != nil:
		return r.downwardFiles(pod, src.DownwardAPI.Items, src.DownwardAPI.DefaultMode)
	}
	var files []volumeFile
	def := src.Projected.DefaultMode
	for _, s := range src.Projected.Sources {
		var more []volumeFile
		var err error
		switch {
		case s.ConfigMap != nil:
			more, err = r.configMapFiles(ctx, pod, s.ConfigMap.Name, s.ConfigMap.Items, s.ConfigMap.Optional, def)
		case s.Secret != nil:
			more, err = r.secretFiles(ctx, pod, s.Secret.Name, s.Secret.Items, s.Secret.Optional, def)
		case s.DownwardAPI != nil:
			more, err = r.downwardFiles(pod, s.DownwardAPI.Items, def)
		case s.ServiceAccountToken != nil:
			more, err = r.tokenFile(ctx, pod, s.ServiceAccountToken, def)
		default:
			return nil, &volumeError{permanent: true, msg: fmt.Sprintf(
				"volume %q has a projected source the kubexec process node does not support (it supports %s)", v.Name, supportedVolumes)}
		}
		if err != nil {
			return nil, err
		}
		files = append(files, more...)
	}
	return files, nil
}

func (r *podRuntime) configMapFiles(ctx context.Context, pod *corev1.Pod, name string, items []corev1.KeyToPath, optional *bool, def *int32) ([]volumeFile, error) {
	cm, err := r.p.getConfigMap(ctx, pod.Namespace, name)
	if err != nil {
		if isNotFound(err) && optional != nil && *optional {
			return nil, nil
		}
		return nil, err
	}
	data := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return keyFiles(data, items, optional, def, fmt.Sprintf("configmap %q", name))
}

func (r *podRuntime) secretFiles(ctx context.Context, pod *corev1.Pod, name string, items []corev1.KeyToPath, optional *bool, def *int32) ([]volumeFile, error) {
	s, err := r.p.getSecret(ctx, pod.Namespace, name)
	if err != nil {
		if isNotFound(err) && optional != nil && *optional {
			return nil, nil
		}
		return nil, err
	}
	return keyFiles(s.Data, items, optional, def, fmt.Sprintf("secret %q", name))
}

func keyFiles(data map[string][]byte, items []corev1.KeyToPath, optional *bool, def *int32, what string) ([]volumeFile, error) {
	var files []volumeFile
	if len(items) == 0 {
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			files = append(files, volumeFile{path: k, data: data[k], mode: fileMode(nil, def)})
		}
		return files, nil
	}
	for _, it := range items {
		d, ok := data[it.Key]
		if !ok {
			if optional != nil && *optional {
				continue
			}
			return nil, fmt.Errorf("%s has no key %q", what, it.Key)
		}
		files = append(files, volumeFile{path: it.Path, data: d, mode: fileMode(it.Mode, def)})
	}
	return files, nil
}

func (r *podRuntime) downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile, def *int32) ([]volumeFile, error) {
	var files []volumeFile
	for _, it := range items {
		var v string
		var err error
		switch {
		case it.FieldRef != nil:
			v, err = r.fieldValue(pod, it.FieldRef.FieldPath)
		case it.ResourceFieldRef != nil:
			v, err = r.resourceValue(pod, &corev1.Container{}, it.ResourceFieldRef)
		}
		if err != nil {
			return nil, err
		}
		files = append(files, volumeFile{path: it.Path, data: []byte(v), mode: fileMode(it.Mode, def)})
	}
	return files, nil
}

func (r *podRuntime) tokenFile(ctx context.Context, pod *corev1.Pod, src *corev1.ServiceAccountTokenProjection, def *int32) ([]volumeFile, error) {
	exp := int64(3607)
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	var audiences []string
	if src.Audience != "" {
		audiences = []string{src.Audience}
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tr, err := r.p.client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{
			Audiences:         audiences,
			ExpirationSeconds: &exp,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("failed to fetch token: %w", err)
	}
	mode := os.FileMode(0o600)
	if def != nil {
		mode = os.FileMode(*def)
	}
	return []volumeFile{{path: src.Path, data: []byte(tr.Status.Token), mode: mode}}, nil
}

// writeVolume replaces the content of dir with files.
func writeVolume(dir string, files []volumeFile) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		rel := filepath.Clean(f.path)
		if filepath.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
			return fmt.Errorf("invalid path %q", f.path)
		}
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.data, f.mode.Perm()); err != nil {
			return err
		}
		if err := os.Chmod(p, f.mode.Perm()); err != nil {
			return err
		}
	}
	return nil
}

// containerMounts are the bind mounts of container c's volumeMounts.
func containerMounts(c *corev1.Container, vols map[string]volume, env []string) ([]mountSpec, error) {
	if len(c.VolumeDevices) > 0 {
		return nil, configErrorf("volumeDevices are not supported by the kubexec process node")
	}
	envMap := make(map[string]string, len(env))
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		envMap[k] = v
	}
	var mounts []mountSpec
	for _, vm := range c.VolumeMounts {
		v, ok := vols[vm.Name]
		if !ok {
			return nil, configErrorf("volume mount %q: no volume of that name", vm.Name)
		}
		src := v.path
		sub := vm.SubPath
		if vm.SubPathExpr != "" {
			sub = expansion.Expand(vm.SubPathExpr, expansion.MappingFuncFor(envMap))
		}
		if sub != "" {
			clean := filepath.Clean(sub)
			if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
				return nil, configErrorf("volume mount %q: invalid subPath %q", vm.Name, sub)
			}
			src = filepath.Join(src, clean)
			if _, err := os.Lstat(src); errors.Is(err, fs.ErrNotExist) {
				if err := os.MkdirAll(src, 0o777); err != nil {
					return nil, configErrorf("volume mount %q: create subPath: %v", vm.Name, err)
				}
			}
		}
		fi, err := os.Stat(src)
		if err != nil {
			return nil, configErrorf("volume mount %q: %v", vm.Name, err)
		}
		mounts = append(mounts, mountSpec{
			Source:   src,
			Target:   vm.MountPath,
			ReadOnly: vm.ReadOnly || v.readOnly,
			File:     !fi.IsDir(),
		})
	}
	return mounts, nil
}
