//go:build cgo && !noportaudio

package media

/*
// dlopen moved into libc only in glibc 2.34; Raspberry Pi OS Bullseye has 2.31.
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <portaudio.h>

// The PortAudio functions the Go code calls, resolved at run time by
// ic_pa_load: the binary does not link libportaudio, and portaudio.h only
// gives the types and constants.
#define IC_PA_FUNCS(X) \
	X(Pa_GetErrorText) \
	X(Pa_GetLastHostErrorInfo) \
	X(Pa_Initialize) \
	X(Pa_Terminate) \
	X(Pa_IsFormatSupported) \
	X(Pa_GetDefaultInputDevice) \
	X(Pa_GetDefaultOutputDevice) \
	X(Pa_GetDeviceCount) \
	X(Pa_GetDeviceInfo) \
	X(Pa_GetHostApiInfo) \
	X(Pa_OpenStream) \
	X(Pa_StartStream) \
	X(Pa_StopStream) \
	X(Pa_CloseStream) \
	X(Pa_ReadStream) \
	X(Pa_WriteStream)

#define IC_PA_FIELD(f) __typeof__(f) *f;
typedef struct { IC_PA_FUNCS(IC_PA_FIELD) } ic_pa_table;

static ic_pa_table ic_pa;

// ic_pa_load opens the library name and resolves every function of
// IC_PA_FUNCS. It returns 0, or -1 with dlerror's message in err and the
// table as it was. Callers serialise it, so that dlerror's state is theirs.
static int ic_pa_load(const char *name, char *err, size_t errlen) {
	void *h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		snprintf(err, errlen, "%s", dlerror());
		return -1;
	}
	ic_pa_table t;
	const char *sym;
#define IC_PA_SYM(f) \
	sym = #f; \
	if ((*(void **)&t.f = dlsym(h, sym)) == NULL) goto missing;
	IC_PA_FUNCS(IC_PA_SYM)
	ic_pa = t;
	return 0;
missing:;
	const char *msg = dlerror();
	snprintf(err, errlen, "%s", msg != NULL ? msg : sym);
	dlclose(h);
	return -1;
}

// Go cannot call through a C function pointer: these wrappers do, and are
// called only once ic_pa_load has succeeded.
static const char *ic_Pa_GetErrorText(PaError code) { return ic_pa.Pa_GetErrorText(code); }
static const PaHostErrorInfo *ic_Pa_GetLastHostErrorInfo(void) { return ic_pa.Pa_GetLastHostErrorInfo(); }
static PaError ic_Pa_Initialize(void) { return ic_pa.Pa_Initialize(); }
static PaError ic_Pa_Terminate(void) { return ic_pa.Pa_Terminate(); }
static PaError ic_Pa_IsFormatSupported(const PaStreamParameters *in, const PaStreamParameters *out, double rate) {
	return ic_pa.Pa_IsFormatSupported(in, out, rate);
}
static PaDeviceIndex ic_Pa_GetDefaultInputDevice(void) { return ic_pa.Pa_GetDefaultInputDevice(); }
static PaDeviceIndex ic_Pa_GetDefaultOutputDevice(void) { return ic_pa.Pa_GetDefaultOutputDevice(); }
static PaDeviceIndex ic_Pa_GetDeviceCount(void) { return ic_pa.Pa_GetDeviceCount(); }
static const PaDeviceInfo *ic_Pa_GetDeviceInfo(PaDeviceIndex i) { return ic_pa.Pa_GetDeviceInfo(i); }
static const PaHostApiInfo *ic_Pa_GetHostApiInfo(PaHostApiIndex i) { return ic_pa.Pa_GetHostApiInfo(i); }
static PaError ic_Pa_OpenStream(PaStream **s, const PaStreamParameters *in, const PaStreamParameters *out,
		double rate, unsigned long frames, PaStreamFlags flags, PaStreamCallback *cb, void *user) {
	return ic_pa.Pa_OpenStream(s, in, out, rate, frames, flags, cb, user);
}
static PaError ic_Pa_StartStream(PaStream *s) { return ic_pa.Pa_StartStream(s); }
static PaError ic_Pa_StopStream(PaStream *s) { return ic_pa.Pa_StopStream(s); }
static PaError ic_Pa_CloseStream(PaStream *s) { return ic_pa.Pa_CloseStream(s); }
static PaError ic_Pa_ReadStream(PaStream *s, void *buf, unsigned long frames) {
	return ic_pa.Pa_ReadStream(s, buf, frames);
}
static PaError ic_Pa_WriteStream(PaStream *s, const void *buf, unsigned long frames) {
	return ic_pa.Pa_WriteStream(s, buf, frames);
}
*/
import "C"

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// This file calls PortAudio's C API directly rather than through
// github.com/gordonklaus/portaudio: that binding passes a counter to C as
// a pointer (the stream id in Pa_OpenStream), which the checkptr checks
// of -race builds reject from the second stream on, and it keeps its
// device cache and init count in unsynchronised globals. The few calls a
// blocking mono stream needs are simpler to own.
//
// The library is loaded with dlopen when the program first initialises
// PortAudio, not linked: a station on another backend then neither needs
// libportaudio2 installed nor maps it and what it pulls in (ALSA, JACK,
// libstdc++), megabytes of memory on a small board.

