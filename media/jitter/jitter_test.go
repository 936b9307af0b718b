package jitter

import (
	"testing"
	"time"
)

const frame = 20 * time.Millisecond

var t0 = time.Unix(1000, 0)

// at is the time ms milliseconds into a test.
func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// Test payloads are {seq, loud}: loud 0 marks a quiet frame.
func quiet(p []byte) bool { return len(p) > 1 && p[1] == 0 }

func newBuf(t testing.TB, minD, maxD time.Duration) *Buffer {
	t.Helper()
	b, err := New(Config{Frame: frame, ClockRate: 8000, Min: minD, Max: maxD, PayloadSize: 4, Quiet: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func push(t *testing.T, b *Buffer, seq uint16, ms int, want PushResult) {
	t.Helper()
	// The timestamp wraps with the sequence number, as it does when
	// they start together.
	ts := uint32(int32(int16(seq))) * 160
	if got := b.Push(seq, ts, at(ms), []byte{byte(seq), 1, 0, 0}); got != want {
		t.Fatalf("Push(%d) = %v, want %v", seq, got, want)
	}
}

type step struct {
	payload int // first payload byte, -1 when nothing played
	res     PopResult
}

// expectPops pops once per frame from ms on and returns the next pop time.
func expectPops(t *testing.T, b *Buffer, ms int, want ...step) int {
	t.Helper()
	for i, w := range want {
		var dst [4]byte
		n, res := b.Pop(at(ms), dst[:])
		p := -1
		if res == Played && n > 0 {
			p = int(dst[0])
		}
		if p != w.payload || res != w.res {
			t.Fatalf("pop %d at %dms = (%d, %v), want (%d, %v); %+v", i, ms, p, res, w.payload, w.res, b.Stats())
		}
		ms += 20
	}
	return ms
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := Config{Frame: frame, ClockRate: 8000, Min: 0, Max: 100 * time.Millisecond, PayloadSize: 4}
	for name, mod := range map[string]func(*Config){
		"frame":   func(c *Config) { c.Frame = 0 },
		"rate":    func(c *Config) { c.ClockRate = 0 },
		"payload": func(c *Config) { c.PayloadSize = 0 },
		"min<0":   func(c *Config) { c.Min = -time.Millisecond },
		"max<min": func(c *Config) { c.Min = 2 * c.Max },
	} {
		c := good
		mod(&c)
		if _, err := New(c); err == nil {
			t.Errorf("%s: New(%+v) succeeded", name, c)
		}
	}
	if _, err := New(good); err != nil {
		t.Fatal(err)
	}
}

func TestPrefillWaitsForMin(t *testing.T) {
	b := newBuf(t, 40*time.Millisecond, 200*time.Millisecond)
	push(t, b, 10, 0, Queued)
	expectPops(t, b, 0, step{-1, Buffering}, step{-1, Buffering}) // held 0 and 20 ms
	push(t, b, 11, 20, Queued)
	expectPops(t, b, 40, step{10, Played}, step{11, Played})
	if st := b.Stats(); st.Depth != 40*time.Millisecond || st.Target != 40*time.Millisecond {
		t.Fatalf("stats %+v, want depth and target 40ms", st)
	}
}

func TestPopBeforeAnyPacket(t *testing.T) {
	b := newBuf(t, 0, 100*time.Millisecond)
	expectPops(t, b, 0, step{-1, Buffering})
}

func TestReorderBeforePlayout(t *testing.T) {
	b := newBuf(t, 40*time.Millisecond, 200*time.Millisecond)
	push(t, b, 12, 0, Queued)
	push(t, b, 10, 1, Queued) // earlier than the first packet: becomes head
	push(t, b, 11, 2, Queued)
	// 12 came 41 ms earlier than its place after 10: the target covers
	// that, and playout starts once 12 has waited it.
	expectPops(t, b, 0, step{-1, Buffering}, step{10, Played}, step{11, Played}, step{12, Played})
	if st := b.Stats(); st.Target != 41*time.Millisecond || st.Dropped+st.Inserted != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestDuplicate(t *testing.T) {
	b := newBuf(t, 0, 200*time.Millisecond)
	push(t, b, 5, 0, Queued)
	push(t, b, 5, 1, Duplicate)
	push(t, b, 6, 20, Queued)
	push(t, b, 6, 21, Duplicate)
	if b.Len() != 2 {
		t.Fatalf("Len = %d, want 2", b.Len())
	}
	expectPops(t, b, 20, step{5, Played}, step{6, Played})
	push(t, b, 5, 50, Duplicate) // already played: a duplicate, not late
	if st := b.Stats(); st.Duplicates != 3 || st.Late != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestLossAndLate(t *testing.T) {
	b := newBuf(t, 0, 200*time.Millisecond)
	push(t, b, 1, 0, Queued)
	push(t, b, 3, 1, Queued) // 2 is missing
	expectPops(t, b, 0, step{1, Played}, step{-1, Lost}, step{3, Played})
	push(t, b, 2, 60, Late) // its slot has passed
	if st := b.Stats(); st.Lost != 1 || st.Late != 1 || st.Played != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRunDryInsertsThenRebuffers(t *testing.T) {
	b := newBuf(t, 0, 60*time.Millisecond)
	push(t, b, 1, 0, Queued)
	ms := expectPops(t, b, 0, step{1, Played},
		step{-1, Inserted}, step{-1, Inserted}, step{-1, Inserted}, // dry, up to Max after the last arrival
		step{-1, Buffering})
	// The sender paused; its next packet continues the sequence and plays.
	push(t, b, 2, ms, Queued)
	expectPops(t, b, ms, step{2, Played})
	if st := b.Stats(); st.Inserted != 3 || st.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPrefillSkipsToFirstHeld(t *testing.T) {
	b := newBuf(t, 0, 60*time.Millisecond)
	push(t, b, 1, 0, Queued)
	ms := expectPops(t, b, 0, step{1, Played}, step{-1, Inserted}, step{-1, Inserted}, step{-1, Inserted}, step{-1, Buffering})
	// After a long pause the sender's sequence moved on: no lost frames
	// are played for the gap.
	push(t, b, 40, ms, Queued)
	expectPops(t, b, ms, step{40, Played})
	if st := b.Stats(); st.Lost != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWraparound(t *testing.T) {
	b := newBuf(t, 0, 200*time.Millisecond)
	push(t, b, 65535, 0, Queued)
	push(t, b, 1, 0, Queued)
	push(t, b, 65534, 0, Queued)
	push(t, b, 0, 0, Queued)
	ms := expectPops(t, b, 20, step{0xfe, Played}, step{0xff, Played}, step{0, Played}, step{1, Played})
	push(t, b, 65535, ms, Duplicate)
	push(t, b, 2, ms, Queued)
	expectPops(t, b, ms, step{2, Played})
}

func TestCapacityBoundsDelay(t *testing.T) {
	b := newBuf(t, 0, 20*time.Millisecond) // 1 frame + 3 slots of slack
	for seq := range uint16(4) {
		push(t, b, seq, 0, Queued)
	}
	push(t, b, 6, 0, Queued) // beyond 4 slots from head 0: 0, 1 and 2 are discarded
	if st := b.Stats(); st.Overflowed != 3 || b.Len() != 2 {
		t.Fatalf("stats %+v, len %d", st, b.Len())
	}
	push(t, b, 1, 0, Duplicate) // it was received
	push(t, b, 65535, 0, Late)  // never received, and its slot has passed
	push(t, b, 5, 0, Queued)
}

func TestReorderBeyondCapacityBeforePlayoutIsLate(t *testing.T) {
	b := newBuf(t, 0, 20*time.Millisecond)
	push(t, b, 10, 0, Queued)
	push(t, b, 13, 0, Queued)
	push(t, b, 9, 0, Late) // would make the span 5 > capacity 4
}

func TestSequenceJumpRestarts(t *testing.T) {
	b := newBuf(t, 0, 200*time.Millisecond)
	push(t, b, 100, 0, Queued)
	expectPops(t, b, 0, step{100, Played})
	push(t, b, 40000, 20, Restarted)
	expectPops(t, b, 20, step{0x40, Played}) // 40000 = 0x9c40
	push(t, b, 39000, 40, Restarted)         // far behind: also a new stream
	expectPops(t, b, 40, step{39000 & 0xff, Played})
}

func TestPayloadCutToSize(t *testing.T) {
	b := newBuf(t, 0, 200*time.Millisecond)
	b.Push(1, 160, t0, []byte{1, 2, 3, 4, 5, 6})
	var dst [8]byte
	if n, res := b.Pop(t0, dst[:]); n != 4 || res != Played {
		t.Fatalf("Pop = %d, %v; want 4 bytes", n, res)
	}
}

func TestRFC3550Jitter(t *testing.T) {
	b := newBuf(t, 0, 200*time.Millisecond)
	// Every other packet is 20 ms late: every |D| is 20 ms, and J
	// converges to it.
	for i := range 200 {
		push(t, b, uint16(i), i*20+20*(i%2), Queued)
		b.Pop(at(i*20+30), make([]byte, 4))
	}
	if j := b.Stats().Jitter; j < 19*time.Millisecond || j > 20*time.Millisecond {
		t.Fatalf("jitter %v, want ~20ms", j)
	}
}

func BenchmarkPushPop(b *testing.B) {
	buf, err := New(Config{Frame: frame, ClockRate: 8000, Min: 20 * time.Millisecond, Max: 200 * time.Millisecond,
		PayloadSize: 160, Quiet: func(p []byte) bool { return p[0] == 0 }})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 160)
	dst := make([]byte, 160)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		now := t0.Add(time.Duration(i) * frame)
		buf.Push(uint16(i), uint32(i)*160, now, payload)
		buf.Pop(now.Add(frame), dst)
	}
	if st := buf.Stats(); st.Played == 0 {
		b.Fatalf("nothing played: %+v", st)
	}
}

func TestBurstOfPopsIsSpreadOverFrames(t *testing.T) {
	b := newBuf(t, 60*time.Millisecond, 200*time.Millisecond)
	for seq := range uint16(5) {
		push(t, b, seq, int(seq)*20, Queued)
	}
	// A device filling its buffer asks for four frames at once: they
	// play a frame apart, so the delay is not taken to have shrunk.
	var dst [4]byte
	for range 4 {
		if _, res := b.Pop(at(80), dst[:]); res != Played {
			t.Fatalf("Pop = %v; %+v", res, b.Stats())
		}
	}
	if st := b.Stats(); st.Inserted+st.Dropped != 0 || st.Depth < 79*time.Millisecond {
		t.Fatalf("stats %+v; want depth ~80ms, nothing inserted", st)
	}
}
