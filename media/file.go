package media

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"

	"intercom/media/wav"
)

// The file backend plays a WAV file as the microphone (looped) and records
// the speaker into a WAV file: for simulation and end-to-end tests.
func init() { Register("file", openFile) }

type fileBackend struct{ cfg BackendConfig }

var _ Backend = (*fileBackend)(nil)

func openFile(cfg BackendConfig) (Backend, error) {
	if cfg.Input != "" {
		// Check the input now so that a bad path fails at start-up, not
		// at the first call.
		f, _, err := openWAV(cfg.Input, ClockRate)
		if err != nil {
			return nil, err
		}
		f.Close()
	}
	return &fileBackend{cfg: cfg}, nil
}

// openWAV opens a mono 16-bit PCM file at rate Hz.
func openWAV(path string, rate int) (*os.File, wav.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, wav.Info{}, fmt.Errorf("media: open wav: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, wav.Info{}, fmt.Errorf("media: open wav: %w", err)
	}
	info, err := wav.Parse(f, st.Size())
	if err == nil {
		err = info.CheckPCM16(rate, 1)
	}
	if err != nil {
		f.Close()
		return nil, wav.Info{}, fmt.Errorf("media: %s: %w", path, err)
	}
	return f, info, nil
}

func (b *fileBackend) OpenSource(f Format) (Source, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	if b.cfg.Input == "" {
		return nil, errors.New("media: file backend: no input WAV path")
	}
	file, info, err := openWAV(b.cfg.Input, f.SampleRate)
	if err != nil {
		return nil, err
	}
	size := info.DataSize &^ 1
	return &fileSource{
		f:     file,
		path:  b.cfg.Input,
		off:   info.DataOffset,
		size:  size,
		p:     newPacer(b.cfg.Clock, f.SampleRate),
		ahead: make([]byte, 0, min(size, readAhead)),
	}, nil
}

func (b *fileBackend) OpenSink(f Format) (Sink, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	if b.cfg.Output == "" {
		return nil, errors.New("media: file backend: no output WAV path")
	}
	w, err := wav.Create(b.cfg.Output, f.SampleRate)
	if err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	return &fileSink{w: w, rate: int64(f.SampleRate), p: newPacer(b.cfg.Clock, f.SampleRate)}, nil
}

// readAhead is how many sample bytes fileSource reads at a time: a second
// of 8 kHz audio, so that it reads the file once a second rather than once
// a frame.
const readAhead = 16000

// fileSource reads a WAV file's samples in a loop.
type fileSource struct {
	f     *os.File
	path  string
	off   int64 // first sample byte
	size  int64 // sample bytes, even
	pos   int64 // next byte to read from the file, relative to off
	p     *pacer
	ahead []byte // bytes read from the file and not yet returned, from next
	next  int
}

var _ Source = (*fileSource)(nil)

func (s *fileSource) Read(frame []int16) error {
	if err := s.p.wait(len(frame)); err != nil {
		return err
	}
	for i := 0; i < len(frame); {
		if s.next == len(s.ahead) {
			if err := s.fill(); err != nil {
				return err
			}
		}
		n := min(len(frame)-i, (len(s.ahead)-s.next)/2)
		for j := range n {
			frame[i+j] = int16(binary.LittleEndian.Uint16(s.ahead[s.next+2*j:]))
		}
		i += n
		s.next += 2 * n
	}
	return nil
}

// fill reads the next bytes of the file into ahead, up to the end of the
// samples: the loop starts again at the next fill.
func (s *fileSource) fill() error {
	n := min(int64(cap(s.ahead)), s.size-s.pos)
	s.ahead, s.next = s.ahead[:n], 0
	if _, err := s.f.ReadAt(s.ahead, s.off+s.pos); err != nil {
		s.ahead = s.ahead[:0]
		if s.p.isClosed() {
			return ErrClosed
		}
		return fmt.Errorf("media: read %s: %w", s.path, err)
	}
	s.pos = (s.pos + n) % s.size
	return nil
}

func (s *fileSource) Close() error {
	s.p.close()
	if err := s.f.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("media: close %s: %w", s.path, err)
	}
	return nil
}

// fileSink appends what it is given to a WAV file and refreshes the
// header about once a second of audio, so that the file is valid while a
// call goes on.
type fileSink struct {
	mu     sync.Mutex // Write and Close may come from different goroutines
	w      *wav.Writer
	rate   int64
	synced int64 // samples covered by the header
	closed bool
	p      *pacer
}

var _ Sink = (*fileSink)(nil)

func (s *fileSink) Write(frame []int16) error {
	if err := s.p.wait(len(frame)); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.w.Write(frame); err != nil {
		return fmt.Errorf("media: %w", err)
	}
	if n := s.w.Samples(); n-s.synced >= s.rate {
		s.synced = n
		if err := s.w.Sync(); err != nil {
			return fmt.Errorf("media: %w", err)
		}
	}
	return nil
}

func (s *fileSink) Close() error {
	s.p.close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.w.Close(); err != nil {
		return fmt.Errorf("media: %w", err)
	}
	return nil
}
