// Package jitter is an adaptive RTP jitter buffer: it holds payloads in
// sequence-number order and releases one per playout tick, delaying them
// just enough to cover the delay variation it measures on the network, and
// dropping or inserting frames (preferably quiet ones) to follow that target
// and to absorb clock drift between the sender and the playout device.
package jitter

import (
	"errors"
	"time"
)

// Config sets up a Buffer.
type Config struct {
	// Frame is the audio duration of one packet (the ptime).
	Frame time.Duration
	// ClockRate is the RTP timestamp rate, for the RFC 3550 jitter figure.
	ClockRate int
	// Min and Max bound the target delay.
	Min, Max time.Duration
	// PayloadSize is the largest payload kept; longer ones are cut.
	PayloadSize int
	// Quiet reports whether a payload is quiet enough to drop or to
	// repeat unnoticed. nil: no payload is, and the delay is only adjusted
	// when it is far off target.
	Quiet func(payload []byte) bool
}

// PushResult says what Push did with a packet.
type PushResult int

// Results of Push.
const (
	Queued    PushResult = iota // stored for playout
	Duplicate                   // this sequence number was already received
	Late                        // its playout slot has passed
	Restarted                   // a sequence jump: the buffer was flushed and restarted with this packet
)

// PopResult says what Pop returned.
type PopResult int

// Results of Pop.
const (
	Played    PopResult = iota // dst holds the next payload
	Lost                       // the next packet is missing: conceal it
	Inserted                   // playout held back a frame (ran dry, or growing the delay): conceal it
	Buffering                  // not playing: waiting for the target delay to build up
)

// Stats describes a Buffer's state and counts what it did.
type Stats struct {
	Target time.Duration // the delay the buffer aims for
	Depth  time.Duration // the delay of the earliest packets now; 0 while not playing
	Jitter time.Duration // RFC 3550 §6.4.1 interarrival jitter estimate

	Played     uint64 // frames played from a packet
	Lost       uint64 // packets missing at their playout time
	Late       uint64 // packets arriving after their playout time
	Duplicates uint64 // packets received twice
	Dropped    uint64 // frames skipped to shrink the delay
	Inserted   uint64 // frames inserted to grow the delay or because the buffer ran dry
	Overflowed uint64 // packets discarded, unplayed, to stay within capacity
}

// RFC 3550 appendix A.1 limits: a sequence number further behind than
// maxMisorder or further ahead than maxDropout means the sender restarted.
const (
	maxMisorder = 100
	maxDropout  = 3000
)

// window is how far back delay variation is measured. Two seconds hold
// enough packets for a stable peak, and let the target start falling soon
// after jitter ends.
const window = 2 * time.Second

// recent is how far back the delay of the earliest packets is taken
// from: short, so that the playout position follows a drifting sender
// clock closely, and long enough to hold some undelayed packets.
const recent = 500 * time.Millisecond

// fall is the time constant with which the target decays toward a lower
// measured need: a rise takes effect at once, a fall over a few seconds, so
// that a brief calm does not invite the next burst of late packets.
const fall = time.Second

// seenSize is how many recent sequence numbers are remembered to tell a
// duplicate of a played packet from a late one; more than maxMisorder.
const seenSize = 256

type slot struct {
	used bool
	seq  uint16
	n    int
	data []byte
}

// Buffer is a jitter buffer. It is not safe for concurrent use.
type Buffer struct {
	cfg   Config
	slots []slot
	head  int    // index in slots of next
	next  uint16 // sequence number played next
	// nextExt is next extended to 64 bits, so that sequence numbers map
	// to playout times across wraparound.
	nextExt int64
	count   int // packets held
	playing bool
	any     bool // next is meaningful
	started bool // playout has moved past a sequence number since Reset

	epoch time.Time // arrival times are kept relative to it
	// win holds, for the latest arrivals, arrival time minus the
	// packet's nominal position in the stream (extended seq * Frame). Its
	// spread is the delay variation; its minimum, against the playout
	// position, gives the delay of the earliest packets.
	win      []time.Duration
	nRecent  int // how many of the latest entries of win are recent
	winN     int
	winPos   int
	lastArr  time.Duration // arrival time of the latest packet
	prevArr  time.Duration // for the RFC 3550 jitter estimate
	prevTS   uint32
	havePrev bool
	jitter   time.Duration
	seen     [seenSize]uint32 // seq+1 of recently received packets, by seq%seenSize

	popAt     time.Time // playout time of the last Pop
	target    time.Duration
	depth     time.Duration
	lastQuiet bool // the last frame played was quiet
	st        Stats
}

