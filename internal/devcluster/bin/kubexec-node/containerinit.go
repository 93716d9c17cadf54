package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// containerInitArg is argv[1] of the agent binary started as a container's
// first process. It is not a user-facing command.
const containerInitArg = "__container_init"

// initConfig is what the agent sends to the container's first process on
// fd 3, after it has put that process in its memory cgroup.
type initConfig struct {
	// Root is an empty host folder. The process mounts a tmpfs on it, in its
	// private mount namespace, and builds the container's root there: the
	// host's top-level folders bind-mounted, its own /proc, /dev and /tmp,
	// and Mounts. Then it pivots into it.
	Root     string      `json:"root"`
	TmpDir   string      `json:"tmpDir"`
	Mounts   []mountSpec `json:"mounts"`
	Hostname string      `json:"hostname"`
	Cwd      string      `json:"cwd"`
	Argv     []string    `json:"argv"`
	Env      []string    `json:"env"`
	UID      *int64      `json:"uid,omitempty"`
	GID      *int64      `json:"gid,omitempty"`
	Groups   []int64     `json:"groups,omitempty"`
}

type mountSpec struct {
	Source   string `json:"source"` // host path
	Target   string `json:"target"` // absolute path in the container
	ReadOnly bool   `json:"readOnly,omitempty"`
	File     bool   `json:"file,omitempty"` // Source is not a folder
}

// containerInit runs in the container's new mount, PID and UTS namespaces
// as PID 1. It reads its initConfig from fd 3, builds the root, and execs
// the container's command. Any failure before the exec is written to fd 4
// (closed on exec, so an empty read means success) and exits 127.
func containerInit() {
	cfgFile := os.NewFile(3, "config")
	errFile := os.NewFile(4, "errors")
	fail := func(format string, args ...any) {
		fmt.Fprintf(errFile, format, args...)
		os.Exit(127)
	}
	var cfg initConfig
	if err := json.NewDecoder(cfgFile).Decode(&cfg); err != nil {
		fail("read container config: %v", err)
	}
	cfgFile.Close()
	syscall.CloseOnExec(4)

	if err := buildRoot(&cfg); err != nil {
		fail("failed to set up the container's filesystem: %v", err)
	}
	if cfg.Hostname != "" {
		if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
			fail("sethostname: %v", err)
		}
	}
	if err := os.Chdir(cfg.Cwd); err != nil {
		fail("chdir to working directory %q: %v", cfg.Cwd, err)
	}
	if cfg.GID != nil || len(cfg.Groups) > 0 {
		groups := make([]int, 0, len(cfg.Groups))
		for _, g := range cfg.Groups {
			groups = append(groups, int(g))
		}
		if err := syscall.Setgroups(groups); err != nil {
			fail("setgroups: %v", err)
		}
	}
	if cfg.GID != nil {
		if err := syscall.Setgid(int(*cfg.GID)); err != nil {
			fail("setgid: %v", err)
		}
	}
	if cfg.UID != nil {
		if err := syscall.Setuid(int(*cfg.UID)); err != nil {
			fail("setuid: %v", err)
		}
	}
	if len(cfg.Argv) == 0 {
		fail("no command given")
	}
	file, err := lookPath(cfg.Argv[0], cfg.Env)
	if err != nil {
		fail("exec: %q: %v", cfg.Argv[0], err)
	}
	err = syscall.Exec(file, cfg.Argv, cfg.Env)
	fail("exec: %q: %v", cfg.Argv[0], err)
}

// lookPath finds file in the container's PATH, as execvp does.
func lookPath(file string, env []string) (string, error) {
	if strings.Contains(file, "/") {
		if err := executable(file); err != nil {
			return "", err
		}
		return file, nil
	}
	pathEnv := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathEnv = v
		}
	}
	for dir := range strings.SplitSeq(pathEnv, ":") {
		if dir == "" {
			dir = "."
		}
		p := path.Join(dir, file)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", errors.New("executable file not found in $PATH")
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errors.New("no such file or directory")
		}
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return errors.New("permission denied")
	}
	return nil
}

// mountKind says what backs a mount point in the container root under
// construction, so that a folder needed for a mount point is never created
// in a host folder.
type mountKind struct {
	host  string // bind of this host path: read-only as far as layout goes
	owned bool   // a tmpfs of this container, or a volume: folders may be created
}

