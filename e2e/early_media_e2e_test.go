package e2e

// What the door plays while the bell calls the flat, measured in the
// station's speaker recording (file audio backend): the callee's early
// media in place of the local ringback, the ringback when there is none,
// and the busy tone after a refusal.
//
// The file backend truncates the recording at each OpenSink, and the
// answered call opens its own sink unless it adopts the early media's: a
// ringback is overwritten at the answer and can only be heard by reading
// the recording while the call is still calling. The header is refreshed
// about once a second, so such reads lag by up to a second.

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/pion/rtp"
	"github.com/zaf/g711"

	"intercom/media/measure"
	"intercom/media/wav"
)

// speechPcap is the capture that ships with sipp: 7 s of speech as PCMA
// (payload type 8) in 30 ms packets; its first 1.5 s are nearly silent.
const speechPcap = pcapDir + "/g711a.pcap"

// pcapPacketMs is the audio duration of each packet in speechPcap.
const pcapPacketMs = 30

// pcmaPayloadType is the payload type of every RTP packet in speechPcap
// (checked with tshark; pcapAudio insists on it).
const pcmaPayloadType = 8

// answeringCallee is testdata/uas_answer.xml.tmpl: a sipp callee that
// answers after EarlyMs, with early media (183 with SDP, speechPcap played
// at once) or without (180, the pcap played after the ACK), and sends BYE
// HoldMs after the ACK.
type answeringCallee struct {
	EarlyMedia      bool
	Pcap            string
	EarlyMs, HoldMs int
}

// start runs the callee on 127.0.0.1; it returns the host:port it listens on.
func (c answeringCallee) start(t *testing.T, name string) (*sipp, string) {
	t.Helper()
	requireTools(t, "sipp")
	if _, err := os.Stat(c.Pcap); err != nil {
		missingPeer(t, c.Pcap)
	}
	return sippCallee(t, name, "127.0.0.1", "testdata/uas_answer.xml.tmpl", c)
}

// pressBell presses the bell (GPIO17, active low) until the call starts,
// then releases it.
func pressBell(t *testing.T, st *station) {
	t.Helper()
	st.setPin(t, "GPIO17", "low")
	eventually(t, 5*time.Second, "bell press starts a call", st.callIs("calling"))
	st.setPin(t, "GPIO17", "high")
}

