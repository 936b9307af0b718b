package sipagent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"

	"intercom/internal/clock/clocktest"
)

// The example of RFC 7616 section 3.9.1: one nonce offered with SHA-256
// and with MD5, and the responses the RFC gives for each.
const (
	rfcRealm    = "http-auth@example.org"
	rfcNonce    = "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v"
	rfcOpaque   = "FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"
	rfcCnonce   = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
	rfcSHA256   = `Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`
	rfcMD5      = `Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=MD5, nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"`
	rfcUser     = "Mufasa"
	rfcPassword = "Circle of Life"
)

func TestDigestRFC7616Vectors(t *testing.T) {
	for _, tc := range []struct {
		header, want string
	}{
		{rfcMD5, "8ca523f5e9506fed4657c9700eebdbec"},
		{rfcSHA256, "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
	} {
		c, err := parseChallenge(tc.header)
		if err != nil {
			t.Fatal(err)
		}
		if c.realm != rfcRealm || c.nonce != rfcNonce || c.opaque != rfcOpaque || strings.Join(c.qop, "|") != "auth|auth-int" {
			t.Fatalf("parsed %+v", c)
		}
		v, err := c.credentials(digestRequest{
			method: "GET", uri: "/dir/index.html", username: rfcUser, password: rfcPassword, cnonce: rfcCnonce, nc: 1,
		})
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf(`Digest username="Mufasa", realm="%s", nonce="%s", uri="/dir/index.html", response="%s", algorithm=%s, opaque="%s", qop=auth, nc=00000001, cnonce="%s"`,
			rfcRealm, rfcNonce, tc.want, c.algorithm, rfcOpaque, rfcCnonce)
		if v != want {
			t.Errorf("%s:\n got %s\nwant %s", c.algorithm, v, want)
		}
	}
}

// TestDigestMatchesIndependentImplementation checks every algorithm and
// qop against github.com/icholy/digest; it has no -sess variants, so
// those are checked against RFC 7616 section 3.4.2 written out here.
func TestDigestMatchesIndependentImplementation(t *testing.T) {
	for _, alg := range []string{"", "MD5", "SHA-256", "SHA-512-256", "md5"} {
		for _, qop := range []string{"", "auth", "auth-int"} {
			hdr := `Digest realm="pbx", nonce="n1", opaque="op"`
			if alg != "" {
				hdr += ", algorithm=" + alg
			}
			if qop != "" {
				hdr += `, qop="` + qop + `"`
			}
			c, err := parseChallenge(hdr)
			if err != nil {
				t.Fatal(err)
			}
			body := []byte("v=0\r\n")
			got, err := c.credentials(digestRequest{method: "INVITE", uri: "sip:201@pbx", body: body, username: "door", password: "pw", cnonce: "cn", nc: 7})
			if err != nil {
				t.Fatal(err)
			}
			ic, err := digest.ParseChallenge(hdr)
			if err != nil {
				t.Fatal(err)
			}
			want, err := digest.Digest(ic, digest.Options{
				Method: "INVITE", URI: "sip:201@pbx", Username: "door", Password: "pw", Cnonce: "cn", Count: 7,
				GetBody: func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil },
			})
			if err != nil {
				t.Fatal(err)
			}
			if cred := mustCredentials(t, got); cred.Response != want.Response {
				t.Errorf("algorithm %q qop %q: response %s, want %s", alg, qop, cred.Response, want.Response)
			}
		}
	}
	c, err := parseChallenge(`Digest realm="pbx", nonce="n1", algorithm=SHA-256-sess, qop="auth"`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.credentials(digestRequest{method: "REGISTER", uri: "sip:pbx", username: "door", password: "pw", cnonce: "cn", nc: 1})
	if err != nil {
		t.Fatal(err)
	}
	h := func(s ...string) string { return sha256hex(strings.Join(s, ":")) }
	want := h(h(h("door", "pbx", "pw"), "n1", "cn"), "n1", "00000001", "cn", "auth", h("REGISTER", "sip:pbx"))
	if cred := mustCredentials(t, got); cred.Response != want || cred.Algorithm != "SHA-256-sess" {
		t.Errorf("SHA-256-sess: %s, want response %s", got, want)
	}
}

func mustCredentials(t *testing.T, v string) *digest.Credentials {
	t.Helper()
	cred, err := digest.ParseCredentials(v)
	if err != nil {
		t.Fatalf("our credentials %q do not parse: %v", v, err)
	}
	return cred
}

func sha256hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func challengeResponse(code int, headers ...string) *sip.Response {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "pbx"})
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 1, MethodName: sip.REGISTER})
	res := sip.NewResponseFromRequest(req, code, "Unauthorized", nil)
	name := "WWW-Authenticate"
	if code == sip.StatusProxyAuthRequired {
		name = "Proxy-Authenticate"
	}
	for _, h := range headers {
		n, v := name, h
		if p, rest, ok := strings.Cut(h, ": "); ok && !strings.HasPrefix(h, "Digest") {
			n, v = p, rest
		}
		res.AppendHeader(sip.NewHeader(n, v))
	}
	return res
}

