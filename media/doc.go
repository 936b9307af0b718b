// Package media carries a call's audio: G.711 over RTP between a Source
// (microphone) and a Sink (speaker), with a jitter buffer, RFC 4733
// telephone-events, and audio backends chosen by name.
package media