// The portaudio backend drives a real sound card through PortAudio's
// blocking streams: the card's clock paces Read and Write.
func init() { Register("portaudio", openPortAudio) }

// defaultDevice names the host API's default input or output device.
const defaultDevice = "default"

// paError is a PortAudio error code.
type paError C.PaError

func (e paError) Error() string { return C.GoString(C.ic_Pa_GetErrorText(C.PaError(e))) }

// paErr turns a PortAudio result into an error, with the host API's own
// message when PortAudio has none.
func paErr(code C.PaError) error {
	switch code {
	case C.paNoError:
		return nil
	case C.paUnanticipatedHostError:
		if info := C.ic_Pa_GetLastHostErrorInfo(); info != nil && info.errorText != nil {
			return fmt.Errorf("%w: %s (%d)", paError(code), C.GoString(info.errorText), int(info.errorCode))
		}
	}
	return paError(code)
}

// pa guards PortAudio's global state: PortAudio does not promise that
// initialising, listing devices, opening, closing and terminating are safe
// from several threads, so every such call happens under pa. Read and
// Write do not take it: they touch only their own stream.
// Lock order: pa, then a stream's mu.
var pa struct {
	sync.Mutex
	loaded  bool // the library is loaded and its functions resolved
	users   int  // successful InitPortAudio calls not yet terminated
	streams map[*paStream]struct{}
}

// paLibrary is the file dlopen loads PortAudio from; tests change it.
var paLibrary = "libportaudio.so.2"

// loadPortAudio loads the library and resolves the functions the backend
// calls, once; pa must be held. InitPortAudio calls it, so every other
// entry point, which needs pa.users > 0, finds the functions resolved. A
// failure is not remembered: a later call tries again. The library stays
// loaded, as PortAudio may be initialised again.
func loadPortAudio() error {
	if pa.loaded {
		return nil
	}
	name := C.CString(paLibrary)
	defer C.free(unsafe.Pointer(name))
	var msg [512]C.char
	if C.ic_pa_load(name, &msg[0], C.size_t(len(msg))) != 0 {
		return fmt.Errorf("media: portaudio: load %s: %s (install libportaudio2)", paLibrary, C.GoString(&msg[0]))
	}
	pa.loaded = true
	return nil
}

// InitPortAudio initialises PortAudio for the "portaudio" backend. The
// program calls it once at start when it uses that backend, before
// NewBackend, and calls terminate before it exits (PortAudio must be
// terminated or a device may stay busy). terminate closes every stream
// still open, so later Reads and Writes return ErrClosed; calling it again
// does nothing. Calls may nest: PortAudio stays up until the last
// terminate.
func InitPortAudio() (terminate func() error, err error) {
	pa.Lock()
	defer pa.Unlock()
	if err := loadPortAudio(); err != nil {
		return nil, err
	}
	if err := paErr(C.ic_Pa_Initialize()); err != nil {
		return nil, fmt.Errorf("media: portaudio: initialise: %w", err)
	}
	pa.users++
	var (
		once    sync.Once
		termErr error
	)
	return func() error {
		once.Do(func() { termErr = terminatePortAudio() })
		return termErr
	}, nil
}

