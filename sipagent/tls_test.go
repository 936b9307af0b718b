package sipagent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"intercom/internal/clock/clocktest"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

// issue makes a leaf certificate for name (a DNS name or an IP) that
// serves as a server and as a client certificate.
func (ca *testCA) issue(t *testing.T, name string) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: name},
		NotBefore: ca.cert.NotBefore, NotAfter: ca.cert.NotAfter,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if ip := net.ParseIP(name); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{name}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// tlsHello is what a TLS registrar learnt from one handshake.
type tlsHello struct {
	sni    string
	client []*x509.Certificate
	err    error
}

// newTLSRegistrar is a tcpRegistrar whose connections are TLS with cert;
// clientCAs, when set, demands a client certificate signed by them. Each
// handshake's outcome is reported on hellos, and only connections whose
// handshake succeeded are served.
func newTLSRegistrar(t *testing.T, cert tls.Certificate, clientCAs *x509.CertPool, answer answerFunc) (*tcpRegistrar, <-chan tlsHello) {
	t.Helper()
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCAs != nil {
		conf.ClientAuth, conf.ClientCAs = tls.RequireAndVerifyClientCert, clientCAs
	}
	hellos := make(chan tlsHello, 10)
	f := serveTCPRegistrar(t, l, answer, func(c net.Conn) net.Conn {
		tc := tls.Server(c, conf)
		err := tc.Handshake()
		st := tc.ConnectionState()
		hellos <- tlsHello{sni: st.ServerName, client: st.PeerCertificates, err: err}
		if err != nil {
			c.Close()
			return nil
		}
		return tc
	})
	return f, hellos
}

func nextHello(t *testing.T, hellos <-chan tlsHello) tlsHello {
	t.Helper()
	select {
	case h := <-hellos:
		return h
	case <-time.After(waitLong):
		t.Fatal("registrar saw no TLS handshake")
		return tlsHello{}
	}
}

func TestTLSRegisterVerifiesNameAndSendsSNI(t *testing.T) {
	ca := newTestCA(t, "pbx CA")
	reg, hellos := newTLSRegistrar(t, ca.issue(t, "pbx.test"), nil, okWith("300"))
	res := &fakeResolver{targets: map[string][]netip.AddrPort{"pbx.test": {reg.addr}}}
	a := startAgent(t, Config{
		Transport: "tls", Registrar: "pbx.test", User: "100", Resolver: res,
		TLS: TLS{RootCAs: ca.pool}, Keepalive: 25 * time.Second, Clock: clocktest.New(time.Now()),
	})
	if h := nextHello(t, hellos); h.err != nil || h.sni != "pbx.test" {
		t.Fatalf("handshake %+v, want SNI pbx.test", h)
	}
	fl := reg.accept(t)
	r := fl.next(t, sip.REGISTER)
	// Without a server certificate our Contact names our end of the
	// connection, which the registrar reaches over that connection.
	c := r.Contact()
	if c.Address.Scheme != "sip" || c.Address.Port != int(fl.remote.Port()) || c.Address.UriParams.GetOr("transport", "") != "tls" {
		t.Errorf("Contact %s, want sip: at our end of the connection (%v) with transport=tls", c.Value(), fl.remote)
	}
	if via := r.Via(); via.Transport != "TLS" || via.Port != int(a.Addr().Port()) {
		t.Errorf("Via %s, want SIP/2.0/TLS with our listening port", via.Value())
	}
	if e := registered(t, a); e.Transport != "tls" || e.Addr != reg.addr {
		t.Errorf("registered over %q from %v, want tls from %v", e.Transport, e.Addr, reg.addr)
	}
	res.mu.Lock()
	q := res.queries[0]
	res.mu.Unlock()
	if q.Transport != "tls" {
		t.Errorf("resolver asked for %+v, want tls", q)
	}
}

// TestTLSContactWithServerCertificate: with a server certificate our
// Contact names the listening port, where the registrar can connect; a
// new connection after the old one closed keeps it.
func TestTLSContactWithServerCertificate(t *testing.T) {
	ca := newTestCA(t, "pbx CA")
	own := ca.issue(t, "127.0.0.1")
	reg, _ := newTLSRegistrar(t, ca.issue(t, "127.0.0.1"), nil, okWith("300"))
	a := startAgent(t, Config{
		Transport: "tls", Registrar: reg.addr.String(), User: "100",
		TLS: TLS{RootCAs: ca.pool, Certificate: &own}, Clock: clocktest.New(time.Now()),
	})
	fl := reg.accept(t)
	if c := fl.next(t, sip.REGISTER).Contact(); c.Address.Port != int(a.Addr().Port()) {
		t.Errorf("Contact %s, want our listening port %d", c.Value(), a.Addr().Port())
	}
	registered(t, a)
}

