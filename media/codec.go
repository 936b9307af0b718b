package media

import (
	"fmt"
	"strings"

	"github.com/zaf/g711"
)

// ClockRate is the sample and RTP clock rate of G.711 (RFC 3551 §4.5.14).
const ClockRate = 8000

// Codec is an RTP audio codec: its encoding name and the payload type
// negotiated for it.
type Codec struct {
	Name        string
	PayloadType uint8
}

// The G.711 codecs with their static payload types (RFC 3551 table 4).
var (
	PCMU = Codec{Name: "PCMU", PayloadType: 0}
	PCMA = Codec{Name: "PCMA", PayloadType: 8}
)

// CodecByName returns the codec with that encoding name, ignoring case.
func CodecByName(name string) (Codec, bool) {
	switch strings.ToUpper(name) {
	case PCMU.Name:
		return PCMU, true
	case PCMA.Name:
		return PCMA, true
	}
	return Codec{}, false
}

// Encode writes the G.711 encoding of pcm, one byte per sample, to dst and
// returns the number of bytes written.
func (c Codec) Encode(dst []byte, pcm []int16) (int, error) {
	if len(dst) < len(pcm) {
		return 0, fmt.Errorf("media: encode: buffer of %d bytes for %d samples", len(dst), len(pcm))
	}
	dst = dst[:len(pcm)]
	switch c.Name {
	case PCMU.Name:
		for i, s := range pcm {
			dst[i] = g711.EncodeUlawFrame(s)
		}
	case PCMA.Name:
		for i, s := range pcm {
			dst[i] = g711.EncodeAlawFrame(s)
		}
	default:
		return 0, fmt.Errorf("media: encode: unsupported codec %q", c.Name)
	}
	return len(pcm), nil
}

// Decode writes the samples of the G.711 payload to dst and returns how
// many it wrote.
func (c Codec) Decode(dst []int16, payload []byte) (int, error) {
	if len(dst) < len(payload) {
		return 0, fmt.Errorf("media: decode: buffer of %d samples for %d bytes", len(dst), len(payload))
	}
	dst = dst[:len(payload)]
	switch c.Name {
	case PCMU.Name:
		for i, b := range payload {
			dst[i] = g711.DecodeUlawFrame(b)
		}
	case PCMA.Name:
		for i, b := range payload {
			dst[i] = g711.DecodeAlawFrame(b)
		}
	default:
		return 0, fmt.Errorf("media: decode: unsupported codec %q", c.Name)
	}
	return len(payload), nil
}
