package devcluster

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the cluster's key material, generated at start and written under
// the cluster's folder.
type pki struct {
	caCert *x509.Certificate
	caKey  crypto.Signer

	// Paths of the PEM files.
	caCertFile, caKeyFile           string
	servingCertFile, servingKeyFile string
	adminCertFile, adminKeyFile     string
	saKeyFile, saPubFile            string

	caPEM, adminCertPEM, adminKeyPEM []byte
}

// newPKI creates a CA, a serving certificate for the API server on the
// loopback address, a cluster-admin client certificate (group
// system:masters) and the service account signing key, all under dir.
func newPKI(dir string) (*pki, error) {
	p := &pki{}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kubexec-devcluster-ca"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA certificate: %w", err)
	}
	p.caCert, err = x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	p.caKey = caKey
	p.caPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	p.caCertFile = filepath.Join(dir, "ca.crt")
	p.caKeyFile = filepath.Join(dir, "ca.key")
	if err := writeCertAndKey(p.caCertFile, p.caKeyFile, caDER, caKey); err != nil {
		return nil, err
	}

	servingDER, servingKey, err := p.issue(2, pkix.Name{CommonName: "kube-apiserver"},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
		[]net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1")},
		x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	p.servingCertFile = filepath.Join(dir, "apiserver.crt")
	p.servingKeyFile = filepath.Join(dir, "apiserver.key")
	if err := writeCertAndKey(p.servingCertFile, p.servingKeyFile, servingDER, servingKey); err != nil {
		return nil, err
	}

	adminDER, adminKey, err := p.issue(3, pkix.Name{CommonName: "kubexec-admin", Organization: []string{"system:masters"}},
		nil, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, err
	}
	p.adminCertFile = filepath.Join(dir, "admin.crt")
	p.adminKeyFile = filepath.Join(dir, "admin.key")
	if err := writeCertAndKey(p.adminCertFile, p.adminKeyFile, adminDER, adminKey); err != nil {
		return nil, err
	}
	p.adminCertPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: adminDER})
	p.adminKeyPEM, err = keyPEM(adminKey)
	if err != nil {
		return nil, err
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	p.saKeyFile = filepath.Join(dir, "sa.key")
	p.saPubFile = filepath.Join(dir, "sa.pub")
	saKeyPEM, err := keyPEM(saKey)
	if err != nil {
		return nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.saKeyFile, saKeyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.saPubFile, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return nil, err
	}
	return p, nil
}

// issue signs a leaf certificate with the CA.
func (p *pki) issue(serial int64, subject pkix.Name, dnsNames []string, ips []net.IP, usage x509.ExtKeyUsage) ([]byte, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      subject,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		DNSNames:     dnsNames,
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, key.Public(), p.caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %s: %w", subject.CommonName, err)
	}
	return der, key, nil
}

func keyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func writeCertAndKey(certFile, keyFile string, der []byte, key crypto.Signer) error {
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return err
	}
	k, err := keyPEM(key)
	if err != nil {
		return err
	}
	return os.WriteFile(keyFile, k, 0o600)
}