// New returns an empty Buffer.
func New(cfg Config) (*Buffer, error) {
	if cfg.Frame <= 0 || cfg.ClockRate <= 0 || cfg.PayloadSize < 1 {
		return nil, errors.New("jitter: need Frame, ClockRate and PayloadSize above 0")
	}
	if cfg.Min < 0 || cfg.Max < cfg.Min {
		return nil, errors.New("jitter: need 0 <= Min <= Max")
	}
	// Room for Max, the frame of slack above target, and a frame of
	// quantisation either side.
	capacity := int((cfg.Max+cfg.Frame-1)/cfg.Frame) + 3
	b := &Buffer{
		cfg:     cfg,
		slots:   make([]slot, capacity),
		win:     make([]time.Duration, max(2, int((window+cfg.Frame-1)/cfg.Frame))),
		nRecent: max(2, int((recent+cfg.Frame-1)/cfg.Frame)),
		target:  cfg.Min,
	}
	data := make([]byte, capacity*cfg.PayloadSize)
	for i := range b.slots {
		b.slots[i].data = data[i*cfg.PayloadSize : (i+1)*cfg.PayloadSize : (i+1)*cfg.PayloadSize]
	}
	return b, nil
}

// Len returns how many packets are held.
func (b *Buffer) Len() int { return b.count }

// Stats returns the buffer's state and counters.
func (b *Buffer) Stats() Stats {
	st := b.st
	st.Target, st.Depth, st.Jitter = b.target, b.depth, b.jitter
	return st
}

// Reset empties the buffer, as for a new stream. The target delay and
// the counters carry over: the network has not changed.
func (b *Buffer) Reset() {
	for i := range b.slots {
		b.slots[i].used = false
	}
	b.count, b.head, b.playing, b.any, b.started = 0, 0, false, false, false
	b.winN, b.winPos, b.havePrev, b.depth = 0, 0, false, 0
	clear(b.seen[:])
}

// Push stores a copy of payload, with its RTP sequence number and
// timestamp, as arrived at time at.
func (b *Buffer) Push(seq uint16, ts uint32, at time.Time, payload []byte) PushResult {
	res := Queued
	if !b.any {
		b.any, b.next, b.nextExt, b.head, b.epoch = true, seq, 0, 0, at
	}
	d := int(int16(seq - b.next))
	switch {
	case d < -maxMisorder || d > maxDropout:
		b.Reset()
		b.any, b.next, b.nextExt, b.epoch = true, seq, 0, at
		d, res = 0, Restarted
	case d < 0 && b.started:
		if b.seen[seq%seenSize] == uint32(seq)+1 {
			b.st.Duplicates++
			return Duplicate
		}
		// Its lateness is delay variation the target must learn.
		b.arrived(seq, ts, at)
		b.st.Late++
		return Late
	case d < 0:
		// Reordered before playout started: this packet becomes the head,
		// if that keeps the held span within capacity.
		if b.count > 0 && b.span()-d > len(b.slots) {
			b.st.Late++
			return Late
		}
		b.head = b.index(d)
		b.next = seq
		b.nextExt += int64(d)
		d = 0
	case d >= len(b.slots):
		// Too far ahead: discard the oldest slots so the delay stays bounded.
		b.st.Overflowed += uint64(b.advance(d - len(b.slots) + 1))
		d = len(b.slots) - 1
	}
	s := &b.slots[b.index(d)]
	if s.used {
		b.st.Duplicates++
		return Duplicate
	}
	s.used, s.seq = true, seq
	s.n = copy(s.data, payload)
	b.count++
	b.arrived(seq, ts, at)
	return res
}

// arrived records a new packet's arrival for the delay statistics.
func (b *Buffer) arrived(seq uint16, ts uint32, at time.Time) {
	b.seen[seq%seenSize] = uint32(seq) + 1
	arr := at.Sub(b.epoch)
	ext := b.nextExt + int64(int16(seq-b.next))
	b.win[b.winPos] = arr - time.Duration(ext)*b.cfg.Frame
	b.winPos = (b.winPos + 1) % len(b.win)
	b.winN = min(b.winN+1, len(b.win))
	// RFC 3550 §6.4.1: D is the difference of transit times of
	// consecutive arrivals; J moves 1/16 of the way toward |D|.
	if b.havePrev {
		sent := time.Duration(int32(ts-b.prevTS)) * time.Second / time.Duration(b.cfg.ClockRate)
		dv := (arr - b.prevArr) - sent
		b.jitter += (max(dv, -dv) - b.jitter) / 16
	}
	b.prevArr, b.prevTS, b.havePrev, b.lastArr = arr, ts, true, arr
}

