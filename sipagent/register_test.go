package sipagent

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"intercom/internal/clock/clocktest"
)

// fakeRegistrar records every REGISTER and OPTIONS and answers with reply.
type fakeRegistrar struct {
	*rawPeer
	reqs chan *sip.Request

	mu    sync.Mutex
	ended bool // the test is over: late handler errors are dropped
}

type reply struct {
	code    int
	reason  string
	headers []sip.Header
}

func newFakeRegistrar(t *testing.T, register func(req *sip.Request) reply) *fakeRegistrar {
	t.Helper()
	f := &fakeRegistrar{reqs: make(chan *sip.Request, 100)}
	handle := func(answer func(req *sip.Request) reply) sipgo.RequestHandler {
		return func(req *sip.Request, tx sip.ServerTransaction) {
			f.reqs <- req.Clone()
			r := answer(req)
			res := sip.NewResponseFromRequest(req, r.code, r.reason, nil)
			for _, h := range r.headers {
				res.AppendHeader(h)
			}
			if err := tx.Respond(res); err != nil {
				f.fail(t, "registrar respond: %v", err)
			}
		}
	}
	// Registered before the peer's own cleanup, so this runs after the
	// peer has stopped: a request sipgo still hands over late (slow under
	// qemu) must not fail a test that has ended.
	t.Cleanup(func() {
		f.mu.Lock()
		f.ended = true
		f.mu.Unlock()
	})
	f.rawPeer = newRawPeer(t, func(srv *sipgo.Server) {
		srv.OnRegister(handle(register))
		srv.OnOptions(handle(func(*sip.Request) reply { return reply{code: 200, reason: "OK"} }))
	})
	return f
}

// fail reports a handler error while the test runs and drops it after.
func (f *fakeRegistrar) fail(t *testing.T, format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ended {
		t.Errorf(format, args...)
	}
}

func (f *fakeRegistrar) next(t *testing.T, method sip.RequestMethod) *sip.Request {
	t.Helper()
	timeout := time.After(waitLong)
	for {
		select {
		case r := <-f.reqs:
			if r.Method == method {
				return r
			}
		case <-timeout:
			t.Fatalf("registrar got no %s", method)
			return nil
		}
	}
}

func (f *fakeRegistrar) none(t *testing.T) {
	t.Helper()
	select {
	case r := <-f.reqs:
		t.Fatalf("unexpected %s", r.Short())
	default:
	}
}

