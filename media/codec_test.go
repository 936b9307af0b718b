package media

import (
	"math"
	"testing"
)

func TestCodecByName(t *testing.T) {
	for _, tc := range []struct {
		name string
		want Codec
		ok   bool
	}{{"PCMU", PCMU, true}, {"pcma", PCMA, true}, {"G722", Codec{}, false}, {"", Codec{}, false}} {
		got, ok := CodecByName(tc.name)
		if got != tc.want || ok != tc.ok {
			t.Errorf("CodecByName(%q) = %v, %v", tc.name, got, ok)
		}
	}
	if PCMU.PayloadType != 0 || PCMA.PayloadType != 8 {
		t.Fatal("static payload types differ from RFC 3551")
	}
}

func TestG711RoundTrip(t *testing.T) {
	for _, c := range []Codec{PCMU, PCMA} {
		t.Run(c.Name, func(t *testing.T) {
			// Every code decodes to a value that encodes back to it: the
			// codec is exact on its own output levels.
			codes := make([]byte, 256)
			for i := range codes {
				codes[i] = byte(i)
			}
			pcm := make([]int16, 256)
			if _, err := c.Decode(pcm, codes); err != nil {
				t.Fatal(err)
			}
			again := make([]byte, 256)
			if _, err := c.Encode(again, pcm); err != nil {
				t.Fatal(err)
			}
			again2 := make([]int16, 256)
			c.Decode(again2, again)
			for i := range pcm {
				if again2[i] != pcm[i] {
					t.Fatalf("code %#x: %d -> %#x -> %d", i, pcm[i], again[i], again2[i])
				}
			}

			// A sine survives with the SNR G.711 promises (about 38 dB).
			in := make([]int16, 800)
			for i := range in {
				in[i] = int16(16000 * math.Sin(2*math.Pi*440*float64(i)/8000))
			}
			enc := make([]byte, len(in))
			out := make([]int16, len(in))
			c.Encode(enc, in)
			c.Decode(out, enc)
			var sig, noise float64
			for i := range in {
				sig += float64(in[i]) * float64(in[i])
				d := float64(in[i]) - float64(out[i])
				noise += d * d
			}
			if snr := 10 * math.Log10(sig/noise); snr < 30 {
				t.Fatalf("SNR %.1f dB, want >= 30", snr)
			}
		})
	}
}

func TestCodecErrors(t *testing.T) {
	if _, err := PCMU.Encode(make([]byte, 1), make([]int16, 2)); err == nil {
		t.Error("Encode into a short buffer succeeded")
	}
	if _, err := PCMU.Decode(make([]int16, 1), make([]byte, 2)); err == nil {
		t.Error("Decode into a short buffer succeeded")
	}
	bad := Codec{Name: "G729", PayloadType: 18}
	if _, err := bad.Encode(make([]byte, 2), make([]int16, 2)); err == nil {
		t.Error("Encode with G729 succeeded")
	}
	if _, err := bad.Decode(make([]int16, 2), make([]byte, 2)); err == nil {
		t.Error("Decode with G729 succeeded")
	}
}

func BenchmarkEncodePCMU(b *testing.B) {
	pcm := make([]int16, 160)
	dst := make([]byte, 160)
	b.ReportAllocs()
	for b.Loop() {
		PCMU.Encode(dst, pcm)
	}
}