// Pop copies the payload due at now into dst and advances playout by one
// frame; call it once per frame time, as the playout device asks for one.
func (b *Buffer) Pop(now time.Time, dst []byte) (int, PopResult) {
	// A device filling its buffer asks for several frames at once, and
	// plays them a frame time apart: so each Pop is taken to play at
	// least a frame after the last one. The 0.1% of slack lets a device
	// clock slightly faster than now's fall back into step.
	if e := b.popAt.Add(b.cfg.Frame - b.cfg.Frame/1000); !b.popAt.IsZero() && e.After(now) {
		now = e
	}
	b.popAt = now
	if !b.any {
		return 0, Buffering
	}
	t := now.Sub(b.epoch)
	lo, hi, early := b.spread()
	b.retarget(hi - lo)
	frame := b.cfg.Frame
	if !b.playing {
		k := b.firstHeld()
		// Start once the earliest packet would have waited the target.
		if k < 0 || t-time.Duration(b.nextExt+int64(k))*frame-early < b.target {
			return 0, Buffering
		}
		b.advance(k)
		b.playing = true
	}
	// off maps a packet's nominal position to its playout time, if this
	// call plays next; off-early is then how long the earliest recent
	// packets wait.
	off := t - time.Duration(b.nextExt)*frame
	b.depth = off - early
	if b.count == 0 {
		if t-b.lastArr > b.cfg.Max {
			// A pause longer than any jitter: the stream starts again
			// with a fresh prefill and fresh statistics.
			b.playing, b.winN, b.winPos, b.depth = false, 0, 0, 0
			return 0, Buffering
		}
		b.st.Inserted++
		return 0, Inserted
	}
	// Aim for a depth within [target, target+frame): a finer step is not
	// possible, a frame at a time. Adjust on quiet frames; force it when
	// far off or when packets come too late.
	switch {
	case b.depth < b.target && (b.lastQuiet || b.depth < b.target-frame || off < hi):
		b.st.Inserted++
		return 0, Inserted
	case b.depth >= b.target+frame && b.count > 1 &&
		(b.depth >= b.target+2*frame || b.headQuiet()):
		b.advance(1)
		b.st.Dropped++
		b.depth -= frame
	}
	s := &b.slots[b.head]
	res := Lost
	n := 0
	if s.used {
		n = copy(dst, s.data[:s.n])
		s.used = false
		b.count--
		b.lastQuiet = b.cfg.Quiet != nil && b.cfg.Quiet(dst[:n])
		b.st.Played++
		res = Played
	} else {
		b.st.Lost++
	}
	b.head = (b.head + 1) % len(b.slots)
	b.next++
	b.nextExt++
	b.started = true
	return n, res
}

// spread returns the lowest and highest arrival offsets in the window,
// and the lowest of the recent ones.
func (b *Buffer) spread() (lo, hi, early time.Duration) {
	if b.winN == 0 {
		return 0, 0, 0
	}
	i := (b.winPos + len(b.win) - 1) % len(b.win) // the latest
	lo, hi, early = b.win[i], b.win[i], b.win[i]
	for n := 1; n < b.winN; n++ {
		i = (i + len(b.win) - 1) % len(b.win)
		v := b.win[i]
		lo, hi = min(lo, v), max(hi, v)
		if n < b.nRecent {
			early = min(early, v)
		}
	}
	return lo, hi, early
}

// retarget moves the target toward the measured delay variation: up at
// once, down exponentially with time constant fall.
func (b *Buffer) retarget(variation time.Duration) {
	want := min(max(variation, b.cfg.Min), b.cfg.Max)
	if want >= b.target {
		b.target = want
		return
	}
	step := (b.target - want) * b.cfg.Frame / fall
	if b.target-want <= time.Millisecond || step == 0 {
		b.target = want
		return
	}
	b.target -= step
}

func (b *Buffer) headQuiet() bool {
	s := &b.slots[b.head]
	return s.used && b.cfg.Quiet != nil && b.cfg.Quiet(s.data[:s.n])
}

// firstHeld returns how many slots from the head the first held packet
// is, or -1 when none is.
func (b *Buffer) firstHeld() int {
	if b.count == 0 {
		return -1
	}
	for d := range len(b.slots) {
		if b.slots[b.index(d)].used {
			return d
		}
	}
	return -1
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

// advance discards k slots from the head and returns how many held
// packets it discarded.
func (b *Buffer) advance(k int) int {
	discarded := 0
	for range min(k, len(b.slots)) {
		if s := &b.slots[b.head]; s.used {
			s.used = false
			b.count--
			discarded++
		}
		b.head = (b.head + 1) % len(b.slots)
	}
	// Slots beyond one full turn were all emptied above; only the
	// sequence number needs to move further.
	if k > len(b.slots) {
		b.head = (b.head + (k-len(b.slots))%len(b.slots)) % len(b.slots)
	}
	b.next += uint16(k)
	b.nextExt += int64(k)
	if k > 0 {
		b.started = true
	}
	return discarded
}

func (b *Buffer) index(d int) int {
	n := len(b.slots)
	return ((b.head+d)%n + n) % n
}