func TestStrongestChallenge(t *testing.T) {
	md5 := `Digest realm="pbx", nonce="a", algorithm=MD5, qop="auth"`
	sha256 := `Digest realm="pbx", nonce="b", algorithm=SHA-256, qop="auth"`
	sha512 := `Digest realm="pbx", nonce="c", algorithm=SHA-512-256, qop="auth"`
	for _, tc := range []struct {
		name    string
		headers []string
		want    string // nonces picked, in order
		err     string
	}{
		{"md5 alone", []string{md5}, "a", ""},
		{"no algorithm is MD5", []string{`Digest realm="pbx", nonce="x"`}, "x", ""},
		{"strongest last", []string{md5, sha256, sha512}, "c", ""},
		{"strongest first", []string{sha512, md5, sha256}, "c", ""},
		{"sha-256 over md5", []string{md5, sha256}, "b", ""},
		{"rfc 7616 example", []string{rfcSHA256, rfcMD5}, rfcNonce, ""},
		{"unknown ignored", []string{`Digest realm="pbx", nonce="u", algorithm=SHA-1`, md5, `Digest realm="pbx", nonce="v", algorithm=AKAv1-MD5`}, "a", ""},
		{"basic ignored", []string{`Basic realm="pbx"`, sha256}, "b", ""},
		{"malformed skipped", []string{`Digest realm="pbx", nonce="unterminated`, md5}, "a", ""},
		{"equal strength keeps first", []string{md5, `Digest realm="pbx", nonce="d"`}, "a", ""},
		{"two realms", []string{md5, `Digest realm="other", nonce="o", algorithm=SHA-256`}, "a,o", ""},
		{"only unknown", []string{`Digest realm="pbx", nonce="u", algorithm=SHA-1`, `Digest realm="pbx", nonce="v", algorithm=FOO`}, "", `algorithm "SHA-1" not supported`},
		{"only auth-int-less qop", []string{`Digest realm="pbx", nonce="u", qop="auth-conf"`}, "", `qop "auth-conf" not supported`},
		{"sess without qop", []string{`Digest realm="pbx", nonce="u", algorithm=MD5-sess`}, "", `without qop`},
		{"only basic", []string{`Basic realm="pbx"`}, "", "no Digest challenge"},
		{"none", nil, "", "no Digest challenge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := strongestChallenges(challengeResponse(401, tc.headers...))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.HasPrefix(err.Error(), "sipagent: digest: 401") {
					t.Fatalf("err %v, want one saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var nonces []string
			for _, o := range got {
				nonces = append(nonces, o.nonce)
			}
			if s := strings.Join(nonces, ","); s != tc.want {
				t.Errorf("picked %s, want %s", s, tc.want)
			}
		})
	}
}

