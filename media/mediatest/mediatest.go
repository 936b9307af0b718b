// Package mediatest supports audio tests: a private PulseAudio server that
// stands in for a sound card. Tone levels come from media/measure and WAV
// files from media/wav.
package mediatest
