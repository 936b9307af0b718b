package media

import (
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/pion/rtp"
)

// sippDTMF1 is the RTP of /usr/share/sip-tester/dtmf_2833_1.pcap: seven
// packets of event 1 with growing duration (the first with the marker),
// then the end packet three times, all with timestamp 13280.
var sippDTMF1 = []string{
	"80e51f30000033e00e05384e010a0000",
	"80651f31000033e00e05384e010a0140",
	"80651f32000033e00e05384e010a0280",
	"80651f33000033e00e05384e010a03c0",
	"80651f34000033e00e05384e010a0500",
	"80651f35000033e00e05384e010a0640",
	"80651f36000033e00e05384e010a0780",
	"80651f37000033e00e05384e018a08c0",
	"80651f37000033e00e05384e018a08c0",
	"80651f37000033e00e05384e018a08c0",
}

func TestParseTelephoneEvent(t *testing.T) {
	ev, err := ParseTelephoneEvent([]byte{0x0b, 0x8a, 0x08, 0xc0})
	if err != nil || ev != (TelephoneEvent{Event: 11, End: true, Volume: 10, Duration: 2240}) {
		t.Fatalf("got %+v, %v", ev, err)
	}
	for n := range 4 {
		if _, err := ParseTelephoneEvent(make([]byte, n)); err == nil {
			t.Errorf("%d-byte payload accepted", n)
		}
	}
}

func TestEventDigit(t *testing.T) {
	want := "0123456789*#ABCD"
	for e := range 16 {
		r, ok := EventDigit(uint8(e))
		if !ok || r != rune(want[e]) {
			t.Errorf("EventDigit(%d) = %q, %v", e, r, ok)
		}
	}
	for _, e := range []uint8{16, 100, 255} {
		if _, ok := EventDigit(e); ok {
			t.Errorf("EventDigit(%d) is a key", e)
		}
	}
}

// feed runs raw RTP packets through a dtmfReceiver and returns the keys.
func feed(t *testing.T, d *dtmfReceiver, packets [][]byte) string {
	t.Helper()
	var got []rune
	for _, b := range packets {
		var p rtp.Packet
		if err := p.Unmarshal(b); err != nil {
			t.Fatal(err)
		}
		r, ok, err := d.packet(p.SSRC, p.Timestamp, p.Marker, p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			got = append(got, r)
		}
	}
	return string(got)
}

func hexPackets(t *testing.T, hx []string) [][]byte {
	var out [][]byte
	for _, h := range hx {
		b, err := hex.DecodeString(h)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

func TestDTMFDedupeSippPattern(t *testing.T) {
	pkts := hexPackets(t, sippDTMF1)
	var d dtmfReceiver
	if got := feed(t, &d, pkts); got != "1" {
		t.Fatalf("keys %q, want \"1\"", got)
	}
	// Only the end packets arriving (start packets lost) still give one key.
	var d2 dtmfReceiver
	if got := feed(t, &d2, pkts[7:]); got != "1" {
		t.Fatalf("end packets only: keys %q", got)
	}
	// A late straggler of the same event after the end changes nothing.
	if got := feed(t, &d2, pkts[3:4]); got != "" {
		t.Fatalf("straggler gave %q", got)
	}
}

func TestDTMFSequenceAndLongEvent(t *testing.T) {
	mk := func(ts uint32, marker bool, event uint8, end bool, dur uint16) []byte {
		p := rtp.Packet{Header: rtp.Header{Version: 2, Marker: marker, PayloadType: 101, Timestamp: ts, SSRC: 1}}
		e := byte(10)
		if end {
			e |= 0x80
		}
		p.Payload = []byte{event, e, byte(dur >> 8), byte(dur)}
		b, _ := p.Marshal()
		return b
	}
	var d dtmfReceiver
	pkts := [][]byte{
		mk(1000, true, 1, false, 160), mk(1000, false, 1, true, 800), mk(1000, false, 1, true, 800),
		// The same key pressed again: a new event with a new timestamp.
		mk(2000, true, 1, false, 160), mk(2000, false, 1, true, 800),
		// A long '#': after 0xffff units the sender starts a new segment
		// without marker (RFC 4733 §2.5.1.5); it is one press.
		mk(3000, true, 11, false, 0xffff), mk(3000+0xffff, false, 11, false, 1000), mk(3000+0xffff, false, 11, true, 2000),
	}
	if got := feed(t, &d, pkts); got != "11#" {
		t.Fatalf("keys %q, want 11#", got)
	}
	// The timestamp wraps around between two events.
	var w dtmfReceiver
	if got := feed(t, &w, [][]byte{mk(0xffffff00, true, 4, true, 160), mk(0x10, true, 5, true, 160)}); got != "45" {
		t.Fatalf("keys across wraparound %q, want 45", got)
	}
}

// TestSippPcaps runs every RFC 4733 capture shipped with sipp through the
// receiver; each holds one key press.
func TestSippPcaps(t *testing.T) {
	files, _ := filepath.Glob("/usr/share/sip-tester/dtmf_2833_*.pcap")
	if len(files) == 0 {
		t.Skip("sipp captures not installed (package sip-tester)")
	}
	want := map[string]string{"star": "*", "pound": "#"}
	for d := '0'; d <= '9'; d++ {
		want[string(d)] = string(d)
	}
	for _, f := range files {
		name := filepath.Base(f)
		key := name[len("dtmf_2833_") : len(name)-len(".pcap")]
		pkts := pcapUDPPayloads(t, f)
		var d dtmfReceiver
		if got := feed(t, &d, pkts); got != want[key] {
			t.Errorf("%s: keys %q, want %q", name, got, want[key])
		}
	}
}

// pcapUDPPayloads returns the UDP payloads of a classic little-endian pcap
// of Ethernet/IPv4 frames.
func pcapUDPPayloads(t *testing.T, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(b[20:]) != 1 {
		t.Fatalf("%s: not a little-endian Ethernet pcap", path)
	}
	var out [][]byte
	for off := 24; off+16 <= len(b); {
		n := int(binary.LittleEndian.Uint32(b[off+8:]))
		frame := b[off+16 : min(off+16+n, len(b))]
		off += 16 + n
		if len(frame) < 14+20+8 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 {
			continue
		}
		ip := frame[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != 17 || len(ip) < ihl+8 {
			continue
		}
		udp := ip[ihl:]
		ulen := int(binary.BigEndian.Uint16(udp[4:]))
		out = append(out, udp[8:min(ulen, len(udp))])
	}
	return out
}