func TestParseChallengeMalformed(t *testing.T) {
	for _, v := range []string{
		"",
		"Digest",
		"Digest ",
		"Digestrealm=x",
		`Digest realm="pbx"`,
		`Digest nonce="n"`,
		`Digest realm="pbx", nonce=""`,
		`Digest realm="pbx", nonce="n",`,
		`Digest realm="pbx" nonce="n"`,
		`Digest realm="pbx", nonce="n", realm="x"`,
		`Digest realm="pbx", nonce`,
		`Digest realm="pbx", nonce=`,
		`Digest realm="pbx", nonce="n`,
		`Digest realm="pbx", nonce="n\`,
		`Digest realm="pbx", nonce="a` + "\x00" + `b"`,
		`Digest realm="pbx", nonce="n", qop=auth,auth-int`,
		`Digest =x, realm="pbx", nonce="n"`,
		`Digest realm="pbx", nonce="n", @=1`,
		`Digest realm="pbx", nonce="` + strings.Repeat("x", maxChallengeLen) + `"`,
	} {
		if c, err := parseChallenge(v); err == nil {
			t.Errorf("%q parsed as %+v", v, c)
		}
	}
	c, err := parseChallenge("digest\trealm = \"p\\\"b\\\\x\" ,nonce=tok, stale=TRUE, qop=auth, domain=\"sip:a sip:b\"")
	if err != nil {
		t.Fatal(err)
	}
	if c.realm != `p"b\x` || c.nonce != "tok" || !c.stale || len(c.qop) != 1 || c.qop[0] != "auth" {
		t.Errorf("parsed %+v", c)
	}
	// What we read is echoed quoted, escapes intact.
	v, err := c.credentials(digestRequest{method: "REGISTER", uri: "sip:pbx", username: `a"b`, password: "pw", cnonce: "cn", nc: 1})
	if err != nil {
		t.Fatal(err)
	}
	if cred := mustCredentials(t, v); !strings.Contains(v, `realm="p\"b\\x"`) || !strings.Contains(v, `username="a\"b"`) || cred.Nonce != "tok" {
		t.Errorf("credentials %s", v)
	}
}

func TestNonceCounts(t *testing.T) {
	var n nonceCounts
	k := realmKey{realm: "pbx"}
	if got := []uint32{n.next(k, "a"), n.next(k, "a"), n.next(k, "b"), n.next(k, "a"), n.next(realmKey{proxy: true, realm: "pbx"}, "a")}; fmt.Sprint(got) != "[1 2 1 3 1]" {
		t.Errorf("counts %v, want [1 2 1 3 1]", got)
	}
	for i := range 2 * maxNonces {
		n.next(k, fmt.Sprint("flood", i))
	}
	if len(n.counts) > maxNonces {
		t.Errorf("%d nonces remembered, bound %d", len(n.counts), maxNonces)
	}
}

func authRequest() *sip.Request {
	req := sip.NewRequest(sip.REGISTER, sip.Uri{Scheme: "sip", Host: "pbx"})
	req.AppendHeader(&sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: "UDP", Host: "10.0.0.1", Params: sip.HeaderParams{{K: "branch", V: sip.GenerateBranch()}}})
	req.AppendHeader(&sip.CSeqHeader{SeqNo: 5, MethodName: sip.REGISTER})
	return req
}

