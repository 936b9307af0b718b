package provisioning

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// docServer serves one document with an ETag and a Last-Modified date and
// records the conditional headers it saw.
type docServer struct {
	mu       sync.Mutex
	body     string
	etag     string
	modified time.Time
	sig      []byte // served at path+".sig" when set
	status   int    // overrides 200 when set
	requests int
	ifNone   []string
	ifMod    []string
	auth     []string
}

func (d *docServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if strings.HasSuffix(r.URL.Path, ".sig") {
		if d.sig == nil {
			http.NotFound(w, r)
			return
		}
		w.Write(d.sig)
		return
	}
	d.requests++
	d.ifNone = append(d.ifNone, r.Header.Get("If-None-Match"))
	d.ifMod = append(d.ifMod, r.Header.Get("If-Modified-Since"))
	d.auth = append(d.auth, r.Header.Get("Authorization"))
	if d.status != 0 {
		http.Error(w, "nope", d.status)
		return
	}
	if d.etag != "" {
		w.Header().Set("ETag", d.etag)
	}
	if !d.modified.IsZero() {
		w.Header().Set("Last-Modified", d.modified.Format(http.TimeFormat))
	}
	// ServeContent implements RFC 9110 conditional requests.
	http.ServeContent(w, r, "", d.modified, strings.NewReader(d.body))
}

func (d *docServer) set(body, etag string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.body, d.etag = body, etag
}

func TestFetchETagAnd304(t *testing.T) {
	ds := &docServer{body: "device: {name: a}\n", etag: `"v1"`}
	srv := httptest.NewServer(ds)
	defer srv.Close()
	src := Source{URL: srv.URL + "/st/001122334455.yaml"}
	doc, changed, err := fetch(context.Background(), srv.Client(), src, Document{}, t0)
	if err != nil || !changed {
		t.Fatalf("first fetch: changed=%v err=%v", changed, err)
	}
	if string(doc.Body) != ds.body || doc.ETag != `"v1"` || doc.URL != src.URL || !doc.Fetched.Equal(t0) {
		t.Fatalf("doc %+v", doc)
	}
	again, changed, err := fetch(context.Background(), srv.Client(), src, doc, t0.Add(time.Hour))
	if err != nil || changed {
		t.Fatalf("second fetch: changed=%v err=%v", changed, err)
	}
	if !again.Fetched.Equal(t0) || string(again.Body) != ds.body {
		t.Fatalf("304 did not give back prev: %+v", again)
	}
	if ds.ifNone[0] != "" || ds.ifNone[1] != `"v1"` {
		t.Fatalf("If-None-Match sent: %q", ds.ifNone)
	}
	ds.set("device: {name: b}\n", `"v2"`)
	doc2, changed, err := fetch(context.Background(), srv.Client(), src, doc, t0)
	if err != nil || !changed || doc2.ETag != `"v2"` || !strings.Contains(string(doc2.Body), "b}") {
		t.Fatalf("changed doc: %+v changed=%v err=%v", doc2, changed, err)
	}
	// Validators of another URL must not make the request conditional.
	other := doc
	other.URL = srv.URL + "/other.yaml"
	if _, changed, err := fetch(context.Background(), srv.Client(), src, other, t0); err != nil || !changed {
		t.Fatalf("fetch with another URL's validators: changed=%v err=%v", changed, err)
	}
	if got := ds.ifNone[len(ds.ifNone)-1]; got != "" {
		t.Fatalf("conditional header %q sent for a different URL", got)
	}
}

func TestFetchLastModified(t *testing.T) {
	ds := &docServer{body: "x: 1\n", modified: t0}
	srv := httptest.NewServer(ds)
	defer srv.Close()
	src := Source{URL: srv.URL + "/a.yaml"}
	doc, _, err := fetch(context.Background(), srv.Client(), src, Document{}, t0)
	if err != nil || doc.LastModified != t0.Format(http.TimeFormat) || doc.ETag != "" {
		t.Fatalf("doc %+v err %v", doc, err)
	}
	if _, changed, err := fetch(context.Background(), srv.Client(), src, doc, t0); err != nil || changed {
		t.Fatalf("changed=%v err=%v", changed, err)
	}
	if ds.ifMod[1] != doc.LastModified {
		t.Fatalf("If-Modified-Since %q", ds.ifMod)
	}
}

func TestFetchAuth(t *testing.T) {
	ds := &docServer{body: "x: 1\n"}
	srv := httptest.NewServer(ds)
	defer srv.Close()
	ctx := context.Background()
	if _, _, err := fetch(ctx, srv.Client(), Source{URL: srv.URL, User: "st", Password: "pw"}, Document{}, t0); err != nil {
		t.Fatal(err)
	}
	if _, _, err := fetch(ctx, srv.Client(), Source{URL: srv.URL, Token: "tok"}, Document{}, t0); err != nil {
		t.Fatal(err)
	}
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("st:pw"))
	if ds.auth[0] != basic || ds.auth[1] != "Bearer tok" {
		t.Fatalf("Authorization headers %q", ds.auth)
	}
	_, _, err := fetch(ctx, srv.Client(), Source{URL: srv.URL, User: "u", Token: "t"}, Document{}, t0)
	if err == nil || !strings.Contains(err.Error(), "both user and token") {
		t.Fatalf("user and token: %v", err)
	}
}