type rootBuilder struct {
	root   string
	points map[string]mountKind // container path -> kind
}

func buildRoot(cfg *initConfig) error {
	b := &rootBuilder{root: cfg.Root, points: map[string]mountKind{}}
	// Nothing done here may leak to the host's mount namespace.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private: %w", err)
	}
	if err := unix.Mount("tmpfs", b.root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=755"); err != nil {
		return fmt.Errorf("mount the root tmpfs: %w", err)
	}
	b.points["/"] = mountKind{owned: true}
	entries, err := os.ReadDir("/")
	if err != nil {
		return err
	}
	for _, e := range entries {
		switch e.Name() {
		case "proc", "dev", "tmp":
			continue
		}
		b.mirror("/"+e.Name(), "/"+e.Name())
	}
	if err := b.mountProc(); err != nil {
		return err
	}
	if err := b.mountDev(); err != nil {
		return err
	}
	if err := os.Mkdir(b.root+"/tmp", 0o1777); err != nil {
		return err
	}
	if err := b.bind(cfg.TmpDir, "/tmp", false, false); err != nil {
		return fmt.Errorf("mount /tmp: %w", err)
	}
	mounts := append([]mountSpec(nil), cfg.Mounts...)
	sort.SliceStable(mounts, func(i, j int) bool {
		return strings.Count(path.Clean(mounts[i].Target), "/") < strings.Count(path.Clean(mounts[j].Target), "/")
	})
	for _, m := range mounts {
		if !path.IsAbs(m.Target) {
			return fmt.Errorf("mount path %q is not absolute", m.Target)
		}
		target, err := b.prepare(m.Target, m.File)
		if err != nil {
			return fmt.Errorf("mount point %s: %w", m.Target, err)
		}
		if err := b.bind(m.Source, target, m.ReadOnly, true); err != nil {
			return fmt.Errorf("mount %s at %s: %w", m.Source, m.Target, err)
		}
	}
	if cfg.Cwd != "" {
		if _, err := b.prepare(cfg.Cwd, false); err != nil {
			return fmt.Errorf("working directory %s: %w", cfg.Cwd, err)
		}
	}
	return b.pivot()
}

// mirror makes host path host appear at container path target: a symlink is
// copied, anything else is bind-mounted (folders recursively).
func (b *rootBuilder) mirror(host, target string) {
	full := b.root + target
	fi, err := os.Lstat(host)
	if err != nil {
		return
	}
	switch {
	case fi.Mode()&os.ModeSymlink != 0:
		if link, err := os.Readlink(host); err == nil {
			_ = os.Symlink(link, full)
		}
	case fi.IsDir():
		if os.Mkdir(full, fi.Mode().Perm()) != nil {
			return
		}
		if unix.Mount(host, full, "", unix.MS_BIND|unix.MS_REC, "") == nil {
			b.points[target] = mountKind{host: host}
		}
	default:
		f, err := os.OpenFile(full, os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			return
		}
		f.Close()
		if unix.Mount(host, full, "", unix.MS_BIND, "") == nil {
			b.points[target] = mountKind{host: host}
		}
	}
}

func (b *rootBuilder) mountProc() error {
	if err := os.Mkdir(b.root+"/proc", 0o555); err != nil {
		return err
	}
	if err := unix.Mount("proc", b.root+"/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount /proc: %w", err)
	}
	b.points["/proc"] = mountKind{host: "/proc"}
	return nil
}

// mountDev makes a minimal /dev, as container runtimes do.
func (b *rootBuilder) mountDev() error {
	dev := b.root + "/dev"
	if err := os.Mkdir(dev, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID, "mode=755"); err != nil {
		return fmt.Errorf("mount /dev: %w", err)
	}
	b.points["/dev"] = mountKind{owned: true}
	for _, name := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		f, err := os.OpenFile(dev+"/"+name, os.O_CREATE|os.O_WRONLY, 0o666)
		if err != nil {
			return err
		}
		f.Close()
		if err := unix.Mount("/dev/"+name, dev+"/"+name, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("mount /dev/%s: %w", name, err)
		}
	}
	if err := os.Mkdir(dev+"/pts", 0o755); err == nil {
		if unix.Mount("/dev/pts", dev+"/pts", "", unix.MS_BIND|unix.MS_REC, "") == nil {
			_ = os.Symlink("pts/ptmx", dev+"/ptmx")
		}
	}
	if err := os.Mkdir(dev+"/shm", 0o1777); err != nil {
		return err
	}
	if err := unix.Mount("shm", dev+"/shm", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return fmt.Errorf("mount /dev/shm: %w", err)
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(target, dev+"/"+name); err != nil {
			return err
		}
	}
	return nil
}

