package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"

	"intercom/provisioning"
)

// testCA is a certificate authority made up by one test, so that the
// station's provisioning client can be given it as its only trusted root.
type testCA struct {
	Path string // PEM of the CA certificate: the station's provisioning.ca
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// newTestCA creates a CA and writes its certificate to dir/name.pem.
func newTestCA(t testing.TB, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serialNumber(t),
		Subject:               pkix.Name{CommonName: "intercom e2e " + name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{Path: filepath.Join(dir, name+".pem"), cert: cert, key: key}
	writePEM(t, ca.Path, "CERTIFICATE", der)
	return ca
}

// issue writes a server certificate for 127.0.0.1 (IP SAN: the station
// connects by address) and its key to dir/name.pem and dir/name.key.
func (ca *testCA) issue(t testing.TB, dir, name string) (certPath, keyPath string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serialNumber(t),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	writePEM(t, certPath, "CERTIFICATE", der)
	writePEM(t, keyPath, "PRIVATE KEY", keyDER)
	return certPath, keyPath
}

func serialNumber(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// nginxOptions shape the provisioning server.
type nginxOptions struct {
	// CA issues the server's certificate; a new one when nil.
	CA *testCA
	// Backend (host:port, plain HTTP) gets the requests for files missing
	// from the document root.
	Backend string
}

// nginx is a provisioning server: HTTPS on 127.0.0.1:Port serving the
// files under Root with ETags (nginx's: modification time and size),
// logging each request to an access log the tests read.
type nginx struct {
	Addr      string // 127.0.0.1:port
	Root      string
	CA        *testCA
	dir       string
	accessLog string
	// mtime is the modification time of the last published file; each
	// publish moves it on by a second so that every version of a file has
	// its own ETag, however fast the test rewrites it.
	mtime time.Time
	proc  *proc
}

// startNginx renders testdata/provisioning/nginx.conf.tmpl, starts nginx in
// the foreground as the test's own process and waits until it accepts
// connections.
func startNginx(t testing.TB, opts nginxOptions) *nginx {
	t.Helper()
	requireTools(t, "nginx")
	dir := filepath.Join(t.TempDir(), "nginx")
	n := &nginx{
		Addr:      fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)),
		Root:      filepath.Join(dir, "www"),
		CA:        opts.CA,
		dir:       dir,
		accessLog: filepath.Join(dir, "access.log"),
		mtime:     time.Now().Add(-time.Hour).Truncate(time.Second),
	}
	for _, d := range []string{n.Root, filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if n.CA == nil {
		n.CA = newTestCA(t, dir, "ca")
	}
	cert, key := n.CA.issue(t, dir, "server")
	user := ""
	if os.Geteuid() == 0 {
		// nginx's workers would switch to nobody, who cannot enter the
		// test's private temporary directory.
		user = "root"
	}
	tmpl := template.Must(template.ParseFiles("testdata/provisioning/nginx.conf.tmpl"))
	var cfg bytes.Buffer
	err := tmpl.Execute(&cfg, map[string]any{
		"User": user, "Dir": dir, "Addr": n.Addr, "Root": n.Root,
		"Cert": cert, "Key": key, "Backend": opts.Backend,
	})
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, cfg.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// -e: the error log before the configuration is read, in dir too.
	n.proc = startProc(t, dir, "nginx", tool(t, "nginx"),
		"-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"), "-g", "daemon off;")
	t.Cleanup(func() {
		if t.Failed() {
			dumpFile(t, "nginx error log", filepath.Join(dir, "error.log"))
			dumpFile(t, "nginx access log", n.accessLog)
		}
	})
	eventually(t, 10*time.Second, "nginx ready", all(n.proc.alive, func() error {
		c, err := net.DialTimeout("tcp", n.Addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}))
	return n
}

// URL is the https URL of path (starting with /) on this server.
func (n *nginx) URL(path string) string {
	return "https://" + n.Addr + path
}

// publish puts body at name under the document root atomically (a
// station fetching meanwhile gets the old or the new file, never half).
func (n *nginx) publish(t testing.TB, name string, body []byte) {
	t.Helper()
	path := filepath.Join(n.Root, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		t.Fatal(err)
	}
	n.mtime = n.mtime.Add(time.Second)
	if err := os.Chtimes(tmp, n.mtime, n.mtime); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// remove takes name off the document root.
func (n *nginx) remove(t testing.TB, name string) {
	t.Helper()
	if err := os.Remove(filepath.Join(n.Root, name)); err != nil {
		t.Fatal(err)
	}
}

// nginxRequest is one line of the access log.
type nginxRequest struct {
	Method, URI string
	Status      int
	BodyBytes   int
}

func (r nginxRequest) String() string {
	return fmt.Sprintf("%s %s %d (%d bytes)", r.Method, r.URI, r.Status, r.BodyBytes)
}

// requests reads the access log: what nginx saw and answered, in order.
func (n *nginx) requests() ([]nginxRequest, error) {
	data, err := os.ReadFile(n.accessLog)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []nginxRequest
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			return nil, fmt.Errorf("nginx access log: malformed line %q", sc.Text())
		}
		status, err1 := strconv.Atoi(f[2])
		size, err2 := strconv.Atoi(f[3])
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("nginx access log: malformed line %q", sc.Text())
		}
		out = append(out, nginxRequest{Method: f[0], URI: f[1], Status: status, BodyBytes: size})
	}
	return out, sc.Err()
}

