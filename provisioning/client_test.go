package provisioning

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeCA writes the TLS test server's certificate as a PEM CA file.
func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNewClientVerifiesAgainstCA(t *testing.T) {
	ds := &docServer{body: "x: 1\n", etag: `"e"`}
	srv := httptest.NewUnstartedServer(ds)
	// The handshake the system roots refuse below is expected.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	client, err := NewClient(TLSConfig{CA: writeCA(t, srv)})
	if err != nil {
		t.Fatal(err)
	}
	doc, _, err := Fetch(context.Background(), client, Source{URL: srv.URL + "/a.yaml"}, Document{})
	if err != nil || string(doc.Body) != "x: 1\n" {
		t.Fatalf("fetch over TLS with the CA: %v", err)
	}
	if _, changed, err := Fetch(context.Background(), client, Source{URL: srv.URL + "/a.yaml"}, doc); err != nil || changed {
		t.Fatalf("304 over TLS: changed=%v err=%v", changed, err)
	}

	// System roots do not know the test server's certificate.
	sys, err := NewClient(TLSConfig{})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Fetch(context.Background(), sys, Source{URL: srv.URL + "/a.yaml"}, Document{})
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Fatalf("unverified server accepted: %v", err)
	}
}

func TestNewClientConfigErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	for name, c := range map[string]TLSConfig{
		"missing ca":     {CA: filepath.Join(dir, "none.pem")},
		"ca without pem": {CA: notPEM},
		"cert only":      {ClientCert: notPEM},
		"key only":       {ClientKey: notPEM},
		"bad pair":       {ClientCert: notPEM, ClientKey: notPEM},
	} {
		if _, err := NewClient(c); err == nil || !strings.HasPrefix(err.Error(), "provisioning: ") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestRedirectToPlainHTTPRefused(t *testing.T) {
	plain := httptest.NewServer(&docServer{body: "x: 1\n"})
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.RedirectHandler(plain.URL+"/a.yaml", http.StatusFound))
	defer tlsSrv.Close()
	client, err := NewClient(TLSConfig{CA: writeCA(t, tlsSrv)})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = Fetch(context.Background(), client, Source{URL: tlsSrv.URL + "/a.yaml", Token: "t"}, Document{})
	if err == nil || !strings.Contains(err.Error(), "redirect from https to http refused") {
		t.Fatalf("downgrade redirect: %v", err)
	}
}

func TestNewClientPresentsClientCertificate(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "station-001122334455"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile := writeFile(t, dir, "client.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	keyFile := writeFile(t, dir, "client.key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))

	srv := httptest.NewUnstartedServer(&docServer{body: "x: 1\n"})
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	ca := writeCA(t, srv)

	client, err := NewClient(TLSConfig{CA: ca, ClientCert: certFile, ClientKey: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Fetch(context.Background(), client, Source{URL: srv.URL}, Document{}); err != nil {
		t.Fatalf("with client certificate: %v", err)
	}
	anon, err := NewClient(TLSConfig{CA: ca})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Fetch(context.Background(), anon, Source{URL: srv.URL}, Document{}); err == nil {
		t.Fatal("server requiring a client certificate served without one")
	}
}
