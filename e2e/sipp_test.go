package e2e

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"text/template"
	"time"
)

// pcapDir holds the RFC 4733 digit captures that ship with sipp
// (dtmf_2833_<digit>.pcap, payload type 101).
const pcapDir = "/usr/share/sip-tester"

// sippCall describes one scripted call (testdata/uac.xml.tmpl).
type sippCall struct {
	Name     string // names the scenario and log files
	Target   string // host:port the INVITE goes to
	Service  string // user part of the request URI
	From     string // caller's user; with Auth its password is "pw-"+From
	FromHost string // host part of the From URI; defaults to the local IP
	LocalIP  string // source address (-i); defaults to 127.0.0.1
	Auth     bool   // answer a 407 challenge (calls through kamailio)
	Expect   int    // final response: 200 (then digits and BYE), or an error code
	// Codes are keyed one after the other once the call is up, each digit
	// played from sipp's pcap. The pcaps of one digit always carry the same
	// RTP sequence numbers and timestamp, and those of '0' lie between the
	// ones of '1' and '2': within one call only digits in the order
	// 1 2 3 4 5 6 7 8 9 * # arrive as distinct, in-order events.
	Codes []string
	// Hold keeps the call up after the last code before the BYE.
	Hold time.Duration
}

// sippStep is one digit (or a pause) of the scenario.
type sippStep struct {
	Pcap    string
	PauseMs int
}

func digitPcap(d rune) (string, error) {
	name := ""
	switch {
	case d >= '0' && d <= '9':
		name = string(d)
	case d == '*':
		name = "star"
	case d == '#':
		name = "pound"
	default:
		return "", fmt.Errorf("no pcap for digit %q", d)
	}
	return filepath.Join(pcapDir, "dtmf_2833_"+name+".pcap"), nil
}

// render writes the scenario XML for c into dir.
func (c sippCall) render(dir string) (string, error) {
	if c.FromHost == "" {
		c.FromHost = "[local_ip]"
	}
	var steps []sippStep
	for _, code := range c.Codes {
		for i, d := range code {
			pcap, err := digitPcap(d)
			if err != nil {
				return "", err
			}
			// A digit's capture lasts 140 ms; the gap after a complete code
			// lets the station act on it before the next one starts.
			pause := 400
			if i == len(code)-1 {
				pause = 1000
			}
			steps = append(steps, sippStep{Pcap: pcap, PauseMs: pause})
		}
	}
	if c.Hold > 0 {
		steps = append(steps, sippStep{PauseMs: int(c.Hold / time.Millisecond)})
	}
	inviteCSeq := 1
	if c.Auth {
		inviteCSeq = 2
	}
	tmpl, err := template.ParseFiles("testdata/uac.xml.tmpl")
	if err != nil {
		return "", err
	}
	var out bytes.Buffer
	err = tmpl.Execute(&out, map[string]any{
		"From": c.From, "FromHost": c.FromHost, "Auth": c.Auth, "Expect": c.Expect,
		"InviteCSeq": inviteCSeq, "ByeCSeq": inviteCSeq + 1,
		// Media starts with the ACK; give the callee's RTP path a moment.
		"LeadMs": 1000, "Steps": steps,
	})
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, c.Name+".xml")
	return path, os.WriteFile(path, out.Bytes(), 0o644)
}

// sipp is a running sipp process.
type sipp struct {
	proc    *proc
	msgPath string // -message_file: every SIP message sent and received
}

func (s *sipp) msgLog() string { return s.msgPath }

// startSipp runs one call of scenario file xml to target in the background.
func startSipp(t testing.TB, name, xml, target, service, localIP string) *sipp {
	t.Helper()
	requireTools(t, "sipp")
	if localIP == "" {
		localIP = "127.0.0.1"
	}
	dir := filepath.Dir(xml)
	msgLog := filepath.Join(dir, name+"-messages.log")
	errLog := filepath.Join(dir, name+"-errors.log")
	args := []string{
		"-sf", xml, "-m", "1", "-nostdin",
		"-i", localIP, "-p", strconv.Itoa(freePorts(t, 1)),
		// sipp binds its RTP socket at -mp and video at -mp+2.
		"-mp", strconv.Itoa(freePorts(t, 4)),
		"-s", service,
		"-timeout", "60s", "-timeout_error",
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

// wait returns nil when the call went as the scenario says (exit status 0).
func (s *sipp) wait(timeout time.Duration) error {
	if err := s.proc.wait(timeout); err != nil {
		return fmt.Errorf("sipp %s: %w (scenario failed, see its logs)", s.proc.name, err)
	}
	return nil
}

// startCall renders c's scenario in a fresh directory and starts it.
func (c sippCall) start(t testing.TB) *sipp {
	t.Helper()
	requireTools(t, "sipp")
	for _, code := range c.Codes {
		for _, d := range code {
			pcap, err := digitPcap(d)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(pcap); err != nil {
				missingPeer(t, pcap)
			}
		}
	}
	dir := filepath.Join(t.TempDir(), "sipp-"+c.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	xml, err := c.render(dir)
	if err != nil {
		t.Fatal(err)
	}
	return startSipp(t, c.Name, xml, c.Target, c.Service, c.LocalIP)
}

// run makes the call and fails the test unless it went as the scenario says.
func (c sippCall) run(t testing.TB) {
	t.Helper()
	if err := c.start(t).wait(90 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// sippRejecter starts a sipp callee on ip that answers one INVITE with code
// (testdata/uas_reject.xml.tmpl); it returns the host:port it listens on.
func sippRejecter(t testing.TB, name, ip string, code int, reason string) (*sipp, string) {
	t.Helper()
	return sippCallee(t, name, ip, "testdata/uas_reject.xml.tmpl", map[string]any{"Expect": code, "Reason": reason})
}

// sippCallee starts a sipp callee on ip for one call, with the scenario
// template tmplPath rendered with data; it returns the host:port it listens
// on.
func sippCallee(t testing.TB, name, ip, tmplPath string, data any) (*sipp, string) {
	t.Helper()
	requireTools(t, "sipp")
	dir := filepath.Join(t.TempDir(), "sipp-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmpl := template.Must(template.ParseFiles(tmplPath))
	var out bytes.Buffer
	if err := tmpl.Execute(&out, data); err != nil {
		t.Fatal(err)
	}
	xml := filepath.Join(dir, name+".xml")
	if err := os.WriteFile(xml, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	port := freePorts(t, 1)
	msgLog := filepath.Join(dir, name+"-messages.log")
	args := []string{
		"-sf", xml, "-m", "1", "-nostdin", "-i", ip, "-p", strconv.Itoa(port),
		"-mp", strconv.Itoa(freePorts(t, 4)),
		"-timeout", "60s", "-timeout_error",
		"-trace_msg", "-message_file", msgLog,
	}
	t.Cleanup(func() {
		if t.Failed() {
			dumpFile(t, name+" SIP messages", msgLog)
		}
	})
	s := &sipp{proc: startProc(t, dir, name, tool(t, "sipp"), args...), msgPath: msgLog}
	return s, fmt.Sprintf("%s:%d", ip, port)
}