// requestsFor returns the requests for uri from position i of the log on.
func (n *nginx) requestsFor(t testing.TB, i int, uri string) []nginxRequest {
	t.Helper()
	reqs, err := n.requests()
	if err != nil {
		t.Fatal(err)
	}
	var out []nginxRequest
	for _, r := range reqs[min(i, len(reqs)):] {
		if r.URI == uri {
			out = append(out, r)
		}
	}
	return out
}

// mark returns the position of the next request in the access log.
func (n *nginx) mark(t testing.TB) int {
	t.Helper()
	reqs, err := n.requests()
	if err != nil {
		t.Fatal(err)
	}
	return len(reqs)
}

// served is a condition: from position i on, nginx answered a GET of uri
// with status.
func (n *nginx) served(i int, uri string, status int) func() error {
	return func() error {
		if err := n.proc.alive(); err != nil {
			return err
		}
		reqs, err := n.requests()
		if err != nil {
			return err
		}
		var seen []string
		for _, r := range reqs[min(i, len(reqs)):] {
			if r.Method == "GET" && r.URI == uri && r.Status == status {
				return nil
			}
			seen = append(seen, r.String())
		}
		return fmt.Errorf("no GET %s answered %d; requests since: %v", uri, status, seen)
	}
}

// startTruncatingBackend serves every request (plain HTTP on loopback) with
// a 200 that announces a Content-Length of len(body) but closes the
// connection after the first half of it: a transfer cut short, as a
// crashed server or a dropped link leaves it. It returns host:port.
func startTruncatingBackend(t testing.TB, body []byte) string {
	t.Helper()
	l, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer conn.Close()
		fmt.Fprintf(buf, "HTTP/1.1 200 OK\r\nContent-Type: application/yaml\r\nContent-Length: %d\r\n\r\n", len(body))
		buf.Write(body[:len(body)/2])
		buf.Flush()
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return l.Addr().String()
}

// TestPeersNginxProvisioningServer checks the provisioning server on its
// own, with the station's fetch code as the client: nginx's ETags make the
// second GET a 304, a file missing from the root reaches the truncating
// backend, and a client trusting another CA never gets a document.
func TestPeersNginxProvisioningServer(t *testing.T) {
	t.Parallel()
	doc := []byte("device:\n  name: provisioned door\n")
	n := startNginx(t, nginxOptions{Backend: startTruncatingBackend(t, doc)})
	client, err := provisioning.NewClient(provisioning.TLSConfig{CA: n.CA.Path})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	src := provisioning.Source{URL: n.URL("/door.yaml")}

	n.publish(t, "door.yaml", doc)
	got, changed, err := provisioning.Fetch(ctx, client, src, provisioning.Document{})
	if err != nil || !changed || !bytes.Equal(got.Body, doc) || got.ETag == "" {
		t.Fatalf("first fetch: changed %v, ETag %q, body %q, err %v", changed, got.ETag, got.Body, err)
	}
	if _, changed, err = provisioning.Fetch(ctx, client, src, got); err != nil || changed {
		t.Fatalf("second fetch: changed %v, err %v; want a 304", changed, err)
	}
	n.publish(t, "door.yaml", []byte("device:\n  name: other door\n"))
	if _, changed, err = provisioning.Fetch(ctx, client, src, got); err != nil || !changed {
		t.Fatalf("fetch after publish: changed %v, err %v; want the new file", changed, err)
	}
	// nginx writes an access log line after the response has gone out, so
	// the client can be done before the line is there.
	eventually(t, 5*time.Second, "nginx logs 200, 304, 200", func() error {
		if reqs := n.requestsFor(t, 0, "/door.yaml"); fmt.Sprint(statuses(reqs)) != "[200 304 200]" {
			return fmt.Errorf("nginx answered %v", reqs)
		}
		return nil
	})

	n.remove(t, "door.yaml")
	m := n.mark(t)
	if _, _, err = provisioning.Fetch(ctx, client, src, provisioning.Document{}); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("fetch of a cut body: err %v; want truncated", err)
	}
	eventually(t, 5*time.Second, "nginx logs the cut transfer", n.served(m, "/door.yaml", 200))
	if r := n.requestsFor(t, m, "/door.yaml"); r[0].BodyBytes >= len(doc) {
		t.Errorf("nginx sent %d body bytes of %d; want fewer", r[0].BodyBytes, len(doc))
	}

	other := newTestCA(t, t.TempDir(), "other")
	stranger, err := provisioning.NewClient(provisioning.TLSConfig{CA: other.Path})
	if err != nil {
		t.Fatal(err)
	}
	n.publish(t, "door.yaml", doc)
	m = n.mark(t)
	if _, _, err = provisioning.Fetch(ctx, stranger, src, provisioning.Document{}); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("fetch trusting another CA: err %v; want a certificate error", err)
	}
	if reqs := n.requestsFor(t, m, "/door.yaml"); len(reqs) != 0 {
		t.Errorf("nginx served %v to a client that does not trust it", reqs)
	}
}

func statuses(reqs []nginxRequest) []int {
	out := make([]int, len(reqs))
	for i, r := range reqs {
		out[i] = r.Status
	}
	return out
}
