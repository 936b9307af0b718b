package jitter

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// The acceptance tests of issue 3: the buffer on simulated networks, in
// simulated time. A sender emits a packet every frame on its own clock; the
// network delays, loses, reorders and duplicates them; the playout device
// pops a frame every 20 ms on its clock.

// network is a simulated path from a sender to the buffer.
type network struct {
	seed          uint64
	loss, dup     float64 // probabilities per packet
	reorder       float64 // probability that a packet is held back behind its successor
	jitter        func(sent time.Duration) time.Duration
	senderRate    float64 // sender clock speed over playout clock speed; 0 => 1
	quiet         func(k int) bool
	startSeq      uint16
	min, max, dur time.Duration
}

type arrival struct {
	at time.Duration
	k  int // index of the packet in the stream
}

// popRecord is what one playout tick saw.
type popRecord struct {
	at  time.Duration
	res PopResult
	k   int // the packet played, for Played
	st  Stats
}

type simResult struct {
	pops    []popRecord
	arrived []time.Duration // first arrival time per packet; -1 if lost
	quiet   []bool
	buf     *Buffer
	maxLen  int
}

func (n network) run(t *testing.T) simResult {
	t.Helper()
	rng := rand.New(rand.NewPCG(n.seed, 42))
	rate := n.senderRate
	if rate == 0 {
		rate = 1
	}
	const base = 10 * time.Millisecond
	var arrivals []arrival
	var res simResult
	for k := 0; ; k++ {
		sent := time.Duration(float64(time.Duration(k)*frame) / rate)
		if sent >= n.dur {
			break
		}
		res.quiet = append(res.quiet, n.quiet != nil && n.quiet(k))
		res.arrived = append(res.arrived, -1)
		if rng.Float64() < n.loss {
			continue
		}
		d := base
		if n.jitter != nil {
			if j := n.jitter(sent); j > 0 {
				d += time.Duration(rng.Int64N(int64(j)))
			}
		}
		if rng.Float64() < n.reorder {
			d += frame + time.Duration(rng.Int64N(int64(frame)))
		}
		arrivals = append(arrivals, arrival{sent + d, k})
		if rng.Float64() < n.dup {
			arrivals = append(arrivals, arrival{sent + d + time.Duration(rng.Int64N(int64(40*time.Millisecond))), k})
		}
	}
	slices.SortStableFunc(arrivals, func(a, b arrival) int { return cmp.Compare(a.at, b.at) })

	b, err := New(Config{Frame: frame, ClockRate: 8000, Min: n.min, Max: n.max, PayloadSize: 3,
		Quiet: func(p []byte) bool { return p[2] == 0 }})
	if err != nil {
		t.Fatal(err)
	}
	res.buf = b
	payload, dst := make([]byte, 3), make([]byte, 3)
	next := 0
	for now := time.Duration(0); now < n.dur; now += frame {
		for ; next < len(arrivals) && arrivals[next].at <= now; next++ {
			a := arrivals[next]
			seq := n.startSeq + uint16(a.k)
			payload[0], payload[1], payload[2] = byte(seq), byte(seq>>8), 1
			if res.quiet[a.k] {
				payload[2] = 0
			}
			if res.arrived[a.k] < 0 {
				res.arrived[a.k] = a.at
			}
			b.Push(seq, uint32(seq)*160, t0.Add(a.at), payload)
			res.maxLen = max(res.maxLen, b.Len())
		}
		_, r := b.Pop(t0.Add(now), dst)
		p := popRecord{at: now, res: r, k: -1, st: b.Stats()}
		if r == Played {
			p.k = int(uint16(dst[0])|uint16(dst[1])<<8-n.startSeq) + len(res.arrived)&^0xffff
		}
		st := p.st
		if st.Target < n.min || st.Target > n.max {
			t.Fatalf("at %v: target %v outside [%v, %v]", now, st.Target, n.min, n.max)
		}
		res.pops = append(res.pops, p)
	}
	return res
}

// summary is what a run measured from from on.
type summary struct {
	pops, concealed, lost, inserted int
	meanDelay, maxDelay, maxDepth   time.Duration
}

func (r simResult) summarize(from time.Duration) summary {
	var s summary
	var total time.Duration
	played := 0
	for _, p := range r.pops {
		if p.at < from || p.res == Buffering {
			continue
		}
		s.pops++
		s.maxDepth = max(s.maxDepth, p.st.Depth)
		switch p.res {
		case Played:
			d := p.at - r.arrived[p.k]
			total += d
			played++
			s.maxDelay = max(s.maxDelay, d)
		case Lost:
			s.lost++
		case Inserted:
			s.inserted++
		}
	}
	s.concealed = s.lost + s.inserted
	if played > 0 {
		s.meanDelay = total / time.Duration(played)
	}
	return s
}

func (s summary) rate() float64 { return float64(s.concealed) / float64(s.pops) }

// talk is a speech-like pattern: two seconds of talk, one of silence.
func talk(k int) bool { return k%150 >= 100 }

