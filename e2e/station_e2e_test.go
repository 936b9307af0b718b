package e2e

// The acceptance tests of issue 2: the door station against kamailio,
// baresip and sipp on loopback.

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// registerTimeout bounds a first registration (REGISTER, 401, REGISTER, 200).
const registerTimeout = 20 * time.Second

// startRegisteredStation starts kamailio (INVITEs challenged, record-route on,
// as on a PBX) and a station registered to it as user 100.
func startRegisteredStation(t *testing.T, opts stationOptions) (*kamailio, *station) {
	t.Helper()
	k := startKamailio(t, kamailioOptions{AuthInvite: true, RecordRoute: true})
	opts.Registrar = k
	st := startStation(t, opts)
	eventually(t, registerTimeout, "station registered",
		all(k.registered("100"), st.registrationIs("registered")))
	return k, st
}

// callFrom301 is a sipp call to the station through kamailio, by a caller of
// the PBX who authenticates (user 301).
func callFrom301(k *kamailio, name string, expect int, codes ...string) sippCall {
	return sippCall{
		Name: name, Target: k.Addr, Service: "100", From: "301", FromHost: "127.0.0.1",
		Auth: true, Expect: expect, Codes: codes, Hold: time.Second,
	}
}

// TestRegisterAndIncomingCall: the station registers to kamailio with digest
// auth; a phone of the PBX calls it and the station answers by itself (an
// empty allow list admits calls relayed by the registrar), with its
// microphone audible at the phone.
func TestRegisterAndIncomingCall(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	k, st := startRegisteredStation(t, stationOptions{ToneHz: 440})
	p := startPhone(t, phoneOptions{User: "201", Registrar: k, ToneHz: 1000})

	mp, ms := p.Events.mark(), st.Events.mark()
	p.Dial(t, k.URI("100"))
	p.Events.waitFor(t, mp, "CALL_ESTABLISHED", 10*time.Second)
	eventually(t, 5*time.Second, "station in the call", st.callIs("active"))
	st.Events.waitFor(t, ms, "answered", 5*time.Second)

	eventually(t, 10*time.Second, "201 hears the door for 2s", p.heard(2*time.Second))
	p.Hangup(t)
	p.Events.waitFor(t, mp, "CALL_CLOSED", 5*time.Second)
	eventually(t, 5*time.Second, "station idle after the phone's BYE", st.callIs("idle"))
	st.Events.waitFor(t, ms, "hangup", 5*time.Second)

	rec, err := p.decRecording()
	if err != nil {
		t.Fatal(err)
	}
	assertTone(t, "201 hears the door's microphone", rec, 440, 650)
}

// TestBellCallsTwoPhonesParallel: the bell rings two phones at once through
// kamailio; the first to answer gets the call, the other sees it cancelled;
// audio flows both ways until the API hangs up, with a BYE that kamailio
// challenges.
func TestBellCallsTwoPhonesParallel(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	k := startKamailio(t, kamailioOptions{AuthInvite: true, RecordRoute: true, AuthBye: true})
	// Both phones answer only when told, so the test decides who is first.
	p1 := startPhone(t, phoneOptions{User: "201", Registrar: k, ToneHz: 1000})
	p2 := startPhone(t, phoneOptions{User: "202", Registrar: k, ToneHz: 600})
	st := startStation(t, stationOptions{Registrar: k, ToneHz: 440, Call: []string{k.URI("201"), k.URI("202")}})
	eventually(t, registerTimeout, "station registered", all(k.registered("100"), st.registrationIs("registered")))

	m1, m2, ms := p1.Events.mark(), p2.Events.mark(), st.Events.mark()
	st.setPin(t, "GPIO17", "low") // the bell is active low
	eventually(t, 5*time.Second, "bell press starts a call",
		st.cond("call.state calling", func(s stationStatus) bool { return s.Call.State == "calling" }))
	st.setPin(t, "GPIO17", "high")

	p1.Events.waitFor(t, m1, "CALL_INCOMING", 10*time.Second)
	p2.Events.waitFor(t, m2, "CALL_INCOMING", 10*time.Second)
	st.Events.waitFor(t, ms, "ringing", 5*time.Second)
	if s := st.Status(t); s.Call.State != "calling" {
		t.Errorf("while both phones ring: call.state %q, want calling", s.Call.State)
	}

	p1.Accept(t)
	p1.Events.waitFor(t, m1, "CALL_ESTABLISHED", 10*time.Second)
	p2.Events.waitFor(t, m2, "CALL_CLOSED", 10*time.Second)
	if es := p2.Events.since(m2, "CALL_ESTABLISHED"); len(es) != 0 {
		t.Errorf("202 never answered but got the call: %s", es[0].Raw)
	}
	eventually(t, 5*time.Second, "station in the call", st.callIs("active"))
	st.Events.waitFor(t, ms, "answered", 5*time.Second)

	eventually(t, 15*time.Second, "201 hears the door for 3s", p1.heard(3*time.Second))
	byes := k.stat(t, "rcv_requests_bye")
	st.postOK(t, "/api/v1/hangup", nil)
	p1.Events.waitFor(t, m1, "CALL_CLOSED", 10*time.Second)
	// The first BYE got a 407; the one with credentials reached 201.
	if n := k.stat(t, "rcv_requests_bye") - byes; n < 2 {
		t.Errorf("kamailio received %d BYEs from the station; want the challenged one and one with credentials", n)
	}
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))
	st.Events.waitFor(t, ms, "hangup", 5*time.Second)

	rec, err := p1.decRecording()
	if err != nil {
		t.Fatal(err)
	}
	assertTone(t, "201 hears the door's microphone", rec, 440, 650)
	// The file backend rewrites its header about once a second and at close.
	_ = poll(5*time.Second, heardTone(st.Output, 1000, 1300))
	assertTone(t, "the door's speaker plays 201's microphone", st.Output, 1000, 1300)
	if err := heardTone(st.Output, 600, 800)(); err == nil {
		t.Errorf("the door's speaker played 202's microphone, which never answered")
	}
}

