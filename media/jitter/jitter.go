// Package jitter is a fixed-delay RTP jitter buffer: it holds payloads in
// sequence-number order and releases one per playout tick, so that packets
// arriving out of order or unevenly spaced still play in order.
package jitter

import "errors"

// Config sizes a Buffer in packets.
type Config struct {
	// Depth is how many packets are held before playout starts (the
	// fixed delay, in packets); at least 1.
	Depth int
	// Capacity is the most packets held (the delay bound); at least Depth.
	Capacity int
	// PayloadSize is the largest payload kept; longer ones are cut.
	PayloadSize int
}

// PushResult says what Push did with a packet.
type PushResult int

// Results of Push.
const (
	Queued    PushResult = iota // stored for playout
	Duplicate                   // this sequence number is already held
	Late                        // its playout slot has passed
	Restarted                   // a sequence jump: the buffer was flushed and restarted with this packet
)

// PopResult says what Pop returned.
type PopResult int

// Results of Pop.
const (
	Played    PopResult = iota // dst holds the next payload
	Lost                       // the next packet is missing while later ones are held
	Buffering                  // not playing: filling up to Depth, or ran dry
)

// RFC 3550 appendix A.1 limits: a sequence number further behind than
// maxMisorder or further ahead than maxDropout means the sender restarted.
const (
	maxMisorder = 100
	maxDropout  = 3000
)

type slot struct {
	used bool
	seq  uint16
	n    int
	data []byte
}

// Buffer is a jitter buffer. It is not safe for concurrent use.
type Buffer struct {
	cfg     Config
	slots   []slot
	head    int    // index in slots of next
	next    uint16 // sequence number played next
	count   int    // packets held
	playing bool
	any     bool // next is meaningful
	started bool // playout has moved past a sequence number since Reset
	dropped uint64
}

// New returns an empty Buffer.
func New(cfg Config) (*Buffer, error) {
	if cfg.Depth < 1 || cfg.Capacity < cfg.Depth || cfg.PayloadSize < 1 {
		return nil, errors.New("jitter: need 1 <= Depth <= Capacity and PayloadSize >= 1")
	}
	b := &Buffer{cfg: cfg, slots: make([]slot, cfg.Capacity)}
	data := make([]byte, cfg.Capacity*cfg.PayloadSize)
	for i := range b.slots {
		b.slots[i].data = data[i*cfg.PayloadSize : (i+1)*cfg.PayloadSize : (i+1)*cfg.PayloadSize]
	}
	return b, nil
}

// Len returns how many packets are held.
func (b *Buffer) Len() int { return b.count }

// Overflowed returns how many held packets were discarded, unplayed, to
// keep the delay within Capacity.
func (b *Buffer) Overflowed() uint64 { return b.dropped }

// Reset empties the buffer, as for a new stream.
func (b *Buffer) Reset() {
	for i := range b.slots {
		b.slots[i].used = false
	}
	b.count, b.head, b.playing, b.any, b.started = 0, 0, false, false, false
}

// Push stores a copy of payload under its sequence number.
func (b *Buffer) Push(seq uint16, payload []byte) PushResult {
	res := Queued
	if !b.any {
		b.any, b.next, b.head = true, seq, 0
	}
	d := int(int16(seq - b.next))
	switch {
	case d < -maxMisorder || d > maxDropout:
		b.Reset()
		b.any, b.next = true, seq
		d, res = 0, Restarted
	case d < 0 && b.started:
		return Late
	case d < 0:
		// Reordered before playout started: this packet becomes the head,
		// if that keeps the held span within Capacity.
		if b.count > 0 && b.span()-d > b.cfg.Capacity {
			return Late
		}
		b.head = b.index(d)
		b.next = seq
		d = 0
	case d >= b.cfg.Capacity:
		// Too far ahead: discard the oldest slots so the delay stays bounded.
		b.advance(d - b.cfg.Capacity + 1)
		d = b.cfg.Capacity - 1
	}
	s := &b.slots[b.index(d)]
	if s.used {
		return Duplicate
	}
	s.used, s.seq = true, seq
	s.n = copy(s.data, payload)
	b.count++
	if !b.playing && b.count >= b.cfg.Depth {
		b.playing = true
	}
	return res
}

// Pop copies the payload due now into dst and advances playout by one
// packet; call it once per frame time.
func (b *Buffer) Pop(dst []byte) (int, PopResult) {
	if !b.playing {
		return 0, Buffering
	}
	if b.count == 0 {
		// Ran dry (a pause, or the sender's clock is slower): wait for the
		// stream to refill to Depth rather than skipping ahead, so that
		// packets continuing the sequence are not all late.
		b.playing = false
		return 0, Buffering
	}
	s := &b.slots[b.head]
	res := Lost
	n := 0
	if s.used {
		n = copy(dst, s.data[:s.n])
		s.used = false
		b.count--
		res = Played
	}
	b.head = (b.head + 1) % len(b.slots)
	b.next++
	b.started = true
	return n, res
}

// span returns how many sequence numbers the held packets cover, from next.
func (b *Buffer) span() int {
	for d := len(b.slots) - 1; d >= 0; d-- {
		if b.slots[b.index(d)].used {
			return d + 1
		}
	}
	return 0
}

// advance discards k slots from the head.
func (b *Buffer) advance(k int) {
	for range min(k, len(b.slots)) {
		if s := &b.slots[b.head]; s.used {
			s.used = false
			b.count--
			b.dropped++
		}
		b.head = (b.head + 1) % len(b.slots)
	}
	// Slots beyond one full turn were all emptied above; only the
	// sequence number needs to move further.
	if k > len(b.slots) {
		b.head = (b.head + (k-len(b.slots))%len(b.slots)) % len(b.slots)
	}
	b.next += uint16(k)
	b.started = true
}

func (b *Buffer) index(d int) int {
	n := len(b.slots)
	return ((b.head+d)%n + n) % n
}