// TestEarlyMediaReplacesRingback: the flat answers the bell's INVITE with
// 183 and early media, then 200 with the same SDP. While the call is still
// calling, the door already plays the callee's audio, sample for sample,
// and never the 425 Hz ringback; the answered call goes on with the same
// audio and ends with the callee's BYE.
func TestEarlyMediaReplacesRingback(t *testing.T) {
	t.Parallel()
	requireTools(t, "sipp", "sox")
	const earlyMs = 5000
	callee, addr := answeringCallee{EarlyMedia: true, Pcap: speechPcap, EarlyMs: earlyMs, HoldMs: 2500}.start(t, "early")
	packets := pcapAudio(t, speechPcap)
	st := startStation(t, stationOptions{Call: []string{"sip:flat@" + addr}})

	ms := st.Events.mark()
	pressBell(t, st)
	st.Events.waitFor(t, ms, "ringing", 5*time.Second)

	// Packets sipp sent half a second or more before its 200 OK.
	beforeAnswer := packets[:(earlyMs-500)/pcapPacketMs]
	heardEarly := 0
	const callingFor = earlyMs*time.Millisecond + 5*time.Second
	deadline := time.Now().Add(callingFor)
	for {
		if time.Now().After(deadline) {
			t.Fatalf("still calling %v after the 183", callingFor)
		}
		if s := st.Status(t); s.Call.State != "calling" {
			break
		}
		samples, rate, err := wav.ReadFile(st.Output)
		if err != nil { // not written yet, or caught between truncation and header
			time.Sleep(pollInterval)
			continue
		}
		if at, ok := ringbackAt(samples, rate); ok {
			t.Fatalf("the door plays the ringback at %v of its recording during early media", at)
		}
		n := heardPackets(samples, beforeAnswer)
		// Counted only if the call was still calling after the read.
		if s := st.Status(t); s.Call.State == "calling" {
			heardEarly = max(heardEarly, n)
		}
		time.Sleep(pollInterval)
	}
	if heardEarly < 5 {
		t.Errorf("before the answer the door played %d of the callee's early packets verbatim, want at least 5", heardEarly)
	}
	eventually(t, 5*time.Second, "station in the call", st.callIs("active"))
	st.Events.waitFor(t, ms, "answered", 5*time.Second)

	if err := callee.wait(30 * time.Second); err != nil {
		t.Fatal(err) // the BYE got no 200, or the call went otherwise
	}
	eventually(t, 5*time.Second, "station idle after the callee's BYE", st.callIs("idle"))
	st.Events.waitFor(t, ms, "hangup", 5*time.Second)

	// The answered call adopted the early media's session and sink: the
	// recording holds both phases, without a ringback anywhere. The sink
	// closes, completing the header, after the station went idle: until
	// then the header may leave out the last second, the answered phase's.
	afterAnswer := packets[(earlyMs+1000)/pcapPacketMs:]
	var samples []int16
	var rate int
	_ = poll(5*time.Second, func() error {
		samples, rate = readRecording(t, st.Output)
		if n := heardPackets(samples, afterAnswer); n < 20 {
			return fmt.Errorf("%d answered-phase packets", n)
		}
		return nil
	})
	if at, ok := ringbackAt(samples, rate); ok {
		t.Errorf("the door played the ringback at %v of its recording", at)
	}
	early, late := heardPackets(samples, beforeAnswer), heardPackets(samples, afterAnswer)
	t.Logf("recording %v: %d early and %d answered-phase packets of the pcap verbatim",
		time.Duration(len(samples))*time.Second/time.Duration(rate), early, late)
	if early < 20 || late < 20 {
		t.Errorf("the door played %d early and %d answered-phase packets of the callee verbatim, want at least 20 each", early, late)
	}
}

// TestRingbackUntilAnswer is the control of TestEarlyMediaReplacesRingback:
// with a 180 without SDP the door plays the 425 Hz ringback, and reading
// the recording while calling does catch it. The answered call's audio
// replaces it in the recording.
func TestRingbackUntilAnswer(t *testing.T) {
	t.Parallel()
	requireTools(t, "sipp", "sox")
	callee, addr := answeringCallee{Pcap: speechPcap, EarlyMs: 3000, HoldMs: 4500}.start(t, "ringing")
	packets := pcapAudio(t, speechPcap)
	st := startStation(t, stationOptions{Call: []string{"sip:flat@" + addr}})

	ms := st.Events.mark()
	pressBell(t, st)
	st.Events.waitFor(t, ms, "ringing", 5*time.Second)
	eventually(t, 3*time.Second, "ringback at the door while the flat rings", func() error {
		samples, rate, err := wav.ReadFile(st.Output)
		if err != nil {
			return err
		}
		at, ok := ringbackAt(samples, rate)
		if !ok {
			return fmt.Errorf("no 425 Hz ringback in %d samples", len(samples))
		}
		t.Logf("ringback at %v of the recording while calling", at)
		return nil
	})

	eventually(t, 5*time.Second, "station in the call", st.callIs("active"))
	st.Events.waitFor(t, ms, "answered", 5*time.Second)
	if err := callee.wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "station idle after the callee's BYE", st.callIs("idle"))
	st.Events.waitFor(t, ms, "hangup", 5*time.Second)

	samples, rate := readRecording(t, st.Output)
	if at, ok := ringbackAt(samples, rate); ok {
		t.Errorf("the recording of the answered call holds the ringback at %v", at)
	}
	n := heardPackets(samples, packets)
	t.Logf("recording %v: %d packets of the pcap verbatim", time.Duration(len(samples))*time.Second/time.Duration(rate), n)
	if n < 20 {
		t.Errorf("the door played %d packets of the callee verbatim in the call, want at least 20", n)
	}
}

