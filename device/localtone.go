package device

import (
	"context"
	"fmt"
	"sync"
	"time"

	"intercom/media"
	"intercom/media/tone"
)

// localPlayer plays tones on the door's speaker outside a call: ringback
// while the flat rings, busy or unreachable after a failed call. One tone
// at a time, and stop waits until its sink is closed, so that a call's own
// sink never overlaps it.
type localPlayer struct {
	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// play replaces the current tone; d of zero plays until stop.
func (p *localPlayer) play(m *RTPMedia, spec tone.Spec, d time.Duration) {
	p.stop()
	ctx, cancel := context.WithCancel(context.Background())
	if d > 0 {
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), d)
	}
	done := make(chan struct{})
	p.mu.Lock()
	p.cancel, p.done = cancel, done
	p.mu.Unlock()
	go func() {
		defer close(done)
		if err := playOn(ctx, m, spec); err != nil {
			m.Logger.Warn("local tone", "err", err)
		}
	}()
}

func (p *localPlayer) stop() {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.cancel, p.done = nil, nil
	p.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

func playOn(ctx context.Context, m *RTPMedia, spec tone.Spec) error {
	format, err := media.FormatForPtime(m.Ptime)
	if err != nil {
		return err
	}
	gen, err := tone.New(spec)
	if err != nil {
		return err
	}
	sink, err := m.Backend.OpenSink(format)
	if err != nil {
		return fmt.Errorf("open audio output: %w", err)
	}
	frame := make([]int16, format.FrameSamples)
	for ctx.Err() == nil && !gen.Done() {
		_ = gen.Read(frame)
		m.SpeakerGain.Apply(frame)
		if err := sink.Write(frame); err != nil {
			sink.Close()
			return err
		}
	}
	return sink.Close()
}