// bind bind-mounts host path source on target (a container path when
// containerPath, else already a full path under the root).
func (b *rootBuilder) bind(source, target string, readOnly, full bool) error {
	containerPath := target
	if !full {
		target = b.root + target
	} else {
		containerPath = strings.TrimPrefix(target, b.root)
	}
	if err := unix.Mount(source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if readOnly {
		if err := unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			return fmt.Errorf("remount read-only: %w", err)
		}
	}
	b.points[containerPath] = mountKind{owned: true}
	return nil
}

// prepare makes sure container path p exists in the root (a folder, or an
// empty file when file), following symlinks inside the root, and returns
// its full path. A folder it has to create inside a host folder is created
// in a tmpfs laid over that folder instead (see shadow), never on the host.
func (b *rootBuilder) prepare(p string, file bool) (string, error) {
	parts := splitPath(p)
	cur := "/"
	for i, links := 0, 0; i < len(parts); i++ {
		next := path.Join(cur, parts[i])
		full := b.root + next
		last := i == len(parts)-1
		fi, err := os.Lstat(full)
		switch {
		case err == nil && fi.Mode()&os.ModeSymlink != 0:
			if links++; links > 40 {
				return "", errors.New("too many levels of symbolic links")
			}
			link, err := os.Readlink(full)
			if err != nil {
				return "", err
			}
			if !path.IsAbs(link) {
				link = path.Join(cur, link)
			}
			parts = append(splitPath(link), parts[i+1:]...)
			cur, i = "/", -1
			continue
		case err == nil:
			if !last && !fi.IsDir() {
				return "", fmt.Errorf("%s is not a directory", next)
			}
			cur = next
			continue
		case !errors.Is(err, fs.ErrNotExist):
			return "", err
		}
		if err := b.writable(cur); err != nil {
			return "", err
		}
		if last && file {
			f, err := os.OpenFile(full, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return "", err
			}
			f.Close()
		} else if err := os.Mkdir(full, 0o755); err != nil {
			return "", err
		}
		cur = next
	}
	return b.root + cur, nil
}

// writable makes container folder dir one where entries can be created
// without touching the host.
func (b *rootBuilder) writable(dir string) error {
	for d := dir; ; d = path.Dir(d) {
		kind, ok := b.points[d]
		if ok {
			if kind.owned {
				return nil
			}
			if d == "/proc" || strings.HasPrefix(dir, "/proc/") {
				return errors.New("cannot create a mount point under /proc")
			}
			rel := strings.TrimPrefix(dir, d)
			return b.shadow(dir, kind.host+rel)
		}
		if d == "/" {
			return nil
		}
	}
}

// shadow lays a tmpfs over container folder dir, which shows host folder
// host, and mirrors host's entries into it, so the folder looks the same
// but new entries stay in the container.
func (b *rootBuilder) shadow(dir, host string) error {
	entries, err := os.ReadDir(host)
	if err != nil {
		return err
	}
	fi, err := os.Stat(host)
	if err != nil {
		return err
	}
	opts := fmt.Sprintf("mode=%o", fi.Mode().Perm())
	if err := unix.Mount("tmpfs", b.root+dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("shadow %s: %w", dir, err)
	}
	b.points[dir] = mountKind{owned: true}
	for _, e := range entries {
		b.mirror(path.Join(host, e.Name()), path.Join(dir, e.Name()))
	}
	return nil
}

func (b *rootBuilder) pivot() error {
	old := b.root + "/.oldroot"
	if err := os.Mkdir(old, 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(b.root, old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.oldroot", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount the old root: %w", err)
	}
	return os.Remove("/.oldroot")
}

func splitPath(p string) []string {
	var parts []string
	for s := range strings.SplitSeq(path.Clean("/"+p), "/") {
		if s != "" {
			parts = append(parts, s)
		}
	}
	return parts
}