// TestBusyToneAfterRejectedCall: the flat refuses the bell's call with 486
// Busy Here; the door plays the busy tone (425 Hz, 0.5 s on, 0.5 s off),
// emits hangup and returns to idle.
func TestBusyToneAfterRejectedCall(t *testing.T) {
	t.Parallel()
	requireTools(t, "sipp", "sox")
	callee, addr := sippRejecter(t, "busy", "127.0.0.1", 486, "Busy Here")
	st := startStation(t, stationOptions{Call: []string{"sip:flat@" + addr}})

	ms := st.Events.mark()
	// The 486 comes at once: the finished scenario (INVITE, 486, ACK)
	// shows the call was made, where the calling state may be too short to
	// poll.
	st.setPin(t, "GPIO17", "low")
	if err := callee.wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	st.setPin(t, "GPIO17", "high")
	st.Events.waitFor(t, ms, "hangup", 5*time.Second)
	eventually(t, 5*time.Second, "station idle after the 486", st.callIs("idle"))
	if es := st.Events.since(ms, "answered"); len(es) != 0 {
		t.Errorf("a refused call was answered: %s", es[0].Raw)
	}

	// The busy tone lasts a few seconds; its header is complete at close.
	var last error
	err := poll(10*time.Second, func() error {
		samples, rate, err := wav.ReadFile(st.Output)
		if err == nil {
			err = busyCadence(samples, rate)
		}
		last = err
		return err
	})
	if err != nil {
		t.Fatalf("busy tone at the door: %v", last)
	}
}

// Tone detection in windows of the recording. A window carries a tone
// when its Goertzel amplitude is at least toneOn of full scale and at
// least the window's RMS: a sine's amplitude is sqrt(2) times its RMS,
// while speech spreads its energy (speechPcap peaks at 0.03 and 0.45 times
// the RMS at 425 Hz in 200 ms windows). The station's tones peak at
// -12 dBFS (0.25).
const (
	toneHz      = 425
	toneOn      = 0.1
	silenceRMS  = 0.01
	toneWindow  = 50 * time.Millisecond
	ringbackWin = 200 * time.Millisecond
)

// Window classes.
const (
	windowOther = iota
	windowTone
	windowSilent
)

// classify splits samples into windows of d and tells each one's class.
func classify(samples []int16, rate int, d time.Duration) []int {
	n := int(time.Duration(rate) * d / time.Second)
	var out []int
	for i := 0; i+n <= len(samples); i += n {
		w := samples[i : i+n]
		level := measure.Goertzel(w, float64(rate), toneHz)
		rms, _ := measure.Level(w)
		switch {
		case level >= toneOn && level >= rms:
			out = append(out, windowTone)
		case rms < silenceRMS:
			out = append(out, windowSilent)
		default:
			out = append(out, windowOther)
		}
	}
	return out
}

// ringbackAt returns where the first window carrying 425 Hz starts.
func ringbackAt(samples []int16, rate int) (time.Duration, bool) {
	i := slices.Index(classify(samples, rate, ringbackWin), windowTone)
	return time.Duration(i) * ringbackWin, i >= 0
}

