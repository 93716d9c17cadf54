package executor_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubexec/kubexec"
	"github.com/kubexec/kubexec/executor"
	"github.com/kubexec/kubexec/logs"
	"github.com/kubexec/kubexec/podtemplate"
	"github.com/kubexec/kubexec/xcom"
)

// TestXComAndLogArchive: results carry their XCom value's reference, a
// wrong value fails the attempt with its typed error, and logs are
// archived before the pod is deleted, so they are readable afterwards. XCom
// is enabled by Config.XCom alone (the Collector also prepares the pods,
// here for the sidecar channel, read by exec), or, as before, with the
// Collector and xcom.Middleware in the Builder (the pod is then prepared
// once).
func TestXComAndLogArchive(t *testing.T) {
	cluster.Need(t)
	t.Run("one value, sidecar channel", func(t *testing.T) {
		testXComAndLogArchive(t, false, xcom.ChannelSidecar, onAnyNode)
	})
	t.Run("middleware in the builder, termination message", func(t *testing.T) {
		testXComAndLogArchive(t, true, xcom.ChannelTerminationMessage, onAnyNode)
	})
}

func testXComAndLogArchive(t *testing.T, builderMiddleware bool, channel xcom.Channel, pin nodePin) {
	ctx := t.Context()
	ns := cluster.NewNamespace(t, "xcom", nil)
	cfg := testConfig(ns)
	if builderMiddleware {
		template := podtemplate.DefaultTemplate()
		uid := int64(1000)
		template.Spec.SecurityContext.RunAsUser = &uid
		builder, err := podtemplate.New(template, podtemplate.Config{
			Namespace:  ns,
			Middleware: []podtemplate.Middleware{xcom.Middleware(xcom.PodConfig{Channel: channel})},
		})
		require.NoError(t, err)
		cfg.Builder = builder
	}
	backend := &xcom.MemoryBackend{}
	collector, err := xcom.NewCollector(cluster.Client(), cluster.RESTConfig(), backend, xcom.Config{Pod: xcom.PodConfig{Channel: channel}})
	require.NoError(t, err)
	cfg.XCom = collector
	sink, err := logs.NewFileSink(t.TempDir())
	require.NoError(t, err)
	logService, err := logs.New(cluster.Client(), sink, logs.Config{Namespace: ns})
	require.NoError(t, err)
	cfg.LogArchiver = logService

	store := executor.NewMemoryStore()
	e := startExecutor(t, cluster.RESTConfig(), store, cfg)
	good, bad := key("xcom", 1), key("xcom", 2)
	require.NoError(t, e.Queue(pin.apply(t, shell(good, `echo "computing"; echo '{"rows": 42}' > "$`+xcom.EnvPath+`"`), "")))
	// A pod that asks for JSON fails on text (by default, text is a
	// value of its own).
	require.NoError(t, e.Queue(pin.applyAnnotated(t, shell(bad, `echo 'not json' > "$`+xcom.EnvPath+`"`), `{"`+xcom.AnnotationFormat+`": json}`)))
	drive(t, e, 2*time.Minute, "results", func() bool { return len(store.Results()) == 2 })

	got := resultsByKey(store)
	require.Equal(t, kubexec.ReasonSucceeded, got[good].Reason, "%+v", got[good])
	pin.requireRanThere(t, got[good])
	require.NotEmpty(t, got[good].XComRef)
	value, err := backend.Get(ctx, got[good].XComRef)
	require.NoError(t, err)
	require.JSONEq(t, `{"rows": 42}`, string(value))

	name, err := kubexec.PodName(bad)
	require.NoError(t, err)
	kept, err := cluster.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	require.NoError(t, err, "a failed pod is kept")
	require.Equal(t, string(channel), kept.Annotations[xcom.AnnotationChannel])
	sidecars := 0
	for _, c := range append(kept.Spec.InitContainers, kept.Spec.Containers...) {
		if c.Name == xcom.SidecarName {
			sidecars++
		}
	}
	require.Equal(t, map[bool]int{true: 1, false: 0}[channel == xcom.ChannelSidecar], sidecars)

	require.Equal(t, kubexec.ReasonXComFailed, got[bad].Reason, "%+v", got[bad])
	require.True(t, got[bad].ContainerExited, "the task's container exited (0); its value failed")
	require.Zero(t, got[bad].ExitCode)
	require.Contains(t, got[bad].Message, "XCom value")
	require.Empty(t, got[bad].XComRef)

	// The succeeded pod is deleted; its logs come from the archive.
	name, err = kubexec.PodName(good)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, err := cluster.Client().CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	}, 3*time.Minute, 100*time.Millisecond)
	var lines []string
	for line, err := range logService.Lines(ctx, good, logs.Options{Namespace: ns}) {
		require.NoError(t, err)
		lines = append(lines, line.Text)
	}
	require.Contains(t, strings.Join(lines, "\n"), "computing")
}