func terminatePortAudio() error {
	pa.Lock()
	defer pa.Unlock()
	pa.users--
	var errs []error
	if pa.users == 0 {
		for s := range pa.streams {
			errs = append(errs, s.shut())
		}
		clear(pa.streams)
	}
	if err := paErr(C.ic_Pa_Terminate()); err != nil {
		errs = append(errs, fmt.Errorf("media: portaudio: terminate: %w", err))
	}
	return errors.Join(errs...)
}

var errNotInitialised = errors.New("media: portaudio is not initialised (the program must call media.InitPortAudio first)")

type paBackend struct {
	cfg BackendConfig
	// supports asks whether the device takes a mono int16 stream at rate;
	// tests replace it to play a card that refuses 8 kHz.
	supports func(dev paDevice, input bool, rate int) bool
}

var _ Backend = (*paBackend)(nil)

// openPortAudio checks that both devices exist, so that a wrong name fails
// at start-up rather than at the first call. An empty name means
// "default".
func openPortAudio(cfg BackendConfig) (Backend, error) {
	pa.Lock()
	defer pa.Unlock()
	if pa.users == 0 {
		return nil, errNotInitialised
	}
	if _, err := lookupDevice(cfg.Input, true); err != nil {
		return nil, err
	}
	if _, err := lookupDevice(cfg.Output, false); err != nil {
		return nil, err
	}
	return &paBackend{cfg: cfg, supports: formatSupported}, nil
}

// formatSupported asks PortAudio whether the device takes the stream that
// open would start; pa must be held.
func formatSupported(dev paDevice, input bool, rate int) bool {
	params := dev.params()
	in, out := (*C.PaStreamParameters)(nil), params
	if input {
		in, out = params, nil
	}
	return C.ic_Pa_IsFormatSupported(in, out, C.double(rate)) == C.paFormatIsSupported
}

// paDevice is what the backend needs to know of a PortAudio device.
type paDevice struct {
	index      C.PaDeviceIndex
	name       string
	channels   int      // input or output channels, as asked
	latency    C.PaTime // default low input or output latency, seconds
	sampleRate float64  // default
}

// params describes a mono int16 stream on the device.
func (d paDevice) params() *C.PaStreamParameters {
	return &C.PaStreamParameters{
		device:           d.index,
		channelCount:     1,
		sampleFormat:     C.paInt16,
		suggestedLatency: d.latency,
	}
}

// lookupDevice finds a device that can capture (input) or play by its
// exact name; pa must be held.
func lookupDevice(name string, input bool) (paDevice, error) {
	dir, def := "output", C.ic_Pa_GetDefaultOutputDevice()
	if input {
		dir, def = "input", C.ic_Pa_GetDefaultInputDevice()
	}
	n := C.ic_Pa_GetDeviceCount()
	if n < 0 {
		return paDevice{}, fmt.Errorf("media: portaudio: list devices: %w", paErr(C.PaError(n)))
	}
	var (
		devs  []paDevice
		names []string
	)
	for i := range n {
		info := C.ic_Pa_GetDeviceInfo(i)
		if info == nil {
			continue
		}
		d := paDevice{index: i, name: C.GoString(info.name), sampleRate: float64(info.defaultSampleRate)}
		if input {
			d.channels, d.latency = int(info.maxInputChannels), info.defaultLowInputLatency
		} else {
			d.channels, d.latency = int(info.maxOutputChannels), info.defaultLowOutputLatency
		}
		if d.channels > 0 {
			devs = append(devs, d)
			names = append(names, strconv.Quote(d.name))
		}
	}
	isDefault := name == "" || name == defaultDevice
	for _, d := range devs {
		if isDefault && d.index == def || !isDefault && d.name == name {
			return d, nil
		}
	}
	have := "none"
	if len(names) > 0 {
		have = strings.Join(names, ", ")
	}
	if isDefault {
		return paDevice{}, fmt.Errorf("media: portaudio: no default %s device (have %s)", dir, have)
	}
	return paDevice{}, fmt.Errorf("media: portaudio: no %s device %q (have %s)", dir, name, have)
}