// TestTLSReconnectMovesContact: without a server certificate, a new
// connection means a new Contact; the re-REGISTER removes the old one.
func TestTLSReconnectMovesContact(t *testing.T) {
	ca := newTestCA(t, "pbx CA")
	reg, _ := newTLSRegistrar(t, ca.issue(t, "127.0.0.1"), nil, okWith("300"))
	a := startAgent(t, Config{
		Transport: "tls", Registrar: reg.addr.String(), User: "100",
		TLS: TLS{RootCAs: ca.pool}, Clock: clocktest.New(time.Now()),
	})
	first := reg.accept(t)
	first.next(t, sip.REGISTER)
	registered(t, a)
	first.conn.Close()
	second := reg.accept(t)
	r := second.next(t, sip.REGISTER)
	var ports []string
	for _, h := range r.GetHeaders("Contact") {
		ports = append(ports, h.Value())
	}
	if len(ports) != 2 || !strings.Contains(ports[0], ":"+strconv.Itoa(int(second.remote.Port()))+";") ||
		!strings.Contains(ports[1], ":"+strconv.Itoa(int(first.remote.Port()))+";") || !strings.Contains(ports[1], "expires=0") {
		t.Errorf("re-REGISTER Contacts %q, want the new connection's end and the old one's with expires=0 (%v, %v)", ports, second.remote, first.remote)
	}
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateRegistered {
		t.Errorf("after reconnect: %+v", e)
	}
}

// TestTLSKeepaliveInsideTLS: the RFC 5626 double-CRLF ping travels inside
// the TLS session, and the pong there keeps the flow.
func TestTLSKeepaliveInsideTLS(t *testing.T) {
	ca := newTestCA(t, "pbx CA")
	reg, _ := newTLSRegistrar(t, ca.issue(t, "127.0.0.1"), nil, okWith("3600"))
	clk := clocktest.New(time.Now())
	ka := 25 * time.Second
	a := startAgent(t, Config{
		Transport: "tls", Registrar: reg.addr.String(), User: "100",
		TLS: TLS{RootCAs: ca.pool}, Keepalive: ka, Clock: clk,
	})
	fl := reg.accept(t)
	fl.next(t, sip.REGISTER)
	registered(t, a)
	clk.WaitForTimers(2)
	clk.Advance(ka)
	fl.ping(t)
	// The pong re-arms the keep-alive: the next ping follows.
	waitNext(t, clk, ka)
	clk.Advance(ka)
	fl.ping(t)
	select {
	case <-reg.conns:
		t.Error("the agent opened a second connection")
	default:
	}
}

func TestTLSUnknownCARefused(t *testing.T) {
	trusted := newTestCA(t, "our CA")
	other := newTestCA(t, "someone else's CA")
	reg, hellos := newTLSRegistrar(t, other.issue(t, "127.0.0.1"), nil, okWith("300"))
	a := startAgent(t, Config{
		Transport: "tls", Registrar: reg.addr.String(), User: "100",
		TLS: TLS{RootCAs: trusted.pool}, Clock: clocktest.New(time.Now()),
	})
	e := registrationOutcome(t, a, StateFailed)
	if e.Err == nil || !strings.Contains(e.Err.Error(), "certificate") {
		t.Errorf("registration error %v, want one about the certificate", e.Err)
	}
	if h := nextHello(t, hellos); h.err == nil {
		t.Error("the handshake succeeded")
	}
	select {
	case fl := <-reg.conns:
		t.Errorf("a connection from %v got past the handshake", fl.remote)
	default:
	}
}

func TestTLSWrongNameRefused(t *testing.T) {
	ca := newTestCA(t, "pbx CA")
	reg, _ := newTLSRegistrar(t, ca.issue(t, "other.test"), nil, okWith("300"))
	res := &fakeResolver{targets: map[string][]netip.AddrPort{"pbx.test": {reg.addr}}}
	a := startAgent(t, Config{
		Transport: "tls", Registrar: "pbx.test", User: "100", Resolver: res,
		TLS: TLS{RootCAs: ca.pool}, Clock: clocktest.New(time.Now()),
	})
	if e := registrationOutcome(t, a, StateFailed); e.Err == nil || !strings.Contains(e.Err.Error(), "certificate") {
		t.Errorf("registration error %v, want one about the certificate", e.Err)
	}
}

