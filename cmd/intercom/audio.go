package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"text/tabwriter"
	"time"

	"intercom/device/config"
	"intercom/media"
	"intercom/media/measure"
)

// audioCmd is `intercom audio devices|test`: the installer's check that the
// sound card is there and that speaker and microphone work.
func audioCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("audio: devices or test?")}
	}
	switch args[0] {
	case "devices":
		if len(args) > 1 {
			return usageError{fmt.Errorf("audio devices: unexpected argument %q", args[1])}
		}
		return audioDevices(stdout)
	case "test":
		fs := flag.NewFlagSet("audio test", flag.ContinueOnError)
		fs.SetOutput(stderr)
		path := fs.String("config", defaultConfig, "config file (audio.backend, input, output, ptime)")
		d := fs.Duration("duration", 2*time.Second, "how long the tone plays")
		if err := fs.Parse(args[1:]); err != nil {
			return usageError{err}
		}
		if fs.NArg() > 0 {
			return usageError{fmt.Errorf("audio test: unexpected argument %q", fs.Arg(0))}
		}
		if *d < minTestTone || *d > maxTestTone {
			return usageError{fmt.Errorf("audio test: -duration %v out of range %v..%v", *d, minTestTone, maxTestTone)}
		}
		return audioTestCmd(*path, *d, stdout, stderr)
	default:
		return usageError{fmt.Errorf("audio: unknown subcommand %q", args[0])}
	}
}

func audioDevices(stdout io.Writer) error {
	terminate, err := media.InitPortAudio()
	if err != nil {
		return err
	}
	devs, err := media.PortAudioDevices()
	if terr := terminate(); err == nil {
		err = terr
	}
	if err != nil {
		return err
	}
	if len(devs) == 0 {
		return errors.New("audio: no sound devices found")
	}
	printDevices(stdout, devs)
	return nil
}