// PortAudioDevices lists the devices of every host API, in PortAudio's
// order. PortAudio must be initialised (InitPortAudio).
func PortAudioDevices() ([]AudioDevice, error) {
	pa.Lock()
	defer pa.Unlock()
	if pa.users == 0 {
		return nil, errNotInitialised
	}
	n := C.ic_Pa_GetDeviceCount()
	if n < 0 {
		return nil, fmt.Errorf("media: portaudio: list devices: %w", paErr(C.PaError(n)))
	}
	defIn, defOut := C.ic_Pa_GetDefaultInputDevice(), C.ic_Pa_GetDefaultOutputDevice()
	devs := make([]AudioDevice, 0, n)
	for i := range n {
		info := C.ic_Pa_GetDeviceInfo(i)
		if info == nil {
			continue
		}
		d := AudioDevice{
			Name:              C.GoString(info.name),
			MaxInputChannels:  int(info.maxInputChannels),
			MaxOutputChannels: int(info.maxOutputChannels),
			DefaultSampleRate: float64(info.defaultSampleRate),
			DefaultInput:      i == defIn,
			DefaultOutput:     i == defOut,
		}
		if api := C.ic_Pa_GetHostApiInfo(info.hostApi); api != nil {
			d.HostAPI = C.GoString(api.name)
		}
		devs = append(devs, d)
	}
	return devs, nil
}

func (b *paBackend) OpenSource(f Format) (Source, error) {
	s, err := b.open(f, b.cfg.Input, true)
	if err != nil {
		return nil, err
	}
	return &paSource{s}, nil
}

func (b *paBackend) OpenSink(f Format) (Sink, error) {
	s, err := b.open(f, b.cfg.Output, false)
	if err != nil {
		return nil, err
	}
	return &paSink{s}, nil
}

// open starts a mono int16 blocking stream whose buffers are one frame,
// at the device's low latency so that little audio waits in the card. A
// device that refuses f's rate is opened at its default rate, and the
// stream converts.
func (b *paBackend) open(f Format, name string, input bool) (*paStream, error) {
	if err := f.validate(); err != nil {
		return nil, err
	}
	pa.Lock()
	defer pa.Unlock()
	if pa.users == 0 {
		return nil, errNotInitialised
	}
	dev, err := lookupDevice(name, input)
	if err != nil {
		return nil, err
	}
	s := &paStream{dir: "output", device: dev.name, log: b.cfg.Logger}
	params := dev.params()
	in, out := (*C.PaStreamParameters)(nil), params
	if input {
		s.dir, in, out = "input", params, nil
	}
	rate, err := chooseRate(f.SampleRate, dev.sampleRate, func(rate int) bool { return b.supports(dev, input, rate) })
	if err != nil {
		return nil, fmt.Errorf("media: portaudio: %s device %q %w", s.dir, dev.name, err)
	}
	frames := f.FrameSamples
	if rate != f.SampleRate {
		from, to := f.SampleRate, rate
		if input {
			from, to = to, from
		}
		if s.conv, err = newRateConv(from, to, f.FrameSamples); err != nil {
			return nil, fmt.Errorf("media: portaudio: %s device %q: %w", s.dir, dev.name, err)
		}
		frames = deviceFrames(f.FrameSamples, f.SampleRate, rate)
		b.cfg.Logger.Info("media: portaudio: device refuses the call's rate; resampling",
			"device", dev.name, "dir", s.dir, "rate", f.SampleRate, "device_rate", rate)
	}
	var st unsafe.Pointer
	code := C.ic_Pa_OpenStream(&st, in, out, C.double(rate), C.ulong(frames), C.paNoFlag, nil, nil)
	if err := paErr(code); err != nil {
		return nil, fmt.Errorf("media: portaudio: open %s device %q: %w", s.dir, dev.name, err)
	}
	if err := paErr(C.ic_Pa_StartStream(st)); err != nil {
		C.ic_Pa_CloseStream(st)
		return nil, fmt.Errorf("media: portaudio: start %s device %q: %w", s.dir, dev.name, err)
	}
	s.st = st
	if pa.streams == nil {
		pa.streams = map[*paStream]struct{}{}
	}
	pa.streams[s] = struct{}{}
	return s, nil
}

