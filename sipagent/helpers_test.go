package sipagent

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

const waitLong = 10 * time.Second

func testLogger() *slog.Logger {
	if os.Getenv("SIPAGENT_DEBUG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return nil
}

// startAgent runs an agent on a loopback port until the test ends.
func startAgent(t *testing.T, cfg Config) *Agent {
	t.Helper()
	a, stop := runAgent(t, cfg)
	t.Cleanup(stop)
	if cfg.Registrar == "" {
		// Run has started once it reports registration disabled.
		if e := waitEvent[RegistrationChanged](t, a); e.State != StateDisabled {
			t.Fatalf("first event %+v, want disabled", e)
		}
	}
	return a
}

// runAgent starts an agent, after setup if given; stop ends Run and
// checks its result.
func runAgent(t *testing.T, cfg Config, setup ...func(*Agent)) (*Agent, func()) {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	for _, f := range setup {
		f(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	return a, func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(waitLong):
				t.Errorf("Run did not return")
			}
		})
	}
}

// waitEvent returns the next event of type T, skipping others.
func waitEvent[T Event](t *testing.T, a *Agent) T {
	t.Helper()
	timeout := time.After(waitLong)
	for {
		select {
		case ev := <-a.Events():
			if e, ok := ev.(T); ok {
				return e
			}
		case <-timeout:
			var zero T
			t.Fatalf("no %T event", zero)
			return zero
		}
	}
}

// noEvent checks that no event of type T is queued.
func noEvent[T Event](t *testing.T, a *Agent) {
	t.Helper()
	for {
		select {
		case ev := <-a.Events():
			if _, ok := ev.(T); ok {
				t.Fatalf("unexpected %T event: %+v", ev, ev)
			}
		default:
			return
		}
	}
}

func offer(port uint16, dtmf bool, codecs ...string) MediaOffer {
	m := MediaOffer{Addr: netip.AddrPortFrom(netip.IPv4Unspecified(), port), DTMF: dtmf, Ptime: 20 * time.Millisecond}
	for _, c := range codecs {
		m.Codecs = append(m.Codecs, Codec{Name: c})
	}
	return m
}

func target(user string, a *Agent) string {
	return "sip:" + user + "@" + a.Addr().String()
}

type dialResult struct {
	call *Call
	err  error
}

func dialAsync(ctx context.Context, a *Agent, req DialRequest) <-chan dialResult {
	ch := make(chan dialResult, 1)
	go func() {
		c, err := a.Dial(ctx, req)
		ch <- dialResult{c, err}
	}()
	return ch
}

func waitDial(t *testing.T, ch <-chan dialResult) dialResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitLong):
		t.Fatal("Dial did not return")
		return dialResult{}
	}
}

func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLong):
		t.Fatalf("%s not closed", what)
	}
}

// rawPeer is a bare sipgo stack on loopback for sending hand-made requests
// and playing fake servers.
type rawPeer struct {
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	client *sipgo.Client
	addr   netip.AddrPort
}

func newRawPeer(t *testing.T, setup func(srv *sipgo.Server)) *rawPeer {
	t.Helper()
	return newRawPeerAt(t, net.IPv4(127, 0, 0, 1), setup)
}

// newRawPeerAt is newRawPeer listening and sending from ip.
func newRawPeerAt(t *testing.T, ip net.IP, setup func(srv *sipgo.Server)) *rawPeer {
	t.Helper()
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("rawpeer"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(srv)
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
	if err != nil {
		t.Fatal(err)
	}
	addr := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	local := conn.LocalAddr().String()
	ua.TransportLayer().Pool("udp").Add(local, &sip.UDPConnection{PacketConn: conn, PacketAddr: local, Listener: true})
	client, err := sipgo.NewClient(ua, sipgo.WithClientHostname(ip.String()), sipgo.WithClientPort(int(addr.Port())),
		sipgo.WithClientConnectionAddr(local))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeUDP(conn)
	}()
	t.Cleanup(func() {
		_ = ua.Close()
		_ = conn.Close()
		<-done
	})
	return &rawPeer{ua: ua, srv: srv, client: client, addr: addr}
}

// newAnsweringPeer is a raw peer that answers each INVITE that admit lets
// through (nil: all) with 200 OK and a PCMU answer for 127.0.0.1:42000,
// and confirms its dialog on the ACK; setup adds other handlers. admit
// responds itself to what it keeps out.
func newAnsweringPeer(t *testing.T, admit func(*sip.Request, sip.ServerTransaction) bool, setup func(*sipgo.Server)) *rawPeer {
	t.Helper()
	var mu sync.Mutex
	var peer *rawPeer
	var ss *sipgo.DialogServerSession
	p := newRawPeer(t, func(srv *sipgo.Server) {
		srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			if admit != nil && !admit(req, tx) {
				return
			}
			mu.Lock()
			p := peer // the race detector cannot see the socket order
			mu.Unlock()
			dua := sipgo.DialogUA{Client: p.client, ContactHDR: sip.ContactHeader{Address: sip.Uri{Scheme: "sip", User: "flat", Host: p.addr.Addr().String(), Port: int(p.addr.Port())}}}
			s, err := dua.ReadInvite(req, tx)
			if err != nil {
				return // the dial under test fails
			}
			mu.Lock()
			ss = s
			mu.Unlock()
			body, _ := buildSDP(netip.MustParseAddrPort("127.0.0.1:42000"), []Codec{{"PCMU", 0}}, 0, 0)
			_ = s.RespondSDP(body)
		})
		srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
			mu.Lock()
			defer mu.Unlock()
			if ss != nil {
				_ = ss.ReadAck(req, tx)
			}
		})
		if setup != nil {
			setup(srv)
		}
	})
	mu.Lock()
	peer = p
	mu.Unlock()
	return p
}

// challenged answers a request without Proxy-Authorization with a 407
// (realm pbx, nonce abc), as a PBX does; it reports whether it did.
func challenged(req *sip.Request, tx sip.ServerTransaction) bool {
	if req.GetHeader("Proxy-Authorization") != nil {
		return false
	}
	res := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
	res.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="pbx", nonce="abc"`))
	_ = tx.Respond(res)
	return true
}

func (p *rawPeer) do(t *testing.T, req *sip.Request) *sip.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	defer cancel()
	res, err := p.client.Do(ctx, req)
	if err != nil {
		t.Fatalf("%s: %v", req.Method, err)
	}
	return res
}

func mustURI(t *testing.T, s string) sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatal(err)
	}
	return u
}