func TestDigestAuthRounds(t *testing.T) {
	var nonces nonceCounts
	d := newDigestAuth("door", "pw", &nonces)
	d.cnonce = func() string { return "cn" }
	req := authRequest()

	retry, err := d.answer(req, challengeResponse(401, `Digest realm="pbx", nonce="n1", algorithm=SHA-256, qop="auth"`))
	if err != nil || !retry {
		t.Fatalf("first challenge: retry %v, err %v", retry, err)
	}
	if req.Via() != nil || req.CSeq().SeqNo != 6 {
		t.Errorf("not readied as a new transaction: Via %v, CSeq %d", req.Via(), req.CSeq().SeqNo)
	}
	cred := mustCredentials(t, req.GetHeader("Authorization").Value())
	if cred.Algorithm != "SHA-256" || cred.Nc != 1 || cred.Cnonce != "cn" || cred.QOP != "auth" || cred.Username != "door" || cred.URI != "sip:pbx" {
		t.Errorf("credentials %+v", cred)
	}

	// The proxy on the way challenges too: both credentials go along.
	retry, err = d.answer(req, challengeResponse(407, `Digest realm="proxy", nonce="p1", qop="auth"`))
	if err != nil || !retry {
		t.Fatalf("proxy challenge: retry %v, err %v", retry, err)
	}
	if len(req.GetHeaders("Authorization")) != 1 || len(req.GetHeaders("Proxy-Authorization")) != 1 || req.CSeq().SeqNo != 7 {
		t.Errorf("after proxy challenge:\n%s", req)
	}

	// A stale nonce is answered again, with the new nonce.
	retry, err = d.answer(req, challengeResponse(401, `Digest realm="pbx", nonce="n2", algorithm=SHA-256, qop="auth", stale=true`))
	if err != nil || !retry {
		t.Fatalf("stale: retry %v, err %v", retry, err)
	}
	if cred := mustCredentials(t, req.GetHeader("Authorization").Value()); cred.Nonce != "n2" || len(req.GetHeaders("Authorization")) != 1 {
		t.Errorf("after stale: %+v", cred)
	}

	// The same realm again without stale: our credentials were refused.
	before := req.String()
	retry, err = d.answer(req, challengeResponse(401, `Digest realm="pbx", nonce="n3", algorithm=SHA-256, qop="auth"`))
	if err != nil || retry {
		t.Fatalf("refused: retry %v, err %v", retry, err)
	}
	if req.String() != before {
		t.Error("a refused answer changed the request")
	}

	// A nonce the server issues again counts on.
	d2 := newDigestAuth("door", "pw", &nonces)
	if _, err := d2.answer(authRequest(), challengeResponse(401, `Digest realm="pbx", nonce="n1", algorithm=SHA-256, qop="auth"`)); err != nil {
		t.Fatal(err)
	}
	if n := nonces.next(realmKey{realm: "pbx"}, "n1"); n != 3 {
		t.Errorf("nonce n1 used %d times, want 2 before this", n-1)
	}

	// Nothing usable: a clear error, the request untouched.
	req = authRequest()
	before = req.String()
	if _, err := newDigestAuth("door", "pw", &nonces).answer(req, challengeResponse(401, `Digest realm="pbx", nonce="x", algorithm=SHA-1`)); err == nil || !strings.Contains(err.Error(), `"SHA-1" not supported`) {
		t.Errorf("err %v", err)
	}
	if req.String() != before {
		t.Error("an unanswerable challenge changed the request")
	}
}

