package e2e

// Acceptance 4 of issue 8: a call survives being put on hold, resumed and
// moved by re-INVITEs from real peers.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"
	"testing"
	"text/template"
	"time"
)

// mediaSent reads the station's media.packets_sent from its status; ok is
// false while no call's media runs.
func (st *station) mediaSent() (sent uint64, ok bool, err error) {
	body, err := st.get("/api/v1/status")
	if err != nil {
		return 0, false, err
	}
	var s struct {
		Call struct {
			State string `json:"state"`
		} `json:"call"`
		Media *struct {
			PacketsSent uint64 `json:"packets_sent"`
		} `json:"media"`
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return 0, false, fmt.Errorf("status: %v: %s", err, body)
	}
	if s.Call.State != "active" {
		return 0, false, fmt.Errorf("call.state %q, want active", s.Call.State)
	}
	if s.Media == nil {
		return 0, false, nil
	}
	return s.Media.PacketsSent, true, nil
}

// sendingStops is a condition: the station's RTP counter has not moved for
// a second. While it sends, it counts 50 packets a second.
func (st *station) sendingStops() func() error {
	var last uint64
	var since time.Time
	return func() error {
		n, ok, err := st.mediaSent()
		switch {
		case err != nil:
			return err
		case !ok:
			return fmt.Errorf("no media status")
		case n != last || since.IsZero():
			last, since = n, time.Now()
			return fmt.Errorf("packets_sent %d, still moving", n)
		case time.Since(since) < time.Second:
			return fmt.Errorf("packets_sent %d for %v", n, time.Since(since).Round(time.Millisecond))
		}
		return nil
	}
}

// sendingMoves is a condition: the RTP counter passed from by 50 (a second
// of audio).
func (st *station) sendingMoves(from uint64) func() error {
	return func() error {
		n, ok, err := st.mediaSent()
		switch {
		case err != nil:
			return err
		case !ok || n < from+50:
			return fmt.Errorf("packets_sent %d, want %d", n, from+50)
		}
		return nil
	}
}

// TestBaresipHoldAndResume: the flat's phone (baresip) puts the bell's call
// on hold (re-INVITE, a=sendonly) and resumes it (a=sendrecv), through
// kamailio with Record-Route. The station answers recvonly and stops
// sending, then sends again; the call stays up throughout and the
// station's BYE, routed by the Record-Route set, ends it.
func TestBaresipHoldAndResume(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	k := startKamailio(t, kamailioOptions{RecordRoute: true})
	p := startPhone(t, phoneOptions{User: "201", Registrar: k, ToneHz: 1000, AutoAnswer: true})
	st := startStation(t, stationOptions{Registrar: k, ToneHz: 440, Call: []string{k.URI("201")}})
	eventually(t, registerTimeout, "station registered", all(k.registered("100"), st.registrationIs("registered")))

	mp := p.Events.mark()
	st.setPin(t, "GPIO17", "low")
	eventually(t, 5*time.Second, "bell press starts a call", st.cond("call.state calling", func(s stationStatus) bool { return s.Call.State != "idle" }))
	st.setPin(t, "GPIO17", "high")
	p.Events.waitFor(t, mp, "CALL_ESTABLISHED", 10*time.Second)
	eventually(t, 5*time.Second, "station in the call", st.callIs("active"))
	eventually(t, 10*time.Second, "the station sends", st.sendingMoves(0))

	eventually(t, 10*time.Second, "the phone receives the door's RTP", p.receivesRTP(t, 0))
	// What the phone heard before the hold: its sndfile recording. (baresip
	// 1.0 rebuilds its receive pipeline without sndfile when a re-INVITE
	// updates the stream, so from here on its RTP counter is the witness.)
	eventually(t, 10*time.Second, "the phone hears the door", p.heard(time.Second))

	p.Command(t, "hold", "")
	eventually(t, 10*time.Second, "the station stops sending while held",
		all(st.sendingStops(), p.rtpSteady(t)))
	held, _, err := st.mediaSent()
	if err != nil {
		t.Fatal(err)
	}
	got := p.rtpReceived(t)
	consistently(t, time.Second, "the held call stays up and silent", func() error {
		n, _, err := st.mediaSent()
		if err == nil && n != held {
			err = fmt.Errorf("station's packets_sent moved from %d to %d while held", held, n)
		}
		if r := p.rtpReceived(t); err == nil && r != got {
			err = fmt.Errorf("the phone received RTP while holding: %d, then %d packets", got, r)
		}
		return err
	})

	p.Command(t, "resume", "")
	eventually(t, 10*time.Second, "audio flows again after resume",
		all(st.sendingMoves(held), p.receivesRTP(t, got)))
	if s := st.Status(t); s.Call.State != "active" {
		t.Fatalf("call.state %q after resume", s.Call.State)
	}

	st.postOK(t, "/api/v1/hangup", nil)
	p.Events.waitFor(t, mp, "CALL_CLOSED", 10*time.Second)
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))
	rec, err := p.decRecording()
	if err != nil {
		t.Fatal(err)
	}
	assertTone(t, "the phone hears the door's microphone", rec, 440, 650)
}

