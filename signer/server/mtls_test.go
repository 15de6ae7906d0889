package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stellaops/tlog/signer/api"
	"github.com/stellaops/tlog/signer/client"
	"github.com/stellaops/tlog/signer/server"
)

type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCA(t *testing.T) *testCA {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert, key}
}

func (ca *testCA) issue(t *testing.T, subject pkix.Name, server bool) tls.Certificate {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestMTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t)
	srvCert := ca.issue(t, pkix.Name{CommonName: "signer"}, true)
	writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", ca.cert.Raw)
	writePEM(t, filepath.Join(dir, "tls.crt"), "CERTIFICATE", srvCert.Certificate[0])
	kd, _ := x509.MarshalPKCS8PrivateKey(srvCert.PrivateKey)
	writePEM(t, filepath.Join(dir, "tls.key"), "PRIVATE KEY", kd)

	cfg := baseConfig(time.Now())
	cfg.TLS = &server.TLSConfig{CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key"), ClientCAFile: filepath.Join(dir, "ca.crt")}
	cfg.Tenants[1].MTLSSubjects = []string{"CN=ci-client,O=Acme"}
	cfg.Tenants[1].MTLSScopes = []string{"sign:dsse"}
	e := newEnv(t, cfg, server.Options{})

	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	httpc := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}}}
	}
	req := api.DSSERequest{Statement: json.RawMessage(statement("https://spdx.dev/Document", ""))}
	ctx := context.Background()

	good := ca.issue(t, pkix.Name{CommonName: "ci-client", Organization: []string{"Acme"}}, false)
	resp, err := client.New(e.url, "", httpc(good)).SignDSSE(ctx, req)
	if err != nil {
		t.Fatalf("mTLS caller: %v", err)
	}
	if row := e.audit(resp.RequestID); row.Tenant != "other" || row.Caller != "mtls:CN=ci-client,O=Acme" || row.Decision != "signed" {
		t.Errorf("audit %+v", row)
	}

	var ce *client.Error
	unmapped := ca.issue(t, pkix.Name{CommonName: "stranger"}, false)
	if _, err := client.New(e.url, "", httpc(unmapped)).SignDSSE(ctx, req); !errors.As(err, &ce) || ce.Status != 401 {
		t.Errorf("unmapped certificate: %v", err)
	}
	if _, err := client.New(e.url, "", httpc()).SignDSSE(ctx, req); !errors.As(err, &ce) || ce.Status != 401 {
		t.Errorf("no certificate: %v", err)
	}
	// A bearer token still works over the same TLS listener.
	if _, err := client.New(e.url, tokOther, httpc()).SignDSSE(ctx, req); err != nil {
		t.Errorf("token over TLS: %v", err)
	}
}