func TestTLSClientCertificate(t *testing.T) {
	ca := newTestCA(t, "pbx CA")
	stations := newTestCA(t, "station CA")
	reg, hellos := newTLSRegistrar(t, ca.issue(t, "127.0.0.1"), stations.pool, okWith("300"))
	clientCert := stations.issue(t, "door-100")

	// Without a client certificate the registrar refuses us.
	a := startAgent(t, Config{
		Transport: "tls", Registrar: reg.addr.String(), User: "100",
		TLS: TLS{RootCAs: ca.pool}, Clock: clocktest.New(time.Now()),
	})
	if e := registrationOutcome(t, a, StateFailed); e.Err == nil || !strings.Contains(e.Err.Error(), "certificate") {
		t.Errorf("registration error %v, want one about the certificate", e.Err)
	}
	if h := nextHello(t, hellos); h.err == nil {
		t.Error("the registrar accepted a handshake without a client certificate")
	}

	b := startAgent(t, Config{
		Transport: "tls", Registrar: reg.addr.String(), User: "100",
		TLS: TLS{RootCAs: ca.pool, ClientCertificate: &clientCert}, Clock: clocktest.New(time.Now()),
	})
	var h tlsHello
	for h = nextHello(t, hellos); h.err != nil; h = nextHello(t, hellos) {
		// Agent a's retries may still arrive.
	}
	if len(h.client) == 0 || h.client[0].Subject.CommonName != "door-100" {
		t.Errorf("client certificate %v, want door-100", h.client)
	}
	registered(t, b)
}

// TestTLSWaitsForPlausibleClock: a board that booted in 1970 does not try
// a handshake until the clock is set.
func TestTLSWaitsForPlausibleClock(t *testing.T) {
	ca := newTestCA(t, "pbx CA")
	reg, hellos := newTLSRegistrar(t, ca.issue(t, "127.0.0.1"), nil, okWith("300"))
	clk := clocktest.New(time.Unix(0, 0))
	notBefore := time.Now().Add(-time.Hour)
	a := startAgent(t, Config{
		Transport: "tls", Registrar: reg.addr.String(), User: "100",
		TLS: TLS{RootCAs: ca.pool, NotBefore: notBefore}, Clock: clk,
	})
	e := waitEvent[RegistrationChanged](t, a)
	if e.State != StateRegistering || e.Err == nil || !strings.Contains(e.Err.Error(), "clock") {
		t.Fatalf("first event %+v, want registering, waiting for the clock", e)
	}
	clk.WaitForTimers(1)
	// Still 1970 after a poll: no handshake yet.
	clk.Advance(clockPoll)
	clk.WaitForTimers(1)
	select {
	case h := <-hellos:
		t.Fatalf("handshake %+v before the clock was set", h)
	default:
	}
	// NTP sets the clock.
	clk.Advance(notBefore.Sub(clk.Now()) + time.Minute)
	if h := nextHello(t, hellos); h.err != nil {
		t.Fatalf("handshake: %v", h.err)
	}
	reg.accept(t).next(t, sip.REGISTER)
	registered(t, a)
}

// TestTLSIncomingOverRegistrationConnection: the registrar sends its
// INVITE over our TLS connection, and the call says it is secure.
func TestTLSIncomingOverRegistrationConnection(t *testing.T) {
	ca := newTestCA(t, "pbx CA")
	reg, _ := newTLSRegistrar(t, ca.issue(t, "127.0.0.1"), nil, okWith("300"))
	a := startAgent(t, Config{
		Transport: "tls", Registrar: reg.addr.String(), User: "100",
		TLS: TLS{RootCAs: ca.pool}, Clock: clocktest.New(time.Now()),
	})
	fl := reg.accept(t)
	fl.next(t, sip.REGISTER)
	registered(t, a)

	body, err := buildSDP(netip.MustParseAddrPort("127.0.0.1:40000"), []Codec{{Name: "PCMU"}}, 0, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	host := reg.addr.Addr().String()
	inv := sip.NewRequest(sip.INVITE, sip.Uri{Scheme: "sip", User: "100", Host: "127.0.0.1", Port: int(a.Addr().Port()), UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}})
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "TLS", Host: host, Port: int(reg.addr.Port())}
	via.Params.Add("branch", sip.GenerateBranch())
	inv.AppendHeader(via)
	inv.AppendHeader(&sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "201", Host: host}, Params: sip.HeaderParams{{K: "tag", V: "t201"}}})
	inv.AppendHeader(&sip.ToHeader{Address: sip.Uri{Scheme: "sip", User: "100", Host: host}})
	callID := sip.CallIDHeader("over-the-tls-flow")
	inv.AppendHeader(&callID)
	inv.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.INVITE})
	inv.AppendHeader(&sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "201", Host: host, Port: int(reg.addr.Port()), UriParams: sip.HeaderParams{{K: "transport", V: "tls"}}}})
	inv.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	inv.SetBody(body)
	if _, err := fl.conn.Write([]byte(inv.String())); err != nil {
		t.Fatal(err)
	}
	in := waitEvent[IncomingCall](t, a)
	if err := in.Call.Reject(sip.StatusBusyHere, "Busy Here"); err != nil {
		t.Fatal(err)
	}
	if res := fl.final(t); res.StatusCode != sip.StatusBusyHere {
		t.Errorf("final response %s", res.StartLine())
	}
}

