// Package wav reads and writes RIFF WAVE files of 16-bit linear PCM, the
// format the file audio backend and the tests exchange with peers.
package wav

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// Audio format tags of the fmt chunk.
const (
	formatPCM        = 1
	formatExtensible = 0xFFFE
)

// Info describes a parsed file: its sample format and where the samples are.
type Info struct {
	Format        uint16 // 1 (PCM), or the subformat tag of WAVE_FORMAT_EXTENSIBLE
	Channels      int
	SampleRate    int
	BitsPerSample int
	DataOffset    int64 // file offset of the first sample byte
	DataSize      int64 // bytes of sample data actually present in the file
}

// Parse walks the RIFF chunks of a file of the given size and returns where
// its audio is. It checks the container, not the sample format: callers
// decide which formats they accept. A data chunk that claims more bytes than
// the file holds (a recording still being written, or cut short) is clamped
// to what is there, as sox and libsndfile do.
func Parse(r io.ReaderAt, size int64) (Info, error) {
	var hdr [12]byte
	if size < int64(len(hdr)) {
		return Info{}, fmt.Errorf("wav: file too short for a RIFF header (%d bytes)", size)
	}
	if err := readAt(r, hdr[:], 0); err != nil {
		return Info{}, err
	}
	if string(hdr[0:4]) != "RIFF" || string(hdr[8:12]) != "WAVE" {
		return Info{}, fmt.Errorf("wav: not a RIFF WAVE file (starts with %q)", hdr[0:4])
	}
	var (
		info    Info
		haveFmt bool
		off     = int64(len(hdr))
	)
	for {
		var ch [8]byte
		if off+8 > size {
			break
		}
		if err := readAt(r, ch[:], off); err != nil {
			return Info{}, err
		}
		id := string(ch[0:4])
		n := int64(binary.LittleEndian.Uint32(ch[4:8]))
		body := off + 8
		switch id {
		case "fmt ":
			if n < 16 {
				return Info{}, fmt.Errorf("wav: fmt chunk is %d bytes, want at least 16", n)
			}
			if body+n > size {
				return Info{}, fmt.Errorf("wav: fmt chunk truncated")
			}
			if err := parseFmt(r, body, n, &info); err != nil {
				return Info{}, err
			}
			haveFmt = true
		case "data":
			if !haveFmt {
				return Info{}, errors.New("wav: data chunk before fmt chunk")
			}
			info.DataOffset = body
			info.DataSize = min(n, size-body)
			return info, nil
		}
		// Chunks are padded to an even length (RIFF).
		off = body + n + n&1
	}
	if !haveFmt {
		return Info{}, errors.New("wav: no fmt chunk")
	}
	return Info{}, errors.New("wav: no data chunk")
}

func parseFmt(r io.ReaderAt, off, n int64, info *Info) error {
	var b [40]byte
	m := min(n, int64(len(b)))
	if err := readAt(r, b[:m], off); err != nil {
		return err
	}
	info.Format = binary.LittleEndian.Uint16(b[0:2])
	info.Channels = int(binary.LittleEndian.Uint16(b[2:4]))
	info.SampleRate = int(binary.LittleEndian.Uint32(b[4:8]))
	info.BitsPerSample = int(binary.LittleEndian.Uint16(b[14:16]))
	if info.Format == formatExtensible {
		// WAVE_FORMAT_EXTENSIBLE carries the real tag in the first two
		// bytes of its SubFormat GUID, at offset 24 of the chunk.
		if m < 26 {
			return fmt.Errorf("wav: extensible fmt chunk is %d bytes, want at least 26", n)
		}
		info.Format = binary.LittleEndian.Uint16(b[24:26])
	}
	return nil
}

// readAt fills b from off; io.ReaderAt may report io.EOF with a full read.
func readAt(r io.ReaderAt, b []byte, off int64) error {
	n, err := r.ReadAt(b, off)
	if n == len(b) {
		return nil
	}
	return fmt.Errorf("wav: read %d bytes at %d: %w", len(b), off, err)
}

// CheckPCM16 returns an error unless the file holds 16-bit PCM with the
// given channel count and, when rate > 0, the given sample rate.
func (i Info) CheckPCM16(rate, channels int) error {
	switch {
	case i.Format != formatPCM:
		return fmt.Errorf("wav: audio format %d, want 1 (PCM)", i.Format)
	case i.BitsPerSample != 16:
		return fmt.Errorf("wav: %d bits per sample, want 16", i.BitsPerSample)
	case i.Channels != channels:
		return fmt.Errorf("wav: %d channels, want %d", i.Channels, channels)
	case rate > 0 && i.SampleRate != rate:
		return fmt.Errorf("wav: %d Hz, want %d Hz", i.SampleRate, rate)
	case i.DataSize < int64(2*channels):
		return errors.New("wav: no audio data")
	}
	return nil
}

