package wav

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// chunk returns a RIFF chunk with its header and padding.
func chunk(id string, body []byte) []byte {
	b := append([]byte(id), 0, 0, 0, 0)
	binary.LittleEndian.PutUint32(b[4:], uint32(len(body)))
	b = append(b, body...)
	if len(body)%2 == 1 {
		b = append(b, 0)
	}
	return b
}

func fmtBody(format, channels uint16, rate uint32, bits uint16) []byte {
	b := make([]byte, 16)
	binary.LittleEndian.PutUint16(b[0:], format)
	binary.LittleEndian.PutUint16(b[2:], channels)
	binary.LittleEndian.PutUint32(b[4:], rate)
	binary.LittleEndian.PutUint32(b[8:], rate*uint32(channels)*uint32(bits)/8)
	binary.LittleEndian.PutUint16(b[12:], channels*bits/8)
	binary.LittleEndian.PutUint16(b[14:], bits)
	return b
}

func riff(chunks ...[]byte) []byte {
	body := []byte("WAVE")
	for _, c := range chunks {
		body = append(body, c...)
	}
	return chunk("RIFF", body)
}

var pcm8k = fmtBody(1, 1, 8000, 16)

func TestParse(t *testing.T) {
	extensible := append(fmtBody(0xFFFE, 1, 8000, 16), 22, 0, 16, 0, 4, 0, 0, 0, 1, 0, 0, 0,
		0, 0, 0x10, 0, 0x80, 0, 0, 0xaa, 0, 0x38, 0x9b, 0x71)
	hugeData := riff(chunk("fmt ", pcm8k))
	hugeData = append(hugeData, "data\xff\xff\xff\xff\x01\x02\x03\x04"...)
	tests := []struct {
		name     string
		data     []byte
		wantErr  string
		wantOff  int64
		wantSize int64
	}{
		{name: "empty", data: nil, wantErr: "too short"},
		{name: "11 bytes", data: []byte("RIFF\x00\x00\x00\x00WAV"), wantErr: "too short"},
		{name: "not riff", data: []byte("RIFX\x00\x00\x00\x00WAVEfmt "), wantErr: "not a RIFF WAVE"},
		{name: "not wave", data: []byte("RIFF\x00\x00\x00\x00AVI "), wantErr: "not a RIFF WAVE"},
		{name: "header only", data: riff(), wantErr: "no fmt chunk"},
		{name: "partial chunk header", data: append(riff(), "fmt "...), wantErr: "no fmt chunk"},
		{name: "fmt too small", data: riff(chunk("fmt ", pcm8k[:14])), wantErr: "fmt chunk is 14 bytes"},
		{name: "fmt truncated", data: riff(chunk("fmt ", pcm8k))[:30], wantErr: "fmt chunk truncated"},
		{name: "no data", data: riff(chunk("fmt ", pcm8k)), wantErr: "no data chunk"},
		{name: "data before fmt", data: riff(chunk("data", []byte{1, 2}), chunk("fmt ", pcm8k)), wantErr: "data chunk before fmt"},
		{name: "unknown chunk skipped past EOF", data: riff(chunk("fmt ", pcm8k), []byte("LIST\xff\xff\xff\x7f")), wantErr: "no data chunk"},
		{name: "extensible too short", data: riff(chunk("fmt ", append(fmtBody(0xFFFE, 1, 8000, 16), 0, 0))), wantErr: "extensible"},
		{name: "plain", data: riff(chunk("fmt ", pcm8k), chunk("data", []byte{1, 2, 3, 4})), wantOff: 44, wantSize: 4},
		{name: "odd chunk padded", data: riff(chunk("fmt ", pcm8k), chunk("note", []byte{9}), chunk("data", []byte{1, 2})), wantOff: 54, wantSize: 2},
		{name: "data clamped to file", data: hugeData, wantOff: 44, wantSize: 4},
		{name: "extensible pcm", data: riff(chunk("fmt ", extensible), chunk("data", []byte{1, 2})), wantOff: 20 + 40 + 8, wantSize: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			info, err := Parse(bytes.NewReader(tc.data), int64(len(tc.data)))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if info.DataOffset != tc.wantOff || info.DataSize != tc.wantSize {
				t.Fatalf("data at %d size %d, want %d size %d", info.DataOffset, info.DataSize, tc.wantOff, tc.wantSize)
			}
			if err := info.CheckPCM16(8000, 1); err != nil {
				t.Fatalf("CheckPCM16: %v", err)
			}
		})
	}
}