func expiresOf(t *testing.T, req *sip.Request) int {
	t.Helper()
	h := req.GetHeader("Expires")
	if h == nil {
		t.Fatalf("no Expires in %s", req.Short())
	}
	n, err := strconv.Atoi(h.Value())
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func md5hex(parts ...string) string {
	sum := md5.Sum([]byte(strings.Join(parts, ":")))
	return hex.EncodeToString(sum[:])
}

// checkDigest verifies an RFC 2617 digest without qop, as kamailio's
// www_challenge with flags "0" asks for.
func checkDigest(req *sip.Request, user, realm, nonce, password string) error {
	h := req.GetHeader("Authorization")
	if h == nil {
		return errors.New("no Authorization")
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil {
		return err
	}
	if cred.Username != user || cred.Realm != realm || cred.Nonce != nonce {
		return fmt.Errorf("credentials %+v", cred)
	}
	want := md5hex(md5hex(user, realm, password), nonce, md5hex(string(req.Method), cred.URI))
	if cred.Response != want {
		return fmt.Errorf("digest response %s, want %s", cred.Response, want)
	}
	return nil
}

func TestRegisterDigestRefreshAndUnregister(t *testing.T) {
	authErrs := make(chan error, 10)
	reg := newFakeRegistrar(t, func(req *sip.Request) reply {
		if req.GetHeader("Authorization") == nil {
			return reply{401, "Unauthorized", []sip.Header{sip.NewHeader("WWW-Authenticate", `Digest realm="127.0.0.1", nonce="n0nce", algorithm=MD5`)}}
		}
		if err := checkDigest(req, "auth100", "127.0.0.1", "n0nce", "s3cret"); err != nil {
			authErrs <- err
			return reply{403, "Forbidden", nil}
		}
		c := req.Contact()
		return reply{200, "OK", []sip.Header{sip.NewHeader("Contact", "<"+c.Address.String()+">;expires=60")}}
	})
	clk := clocktest.New(time.Unix(1000, 0))
	a, stop := runAgent(t, Config{
		Registrar: reg.addr.String(), User: "100", AuthUser: "auth100", Password: "s3cret",
		DisplayName: "Door", Clock: clk,
	})
	defer stop()

	if e := waitEvent[RegistrationChanged](t, a); e.State != StateRegistering || e.Registrar != reg.addr.String() {
		t.Fatalf("first event %+v", e)
	}
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateRegistered || !e.Expires.Equal(clk.Now().Add(60*time.Second)) {
		t.Fatalf("second event %+v, want registered until %v", e, clk.Now().Add(60*time.Second))
	}
	select {
	case err := <-authErrs:
		t.Fatal(err)
	default:
	}
	first := reg.next(t, sip.REGISTER)
	authed := reg.next(t, sip.REGISTER)
	if got := first.Recipient.String(); got != "sip:"+reg.addr.String() {
		t.Errorf("Request-URI %s", got)
	}
	for _, r := range []*sip.Request{first, authed} {
		if f := r.From(); f.Address.String() != "sip:100@127.0.0.1" || !f.Params.Has("tag") || f.DisplayName != "Door" {
			t.Errorf("From %s", f.Value())
		}
		if to := r.To(); to.Address.String() != "sip:100@127.0.0.1" || to.Params.Has("tag") {
			t.Errorf("To %s", to.Value())
		}
		if c := r.Contact(); c.Address.Host != "127.0.0.1" || c.Address.Port != int(a.Addr().Port()) || c.Address.User != "100" {
			t.Errorf("Contact %s", c.Value())
		}
		if n := expiresOf(t, r); n != 300 {
			t.Errorf("Expires %d", n)
		}
		if r.Source() != a.Addr().String() {
			t.Errorf("REGISTER came from %s, not the listening socket %s", r.Source(), a.Addr())
		}
	}
	if authed.CallID().Value() != first.CallID().Value() || authed.CSeq().SeqNo <= first.CSeq().SeqNo {
		t.Errorf("Call-ID/CSeq %s %d then %s %d", first.CallID(), first.CSeq().SeqNo, authed.CallID(), authed.CSeq().SeqNo)
	}

	// The refresh is due at half the granted 60 s.
	clk.WaitForTimers(1)
	clk.Advance(29 * time.Second)
	if clk.Pending() != 1 {
		t.Fatal("refresh fired early")
	}
	reg.none(t)
	clk.Advance(time.Second)
	refresh := reg.next(t, sip.REGISTER)
	if refresh.CallID().Value() != first.CallID().Value() || refresh.CSeq().SeqNo <= authed.CSeq().SeqNo {
		t.Errorf("refresh Call-ID/CSeq %s %d", refresh.CallID(), refresh.CSeq().SeqNo)
	}
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateRegistered {
		t.Fatalf("after refresh: %+v", e)
	}
	reg.next(t, sip.REGISTER) // the authenticated refresh

	stop()
	unreg := reg.next(t, sip.REGISTER)
	if n := expiresOf(t, unreg); n != 0 {
		t.Errorf("un-REGISTER Expires %d", n)
	}
	if unreg = reg.next(t, sip.REGISTER); expiresOf(t, unreg) != 0 || unreg.GetHeader("Authorization") == nil {
		t.Errorf("authenticated un-REGISTER: %s", unreg.String())
	}
}

func TestRegisterIntervalTooBrief(t *testing.T) {
	reg := newFakeRegistrar(t, func(req *sip.Request) reply {
		if n, _ := strconv.Atoi(req.GetHeader("Expires").Value()); n < 120 {
			return reply{423, "Interval Too Brief", []sip.Header{sip.NewHeader("Min-Expires", "120")}}
		}
		return reply{200, "OK", []sip.Header{sip.NewHeader("Expires", "120")}}
	})
	clk := clocktest.New(time.Unix(1000, 0))
	a := startAgent(t, Config{Registrar: reg.addr.String(), User: "100", RegisterExpires: 30 * time.Second, Clock: clk})
	if n := expiresOf(t, reg.next(t, sip.REGISTER)); n != 30 {
		t.Errorf("first Expires %d", n)
	}
	if n := expiresOf(t, reg.next(t, sip.REGISTER)); n != 120 {
		t.Errorf("retry Expires %d, want Min-Expires 120", n)
	}
	waitEvent[RegistrationChanged](t, a) // registering
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateRegistered || !e.Expires.Equal(clk.Now().Add(120*time.Second)) {
		t.Fatalf("event %+v", e)
	}
}

func TestRegisterBackoff(t *testing.T) {
	reg := newFakeRegistrar(t, func(*sip.Request) reply { return reply{503, "Service Unavailable", nil} })
	clk := clocktest.New(time.Unix(1000, 0))
	a := startAgent(t, Config{
		Registrar: reg.addr.String(), User: "100", Clock: clk,
		RetryMin: time.Second, RetryMax: 4 * time.Second,
	})
	failed := func() {
		t.Helper()
		for {
			e := waitEvent[RegistrationChanged](t, a)
			if e.State == StateFailed {
				var se *StatusError
				if !errors.As(e.Err, &se) || se.Code != 503 {
					t.Fatalf("failure error %v", e.Err)
				}
				reg.next(t, sip.REGISTER)
				return
			}
			if e.State != StateRegistering {
				t.Fatalf("event %+v", e)
			}
		}
	}
	failed()
	// Each wait is the doubled delay (capped at 4 s) ±20%.
	for _, d := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		clk.WaitForTimers(1)
		wait, _ := clk.Next()
		if wait < d*8/10 || wait > d*12/10 {
			t.Fatalf("retry after %v, want %v ±20%%", wait, d)
		}
		clk.Advance(wait - time.Millisecond)
		reg.none(t)
		clk.Advance(time.Millisecond)
		failed()
	}
}

func TestOutboundProxyRoute(t *testing.T) {
	proxy := newFakeRegistrar(t, func(*sip.Request) reply { return reply{200, "OK", nil} })
	a := startAgent(t, Config{Registrar: "127.0.0.9:5999", OutboundProxy: proxy.addr.String(), User: "100"})
	req := proxy.next(t, sip.REGISTER)
	if req.Recipient.String() != "sip:127.0.0.9:5999" {
		t.Errorf("Request-URI %s", req.Recipient.String())
	}
	if r := req.Route(); r == nil || r.Address.Host != "127.0.0.1" || r.Address.Port != int(proxy.addr.Port()) || !r.Address.UriParams.Has("lr") {
		t.Errorf("Route %v", req.GetHeader("Route"))
	}
	waitEvent[RegistrationChanged](t, a)
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateRegistered {
		t.Fatalf("event %+v", e)
	}
}

func TestIncomingFromProxy(t *testing.T) {
	reg := newFakeRegistrar(t, func(*sip.Request) reply { return reply{200, "OK", nil} })
	flat := startAgent(t, Config{Registrar: reg.addr.String(), User: "flat"})
	waitEvent[RegistrationChanged](t, flat)
	waitEvent[RegistrationChanged](t, flat)

	for _, tc := range []struct {
		listen string
		want   bool
	}{{"127.0.0.1:0", true}, {"127.0.0.2:0", false}} {
		caller := startAgent(t, Config{User: "door", Listen: tc.listen})
		ctx, cancel := context.WithCancel(context.Background())
		res := dialAsync(ctx, caller, DialRequest{Targets: []string{target("flat", flat)}, Media: offer(40000, false, "PCMU")})
		in := waitEvent[IncomingCall](t, flat)
		if in.FromProxy != tc.want || in.Source != caller.Addr() {
			t.Errorf("from %s: FromProxy %v Source %v", tc.listen, in.FromProxy, in.Source)
		}
		if !strings.HasPrefix(in.From, "sip:door@") {
			t.Errorf("From %q", in.From)
		}
		cancel()
		waitDial(t, res)
		waitEvent[CallEnded](t, flat)
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{Transport: "sctp", Listen: "127.0.0.1:0"},
		{Listen: "localhost:0"},
		{Listen: "127.0.0.1"},
		{Listen: "127.0.0.1:99999"},
		{Listen: "127.0.0.1:0", Registrar: "pbx.example.com"},
		{Listen: "127.0.0.1:0", Registrar: "sips:pbx.example.com", User: "1"},
		{Listen: "127.0.0.1:0", Registrar: "sip:1@pbx.example.com", User: "1"},
		{Listen: "127.0.0.1:0", User: "a@b"},
	} {
		if a, err := New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
			_ = a.Run(canceledCtx())
		}
	}
}

func canceledCtx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

func TestRunTwice(t *testing.T) {
	a := startAgent(t, Config{User: "x"})
	if err := a.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

func TestJitterBounds(t *testing.T) {
	for range 1000 {
		if d := jitter(10 * time.Second); d < 8*time.Second || d > 12*time.Second {
			t.Fatalf("jitter(10s) = %v", d)
		}
	}
}

func TestParseTarget(t *testing.T) {
	a, err := New(Config{Listen: "127.0.0.1:0", Registrar: "pbx.example.com:5070", User: "100"})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Run(canceledCtx()) }()
	for in, want := range map[string]string{
		"201":                        "sip:201@pbx.example.com:5070",
		" sip:202@10.0.0.1 ":         "sip:202@10.0.0.1",
		"SIP:203@host;transport=udp": "sip:203@host;transport=udp",
	} {
		u, err := a.parseTarget(in)
		if err != nil || u.String() != want {
			t.Errorf("parseTarget(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, bad := range []string{"", "sips:1@x", "tel:+49", "sip:@", "2 01@x"} {
		if u, err := a.parseTarget(bad); err == nil {
			t.Errorf("parseTarget(%q) = %v", bad, u)
		}
	}
}
