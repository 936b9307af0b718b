package sipagent

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
)

// earlyPeer answers INVITEs, once start is closed (nil: at once), with the
// given provisional responses (each with SDP for its address, or none for a
// zero address) and then, once answer is closed, 200 OK with SDP for final;
// with a zero final it never answers. (The transport may pass a 200 sent
// right after a 183 up first, and the 183 is then dropped.)
func earlyPeer(t *testing.T, start <-chan struct{}, provisional []netip.AddrPort, answer <-chan struct{}, final netip.AddrPort) *rawPeer {
	t.Helper()
	var peer *rawPeer
	var mu sync.Mutex
	var ss *sipgo.DialogServerSession
	sdpFor := func(addr netip.AddrPort, codec Codec) []byte {
		body, err := buildSDP(addr, []Codec{codec}, 101, 0)
		if err != nil {
			t.Error(err)
		}
		return body
	}
	p := newRawPeer(t, func(srv *sipgo.Server) {
		srv.OnInvite(func(req *sip.Request, tx sip.ServerTransaction) {
			mu.Lock()
			p := peer // the race detector cannot see the socket order
			mu.Unlock()
			dua := sipgo.DialogUA{Client: p.client, ContactHDR: sip.ContactHeader{Address: mustURI(t, "sip:flat@"+p.addr.String())}}
			s, err := dua.ReadInvite(req, tx)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ss = s
			mu.Unlock()
			if start != nil {
				<-start
			}
			ct := sip.NewHeader("Content-Type", "application/sdp")
			for _, addr := range provisional {
				var err error
				if addr.IsValid() {
					err = s.Respond(sip.StatusSessionInProgress, "Session Progress", sdpFor(addr, Codec{"PCMA", 8}), ct)
				} else {
					err = s.Respond(sip.StatusRinging, "Ringing", nil)
				}
				if err != nil {
					t.Error(err)
				}
			}
			if !final.IsValid() {
				return
			}
			select {
			case <-answer:
			case <-time.After(waitLong):
				t.Error("no early media reported")
			}
			if err := s.RespondSDP(sdpFor(final, Codec{"PCMA", 8})); err != nil {
				t.Error(err)
			}
		})
		srv.OnAck(func(req *sip.Request, tx sip.ServerTransaction) {
			mu.Lock()
			defer mu.Unlock()
			if ss != nil {
				_ = ss.ReadAck(req, tx)
			}
		})
	})
	mu.Lock()
	peer = p
	mu.Unlock()
	return p
}

func TestDialReportsEarlyMediaOnce(t *testing.T) {
	early := netip.MustParseAddrPort("127.0.0.1:42000")
	moved := netip.MustParseAddrPort("127.0.0.1:42002")
	for _, tc := range []struct {
		name        string
		provisional []netip.AddrPort
		final       netip.AddrPort
	}{
		{"same answer", []netip.AddrPort{early}, early},
		{"after 180, repeated", []netip.AddrPort{{}, early, early}, early},
		{"final answer differs", []netip.AddrPort{early}, moved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			answer := make(chan struct{})
			peer := earlyPeer(t, nil, tc.provisional, answer, tc.final)
			door := startAgent(t, Config{User: "door"})
			var mu sync.Mutex
			var seen []string
			var got []MediaAnswer
			flat := "sip:flat@" + peer.addr.String()
			r := waitDial(t, dialAsync(context.Background(), door, DialRequest{
				Targets: []string{flat}, Media: offer(40000, true, "PCMU", "PCMA"),
				OnRinging: func(tg string) { mu.Lock(); seen = append(seen, "ringing "+tg); mu.Unlock() },
				OnEarlyMedia: func(tg string, ans MediaAnswer) {
					mu.Lock()
					defer mu.Unlock()
					seen = append(seen, "early "+tg)
					got = append(got, ans)
					if len(got) == 1 {
						close(answer)
					}
				},
			}))
			if r.err != nil {
				t.Fatalf("Dial: %v", r.err)
			}
			defer func() { _ = r.call.Hangup(context.Background()) }()
			mu.Lock()
			defer mu.Unlock()
			if want := []string{"ringing " + flat, "early " + flat}; !slices.Equal(seen, want) {
				t.Errorf("callbacks %q, want %q", seen, want)
			}
			want := MediaAnswer{
				Local:  netip.MustParseAddrPort("127.0.0.1:40000"),
				Remote: early, Codec: Codec{"PCMA", 8}, DTMFPayloadType: 101, Ptime: 20 * time.Millisecond,
			}
			if len(got) != 1 || got[0] != want {
				t.Errorf("early media %+v, want %+v", got, want)
			}
			want.Remote = tc.final
			if m := r.call.Media(); m != want {
				t.Errorf("call media %+v, want the final answer %+v", m, want)
			}
		})
	}
}

func TestParallelDialUsesFirstEarlyMedia(t *testing.T) {
	addrA := netip.MustParseAddrPort("127.0.0.1:42000")
	startB, answerA := make(chan struct{}), make(chan struct{})
	a := earlyPeer(t, nil, []netip.AddrPort{addrA}, answerA, addrA)
	// b's early media comes second, while a's is in use; a answers after.
	b := earlyPeer(t, startB, []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:42002")}, nil, netip.AddrPort{})
	door := startAgent(t, Config{User: "door"})
	var mu sync.Mutex
	var got []string
	flatA, flatB := "sip:flat@"+a.addr.String(), "sip:flat@"+b.addr.String()
	r := waitDial(t, dialAsync(context.Background(), door, DialRequest{
		Targets: []string{flatA, flatB}, Parallel: true, Media: offer(40000, false, "PCMA"),
		OnRinging: func(tg string) {
			if tg == flatB {
				close(answerA)
			}
		},
		OnEarlyMedia: func(tg string, ans MediaAnswer) {
			mu.Lock()
			defer mu.Unlock()
			got = append(got, tg)
			if len(got) == 1 {
				close(startB)
			}
		},
	}))
	if r.err != nil || r.call.Remote() != flatA {
		t.Fatalf("Dial = %+v", r)
	}
	defer func() { _ = r.call.Hangup(context.Background()) }()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(got, []string{flatA}) {
		t.Errorf("early media from %q, want only the first, %q", got, flatA)
	}
}