func TestFetchErrorsHideSecrets(t *testing.T) {
	ds := &docServer{status: http.StatusForbidden}
	srv := httptest.NewServer(ds)
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "http://alice:hunter2@", 1) + "/c.yaml?token=s3cret"
	prev := Document{URL: "x"}
	got, changed, err := fetch(context.Background(), srv.Client(), Source{URL: u, Token: "bearer-secret"}, prev, t0)
	if err == nil || changed || got.URL != "x" {
		t.Fatalf("403: doc %+v changed=%v err=%v", got, changed, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "403") || !strings.HasPrefix(msg, "provisioning: ") {
		t.Fatalf("error %q does not name the status", msg)
	}
	for _, secret := range []string{"hunter2", "alice", "s3cret", "bearer-secret"} {
		if strings.Contains(msg, secret) {
			t.Fatalf("error %q leaks %q", msg, secret)
		}
	}
	// A transport error carries the URL too: it must be masked as well.
	srv.Close()
	_, _, err = fetch(context.Background(), srv.Client(), Source{URL: u}, Document{}, t0)
	if err == nil || strings.Contains(err.Error(), "s3cret") || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("transport error %v", err)
	}
	if _, _, err := fetch(context.Background(), srv.Client(), Source{URL: "ftp://h/x?k=s3cret"}, Document{}, t0); err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("ftp url: %v", err)
	}
	if _, _, err := fetch(context.Background(), nil, Source{URL: "http://h/"}, Document{}, t0); err == nil {
		t.Fatal("nil client accepted")
	}
}

func TestMaskURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://u:p@h/x/{mac}.yaml?t=1#f": "https://h/x/%7Bmac%7D.yaml?***",
		"http://h/a.yaml":                  "http://h/a.yaml",
		"http://h/a.yaml?":                 "http://h/a.yaml?***",
		"http://[::1":                      "(unparsable url)",
	} {
		if got := MaskURL(in); got != want {
			t.Errorf("MaskURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFetchTruncated(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		rw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 100\r\nContent-Type: text/yaml\r\n\r\ndevice: {na")
		rw.Flush()
	}))
	defer srv.Close()
	_, changed, err := fetch(context.Background(), srv.Client(), Source{URL: srv.URL + "/t.yaml"}, Document{}, t0)
	if err == nil || changed {
		t.Fatalf("truncated body accepted: changed=%v err=%v", changed, err)
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) || !strings.Contains(err.Error(), "/t.yaml: truncated") {
		t.Fatalf("error %q", err)
	}
}

func TestFetchTooLarge(t *testing.T) {
	big := strings.Repeat("#", MaxDocument+1)
	for name, h := range map[string]http.HandlerFunc{
		"content-length": func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) },
		"chunked": func(w http.ResponseWriter, r *http.Request) {
			w.(http.Flusher).Flush() // no Content-Length: chunked
			io.WriteString(w, big)
		},
	} {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			_, _, err := fetch(context.Background(), srv.Client(), Source{URL: srv.URL}, Document{}, t0)
			if err == nil || !strings.Contains(err.Error(), "too large") {
				t.Fatalf("oversize body: %v", err)
			}
		})
	}
	exact := strings.Repeat("#", MaxDocument)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, exact) }))
	defer srv.Close()
	if doc, _, err := fetch(context.Background(), srv.Client(), Source{URL: srv.URL}, Document{}, t0); err != nil || len(doc.Body) != MaxDocument {
		t.Fatalf("body at the limit: %d bytes, %v", len(doc.Body), err)
	}
}

func TestFetchSignature(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	body := "sip: {user: \"100\"}\n"
	good := ed25519.Sign(priv, []byte(body))
	bad := ed25519.Sign(priv, []byte(body+"x"))
	cases := []struct {
		name string
		sig  []byte
		want error
	}{
		{"raw", good, nil},
		{"base64", []byte(" " + base64.StdEncoding.EncodeToString(good) + "\n"), nil},
		{"missing", nil, ErrUnsigned},
		{"bad", bad, ErrBadSignature},
		{"bad base64 text", []byte(base64.StdEncoding.EncodeToString(bad)), ErrBadSignature},
		{"junk", []byte("not a signature"), ErrBadSignature},
		{"short", []byte(base64.StdEncoding.EncodeToString(good[:32])), ErrBadSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := &docServer{body: body, sig: c.sig}
			srv := httptest.NewServer(ds)
			defer srv.Close()
			doc, changed, err := fetch(context.Background(), srv.Client(), Source{URL: srv.URL + "/s.yaml?k=v", PublicKey: pub}, Document{}, t0)
			if c.want == nil {
				if err != nil || !changed || string(doc.Body) != body {
					t.Fatalf("changed=%v err=%v", changed, err)
				}
				return
			}
			if !errors.Is(err, c.want) || changed || doc.Body != nil {
				t.Fatalf("got changed=%v err=%v, want %v", changed, err, c.want)
			}
		})
	}
}

func TestParsePublicKey(t *testing.T) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(pub)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	pemText := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	dir := t.TempDir()
	pemFile := filepath.Join(dir, "prov.pem")
	b64File := filepath.Join(dir, "prov.pub")
	junkFile := filepath.Join(dir, "junk")
	os.WriteFile(pemFile, []byte(pemText), 0o600)
	os.WriteFile(b64File, []byte(b64+"\n"), 0o600)
	os.WriteFile(junkFile, []byte("hello"), 0o600)
	for _, in := range []string{b64, " " + b64 + "\n", pemText, pemFile, b64File} {
		got, err := ParsePublicKey(in)
		if err != nil || !got.Equal(pub) {
			t.Errorf("ParsePublicKey(%.30q) = %v, %v", in, got, err)
		}
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecDER}))
	for _, in := range []string{"", base64.StdEncoding.EncodeToString(pub[:31]), "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n", ecPEM, junkFile, filepath.Join(dir, "none")} {
		if got, err := ParsePublicKey(in); err == nil || got != nil {
			t.Errorf("ParsePublicKey(%.30q) accepted: %v", in, got)
		} else if !strings.HasPrefix(err.Error(), "provisioning: public key") {
			t.Errorf("error %q", err)
		}
	}
}