// rtpReceived is how many RTP packets the phone's call has received from
// the station, from baresip's audio_debug (its RTCP member's "rcvd=").
func (p *phone) rtpReceived(t testing.TB) int {
	t.Helper()
	data := p.Command(t, "audio_debug", "").Data
	m := rcvdRE.FindStringSubmatch(data)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

var rcvdRE = regexp.MustCompile(`rcvd=(\d+)`)

// receivesRTP is a condition: the phone has received a second of RTP (50
// packets) more than from.
func (p *phone) receivesRTP(t testing.TB, from int) func() error {
	return func() error {
		if n := p.rtpReceived(t); n < from+50 {
			return fmt.Errorf("phone received %d RTP packets, want %d", n, from+50)
		}
		return nil
	}
}

// rtpSteady is a condition: the phone's RTP counter has not moved for a
// second.
func (p *phone) rtpSteady(t testing.TB) func() error {
	last, since := -1, time.Time{}
	return func() error {
		n := p.rtpReceived(t)
		if n != last {
			last, since = n, time.Now()
			return fmt.Errorf("phone's RTP counter at %d, still moving", n)
		}
		if time.Since(since) < time.Second {
			return fmt.Errorf("phone's RTP counter at %d for %v", n, time.Since(since).Round(time.Millisecond))
		}
		return nil
	}
}

// rtpCounter counts UDP packets arriving on a loopback port: where a peer's
// re-INVITE moves the station's audio.
type rtpCounter struct {
	port int
	n    atomic.Int64
}

func newRTPCounter(t testing.TB) *rtpCounter {
	t.Helper()
	port := freePorts(t, 2)
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		t.Fatal(err)
	}
	r := &rtpCounter{port: port}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			// An RTP version 2 packet with payload type 0, as negotiated.
			if n > 12 && buf[0]>>6 == 2 && buf[1]&0x7f == 0 {
				r.n.Add(1)
			}
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return r
}

func (r *rtpCounter) atLeast(n int64) func() error {
	return func() error {
		if got := r.n.Load(); got < n {
			return fmt.Errorf("%d RTP packets on port %d, want %d", got, r.port, n)
		}
		return nil
	}
}

// startScenario renders the sipp caller template tmpl with data and runs it
// once against target, allowing it timeout in all.
func startScenario(t testing.TB, name, tmpl string, data any, target, service string, timeout time.Duration) *sipp {
	t.Helper()
	requireTools(t, "sipp")
	dir := filepath.Join(t.TempDir(), "sipp-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := template.Must(template.ParseFiles(tmpl)).Execute(&out, data); err != nil {
		t.Fatal(err)
	}
	xml := filepath.Join(dir, name+".xml")
	if err := os.WriteFile(xml, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	msgLog := filepath.Join(dir, name+"-messages.log")
	errLog := filepath.Join(dir, name+"-errors.log")
	args := []string{
		"-sf", xml, "-m", "1", "-nostdin",
		"-i", "127.0.0.1", "-p", strconv.Itoa(freePorts(t, 1)),
		"-mp", strconv.Itoa(freePorts(t, 4)),
		"-s", service,
		"-timeout", strconv.Itoa(int(timeout/time.Second)) + "s", "-timeout_error",
		"-trace_msg", "-message_file", msgLog,
		"-trace_err", "-error_file", errLog,
		target,
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpFile(t, name+" SIP messages", msgLog)
			dumpFile(t, name+" errors", errLog)
		}
	})
	return &sipp{proc: startProc(t, dir, name, tool(t, "sipp"), args...), msgPath: msgLog}
}

// TestReinviteMovesMedia: a caller (sipp) re-INVITEs the answered call with
// a new RTP port; the station's audio arrives there, and the call goes on
// until the caller's BYE.
func TestReinviteMovesMedia(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	st := startStation(t, stationOptions{Allow: []string{"sip:301@127.0.0.1"}})
	moved := newRTPCounter(t)
	ms := st.Events.mark()
	s := startScenario(t, "reinvite-move", "testdata/uac_reinvite.xml.tmpl",
		map[string]any{"From": "301", "NewPort": moved.port, "HoldMs": 15000}, st.SIPAddr, "100", 60*time.Second)
	st.Events.waitFor(t, ms, "answered", 10*time.Second)
	// A second of audio (50 packets) at the port the re-INVITE named.
	eventually(t, 12*time.Second, "station's RTP at the new port", moved.atLeast(50))
	if err := st.callIs("active")(); err != nil {
		t.Fatal(err)
	}
	if err := s.wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "station idle after the caller's BYE", st.callIs("idle"))
}