// TestDTMFOpensDoor: code 1234 keyed as RFC 4733 events pulses the door
// relay once, for its configured 1s; the events never show the digits.
func TestDTMFOpensDoor(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	k, st := startRegisteredStation(t, stationOptions{})
	before := st.Status(t).Relays["door"].Cycles
	ms := st.Events.mark()

	call := callFrom301(k, "code", 200, "1234").start(t)
	eventually(t, 30*time.Second, "door relay on", st.relayActive("door", true))
	st.Events.waitFor(t, ms, "door_opened", 5*time.Second)
	eventually(t, 5*time.Second, "door relay off after its pulse", st.relayActive("door", false))
	if err := call.wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "station idle after the caller's BYE", st.callIs("idle"))

	if n := len(st.Events.since(ms, "door_opened")); n != 1 {
		t.Errorf("door_opened %d times, want 1", n)
	}
	if got := st.Status(t).Relays["door"].Cycles; got != before+1 {
		t.Errorf("relay cycles %d, want %d", got, before+1)
	}
	checkDTMFMasked(t, st.Events.since(ms, "dtmf"), "1234")
}

// checkDTMFMasked: one dtmf event per keyed digit (the three copies of an
// RFC 4733 end packet count once) and none shows its digit.
func checkDTMFMasked(t *testing.T, events []event, keyed string) {
	t.Helper()
	if len(events) != len(keyed) {
		t.Errorf("%d dtmf events for %d keyed digits", len(events), len(keyed))
	}
	for _, e := range events {
		if strings.Contains(e.Raw, keyed) {
			t.Errorf("dtmf event shows the code: %s", e.Raw)
		}
		d, ok := e.Fields["digit"].(string)
		if ok && strings.ContainsAny(d, "0123456789") {
			t.Errorf("dtmf event shows a digit: %s", e.Raw)
		}
	}
}

// TestLockout: three wrong codes, two in one call and one in the next, lock
// the door; the right code keyed afterwards in a third call does nothing.
// A code is complete when it reaches the length of the longest code (4).
func TestLockout(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	k, st := startRegisteredStation(t, stationOptions{})
	before := st.Status(t).Relays["door"].Cycles
	ms := st.Events.mark()

	// Within one call sipp's pcaps only arrive as distinct digits in
	// ascending order (see sippCall.Codes).
	callFrom301(k, "wrong-1-2", 200, "2345", "6789").run(t)
	eventually(t, 5*time.Second, "two code_rejected events", func() error {
		if n := len(st.Events.since(ms, "code_rejected")); n != 2 {
			return fmt.Errorf("%d code_rejected events: %s", n, st.Events.summary(ms))
		}
		return nil
	})
	if n := len(st.Events.since(ms, "lockout")); n != 0 {
		t.Errorf("lockout after two wrong codes, want it after three")
	}
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))

	callFrom301(k, "wrong-3", 200, "5678").run(t)
	st.Events.waitFor(t, ms, "lockout", 5*time.Second)
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))

	m3 := st.Events.mark()
	callFrom301(k, "right-while-locked", 200, "1234").run(t)
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))
	// The digits did arrive, so the door stayed shut because of the lockout.
	checkDTMFMasked(t, st.Events.since(m3, "dtmf"), "1234")
	if es := st.Events.since(ms, "door_opened"); len(es) != 0 {
		t.Errorf("door opened during the lockout: %s", es[0].Raw)
	}
	s := st.Status(t)
	if r := s.Relays["door"]; r.Active || r.Cycles != before {
		t.Errorf("relay active %v, cycles %d; want inactive, %d", r.Active, r.Cycles, before)
	}
}