// TestTLSListener: with a server certificate our listening port completes
// handshakes; without one it refuses them.
func TestTLSListener(t *testing.T) {
	ca := newTestCA(t, "station CA")
	cert := ca.issue(t, "127.0.0.1")
	for _, tt := range []struct {
		name string
		cert *tls.Certificate
		ok   bool
	}{{"with certificate", &cert, true}, {"without", nil, false}} {
		t.Run(tt.name, func(t *testing.T) {
			a := startAgent(t, Config{Transport: "tls", TLS: TLS{Certificate: tt.cert}, Clock: clocktest.New(time.Now())})
			c, err := tls.Dial("tcp", a.Addr().String(), &tls.Config{RootCAs: ca.pool, ServerName: "127.0.0.1"})
			if err == nil {
				c.Close()
			}
			if (err == nil) != tt.ok {
				t.Errorf("handshake error %v, want success %v", err, tt.ok)
			}
		})
	}
}

func TestSecureSignallingOnlyOverTLS(t *testing.T) {
	for tr, want := range map[string]bool{"UDP": false, "TCP": false, "TLS": true} {
		a := &Agent{transport: tr}
		if a.secureSignalling() != want {
			t.Errorf("%s: secureSignalling %v", tr, !want)
		}
	}
}

func writePEM(t *testing.T, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadTLS(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "pbx CA")
	caFile := writePEM(t, dir, "ca.pem", "CERTIFICATE", ca.cert.Raw)
	leaf := ca.issue(t, "door.test")
	keyDER, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile := writePEM(t, dir, "cert.pem", "CERTIFICATE", leaf.Certificate[0])
	keyFile := writePEM(t, dir, "key.pem", "PRIVATE KEY", keyDER)
	junk := filepath.Join(dir, "junk.pem")
	if err := os.WriteFile(junk, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}

	got, err := LoadTLS(caFile, certFile, keyFile, certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if got.RootCAs == nil || got.Certificate == nil || got.ClientCertificate == nil {
		t.Errorf("LoadTLS left parts unset: %+v", got)
	}
	if got, err := LoadTLS("", "", "", "", ""); err != nil || got.RootCAs != nil || got.Certificate != nil || got.ClientCertificate != nil {
		t.Errorf("empty LoadTLS: %+v, %v", got, err)
	}
	for _, tt := range []struct {
		name                                 string
		ca, cert, key, clientCert, clientKey string
		want                                 string
	}{
		{"missing ca", filepath.Join(dir, "nope.pem"), "", "", "", "", "tls ca"},
		{"junk ca", junk, "", "", "", "", "no PEM certificate"},
		{"cert without key", "", certFile, "", "", "", "need both"},
		{"client key without cert", "", "", "", "", keyFile, "need both"},
		{"key is no certificate", "", keyFile, keyFile, "", "", "tls cert"},
	} {
		if _, err := LoadTLS(tt.ca, tt.cert, tt.key, tt.clientCert, tt.clientKey); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestNewTLSDefaultsListenPort(t *testing.T) {
	a, err := New(Config{Transport: "tls", Listen: "", Clock: clocktest.New(time.Now())})
	if err != nil {
		// Port 5061 may be taken (or privileged) on the test machine;
		// only a bind failure is acceptable then.
		if !strings.Contains(err.Error(), "listen") {
			t.Fatal(err)
		}
		return
	}
	defer func() { _ = a.flows.Close(); _ = a.ua.Close() }()
	if a.Addr().Port() != defaultTLSPort {
		t.Errorf("listening on %v, want port %d", a.Addr(), defaultTLSPort)
	}
}