// busyCadence checks that samples hold the busy tone: at least two full
// periods of 0.5 s of tone and 0.5 s of silence, within a window either
// way. Runs touching either end of the recording are not complete.
func busyCadence(samples []int16, rate int) error {
	classes := classify(samples, rate, toneWindow)
	var runs []windowRun
	for _, c := range classes {
		if len(runs) > 0 && runs[len(runs)-1].class == c {
			runs[len(runs)-1].n++
		} else {
			runs = append(runs, windowRun{c, 1})
		}
	}
	if len(runs) < 3 {
		return fmt.Errorf("%d windows of %v in %d runs; want tone and silence alternating", len(classes), toneWindow, len(runs))
	}
	var on, off int
	half := int(500 * time.Millisecond / toneWindow)
	for _, r := range runs[1 : len(runs)-1] {
		if r.class == windowOther || r.n < half-2 || r.n > half+2 {
			return fmt.Errorf("%v in %v; want 500ms of tone, then of silence", r, runs)
		}
		if r.class == windowTone {
			on++
		} else {
			off++
		}
	}
	if on < 2 || off < 2 {
		return fmt.Errorf("%d complete tone and %d silence periods; want at least 2 of each (runs %v)", on, off, runs)
	}
	return nil
}

// windowRun is n windows of one class in a row.
type windowRun struct{ class, n int }

func (r windowRun) String() string {
	name := [...]string{windowOther: "other", windowTone: "tone", windowSilent: "silence"}[r.class]
	return fmt.Sprintf("%s %v", name, time.Duration(r.n)*toneWindow)
}

// heardPackets counts the packets that appear sample for sample in
// samples. Only packets with speech in them count: silence matches
// anywhere.
func heardPackets(samples []int16, packets [][]int16) int {
	n := 0
	for _, p := range packets {
		if rms, _ := measure.Level(p); rms < 0.02 {
			continue
		}
		for i := 0; i+len(p) <= len(samples); i++ {
			if samples[i] == p[0] && slices.Equal(samples[i:i+len(p)], p) {
				n++
				break
			}
		}
	}
	return n
}

// readRecording reads a finished recording.
func readRecording(t *testing.T, path string) ([]int16, int) {
	t.Helper()
	samples, rate, err := wav.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return samples, rate
}

// pcapAudio decodes the PCMA RTP packets of a libpcap capture of Ethernet,
// IPv4 and UDP, as the station decodes them.
func pcapAudio(t *testing.T, path string) [][]int16 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	packets, err := parsePcap(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(packets) == 0 {
		t.Fatalf("%s: no RTP packets", path)
	}
	return packets
}

// libpcap's little-endian magic and its link type for Ethernet.
const (
	pcapMagic    = 0xa1b2c3d4
	linkEthernet = 1
)

func parsePcap(data []byte) ([][]int16, error) {
	le := binary.LittleEndian
	if len(data) < 24 || le.Uint32(data) != pcapMagic || le.Uint32(data[20:]) != linkEthernet {
		return nil, errors.New("not a little-endian libpcap capture of Ethernet")
	}
	var out [][]int16
	for rest := data[24:]; len(rest) > 0; {
		if len(rest) < 16 || uint64(le.Uint32(rest[8:])) > uint64(len(rest)-16) {
			return nil, errors.New("truncated record")
		}
		n := 16 + int(le.Uint32(rest[8:]))
		frame := rest[16:n]
		rest = rest[n:]
		const eth, udp = 14, 8
		if len(frame) < eth+20 || binary.BigEndian.Uint16(frame[12:]) != 0x0800 || frame[eth+9] != 17 {
			continue // not IPv4 UDP
		}
		ihl := int(frame[eth]&0x0f) * 4
		if len(frame) < eth+ihl+udp {
			return nil, errors.New("truncated UDP packet")
		}
		var p rtp.Packet
		if err := p.Unmarshal(frame[eth+ihl+udp:]); err != nil {
			return nil, fmt.Errorf("packet %d: %w", len(out)+1, err)
		}
		if p.PayloadType != pcmaPayloadType {
			return nil, fmt.Errorf("packet %d: payload type %d, want PCMA (%d)", len(out)+1, p.PayloadType, pcmaPayloadType)
		}
		samples := make([]int16, len(p.Payload))
		for i, b := range p.Payload {
			samples[i] = g711.DecodeAlawFrame(b)
		}
		out = append(out, samples)
	}
	return out, nil
}