// TestStrangerAndBusy: a caller that is neither allowed nor relayed by the
// registrar gets 403 and rings nothing; during a call a second INVITE gets
// 486 Busy Here and the call goes on.
func TestStrangerAndBusy(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	k, st := startRegisteredStation(t, stationOptions{})
	ms := st.Events.mark()

	sippCall{
		Name: "stranger", Target: st.SIPAddr, Service: "100", From: "stranger",
		LocalIP: "127.0.0.2", Expect: 403,
	}.run(t)
	consistently(t, time.Second, "a stranger's call rings nothing", all(st.callIs("idle"), func() error {
		if es := st.Events.since(ms, "ringing", "answered"); len(es) != 0 {
			return fmt.Errorf("after the stranger's INVITE: %s", es[0].Raw)
		}
		return nil
	}))

	p := startPhone(t, phoneOptions{User: "201", Registrar: k})
	mp := p.Events.mark()
	p.Dial(t, k.URI("100"))
	p.Events.waitFor(t, mp, "CALL_ESTABLISHED", 10*time.Second)
	eventually(t, 5*time.Second, "station in the call", st.callIs("active"))

	callFrom301(k, "busy", 486).run(t)
	if s := st.Status(t); s.Call.State != "active" || !strings.Contains(s.Call.Remote, "201") {
		t.Errorf("after the second INVITE: call %+v, want the call with 201 still active", s.Call)
	}
	if es := p.Events.since(mp, "CALL_CLOSED"); len(es) != 0 {
		t.Errorf("the second INVITE ended the first call: %s", es[0].Raw)
	}
	p.Hangup(t)
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))
}

// TestReregisterAfterKamailioRestart: kamailio restarts on the same port and
// forgets every registration; the station registers again by itself and
// takes calls through it.
func TestReregisterAfterKamailioRestart(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	k, st := startRegisteredStation(t, stationOptions{RegisterExpires: 60 * time.Second})

	k.Stop(t)
	k.Start(t)
	if c, err := k.Contacts(); err != nil || len(c["100"]) != 0 {
		t.Fatalf("restarted kamailio: contacts %v, %v; want none", c, err)
	}
	// The station finds out at its next refresh, before the 60s expire.
	eventually(t, 90*time.Second, "station registered again",
		all(k.registered("100"), st.registrationIs("registered")))

	p := startPhone(t, phoneOptions{User: "201", Registrar: k})
	mp := p.Events.mark()
	p.Dial(t, k.URI("100"))
	p.Events.waitFor(t, mp, "CALL_ESTABLISHED", 10*time.Second)
	eventually(t, 5*time.Second, "station in the call", st.callIs("active"))
	p.Hangup(t)
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))
}

// TestConfigCheck: `intercom config check` rejects an unknown key and a bad
// duration with exit status 2 and the file and line, and accepts every
// example in examples/ and in the README.
func TestConfigCheck(t *testing.T) {
	t.Parallel()
	bin := intercomBinary(t)
	dir := t.TempDir()
	bad := []struct {
		file, yaml, line, key string
	}{
		{"unknown-key.yaml", "device:\n  name: x\nsip:\n  listen: 127.0.0.1:5060\n  colour: blue\n", "unknown-key.yaml:5", "colour"},
		{"bad-duration.yaml", "device:\n  name: x\ncalls:\n  ring_timeout: 30 seconds\n", "bad-duration.yaml:4", "ring_timeout"},
	}
	for _, c := range bad {
		path := filepath.Join(dir, c.file)
		if err := os.WriteFile(path, []byte(c.yaml), 0o644); err != nil {
			t.Fatal(err)
		}
		code, out := configCheck(t, bin, "", path)
		if code != 2 {
			t.Errorf("config check %s: exit %d, want 2; output:\n%s", c.file, code, out)
		}
		if !strings.Contains(out, c.line) || !strings.Contains(out, c.key) {
			t.Errorf("config check %s: output does not name %s and %s:\n%s", c.file, c.line, c.key, out)
		}
	}

	// Examples name files relative to the repository root, as `make run` does.
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	examples, err := filepath.Glob(filepath.Join(root, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(examples, filepath.Join(root, "examples", "sim.yaml")) {
		t.Errorf("examples/sim.yaml missing; have %v", examples)
	}
	examples = append(examples, readmeExamples(t, filepath.Join(root, "README.md"), dir)...)
	for _, ex := range examples {
		if code, out := configCheck(t, bin, root, ex); code != 0 {
			t.Errorf("config check %s: exit %d, want 0; output:\n%s", ex, code, out)
		}
	}
}

// configCheck runs `intercom config check path` and returns its exit status
// and combined output.
func configCheck(t *testing.T, bin, dir, path string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, "config", "check", path)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	default:
		t.Fatalf("config check %s: %v", path, err)
		return 0, ""
	}
}

var yamlBlock = regexp.MustCompile("(?ms)^```ya?ml\n(.*?)^```")

// readmeExamples writes each YAML block of the README into dir; none when
// there is no README yet.
func readmeExamples(t *testing.T, readme, dir string) []string {
	t.Helper()
	data, err := os.ReadFile(readme)
	if errors.Is(err, os.ErrNotExist) {
		t.Logf("no %s yet: only examples/ checked", readme)
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var paths []string
	for i, m := range yamlBlock.FindAllSubmatch(data, -1) {
		p := filepath.Join(dir, fmt.Sprintf("README-%d.yaml", i+1))
		if err := os.WriteFile(p, m[1], 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return paths
}