func TestSimulatedJitterLossReorderDuplicates(t *testing.T) {
	n := network{seed: 1, loss: 0.02, dup: 0.02, reorder: 0.02, startSeq: 65000, quiet: talk,
		jitter: func(time.Duration) time.Duration { return 30 * time.Millisecond },
		min:    20 * time.Millisecond, max: 200 * time.Millisecond, dur: 120 * time.Second}
	r := n.run(t)
	s := r.summarize(5 * time.Second)
	st := r.buf.Stats()
	t.Logf("30 ms jitter, 2%% loss, 2%% reordered, 2%% duplicated, %d frames: concealed %.2f%% (lost %d, inserted %d), dropped %d, "+
		"added delay mean %v max %v, target %v, depth max %v, RFC 3550 jitter %v, late %d, duplicates %d",
		s.pops, 100*s.rate(), s.lost, s.inserted, st.Dropped, s.meanDelay, s.maxDelay, st.Target, s.maxDepth, st.Jitter, st.Late, st.Duplicates)
	if rate := s.rate(); rate > 0.04 {
		t.Errorf("concealed %.2f%% of frames, want < 4%% (2%% are lost on the network)", 100*rate)
	}
	// Covering 30 ms of jitter and 20-40 ms of reordering costs about
	// that much delay, and no more than two frames on top.
	if s.meanDelay < 20*time.Millisecond || s.meanDelay > 100*time.Millisecond {
		t.Errorf("mean added delay %v, want 20..100ms", s.meanDelay)
	}
	if st.Duplicates == 0 || st.Late > uint64(s.pops)/100 {
		t.Errorf("duplicates %d, late %d of %d", st.Duplicates, st.Late, s.pops)
	}
}

func TestTargetFollowsJitter(t *testing.T) {
	const start, end = 10 * time.Second, 40 * time.Second
	n := network{seed: 2, startSeq: 100, quiet: talk,
		jitter: func(sent time.Duration) time.Duration {
			if sent >= start && sent < end {
				return 30 * time.Millisecond
			}
			return 0
		},
		min: 20 * time.Millisecond, max: 200 * time.Millisecond, dur: 60 * time.Second}
	r := n.run(t)
	var rose, settled time.Duration = -1, -1
	var peak time.Duration
	for _, p := range r.pops {
		if rose < 0 && p.at >= start && p.st.Target >= 25*time.Millisecond {
			rose = p.at
		}
		if p.at >= end && p.st.Target != n.min {
			settled = -1
		} else if p.at >= end && settled < 0 {
			settled = p.at
		}
		peak = max(peak, p.st.Target)
	}
	before := r.pops[int(start/frame)-1].st
	t.Logf("target %v before jitter, rose to 25 ms %v after 30 ms jitter started (peak %v), back to %v %v after it ended",
		before.Target, rose-start, peak, n.min, settled-end)
	if rose < 0 || rose-start > time.Second {
		t.Errorf("target reached 25ms at %v, want within 1s of %v", rose, start)
	}
	if settled < 0 || settled-end > 10*time.Second {
		t.Errorf("target back to jitter.min at %v, want within 10s of %v", settled, end)
	}
	if before.Target != n.min || before.Lost+before.Inserted+before.Dropped != 0 {
		t.Errorf("before the jitter: %+v", before)
	}
}

func TestSenderClockDrift(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rate  float64
		quiet func(int) bool
	}{
		{"sender 0.5% fast", 1.005, talk},
		{"sender 0.5% slow", 0.995, talk},
		{"sender 0.5% fast, never quiet", 1.005, nil},
		{"sender 0.5% slow, never quiet", 0.995, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := network{seed: 3, senderRate: tc.rate, startSeq: 40000, quiet: tc.quiet,
				jitter: func(time.Duration) time.Duration { return 10 * time.Millisecond },
				min:    20 * time.Millisecond, max: 200 * time.Millisecond, dur: 10 * time.Minute}
			r := n.run(t)
			s := r.summarize(0)
			st := r.buf.Stats()
			t.Logf("10 min: %d frames, dropped %d, inserted %d, lost %d, depth max %v, held max %d, added delay mean %v max %v, target %v",
				s.pops, st.Dropped, st.Inserted, st.Lost, s.maxDepth, r.maxLen, s.meanDelay, s.maxDelay, st.Target)
			// 0.5% of 30000 frames is 150 to drop or insert.
			if st.Dropped+st.Inserted < 100 || st.Dropped+st.Inserted > 400 {
				t.Errorf("dropped %d, inserted %d: want about 150 adjustments", st.Dropped, st.Inserted)
			}
			if s.maxDepth > n.min+3*frame || r.maxLen > 5 {
				t.Errorf("depth max %v, held max %d: want at most %v and 5", s.maxDepth, r.maxLen, n.min+3*frame)
			}
			if st.Lost+st.Late != 0 {
				t.Errorf("lost %d, late %d: want none", st.Lost, st.Late)
			}
			if tc.quiet != nil {
				checkQuietAdjustments(t, r)
			}
		})
	}
}

// checkQuietAdjustments checks that nearly every frame dropped was quiet
// and nearly every frame inserted followed a quiet one: only a buffer run
// dry in the middle of a talkspurt inserts a frame there.
func checkQuietAdjustments(t *testing.T, r simResult) {
	t.Helper()
	last, adjusted, loud := -1, 0, 0
	for _, p := range r.pops {
		switch p.res {
		case Played:
			for k := last + 1; k < p.k; k++ {
				adjusted++
				if !r.quiet[k] {
					loud++
				}
			}
			last = p.k
		case Inserted:
			adjusted++
			if last >= 0 && !r.quiet[last] {
				loud++
			}
		}
	}
	t.Logf("%d of %d adjustments in talk", loud, adjusted)
	if loud*20 > adjusted {
		t.Errorf("%d of %d adjustments in talk, want under 5%%", loud, adjusted)
	}
}