// TestRegisterPicksStrongestDigest registers against a registrar that
// offers MD5 first, then SHA-512-256 and SHA-256, and checks that the
// agent answered SHA-512-256 with qop=auth; the registrar says the first
// nonce was stale, once.
func TestRegisterPicksStrongestDigest(t *testing.T) {
	authErrs := make(chan error, 10)
	challenge := func(nonce, stale string) reply {
		return reply{401, "Unauthorized", []sip.Header{
			sip.NewHeader("WWW-Authenticate", `Digest realm="pbx", nonce="`+nonce+`", algorithm=MD5, qop="auth"`+stale),
			sip.NewHeader("WWW-Authenticate", `Digest realm="pbx", nonce="`+nonce+`", algorithm=SHA-512-256, qop="auth"`+stale),
			sip.NewHeader("WWW-Authenticate", `Digest realm="pbx", nonce="`+nonce+`", algorithm=SHA-256, qop="auth"`+stale),
		}}
	}
	reg := newFakeRegistrar(t, func(req *sip.Request) reply {
		h := req.GetHeader("Authorization")
		if h == nil {
			return challenge("old", "")
		}
		cred, err := digest.ParseCredentials(h.Value())
		if err != nil {
			authErrs <- err
			return reply{400, "Bad Request", nil}
		}
		if cred.Nonce == "old" {
			return challenge("new", ", stale=true")
		}
		ic, _ := digest.ParseChallenge(`Digest realm="pbx", nonce="new", algorithm=SHA-512-256, qop="auth"`)
		want, _ := digest.Digest(ic, digest.Options{Method: "REGISTER", URI: cred.URI, Username: "door", Password: "pw", Cnonce: cred.Cnonce, Count: cred.Nc})
		if cred.Algorithm != "SHA-512-256" || cred.Response != want.Response || cred.URI != req.Recipient.String() || cred.Nc != 1 {
			authErrs <- fmt.Errorf("credentials %+v, want SHA-512-256 response %s for %s", cred, want.Response, req.Recipient.String())
			return reply{403, "Forbidden", nil}
		}
		return reply{200, "OK", []sip.Header{sip.NewHeader("Contact", "<"+req.Contact().Address.String()+">;expires=60")}}
	})
	clk := clocktest.New(time.Unix(1000, 0))
	a := startAgent(t, Config{Registrar: reg.addr.String(), User: "door", Password: "pw", Clock: clk})
	waitEvent[RegistrationChanged](t, a) // registering
	if e := waitEvent[RegistrationChanged](t, a); e.State != StateRegistered {
		select {
		case err := <-authErrs:
			t.Fatal(err)
		default:
		}
		t.Fatalf("event %+v", e)
	}
	var seqs []uint32
	for range 3 {
		seqs = append(seqs, reg.next(t, sip.REGISTER).CSeq().SeqNo)
	}
	if seqs[1] <= seqs[0] || seqs[2] <= seqs[1] {
		t.Errorf("CSeq %v does not grow", seqs)
	}
}

// TestRegisterDigestRefusedAndUnusable: wrong credentials end after one
// answer with the 401, and a registrar offering only algorithms we do
// not know gets no credentials and a clear error.
func TestRegisterDigestRefusedAndUnusable(t *testing.T) {
	for _, tc := range []struct {
		name, challenge string
		requests        int
		want            string
	}{
		{"refused", `Digest realm="pbx", nonce="n", algorithm=SHA-256`, 2, "401"},
		{"unusable", `Digest realm="pbx", nonce="n", algorithm=SHA-1`, 1, `"SHA-1" not supported`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg := newFakeRegistrar(t, func(req *sip.Request) reply {
				return reply{401, "Unauthorized", []sip.Header{sip.NewHeader("WWW-Authenticate", tc.challenge)}}
			})
			a := startAgent(t, Config{Registrar: reg.addr.String(), User: "door", Password: "pw", Clock: clocktest.New(time.Unix(1000, 0))})
			waitEvent[RegistrationChanged](t, a) // registering
			if e := waitEvent[RegistrationChanged](t, a); e.State != StateFailed || e.Err == nil || !strings.Contains(e.Err.Error(), tc.want) {
				t.Fatalf("event %+v, want failed with %q", e, tc.want)
			}
			first := reg.next(t, sip.REGISTER)
			if first.GetHeader("Authorization") != nil {
				t.Error("first REGISTER has credentials")
			}
			for range tc.requests - 1 {
				reg.next(t, sip.REGISTER)
			}
			reg.none(t)
		})
	}
}

