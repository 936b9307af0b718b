package media

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"intercom/internal/clock"
)

// ErrClosed is returned by Read and Write on a closed Source or Sink.
var ErrClosed = errors.New("media: closed")

// Format is the PCM shape exchanged with a backend: mono int16 samples.
type Format struct {
	SampleRate   int
	FrameSamples int
}

// FormatForPtime returns the 8 kHz format whose frames last ptime.
func FormatForPtime(ptime time.Duration) (Format, error) {
	n := ptime * ClockRate / time.Second
	if n < 1 || n*time.Second != ptime*ClockRate {
		return Format{}, fmt.Errorf("media: ptime %v is not a whole number of samples at %d Hz", ptime, ClockRate)
	}
	return Format{SampleRate: ClockRate, FrameSamples: int(n)}, nil
}

// FrameDuration returns how long one frame lasts.
func (f Format) FrameDuration() time.Duration {
	return time.Duration(f.FrameSamples) * time.Second / time.Duration(f.SampleRate)
}

func (f Format) validate() error {
	if f.SampleRate <= 0 || f.FrameSamples <= 0 {
		return fmt.Errorf("media: invalid format %d Hz, %d samples per frame", f.SampleRate, f.FrameSamples)
	}
	return nil
}

// Source delivers captured audio. Read fills frame and blocks until that
// audio is due, so a reader is paced in real time.
type Source interface {
	Read(frame []int16) error
	Close() error
}

// Sink plays audio. Write blocks like a sound card: until the previous
// frame has had its time.
type Sink interface {
	Write(frame []int16) error
	Close() error
}

// Backend opens a sound device (or what stands in for one).
type Backend interface {
	OpenSource(f Format) (Source, error)
	OpenSink(f Format) (Sink, error)
}

// BackendConfig is what a backend is opened with.
type BackendConfig struct {
	Input, Output string // device names, or WAV paths for "file"
	Logger        *slog.Logger
	Clock         clock.Clock // paces the file and null backends; nil => clock.Real{}
}

func (c BackendConfig) withDefaults() BackendConfig {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	return c
}

var registry = struct {
	sync.Mutex
	m map[string]func(BackendConfig) (Backend, error)
}{m: map[string]func(BackendConfig) (Backend, error){}}

// Register makes a backend available by name. Like database/sql.Register,
// it panics on a duplicate or nil registration: that is a programming error
// found at init time.
func Register(name string, open func(BackendConfig) (Backend, error)) {
	registry.Lock()
	defer registry.Unlock()
	if open == nil {
		panic("media: Register of nil backend " + name)
	}
	if _, dup := registry.m[name]; dup {
		panic("media: Register called twice for backend " + name)
	}
	registry.m[name] = open
}

// Backends returns the registered backend names, sorted.
func Backends() []string {
	registry.Lock()
	defer registry.Unlock()
	return slices.Sorted(maps.Keys(registry.m))
}

// NewBackend opens the backend registered under name.
func NewBackend(name string, cfg BackendConfig) (Backend, error) {
	registry.Lock()
	open, ok := registry.m[name]
	registry.Unlock()
	if !ok {
		return nil, fmt.Errorf("media: unknown audio backend %q (have %s)", name, strings.Join(Backends(), ", "))
	}
	b, err := open(cfg.withDefaults())
	if err != nil {
		return nil, fmt.Errorf("media: backend %s: %w", name, err)
	}
	return b, nil
}