func TestCheckPCM16(t *testing.T) {
	tests := []struct {
		name string
		fmt  []byte
		data []byte
		want string
	}{
		{"stereo", fmtBody(1, 2, 8000, 16), []byte{1, 2, 3, 4}, "2 channels, want 1"},
		{"16 kHz", fmtBody(1, 1, 16000, 16), []byte{1, 2}, "16000 Hz, want 8000 Hz"},
		{"8 bit", fmtBody(1, 1, 8000, 8), []byte{1, 2}, "8 bits per sample"},
		{"float", fmtBody(3, 1, 8000, 32), []byte{1, 2, 3, 4}, "audio format 3"},
		{"alaw", fmtBody(6, 1, 8000, 8), []byte{1}, "audio format 6"},
		{"no samples", pcm8k, nil, "no audio data"},
		{"half a sample", pcm8k, []byte{1}, "no audio data"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := riff(chunk("fmt ", tc.fmt), chunk("data", tc.data))
			info, err := Parse(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			if err := info.CheckPCM16(8000, 1); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestWriterRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.wav")
	w, err := Create(path, 8000)
	if err != nil {
		t.Fatal(err)
	}
	in := []int16{0, 1, -1, 32767, -32768, 1234}
	if err := w.Write(in[:3]); err != nil {
		t.Fatal(err)
	}
	// After Sync, a reader sees what was written so far.
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	got, rate, err := ReadFile(path)
	if err != nil || rate != 8000 || !slices.Equal(got, in[:3]) {
		t.Fatalf("mid-write read = %v, %d, %v", got, rate, err)
	}
	if err := w.Write(in[3:]); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	got, rate, err = ReadFile(path)
	if err != nil || rate != 8000 || !slices.Equal(got, in) {
		t.Fatalf("read = %v, %d, %v; want %v", got, rate, err, in)
	}
	raw, _ := os.ReadFile(path)
	if len(raw) != headerSize+2*len(in) || binary.LittleEndian.Uint32(raw[4:]) != uint32(len(raw)-8) {
		t.Fatalf("file of %d bytes with RIFF size %d", len(raw), binary.LittleEndian.Uint32(raw[4:]))
	}
}

// TestWriterBuffers checks that samples reach the file in one write when
// the buffer fills or at Sync, not one write per call, and that a Write
// larger than the buffer keeps every sample in order.
func TestWriterBuffers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.wav")
	w, err := Create(path, 8000)
	if err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		return st.Size()
	}
	frame := make([]int16, 160)
	if err := w.Write(frame); err != nil {
		t.Fatal(err)
	}
	if got := size(); got != headerSize || w.Samples() != 160 {
		t.Fatalf("after a frame: file of %d bytes, Samples %d; want %d bytes, 160", got, w.Samples(), headerSize)
	}
	in := make([]int16, bufferSize) // twice the buffer, in bytes
	for i := range in {
		in[i] = int16(i)
	}
	if err := w.Write(in); err != nil {
		t.Fatal(err)
	}
	// Two full buffers went out; the rest waits for Sync.
	if got, want := size(), int64(headerSize+2*bufferSize); got != want {
		t.Fatalf("after a large write: file of %d bytes, want %d", got, want)
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(frame), in...)
	got, _, err := ReadFile(path)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("after Sync: %d samples, %v; want %d", len(got), err, len(want))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if got := size(); got != int64(headerSize+2*len(want)) {
		t.Fatalf("after Close: file of %d bytes, want %d", got, headerSize+2*len(want))
	}
}

func TestReadFileStereoTakesFirstChannel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "st.wav")
	data := riff(chunk("fmt ", fmtBody(1, 2, 16000, 16)), chunk("data", []byte{1, 0, 9, 9, 2, 0, 9, 9}))
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	got, rate, err := ReadFile(path)
	if err != nil || rate != 16000 || !slices.Equal(got, []int16{1, 2}) {
		t.Fatalf("got %v, %d, %v", got, rate, err)
	}
}

func TestReadFileErrorNamesFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.wav")
	if err := os.WriteFile(path, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("err = %v, want it to name %s", err, path)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(riff(chunk("fmt ", pcm8k), chunk("data", []byte{1, 2, 3, 4})))
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := Parse(bytes.NewReader(data), int64(len(data)))
		if err == nil && (info.DataOffset+info.DataSize > int64(len(data)) || info.DataSize < 0) {
			t.Fatalf("data %d+%d beyond %d bytes", info.DataOffset, info.DataSize, len(data))
		}
	})
}
