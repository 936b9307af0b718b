package media

// AudioDevice is a sound device as PortAudio lists it (intercom audio
// devices).
type AudioDevice struct {
	Name              string
	HostAPI           string // e.g. "ALSA"
	MaxInputChannels  int
	MaxOutputChannels int
	DefaultSampleRate float64 // Hz
	// DefaultInput and DefaultOutput mark the devices that the name
	// "default" (or an empty name) selects.
	DefaultInput, DefaultOutput bool
}
