package sipagent

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// redirector answers every INVITE with 302 and the Contacts that contact
// gives for the Request-URI's user (none: no Contact header at all), and
// records the users it was asked for.
type redirector struct {
	*rawPeer
	mu    sync.Mutex
	users []string
}

func newRedirector(t *testing.T, contact func(user string) []string) *redirector {
	t.Helper()
	r := &redirector{}
	r.rawPeer = newRawPeer(t, func(srv *sipgo.Server) {
		srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			r.mu.Lock()
			r.users = append(r.users, req.Recipient.User)
			r.mu.Unlock()
			res := sip.NewResponseFromRequest(req, sip.StatusMovedTemporarily, "Moved Temporarily", nil)
			for _, c := range contact(req.Recipient.User) {
				res.AppendHeader(sip.NewHeader("Contact", c))
			}
			if err := tx.Respond(res); err != nil {
				t.Error(err)
			}
		})
		// The ACK of a 3xx is absorbed by the transaction layer.
		srv.OnAck(func(*sip.Request, sip.ServerTransaction) {})
	})
	return r
}

func (r *redirector) asked() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.users...)
}

func (r *redirector) uri(user string) string {
	return "sip:" + user + "@" + r.addr.String()
}

func TestDialFollowsRedirect(t *testing.T) {
	door := startAgent(t, Config{User: "door"})
	flat := startAgent(t, Config{User: "flat"})
	// The higher q wins; the tel: Contact is not something we can call.
	redir := newRedirector(t, func(string) []string {
		return []string{"<tel:+4930123>", "<sip:nobody@127.0.0.1:9>;q=0.2", "<" + target("flat", flat) + ">;q=0.9"}
	})
	res := dialAsync(context.Background(), door, DialRequest{
		Targets: []string{redir.uri("moved")}, Media: offer(40000, false, "PCMU"),
	})
	in := waitEvent[IncomingCall](t, flat)
	if _, err := in.Call.Accept(context.Background(), offer(41000, false, "PCMU")); err != nil {
		t.Fatalf("Accept: %v", err)
	}
	r := waitDial(t, res)
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	if got := r.call.Remote(); got != target("flat", flat) {
		t.Errorf("call remote %q, want the redirect target %q", got, target("flat", flat))
	}
	if got := redir.asked(); len(got) != 1 || got[0] != "moved" {
		t.Errorf("redirector asked for %q, want once for moved", got)
	}
	if err := r.call.Hangup(context.Background()); err != nil {
		t.Errorf("Hangup: %v", err)
	}
	waitEvent[CallEnded](t, flat)
}

func TestDialRedirectFailures(t *testing.T) {
	for _, tc := range []struct {
		name    string
		contact func(self func(string) string) func(string) []string
		want    error
		asked   []string
	}{
		{
			name: "loop",
			contact: func(self func(string) string) func(string) []string {
				return func(user string) []string {
					if user == "a" {
						return []string{"<" + self("b") + ">"}
					}
					return []string{"<" + self("a") + ">"}
				}
			},
			want: errRedirectLoop, asked: []string{"a", "b"},
		},
		{
			name: "too many",
			contact: func(self func(string) string) func(string) []string {
				return func(user string) []string { return []string{"<" + self(user+"x") + ">"} }
			},
			want: errTooManyHops, asked: []string{"a", "ax", "axx", "axxx", "axxxx", "axxxxx"},
		},
		{
			name: "no contact",
			contact: func(func(string) string) func(string) []string {
				return func(string) []string { return nil }
			},
			asked: []string{"a"},
		},
		{
			name: "no sip contact",
			contact: func(func(string) string) func(string) []string {
				return func(string) []string { return []string{"<mailto:door@example.com>"} }
			},
			asked: []string{"a"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			door := startAgent(t, Config{User: "door"})
			var redir *redirector
			var mu sync.Mutex
			self := func(user string) string {
				mu.Lock()
				defer mu.Unlock()
				return redir.uri(user)
			}
			r := newRedirector(t, tc.contact(self))
			mu.Lock()
			redir = r
			mu.Unlock()
			res := waitDial(t, dialAsync(context.Background(), door, DialRequest{
				Targets: []string{redir.uri("a")}, Media: offer(40000, false, "PCMU"),
			}))
			if res.err == nil {
				_ = res.call.Hangup(context.Background())
				t.Fatal("Dial succeeded")
			}
			if tc.want != nil && !errors.Is(res.err, tc.want) {
				t.Errorf("Dial error %v, want %v", res.err, tc.want)
			}
			var se *StatusError
			if !errors.As(res.err, &se) || se.Code != 302 {
				t.Errorf("Dial error %v, want the 302 as a StatusError", res.err)
			}
			if got := redir.asked(); strings.Join(got, " ") != strings.Join(tc.asked, " ") {
				t.Errorf("redirector asked for %q, want %q", got, tc.asked)
			}
		})
	}
}
