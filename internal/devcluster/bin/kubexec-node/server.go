package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/virtual-kubelet/virtual-kubelet/errdefs"
	"github.com/virtual-kubelet/virtual-kubelet/node/api"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	corev1listers "k8s.io/client-go/listers/core/v1"
)

// serveKubeletAPI serves the kubelet API the API server proxies pods/log and
// pods/exec to, on address:port over TLS. With --client-ca-file every client
// must present a certificate signed by that CA (the API server's kubelet
// client certificate); anyone who has one may use every route.
func serveKubeletAPI(ctx context.Context, cfg *config, nodeName string, port int, p *provider, pods corev1listers.PodLister) (stop func(), err error) {
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.tlsCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.tlsCertFile, cfg.tlsKeyFile)
		if err != nil {
			return nil, fmt.Errorf("kubelet serving certificate: %w", err)
		}
		tlsConfig.Certificates = []tls.Certificate{cert}
	} else {
		cert, err := selfSignedCert(nodeName, cfg.address)
		if err != nil {
			return nil, err
		}
		tlsConfig.Certificates = []tls.Certificate{cert}
	}
	if cfg.clientCAFile != "" {
		pem, err := os.ReadFile(cfg.clientCAFile)
		if err != nil {
			return nil, fmt.Errorf("--client-ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--client-ca-file %s: no PEM certificate", cfg.clientCAFile)
		}
		tlsConfig.ClientCAs = pool
		tlsConfig.ClientAuth = tls.RequireAndVerifyClientCert
	}

	podRoutes := api.PodHandler(api.PodHandlerConfig{
		RunInContainer:    p.RunInContainer,
		AttachToContainer: p.AttachToContainer,
		GetContainerLogs:  p.GetContainerLogs,
		GetPods:           p.GetPods,
		GetPodsFromKubernetes: func(context.Context) ([]*corev1.Pod, error) {
			return pods.List(labels.Everything())
		},
		StreamIdleTimeout:     4 * time.Hour,
		StreamCreationTimeout: 30 * time.Second,
	}, true)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok")) })
	mux.HandleFunc("GET /containerLogs/{namespace}/{pod}/{container}", func(w http.ResponseWriter, req *http.Request) {
		serveContainerLogs(w, req, p)
	})
	mux.Handle("/", podRoutes)

	l, err := net.Listen("tcp", net.JoinHostPort(cfg.address, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("kubelet API: %w", err)
	}
	srv := &http.Server{
		Handler:           mux,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: 30 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(slog.Default().Handler(), slog.LevelDebug),
	}
	go func() {
		if err := srv.ServeTLS(l, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			slog.Error("kubelet API stopped", "node", nodeName, "err", err)
		}
	}()
	return func() { _ = srv.Close() }, nil
}

// serveContainerLogs is the kubelet's /containerLogs route. It replaces
// virtual-kubelet's, whose errors carry a prefix of its own, so that
// clients of pods/log read the kubelet's messages ("container "x" in pod
// "y" is waiting to start: ...") and tailLines=0 means no line.
func serveContainerLogs(w http.ResponseWriter, req *http.Request, p *provider) {
	opts, err := parseLogOptions(req.URL.Query())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	logs, err := p.GetContainerLogs(req.Context(), req.PathValue("namespace"), req.PathValue("pod"), req.PathValue("container"), opts)
	if err != nil {
		code := http.StatusInternalServerError
		switch {
		case errdefs.IsNotFound(err):
			code = http.StatusNotFound
		case errdefs.IsInvalidInput(err):
			code = http.StatusBadRequest
		}
		writeError(w, code, err)
		return
	}
	defer logs.Close()
	w.Header().Set("Content-Type", "text/plain")
	flusher, _ := w.(http.Flusher)
	buf := make([]byte, 32*1024)
	for {
		n, err := logs.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if flusher != nil {
				flusher.Flush()
			}
		}
		if err != nil {
			return
		}
	}
}

// writeError writes err's message as the body, with no newline added.
func writeError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, err.Error())
}

func parseLogOptions(q url.Values) (api.ContainerLogOpts, error) {
	opts := api.ContainerLogOpts{Tail: -1}
	intParam := func(name string, min int, dst *int) error {
		v := q.Get(name)
		if v == "" {
			return nil
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < min {
			return fmt.Errorf("invalid %s %q", name, v)
		}
		*dst = n
		return nil
	}
	boolParam := func(name string, dst *bool) error {
		v := q.Get(name)
		if v == "" {
			return nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("invalid %s %q", name, v)
		}
		*dst = b
		return nil
	}
	for _, err := range []error{
		intParam("tailLines", 0, &opts.Tail),
		intParam("limitBytes", 1, &opts.LimitBytes),
		intParam("sinceSeconds", 1, &opts.SinceSeconds),
		boolParam("follow", &opts.Follow),
		boolParam("previous", &opts.Previous),
		boolParam("timestamps", &opts.Timestamps),
	} {
		if err != nil {
			return opts, err
		}
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return opts, fmt.Errorf("invalid sinceTime %q", v)
		}
		opts.SinceTime = t
	}
	return opts, nil
}

// selfSignedCert makes a serving certificate for the node's name and
// address. The API server does not verify kubelet serving certificates
// unless it is given --kubelet-certificate-authority.
func selfSignedCert(nodeName, address string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: nodeName + "@kubexec-node"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{nodeName, "localhost"},
		IPAddresses:  []net.IP{net.ParseIP(address)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