// TestDialAnswersStrongestProxyChallenge: the INVITE is challenged with
// MD5 first and SHA-256 second and must come back with SHA-256, in the
// same Call-ID and From tag with the next CSeq; a callee offering only
// algorithms we do not know fails the dial with a clear error.
func TestDialAnswersStrongestProxyChallenge(t *testing.T) {
	invites := make(chan *sip.Request, 10)
	var unknownOnly atomic.Bool
	p := newRawPeer(t, func(srv *sipgo.Server) {
		srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			invites <- req.Clone()
			h := req.GetHeader("Proxy-Authorization")
			if h == nil {
				res := sip.NewResponseFromRequest(req, 407, "Proxy Authentication Required", nil)
				if unknownOnly.Load() {
					res.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="pbx", nonce="n", algorithm=SHA-1`))
				} else {
					res.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="pbx", nonce="n", algorithm=MD5, qop="auth"`))
					res.AppendHeader(sip.NewHeader("Proxy-Authenticate", `Digest realm="pbx", nonce="n", algorithm=SHA-256, qop="auth"`))
				}
				_ = tx.Respond(res)
				return
			}
			// Verified by the test; the call itself is refused here.
			_ = tx.Respond(sip.NewResponseFromRequest(req, 486, "Busy Here", nil))
		})
	})
	door := startAgent(t, Config{User: "door", AuthUser: "auth-door", Password: "pw"})
	r := waitDial(t, dialAsync(context.Background(), door, DialRequest{
		Targets: []string{"sip:flat@" + p.addr.String()}, Media: offer(40000, false, "PCMU"),
	}))
	var se *StatusError
	if !errors.As(r.err, &se) || se.Code != 486 {
		t.Fatalf("Dial: %v, want the 486 after authenticating", r.err)
	}
	first, authed := <-invites, <-invites
	cred := mustCredentials(t, authed.GetHeader("Proxy-Authorization").Value())
	ic, _ := digest.ParseChallenge(`Digest realm="pbx", nonce="n", algorithm=SHA-256, qop="auth"`)
	want, _ := digest.Digest(ic, digest.Options{Method: "INVITE", URI: authed.Recipient.String(), Username: "auth-door", Password: "pw", Cnonce: cred.Cnonce, Count: cred.Nc})
	if cred.Algorithm != "SHA-256" || cred.Response != want.Response || cred.Username != "auth-door" || cred.Nc != 1 {
		t.Errorf("credentials %+v, want SHA-256 response %s", cred, want.Response)
	}
	ft, _ := first.From().Params.Get("tag")
	at, _ := authed.From().Params.Get("tag")
	fb, _ := first.Via().Params.Get("branch")
	ab, _ := authed.Via().Params.Get("branch")
	if first.CallID().Value() != authed.CallID().Value() || ft != at || authed.CSeq().SeqNo != first.CSeq().SeqNo+1 || fb == ab {
		t.Errorf("retry is not the same request anew:\n%s\n%s", first, authed)
	}

	unknownOnly.Store(true)
	r = waitDial(t, dialAsync(context.Background(), door, DialRequest{
		Targets: []string{"sip:flat@" + p.addr.String()}, Media: offer(40000, false, "PCMU"),
	}))
	if r.err == nil || !strings.Contains(r.err.Error(), `algorithm "SHA-1" not supported`) {
		t.Fatalf("Dial: %v, want an unsupported-algorithm error", r.err)
	}
	<-invites
	select {
	case req := <-invites:
		t.Errorf("sent again without usable challenge: %s", req.Short())
	default:
	}
}

// FuzzParseChallenge: no header value makes the parser panic, and what it
// accepts is echoed in credentials that read back the same.
func FuzzParseChallenge(f *testing.F) {
	for _, s := range []string{rfcSHA256, rfcMD5, `Digest realm="pbx", nonce="n", stale=true, qop=auth`, `Basic realm="x"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		c, err := parseChallenge(v)
		if err != nil {
			return
		}
		if c.nonce == "" {
			t.Fatalf("%q parsed without nonce", v)
		}
		cred, err := c.credentials(digestRequest{method: "REGISTER", uri: "sip:pbx", username: "door", password: "pw", cnonce: "cn", nc: 1})
		if err != nil {
			return
		}
		if strings.ContainsAny(cred, "\r\n") {
			t.Fatalf("credentials %q break the header", cred)
		}
		got, err := digest.ParseCredentials(cred)
		if err != nil {
			t.Fatalf("credentials %q do not parse: %v", cred, err)
		}
		if got.Realm != c.realm || got.Nonce != c.nonce || got.Opaque != c.opaque {
			t.Fatalf("credentials %q read back as %+v, challenge %+v", cred, got, c)
		}
	})
}
