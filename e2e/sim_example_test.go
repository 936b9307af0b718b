package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// simOutput is audio.output of examples/sim.yaml.
const simOutput = "/tmp/intercom-sim-out.wav"

// TestSimExampleWithSoftphone: the README's path for a new user ("Quick
// start", "Try the simulated station with a softphone"), on the ports it
// names. The station runs as `make run` runs it, with examples/sim.yaml
// from the repository root; baresip is the README's softphone on 5070,
// without a registrar. The phone calls the door and each hears the other's
// tone; then the bell, pressed through the sim pin API, calls the phone,
// which answers by itself, until the API hangs up.
//
// The ports are fixed, so it never calls t.Parallel: the parallel tests
// start only after it has ended, and freePorts never hands out simPorts.
func TestSimExampleWithSoftphone(t *testing.T) {
	requireTools(t, "baresip", "sox")
	for _, port := range simPorts {
		if !portFree(port) {
			t.Fatalf("port %d on 127.0.0.1 is in use (a station started with `make run`, or a softphone?); "+
				"this test runs examples/sim.yaml and the README's softphone on their fixed ports %v: stop what holds %d",
				port, simPorts, port)
		}
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	simTestTone(t, root)
	// A recording left by an earlier run must not pass for this one's.
	if err := os.Remove(simOutput); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("remove the previous %s: %v", simOutput, err)
	}
	st := &station{SIPAddr: "127.0.0.1:5060", API: "http://127.0.0.1:8080", Output: simOutput, Events: &eventLog{}}
	st.run(t, root, t.TempDir(), "examples/sim.yaml")
	p := startPhone(t, phoneOptions{User: "flat", SIPPort: 5070, AutoAnswer: true, ToneHz: 1000})

	mp, ms := p.Events.mark(), st.Events.mark()
	p.Dial(t, "sip:door@127.0.0.1")
	established := p.Events.waitFor(t, mp, "CALL_ESTABLISHED", 10*time.Second)
	checkDirection(t, established, "outgoing")
	eventually(t, 5*time.Second, "station in the softphone's call", st.callIs("active"))
	st.Events.waitFor(t, ms, "answered", 5*time.Second)
	eventually(t, 10*time.Second, "the softphone hears the door for 3s", p.heard(3*time.Second))
	p.Hangup(t)
	p.Events.waitFor(t, mp, "CALL_CLOSED", 5*time.Second)
	eventually(t, 5*time.Second, "station idle after the softphone's BYE", st.callIs("idle"))
	st.Events.waitFor(t, ms, "hangup", 5*time.Second)

	rec, err := p.decRecording()
	if err != nil {
		t.Fatal(err)
	}
	assertTone(t, "the softphone hears examples/test-tone.wav", rec, 440, 650)
	// The file backend rewrites its header about once a second and at close.
	_ = poll(5*time.Second, heardTone(simOutput, 1000, 1300))
	assertTone(t, simOutput+" holds the softphone's tone", simOutput, 1000, 1300)

	mp, ms = p.Events.mark(), st.Events.mark()
	st.setPin(t, "GPIO17", "low") // the bell is active low
	// Held until the call starts, so that the 30ms debounce sees a press.
	eventually(t, 5*time.Second, "bell press starts a call", st.cond("call.state calling or active",
		func(s stationStatus) bool { return s.Call.State == "calling" || s.Call.State == "active" }))
	st.setPin(t, "GPIO17", "high")
	established = p.Events.waitFor(t, mp, "CALL_ESTABLISHED", 10*time.Second)
	checkDirection(t, established, "incoming")
	eventually(t, 5*time.Second, "station in the bell's call", st.callIs("active"))
	st.Events.waitFor(t, ms, "answered", 5*time.Second)
	if s := st.Status(t); !strings.Contains(s.Call.Remote, "flat@127.0.0.1") {
		t.Errorf("bell call: call.remote %q, want sip:flat@127.0.0.1:5070", s.Call.Remote)
	}
	st.postOK(t, "/api/v1/hangup", nil)
	p.Events.waitFor(t, mp, "CALL_CLOSED", 10*time.Second)
	eventually(t, 5*time.Second, "station idle after the API's hangup", st.callIs("idle"))
	st.Events.waitFor(t, ms, "hangup", 5*time.Second)
}

// simTestTone makes examples/sim.yaml's input the way the Makefile does when
// it is missing, and then removes it at the end; an existing one stays.
func simTestTone(t *testing.T, root string) {
	t.Helper()
	const rel = "examples/test-tone.wav"
	path := filepath.Join(root, rel)
	if _, err := os.Stat(path); err == nil {
		return
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	cmd := exec.Command(tool(t, "sox"), "-n", "-r", "8000", "-c", "1", "-b", "16", rel,
		"synth", "3", "sine", "440", "gain", "-6")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sox %s: %v\n%s", rel, err, out)
	}
	t.Cleanup(func() {
		if err := os.Remove(path); err != nil {
			t.Errorf("remove %s: %v", rel, err)
		}
	})
}

// checkDirection: a baresip call event is of a call in that direction.
func checkDirection(t *testing.T, e event, direction string) {
	t.Helper()
	if d, _ := e.Fields["direction"].(string); d != direction {
		t.Errorf("softphone: %s of a call %q, want %q: %s", e.Type, d, direction, e.Raw)
	}
}
