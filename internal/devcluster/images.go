package devcluster

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"slices"
	"strings"
	"time"
)

// The kubelet node has no registry: its images are built here from files on
// this machine and imported into containerd. Each is a docker-archive
// tarball (the format of `docker save`): a manifest.json naming the image's
// tags, a config JSON and one layer.
//
// A user adds an image of their own the same way: `docker save` (or any tool
// that writes a docker-archive or OCI tarball) on a machine that has it, then
// `ctr --address <cluster>/kubelet-0/containerd/containerd.sock -n k8s.io
// images import image.tar` here, and a pod that names it with
// imagePullPolicy IfNotPresent.

// Images the kubelet node provides. Busybox is Debian's busybox-static with
// its applets linked; it stands in for every busybox tag the tests and the
// sample workflow name.
var (
	busyboxTags = []string{"busybox:latest", "busybox:1.36", "busybox:1.37"}
	// pauseImage is containerd's sandbox image: kubexec-pause.
	pauseImage = "localhost/kubexec-pause:local"
)

// busyboxBinary is where Debian's busybox-static package puts its binary.
const busyboxBinary = "/bin/busybox"

// imageFile is one file of an image's only layer.
type imageFile struct {
	name    string // path inside the image, without a leading slash
	mode    int64
	typ     byte   // tar.TypeReg, TypeDir or TypeSymlink
	target  string // symlink target
	content []byte
}

// image is a one-layer image.
type image struct {
	tags  []string
	files []imageFile
	env   []string
	cmd   []string
}

// busyboxImage is a root file system of busybox and its applets, with the
// folders and files a container expects.
func busyboxImage() (*image, error) {
	bin, err := os.ReadFile(busyboxBinary)
	if err != nil {
		return nil, fmt.Errorf("devcluster: the kubelet node's busybox image needs %s from Debian's busybox-static package: %w", busyboxBinary, err)
	}
	out, err := exec.Command(busyboxBinary, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("devcluster: %s --list: %w", busyboxBinary, err)
	}
	img := &image{
		tags: busyboxTags,
		env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		cmd:  []string{"sh"},
	}
	for _, d := range []string{"bin", "dev", "etc", "proc", "sys", "root", "usr", "usr/bin", "var", "home"} {
		img.files = append(img.files, imageFile{name: d, mode: 0o755, typ: tar.TypeDir})
	}
	img.files = append(img.files,
		imageFile{name: "tmp", mode: 0o1777, typ: tar.TypeDir},
		imageFile{name: "bin/busybox", mode: 0o755, typ: tar.TypeReg, content: bin},
		imageFile{name: "etc/passwd", mode: 0o644, typ: tar.TypeReg, content: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n")},
		imageFile{name: "etc/group", mode: 0o644, typ: tar.TypeReg, content: []byte("root:x:0:\nnobody:x:65534:\n")},
		imageFile{name: "usr/bin/env", typ: tar.TypeSymlink, mode: 0o777, target: "/bin/busybox"},
	)
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" || strings.Contains(applet, "/") {
			continue
		}
		img.files = append(img.files, imageFile{name: "bin/" + applet, typ: tar.TypeSymlink, mode: 0o777, target: "busybox"})
	}
	return img, nil
}

// pauseImageFor is the sandbox image: the kubexec-pause binary alone.
func pauseImageFor(binary string) (*image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, fmt.Errorf("devcluster: the kubelet node's sandbox image needs %s: run `make devcluster`: %w", binary, err)
	}
	return &image{
		tags:  []string{pauseImage},
		files: []imageFile{{name: "pause", mode: 0o755, typ: tar.TypeReg, content: bin}},
		cmd:   []string{"/pause"},
	}, nil
}

// writeDockerArchive writes img as a docker-archive tarball at file.
func writeDockerArchive(file string, img *image) error {
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	// A fixed time keeps the layer's digest the same from one start to the
	// next, so containerd's content store does not grow.
	mtime := time.Unix(0, 0)
	for _, f := range img.files {
		h := &tar.Header{Name: f.name, Mode: f.mode, Typeflag: f.typ, Linkname: f.target, ModTime: mtime, Format: tar.FormatPAX}
		if f.typ == tar.TypeDir {
			h.Name += "/"
		}
		if f.typ == tar.TypeReg {
			h.Size = int64(len(f.content))
		}
		if err := lw.WriteHeader(h); err != nil {
			return err
		}
		if f.typ == tar.TypeReg {
			if _, err := lw.Write(f.content); err != nil {
				return err
			}
		}
	}
	if err := lw.Close(); err != nil {
		return err
	}
	layerDigest := sha256.Sum256(layer.Bytes())
	config, err := json.Marshal(map[string]any{
		"architecture": "amd64",
		"os":           "linux",
		"created":      mtime.UTC().Format(time.RFC3339),
		"config":       map[string]any{"Env": img.env, "Cmd": img.cmd},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + hex.EncodeToString(layerDigest[:])}},
	})
	if err != nil {
		return err
	}
	configDigest := sha256.Sum256(config)
	configName := hex.EncodeToString(configDigest[:]) + ".json"
	layerName := hex.EncodeToString(layerDigest[:]) + "/layer.tar"
	manifest, err := json.Marshal([]map[string]any{{
		"Config":   configName,
		"RepoTags": slices.Clone(img.tags),
		"Layers":   []string{layerName},
	}})
	if err != nil {
		return err
	}

	out, err := os.Create(file)
	if err != nil {
		return err
	}
	defer out.Close()
	w := tar.NewWriter(out)
	for _, e := range []struct {
		name string
		data []byte
	}{{configName, config}, {layerName, layer.Bytes()}, {"manifest.json", manifest}} {
		if dir := path.Dir(e.name); dir != "." {
			if err := w.WriteHeader(&tar.Header{Name: dir + "/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: mtime}); err != nil {
				return err
			}
		}
		if err := w.WriteHeader(&tar.Header{Name: e.name, Mode: 0o644, Size: int64(len(e.data)), Typeflag: tar.TypeReg, ModTime: mtime}); err != nil {
			return err
		}
		if _, err := io.Copy(w, bytes.NewReader(e.data)); err != nil {
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	return out.Close()
}
