package jitter

import (
	"encoding/binary"
	"testing"
	"time"
)

// FuzzBuffer drives a Buffer with pushes and pops read from the input,
// 4 bytes an operation: kind (bit 0: pop, else push; bit 1: loud), a
// signed sequence step, a signed timestamp step in frames, and the time
// step in ms; pushes carry a payload of 5 to 12 bytes that names the push.
// Invariants: a pop plays only a payload that was queued, each at most
// once and as it was queued (cut to PayloadSize); the buffer holds no
// more than its capacity; the target delay stays within Min and Max.
func FuzzBuffer(f *testing.F) {
	var seed []byte
	for i := range 30 {
		seed = append(seed, 2, 1, 1, 20) // a loud packet every 20 ms
		if i%3 == 0 {
			seed = append(seed, 3, 5, 0, 7) // one far ahead, then a pop
		}
		seed = append(seed, 1, 0, 0, 0)
	}
	f.Add(seed)
	f.Add([]byte{0, 0, 0, 0, 0, 0x80, 0, 0, 0, 0x7f, 0, 0xff, 1, 0, 0, 0xff})
	const size = 8
	cfg := Config{Frame: 20 * time.Millisecond, ClockRate: 8000, Min: 20 * time.Millisecond, Max: 100 * time.Millisecond,
		PayloadSize: size, Quiet: func(p []byte) bool { return len(p) > 4 && p[4] == 0 }}
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		now := time.Unix(1000, 0)
		var seq uint16
		var ts uint32
		queued := map[uint32]int{} // push id -> payload length kept
		played := map[uint32]bool{}
		dst := make([]byte, 64)
		for id := uint32(0); len(data) >= 4; id++ {
			op := data[0]
			now = now.Add(time.Duration(data[3]) * time.Millisecond)
			if op&1 != 0 {
				n, res := b.Pop(now, dst)
				if res != Played {
					if n != 0 {
						t.Fatalf("pop %v returned %d bytes", res, n)
					}
				} else {
					if n < 4 {
						t.Fatalf("played %d bytes", n)
					}
					pid := binary.BigEndian.Uint32(dst)
					want, ok := queued[pid]
					if !ok || played[pid] || n != want {
						t.Fatalf("played push %d (%d bytes): queued %v (%d bytes), played before %v", pid, n, ok, want, played[pid])
					}
					played[pid] = true
				}
			} else {
				seq += uint16(int8(data[1]))
				ts += uint32(int32(int8(data[2])) * 160)
				payload := make([]byte, 5+int(op>>2)%8)
				binary.BigEndian.PutUint32(payload, id)
				payload[4] = op & 2
				switch b.Push(seq, ts, now, payload) {
				case Queued, Restarted:
					queued[id] = min(len(payload), size)
				}
			}
			data = data[4:]
			if b.Len() > len(b.slots) {
				t.Fatalf("holds %d packets in %d slots", b.Len(), len(b.slots))
			}
			if st := b.Stats(); st.Target < cfg.Min || st.Target > cfg.Max {
				t.Fatalf("target %v outside [%v, %v]", st.Target, cfg.Min, cfg.Max)
			}
		}
	})
}
