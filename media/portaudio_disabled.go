//go:build !cgo || noportaudio

package media

import "errors"

// InitPortAudio reports that this build has no "portaudio" backend: it
// needs cgo and is left out by the noportaudio tag. It exists so that the
// program builds the same way with or without PortAudio.
func InitPortAudio() (terminate func() error, err error) {
	return nil, errNoPortAudio
}

// PortAudioDevices reports that this build has no PortAudio to list
// devices with.
func PortAudioDevices() ([]AudioDevice, error) { return nil, errNoPortAudio }

var errNoPortAudio = errors.New("media: portaudio backend not built in (needs cgo, and not the noportaudio tag)")
