package jitter

import (
	"testing"
)

func newBuf(t *testing.T, depth, capacity int) *Buffer {
	t.Helper()
	b, err := New(Config{Depth: depth, Capacity: capacity, PayloadSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pop returns the first payload byte, or -1 with the result when nothing played.
func pop(b *Buffer) (int, PopResult) {
	var dst [4]byte
	n, res := b.Pop(dst[:])
	if res != Played || n == 0 {
		return -1, res
	}
	return int(dst[0]), res
}

func push(t *testing.T, b *Buffer, seq uint16, want PushResult) {
	t.Helper()
	if got := b.Push(seq, []byte{byte(seq), 0, 0, 0}); got != want {
		t.Fatalf("Push(%d) = %v, want %v", seq, got, want)
	}
}

type step struct {
	payload int
	res     PopResult
}

func expectPops(t *testing.T, b *Buffer, want ...step) {
	t.Helper()
	for i, w := range want {
		p, res := pop(b)
		if p != w.payload || res != w.res {
			t.Fatalf("pop %d = (%d, %v), want (%d, %v)", i, p, res, w.payload, w.res)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, c := range []Config{{0, 5, 4}, {3, 2, 4}, {1, 1, 0}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) succeeded", c)
		}
	}
}

func TestPrefillThenInOrder(t *testing.T) {
	b := newBuf(t, 2, 8)
	push(t, b, 10, Queued)
	expectPops(t, b, step{-1, Buffering}) // one packet is below Depth 2
	push(t, b, 11, Queued)
	expectPops(t, b, step{10, Played}, step{11, Played}, step{-1, Buffering})
}

func TestReorder(t *testing.T) {
	b := newBuf(t, 3, 8)
	push(t, b, 12, Queued)
	push(t, b, 10, Queued) // earlier than the first packet, before playout: becomes head
	push(t, b, 11, Queued)
	expectPops(t, b, step{10, Played}, step{11, Played}, step{12, Played})
}

func TestDuplicate(t *testing.T) {
	b := newBuf(t, 2, 8)
	push(t, b, 5, Queued)
	push(t, b, 5, Duplicate)
	push(t, b, 6, Queued)
	push(t, b, 6, Duplicate)
	if b.Len() != 2 {
		t.Fatalf("Len = %d, want 2", b.Len())
	}
	expectPops(t, b, step{5, Played}, step{6, Played})
}

func TestLossAndLate(t *testing.T) {
	b := newBuf(t, 2, 8)
	push(t, b, 1, Queued)
	push(t, b, 3, Queued) // 2 is missing
	expectPops(t, b, step{1, Played}, step{-1, Lost}, step{3, Played})
	push(t, b, 2, Late) // its slot has passed
	push(t, b, 3, Late)
}

func TestRunDryRebuffersWithoutSkipping(t *testing.T) {
	b := newBuf(t, 1, 8)
	push(t, b, 1, Queued)
	expectPops(t, b, step{1, Played}, step{-1, Buffering}, step{-1, Buffering})
	// The sender paused; its next packet continues the sequence and plays.
	push(t, b, 2, Queued)
	expectPops(t, b, step{2, Played})
}

func TestWraparound(t *testing.T) {
	b := newBuf(t, 3, 8)
	push(t, b, 65535, Queued)
	push(t, b, 1, Queued)
	push(t, b, 65534, Queued)
	push(t, b, 0, Queued)
	expectPops(t, b, step{0xfe, Played}, step{0xff, Played}, step{0, Played}, step{1, Played})
	push(t, b, 65535, Late)
	push(t, b, 2, Queued)
	expectPops(t, b, step{2, Played})
}

func TestCapacityBoundsDelay(t *testing.T) {
	b := newBuf(t, 1, 4)
	for seq := uint16(0); seq < 4; seq++ {
		push(t, b, seq, Queued)
	}
	push(t, b, 5, Queued) // beyond 4 slots from head 0: 0 and 1 are discarded
	if b.Overflowed() != 2 {
		t.Fatalf("Overflowed = %d, want 2", b.Overflowed())
	}
	expectPops(t, b, step{2, Played}, step{3, Played}, step{-1, Lost}, step{5, Played})
	push(t, b, 1, Late)
}

func TestReorderBeyondCapacityBeforePlayoutIsLate(t *testing.T) {
	b := newBuf(t, 4, 4)
	push(t, b, 10, Queued)
	push(t, b, 13, Queued)
	push(t, b, 9, Late) // would make the span 5 > Capacity 4
}

func TestSequenceJumpRestarts(t *testing.T) {
	b := newBuf(t, 1, 8)
	push(t, b, 100, Queued)
	expectPops(t, b, step{100, Played})
	push(t, b, 40000, Restarted)
	expectPops(t, b, step{0x40, Played}) // 40000 = 0x9c40
	push(t, b, 39000, Restarted)         // far behind: also a new stream
	expectPops(t, b, step{39000 & 0xff, Played})
}

func TestPayloadCutToSize(t *testing.T) {
	b := newBuf(t, 1, 2)
	b.Push(1, []byte{1, 2, 3, 4, 5, 6})
	var dst [8]byte
	if n, res := b.Pop(dst[:]); n != 4 || res != Played {
		t.Fatalf("Pop = %d, %v; want 4 bytes", n, res)
	}
}

func BenchmarkPushPop(b *testing.B) {
	buf, err := New(Config{Depth: 2, Capacity: 10, PayloadSize: 160})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 160)
	dst := make([]byte, 160)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		buf.Push(uint16(i), payload)
		buf.Pop(dst)
	}
}