// paStream is one open blocking stream. A PortAudio stream must not be
// used from two threads at once, so mu serialises Read or Write with
// Close: Close waits for a transfer in progress, at most about one frame.
type paStream struct {
	dir, device string
	log         *slog.Logger

	closed atomic.Bool   // set first by Close, so that callers stop queueing on mu
	xruns  atomic.Uint64 // input overflows or output underflows

	mu      sync.Mutex
	st      unsafe.Pointer // the C PaStream; nil once closed
	conv    *rateConv      // nil when the device runs at the call's rate; used under mu
	silence []int16        // a frame of silence, written after an underflow; used under mu
}

// transfer moves one frame through the stream, straight from or into the
// caller's memory. An xrun (audio lost while nobody read, or a gap while
// nobody wrote) is counted, not fatal: PortAudio still moved the whole
// frame, and a call must carry on.
func (s *paStream) transfer(frame []int16, input bool) error {
	if s.closed.Load() {
		return ErrClosed
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return ErrClosed
	}
	if len(frame) == 0 {
		return nil
	}
	switch {
	case s.conv == nil:
		return s.transferLocked(frame, input)
	case input:
		return s.conv.read(frame, s.readLocked)
	default:
		return s.conv.write(frame, s.writeLocked)
	}
}

func (s *paStream) readLocked(frame []int16) error  { return s.transferLocked(frame, true) }
func (s *paStream) writeLocked(frame []int16) error { return s.transferLocked(frame, false) }

// transferLocked moves frame, at the device's rate, through the stream; mu
// must be held and the stream open.
func (s *paStream) transferLocked(frame []int16, input bool) error {
	if len(frame) == 0 {
		return nil
	}
	var code, xrun C.PaError
	if input {
		code, xrun = C.ic_Pa_ReadStream(s.st, unsafe.Pointer(&frame[0]), C.ulong(len(frame))), C.paInputOverflowed
	} else {
		code, xrun = C.ic_Pa_WriteStream(s.st, unsafe.Pointer(&frame[0]), C.ulong(len(frame))), C.paOutputUnderflowed
	}
	if code == xrun {
		if s.xruns.Add(1) == 1 {
			s.log.Warn("media: portaudio: xrun", "device", s.device, "dir", s.dir, "error", paError(code))
		}
		if !input {
			// The card ran dry and starts again with only this frame
			// queued; a frame of silence behind it gives it one in hand
			// again, as the session's frame loop writes one frame per
			// frame it reads.
			if len(s.silence) < len(frame) {
				s.silence = make([]int16, len(frame))
			}
			C.ic_Pa_WriteStream(s.st, unsafe.Pointer(&s.silence[0]), C.ulong(len(frame)))
		}
		return nil
	}
	if err := paErr(code); err != nil {
		return fmt.Errorf("media: portaudio: %s device %q: %w", s.dir, s.device, err)
	}
	return nil
}

func (s *paStream) Close() error {
	s.closed.Store(true)
	pa.Lock()
	defer pa.Unlock()
	delete(pa.streams, s)
	return s.shut()
}

// shut stops and closes the stream once; pa must be held.
func (s *paStream) shut() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st == nil {
		return nil
	}
	st := s.st
	s.st = nil
	if n := s.xruns.Load(); n > 0 {
		s.log.Info("media: portaudio: stream closed after xruns", "device", s.device, "dir", s.dir, "xruns", n)
	}
	// Stop lets queued output play out; Close frees the stream either way.
	err := paErr(C.ic_Pa_StopStream(st))
	if cerr := paErr(C.ic_Pa_CloseStream(st)); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("media: portaudio: close %s device %q: %w", s.dir, s.device, err)
	}
	return nil
}

// paSource captures from an input device; the card paces Read.
type paSource struct{ *paStream }

var _ Source = (*paSource)(nil)

// Read fills frame with the next captured samples, blocking until the card
// has them.
func (s *paSource) Read(frame []int16) error { return s.transfer(frame, true) }

// Overflows returns how many times captured audio was lost because Read
// came too late.
func (s *paSource) Overflows() uint64 { return s.xruns.Load() }

// paSink plays to an output device; the card paces Write.
type paSink struct{ *paStream }

var _ Sink = (*paSink)(nil)

// Write queues frame for playback, blocking while the card's buffer is
// full.
func (s *paSink) Write(frame []int16) error { return s.transfer(frame, false) }

// Underflows returns how many times the card ran dry because Write came
// too late.
func (s *paSink) Underflows() uint64 { return s.xruns.Load() }