// ReadFile returns the samples of a 16-bit PCM file, the first channel only,
// and its sample rate.
func ReadFile(path string) ([]int16, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("wav: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("wav: %w", err)
	}
	info, err := Parse(f, st.Size())
	if err != nil {
		return nil, 0, fmt.Errorf("%w (%s)", err, path)
	}
	if info.Format != formatPCM || info.BitsPerSample != 16 || info.Channels < 1 {
		return nil, 0, fmt.Errorf("wav: %s: format %d, %d bits, %d channels, want 16-bit PCM",
			path, info.Format, info.BitsPerSample, info.Channels)
	}
	raw := make([]byte, info.DataSize)
	if _, err := f.ReadAt(raw, info.DataOffset); err != nil {
		return nil, 0, fmt.Errorf("wav: read %s: %w", path, err)
	}
	stride := 2 * info.Channels
	out := make([]int16, len(raw)/stride)
	for i := range out {
		out[i] = int16(binary.LittleEndian.Uint16(raw[i*stride:]))
	}
	return out, info.SampleRate, nil
}

// headerSize is the size of the canonical header Writer emits.
const headerSize = 44

// bufferSize is how many sample bytes Writer gathers before it writes
// them: a second of 8 kHz audio and more, so that a recording refreshed
// once a second costs one write a second rather than one per frame.
const bufferSize = 32 << 10

// Writer writes a mono 16-bit PCM file. Samples reach the file when its
// buffer fills, and the header's sizes are correct, after Sync or Close.
type Writer struct {
	f     *os.File
	rate  int
	bytes int64  // sample bytes written to the file
	buf   []byte // sample bytes not written yet
}

// Create truncates or creates path and writes a header for an empty file.
func Create(path string, rate int) (*Writer, error) {
	if rate <= 0 {
		return nil, fmt.Errorf("wav: invalid sample rate %d", rate)
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("wav: %w", err)
	}
	w := &Writer{f: f, rate: rate, buf: make([]byte, 0, bufferSize)}
	if err := w.writeHeader(); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.Seek(headerSize, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("wav: %w", err)
	}
	return w, nil
}

// Write appends samples.
func (w *Writer) Write(samples []int16) error {
	for len(samples) > 0 {
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return err
			}
		}
		n := min(len(samples), (cap(w.buf)-len(w.buf))/2)
		b := w.buf[len(w.buf) : len(w.buf)+2*n]
		for i, s := range samples[:n] {
			binary.LittleEndian.PutUint16(b[2*i:], uint16(s))
		}
		w.buf = w.buf[:len(w.buf)+2*n]
		samples = samples[n:]
	}
	return nil
}

// flush writes the buffered samples. Bytes a failed write did not take
// are dropped, so that the header never counts what is not in the file.
func (w *Writer) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	n, err := w.f.Write(w.buf)
	w.bytes += int64(n)
	w.buf = w.buf[:0]
	if err != nil {
		return fmt.Errorf("wav: write: %w", err)
	}
	return nil
}

// Samples returns how many samples have been written, buffered or not.
func (w *Writer) Samples() int64 { return (w.bytes + int64(len(w.buf))) / 2 }

// Sync writes the buffered samples and rewrites the header's sizes, so
// that a reader sees every sample written so far.
func (w *Writer) Sync() error {
	if err := w.flush(); err != nil {
		return err
	}
	return w.writeHeader()
}

// Close writes the buffered samples, rewrites the header and closes the
// file.
func (w *Writer) Close() error {
	err := w.flush()
	if herr := w.writeHeader(); err == nil {
		err = herr
	}
	if cerr := w.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("wav: close: %w", cerr)
	}
	return err
}

func (w *Writer) writeHeader() error {
	// RIFF sizes are 32-bit; a file past 4 GiB keeps the largest size
	// rather than wrapping to a small one.
	data := uint32(min(w.bytes, int64(^uint32(0))-headerSize))
	var h [headerSize]byte
	copy(h[0:], "RIFF")
	binary.LittleEndian.PutUint32(h[4:], data+headerSize-8)
	copy(h[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(h[16:], 16)
	binary.LittleEndian.PutUint16(h[20:], formatPCM)
	binary.LittleEndian.PutUint16(h[22:], 1)
	binary.LittleEndian.PutUint32(h[24:], uint32(w.rate))
	binary.LittleEndian.PutUint32(h[28:], uint32(w.rate*2))
	binary.LittleEndian.PutUint16(h[32:], 2)
	binary.LittleEndian.PutUint16(h[34:], 16)
	copy(h[36:], "data")
	binary.LittleEndian.PutUint32(h[40:], data)
	if _, err := w.f.WriteAt(h[:], 0); err != nil {
		return fmt.Errorf("wav: write header: %w", err)
	}
	return nil
}
