package e2e

// Acceptance 3 of issue 7: the RFC 4475 torture messages against the
// running station.

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// tortureGap paces the messages below the station's default limit for a
// stranger (sip.defence.rate 5/s, burst 20): the test wants each one to
// reach the SIP stack, not to be dropped as a flood.
const tortureGap = 250 * time.Millisecond

// statusLine is a response's first line (RFC 3261 section 7.2).
var statusLine = regexp.MustCompile(`^SIP/2\.0 [1-6][0-9][0-9] [^\r\n]*\r\n`)

// TestTortureRFC4475 sends each of the 49 RFC 4475 messages (section 3.1
// valid, 3.3 invalid; testdata/rfc4475) to the station as its own UDP
// datagram. The station must stay up, never ring, be idle afterwards, and
// answer every valid request with a well-formed final response that does
// not name its software version.
//
// The invalid messages and the valid responses go byte for byte. Each
// valid request has its top Via replaced by one naming the test's socket:
// the RFC's Vias name example hosts, some over TCP, and a response goes
// where the top Via says (RFC 3261 section 18.2.2). Request-URIs are left
// as they are.
func TestTortureRFC4475(t *testing.T) {
	skipShort(t)
	st := startStation(t, stationOptions{})
	mark := st.Events.mark()

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopback})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dst, err := net.ResolveUDPAddr("udp4", st.SIPAddr)
	if err != nil {
		t.Fatal(err)
	}
	via := "Via: SIP/2.0/UDP " + conn.LocalAddr().String() + ";rport;branch=z9hG4bK-torture-"

	var files []string
	for _, dir := range []string{"valid", "invalid"} {
		m, err := filepath.Glob(filepath.Join("testdata/rfc4475", dir, "*.dat"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			if filepath.Base(f) != "test.dat" { // not one of the RFC's
				files = append(files, f)
			}
		}
	}
	if len(files) != 49 {
		t.Fatalf("%d torture messages in testdata/rfc4475, want RFC 4475's 49", len(files))
	}

	answered := 0
	for i, f := range files {
		msg, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimSuffix(filepath.Base(f), ".dat")
		request := !bytes.HasPrefix(msg, []byte("SIP/"))
		valid := strings.Contains(f, "/valid/")
		if valid && request {
			msg = replaceTopVia(msg, via+name+strconv.Itoa(i))
		}
		if _, err := conn.WriteTo(msg, dst); err != nil {
			t.Fatal(err)
		}
		if valid && request {
			checkTortureAnswer(t, conn, name, headerValue(msg, "call-id", "i"))
			answered++
		} else {
			time.Sleep(tortureGap) // pacing only; nothing is awaited
		}
		if err := st.proc.alive(); err != nil {
			t.Fatalf("after %s: %v", name, err)
		}
	}
	if answered != 11 {
		t.Fatalf("%d valid requests answered, want RFC 4475's 11", answered)
	}

	// Whatever the messages started must end by itself: an INVITE refused
	// leaves a transaction until the ACK or Timer H (32 s), no call.
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))
	if rings := st.Events.since(mark, "ringing", "answered", "door_opened"); len(rings) > 0 {
		t.Fatalf("torture messages made the station act: %v", rings)
	}
	s, err := st.get("/api/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(s, []byte(`"rate_limited":0`)) || !bytes.Contains(s, []byte(`"scanners":0`)) {
		t.Fatalf("the defence dropped torture messages, which this test paces below its limit: %s", s)
	}
}

// checkTortureAnswer reads responses until the final one for callID and
// checks that it is well-formed: a status line, the headers RFC 3261
// section 8.2.6.2 copies from the request, Content-Length matching the
// body, and no software version in User-Agent or Server.
func checkTortureAnswer(t *testing.T, conn *net.UDPConn, name, callID string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	buf := make([]byte, 65535)
	for {
		if err := conn.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%s: no final response: %v", name, err)
		}
		raw := append([]byte(nil), buf[:n]...)
		if !statusLine.Match(raw) {
			t.Fatalf("%s: answer without a status line: %q", name, raw)
		}
		m, err := sip.ParseMessage(raw)
		if err != nil {
			t.Fatalf("%s: answer does not parse: %v\n%s", name, err, raw)
		}
		res, ok := m.(*sip.Response)
		if !ok {
			t.Fatalf("%s: answer is not a response: %s", name, raw)
		}
		if res.CallID() == nil || res.CallID().Value() != callID {
			continue // a retransmission for an earlier message
		}
		if res.Via() == nil || res.From() == nil || res.To() == nil || res.CSeq() == nil {
			t.Fatalf("%s: response lacks Via, From, To or CSeq:\n%s", name, raw)
		}
		_, body, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
		if cl := res.ContentLength(); cl == nil || int(*cl) != len(body) {
			t.Fatalf("%s: Content-Length %v for a body of %d bytes:\n%s", name, cl, len(body), raw)
		}
		for _, h := range []string{"User-Agent", "Server"} {
			for _, v := range res.GetHeaders(h) {
				if strings.ContainsAny(v.Value(), "0123456789") {
					t.Errorf("%s: %s %q may reveal the software version", name, h, v.Value())
				}
			}
		}
		if res.StatusCode < 200 {
			continue
		}
		t.Logf("%s: %d %s", name, res.StatusCode, res.Reason)
		return
	}
}

// replaceTopVia replaces the first Via header line of msg, with its
// continuation lines, by via.
func replaceTopVia(msg []byte, via string) []byte {
	head, body, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	lines := strings.Split(string(head), "\r\n")
	for i := 1; i < len(lines); i++ {
		name, _, ok := strings.Cut(lines[i], ":")
		if !ok || !isHeader(name, "via", "v") {
			continue
		}
		end := i + 1
		for end < len(lines) && strings.HasPrefix(lines[end], " ") || end < len(lines) && strings.HasPrefix(lines[end], "\t") {
			end++
		}
		lines = append(lines[:i], append([]string{via}, lines[end:]...)...)
		break
	}
	return fmt.Appendf(nil, "%s\r\n\r\n%s", strings.Join(lines, "\r\n"), body)
}

// headerValue is the first value of the header with one of names (long
// and compact form), trimmed; "" if there is none.
func headerValue(msg []byte, names ...string) string {
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	for _, line := range strings.Split(string(head), "\r\n")[1:] {
		if name, v, ok := strings.Cut(line, ":"); ok && isHeader(name, names...) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func isHeader(name string, names ...string) bool {
	name = strings.TrimSpace(name)
	for _, n := range names {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	return false
}
