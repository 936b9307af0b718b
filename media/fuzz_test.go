package media

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/rtp"

	"intercom/internal/clock"
	"intercom/internal/clock/clocktest"
)

// FuzzTelephoneEvents feeds a stream of RFC 4733 telephone-event packets
// to the receiver that turns them into key presses. Each packet takes 8
// bytes of input: SSRC selector, marker, a 16-bit timestamp step (signed,
// so stragglers occur) and a 4-byte payload; a trailing short payload is
// passed too, to be refused. Invariants: a key is only reported for a
// packet whose event is a key, is that event's key, never twice for one
// timestamp while the stream goes on (the receiver remembers only the
// last stream: one that returns after another is new), and a short
// payload is an error.
func FuzzTelephoneEvents(f *testing.F) {
	var seed []byte
	for _, h := range sippDTMF1 {
		b, _ := hex.DecodeString(h)
		var p rtp.Packet
		if err := p.Unmarshal(b); err != nil {
			f.Fatal(err)
		}
		marker := byte(0)
		if p.Marker {
			marker = 1
		}
		seed = append(seed, 0, marker, 0, 0)
		seed = append(seed, p.Payload...)
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, data []byte) {
		var d dtmfReceiver
		var ts uint32
		type key struct{ ssrc, ts uint32 }
		reported := map[key]bool{}
		last := uint32(0)
		for len(data) >= 8 {
			ssrc := uint32(data[0] & 1)
			if ssrc != last {
				clear(reported)
				last = ssrc
			}
			marker := data[1]&1 != 0
			ts += uint32(int32(int16(binary.BigEndian.Uint16(data[2:4]))))
			payload := data[4:8]
			data = data[8:]
			r, ok, err := d.packet(ssrc, ts, marker, payload)
			if err != nil {
				t.Fatalf("4-byte payload %x refused: %v", payload, err)
			}
			if !ok {
				continue
			}
			want, isKey := EventDigit(payload[0])
			if !isKey || r != want {
				t.Fatalf("event %d reported as key %q", payload[0], r)
			}
			if k := (key{ssrc, ts}); reported[k] {
				t.Fatalf("event at %d of stream %d reported twice", ts, ssrc)
			} else {
				reported[k] = true
			}
		}
		if _, _, err := d.packet(0, ts+1, true, data[:min(len(data), 3)]); err == nil {
			t.Fatalf("payload %x of %d bytes accepted", data, len(data))
		}
	})
}

// FuzzReceiveStream plays a sequence of datagrams through a Session's
// receive path and its playout, on a fake clock. Each datagram is framed
// in the input as: length, arrival step in ms, flags (bit 0: from a
// stranger; bit 2: from another port of the peer's IP, which latches if
// it comes first; bit 1: play a frame before it), then the bytes. Invariants:
// no panic, every datagram is counted exactly once (received, malformed
// or ignored), and a stranger's packets are never received.
func FuzzReceiveStream(f *testing.F) {
	var seed []byte
	for seq := range uint16(6) {
		p := audioPacket(seq, 0, 1000)
		seed = append(seed, byte(len(p)), 20, 2)
		seed = append(seed, p...)
	}
	for _, h := range sippDTMF1 {
		b, _ := hex.DecodeString(h)
		seed = append(seed, byte(len(b)), 20, 2)
		seed = append(seed, b...)
	}
	f.Add(seed)
	clk := clocktest.New(time.Unix(1000, 0))
	c, cc := listen(f, "127.0.0.1")
	s, err := NewSession(SessionConfig{Conn: c, RTCPConn: cc, Remote: peer, Codec: PCMU, DTMFPayloadType: 101,
		Source: &sineSource{p: newPacer(clock.Real{}, 8000)}, Sink: discardSink{},
		Jitter: JitterConfig{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		Clock:  clk})
	if err != nil {
		f.Fatal(err)
	}
	stranger := netip.MustParseAddrPort("192.0.2.99:20000")
	f.Fuzz(func(t *testing.T, data []byte) {
		before := s.Stats()
		fed, fromStranger := uint64(0), uint64(0)
		for len(data) >= 3 {
			n := min(int(data[0]), len(data)-3)
			step, flags := data[1], data[2]
			pkt := data[3 : 3+n]
			data = data[3+n:]
			clk.Advance(time.Duration(step) * time.Millisecond)
			if flags&2 != 0 {
				if err := s.playFrame(); err != nil {
					t.Fatalf("playFrame: %v", err)
				}
			}
			from := peer
			if flags&4 != 0 {
				from = netip.AddrPortFrom(peer.Addr(), peer.Port()+1)
			}
			if flags&1 != 0 {
				from = stranger
				fromStranger++
			}
			s.receive(pkt, from, clk.Now())
			fed++
		}
		after := s.Stats()
		counted := (after.PacketsReceived - before.PacketsReceived) + (after.Malformed - before.Malformed) + (after.Ignored - before.Ignored)
		if counted != fed {
			t.Fatalf("%d datagrams counted as %d", fed, counted)
		}
		if after.Ignored-before.Ignored < fromStranger {
			t.Fatalf("%d datagrams from a stranger, %d ignored", fromStranger, after.Ignored-before.Ignored)
		}
	})
}
