//go:build !cgo || noportaudio

package media

import (
	"slices"
	"testing"
)

func TestPortAudioDisabled(t *testing.T) {
	if terminate, err := InitPortAudio(); err == nil || terminate != nil {
		t.Errorf("InitPortAudio() = %v, %v; want an error", terminate != nil, err)
	}
	if devs, err := PortAudioDevices(); err == nil || devs != nil {
		t.Errorf("PortAudioDevices() = %v, %v; want an error", devs, err)
	}
	if slices.Contains(Backends(), "portaudio") {
		t.Error("portaudio backend registered in a build without it")
	}
}