// printDevices writes one line per device; the names are what
// audio.input and audio.output take.
func printDevices(w io.Writer, devs []media.AudioDevice) {
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tHOST API\tIN\tOUT\tRATE\tDEFAULT")
	for _, d := range devs {
		def := ""
		switch {
		case d.DefaultInput && d.DefaultOutput:
			def = "input, output"
		case d.DefaultInput:
			def = "input"
		case d.DefaultOutput:
			def = "output"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%g\t%s\n", d.Name, d.HostAPI, d.MaxInputChannels, d.MaxOutputChannels, d.DefaultSampleRate, def)
	}
	tw.Flush()
}

func audioTestCmd(path string, d time.Duration, stdout, stderr io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		return usageError{err}
	}
	f, err := media.FormatForPtime(cfg.Audio.Ptime)
	if err != nil {
		return usageError{err}
	}
	if cfg.Audio.Backend == "portaudio" {
		terminate, err := media.InitPortAudio()
		if err != nil {
			return err
		}
		defer terminate()
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	backend, err := media.NewBackend(cfg.Audio.Backend, media.BackendConfig{
		Input: cfg.Audio.Input, Output: cfg.Audio.Output, Logger: log.With("component", "audio"),
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s backend: playing %d Hz at %.0f dBFS for %v on output %q, recording input %q\n",
		cfg.Audio.Backend, testToneHz, measure.DBFS(testToneAmp), d, cfg.Audio.Output, cfg.Audio.Input)
	res, err := audioTest(backend, f, d)
	if err != nil {
		return err
	}
	res.print(stdout)
	return nil
}

// The test plays testToneHz after leadIn of silence, then silence for
// maxRoundTrip while the recording goes on, so that the tone's start
// stands out and its end comes back too.
const (
	testToneHz   = 1000
	testToneAmp  = 0.5 // -6 dBFS: loud, without clipping a speaker amplifier
	leadIn       = 200 * time.Millisecond
	maxRoundTrip = 500 * time.Millisecond
	minTestTone  = 100 * time.Millisecond
	maxTestTone  = time.Minute

	// The tone counts as heard when some 100 ms of the recording carry it
	// above minHeard and heardContrast times a neighbouring frequency,
	// which room noise and other tones do not reach.
	minHeard      = 0.003 // about -50 dBFS
	heardContrast = 4
	neighbourHz   = 1300
)

// audioTestResult is what the test measured.
type audioTestResult struct {
	Recorded  time.Duration
	RMS, Peak float64 // of the whole recording, fractions of full scale
	Tone      float64 // strongest amplitude of the test tone in 100 ms
	Heard     bool
	// RoundTrip runs from handing the tone's first samples to the sink to
	// their capture by the source (valid when Heard): output buffering,
	// speaker, air, microphone and input buffering.
	RoundTrip time.Duration
}

func (r audioTestResult) print(w io.Writer) {
	fmt.Fprintf(w, "recorded %.2fs: RMS %.1f dBFS, peak %.1f dBFS\n", r.Recorded.Seconds(), measure.DBFS(r.RMS), measure.DBFS(r.Peak))
	if !r.Heard {
		fmt.Fprintf(w, "round trip: not measured, the %d Hz tone is not in the recording (speaker and microphone apart, muted, or not the same card)\n", testToneHz)
		return
	}
	fmt.Fprintf(w, "round trip: %d ms (the %d Hz tone came back at %.1f dBFS)\n", r.RoundTrip.Milliseconds(), testToneHz, measure.DBFS(r.Tone))
}

// capture is what the recording goroutine hands back.
type capture struct {
	samples []int16
	// start is the latest time at which the first sample can have been
	// captured: every Read bounds it, as the samples it returns were all
	// captured by the time it returns.
	start time.Time
	err   error
}

// audioTest plays the tone on b's sink while recording b's source, and
// measures the recording.
func audioTest(b media.Backend, f media.Format, d time.Duration) (audioTestResult, error) {
	src, err := b.OpenSource(f)
	if err != nil {
		return audioTestResult{}, err
	}
	sink, err := b.OpenSink(f)
	if err != nil {
		src.Close()
		return audioTestResult{}, err
	}
	stop := make(chan struct{})
	done := make(chan capture, 1)
	go record(src, f, stop, done)

	toneStart, playErr := play(sink, f, d)
	close(stop)
	c := <-done
	err = errors.Join(playErr, c.err, sink.Close(), src.Close())
	if err != nil {
		return audioTestResult{}, err
	}
	return analyse(c, f.SampleRate, toneStart), nil
}

// record reads frames until stop is closed or a Read fails.
func record(src media.Source, f media.Format, stop <-chan struct{}, done chan<- capture) {
	var c capture
	frame := make([]int16, f.FrameSamples)
	defer func() { done <- c }()
	for {
		select {
		case <-stop:
			return
		default:
		}
		if err := src.Read(frame); err != nil {
			c.err = err
			return
		}
		c.samples = append(c.samples, frame...)
		start := time.Now().Add(-samplesDuration(len(c.samples), f.SampleRate))
		if c.start.IsZero() || start.Before(c.start) {
			c.start = start
		}
	}
}

// play writes leadIn of silence, the tone for d, and maxRoundTrip of
// silence; it returns when the first tone frame was handed to the sink.
func play(sink media.Sink, f media.Format, d time.Duration) (time.Time, error) {
	frames := func(d time.Duration) int {
		return int((d*time.Duration(f.SampleRate)/time.Second + time.Duration(f.FrameSamples) - 1) / time.Duration(f.FrameSamples))
	}
	lead, tone, tail := frames(leadIn), frames(d), frames(maxRoundTrip)
	frame := make([]int16, f.FrameSamples)
	var toneStart time.Time
	for i := range lead + tone + tail {
		clear(frame)
		if i >= lead && i < lead+tone {
			for j := range frame {
				n := (i-lead)*len(frame) + j
				frame[j] = int16(testToneAmp * math.MaxInt16 * math.Sin(2*math.Pi*testToneHz*float64(n)/float64(f.SampleRate)))
			}
		}
		if i == lead {
			toneStart = time.Now()
		}
		if err := sink.Write(frame); err != nil {
			return time.Time{}, err
		}
	}
	return toneStart, nil
}

func analyse(c capture, rate int, toneStart time.Time) audioTestResult {
	r := audioTestResult{Recorded: samplesDuration(len(c.samples), rate)}
	r.RMS, r.Peak = measure.Level(c.samples)
	window, hop := rate/10, rate/20
	for i := 0; i+window <= len(c.samples); i += hop {
		w := c.samples[i : i+window]
		level := measure.Goertzel(w, float64(rate), testToneHz)
		if level > r.Tone {
			r.Tone = level
			r.Heard = level >= minHeard && level >= heardContrast*measure.Goertzel(w, float64(rate), neighbourHz)
		}
	}
	if !r.Heard {
		return r
	}
	onset, ok := measure.Onset(c.samples, float64(rate), testToneHz, r.Tone)
	if !ok {
		r.Heard = false
		return r
	}
	r.RoundTrip = max(c.start.Add(samplesDuration(onset, rate)).Sub(toneStart), 0)
	return r
}

func samplesDuration(n, rate int) time.Duration {
	return time.Duration(n) * time.Second / time.Duration(rate)
}
