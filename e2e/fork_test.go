package e2e

// Issue 8, acceptance 6: a forking proxy (played by sipp) lets two phones
// ring and then answer one after the other; the station keeps exactly one
// dialog and leaks nothing.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// forkingCallee is testdata/uas_fork.xml.tmpl: two forks ring for RingMs;
// fork1 answers, then fork2, which must be ACKed and sent a BYE; fork1
// hangs up HoldMs later.
type forkingCallee struct {
	RingMs, HoldMs int
}

// TestForkedAnswersLeaveOneDialog: the bell's call reaches two forks, 180
// from each with its own To tag, then 200 from fork1 and, after its ACK,
// 200 from fork2. sipp checks that each answer is ACKed in its own dialog
// and that fork2's is ended with a BYE; the station's one call stays up
// until fork1 hangs up, and the station's goroutines return to their count
// before the call.
func TestForkedAnswersLeaveOneDialog(t *testing.T) {
	t.Parallel()
	requireTools(t, "sipp")
	callee, addr := sippCallee(t, "fork", "127.0.0.1", "testdata/uas_fork.xml.tmpl", forkingCallee{RingMs: 1500, HoldMs: 3000})
	st := startStation(t, stationOptions{Call: []string{"sip:flat@" + addr}})
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))
	before, err := st.goroutines()
	if err != nil {
		t.Fatal(err)
	}

	ms := st.Events.mark()
	pressBell(t, st)
	st.Events.waitFor(t, ms, "ringing", 5*time.Second)
	eventually(t, 5*time.Second, "station in the call", st.callIs("active"))
	eventually(t, 5*time.Second, "sipp's fork2 sent its 200 and got the BYE", func() error {
		return sippSaw(callee, "BYE sip:fork2@")
	})
	if s := st.Status(t); s.Call.State != "active" {
		t.Errorf("after fork2 was ended the call is %q, want still active", s.Call.State)
	}
	if err := callee.wait(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "station idle after fork1's BYE", st.callIs("idle"))
	st.Events.waitFor(t, ms, "hangup", 5*time.Second)
	for typ, want := range map[string]int{"ringing": 1, "answered": 1, "hangup": 1} {
		if n := len(st.Events.since(ms, typ)); n != want {
			t.Errorf("%d %s events, want %d", n, typ, want)
		}
	}

	var after int
	if err := poll(10*time.Second, func() error {
		n, err := st.goroutines()
		if err != nil {
			return err
		}
		if after = n; n > before {
			return fmt.Errorf("%d goroutines, %d before the call", n, before)
		}
		return nil
	}); err != nil {
		t.Errorf("goroutines left after the call: %v", err)
	}
	t.Logf("station goroutines: %d before the call, %d after", before, after)
}

// sippSaw checks sipp's message log for text.
func sippSaw(s *sipp, text string) error {
	data, err := os.ReadFile(s.msgLog())
	if err != nil {
		return err
	}
	if !bytes.Contains(data, []byte(text)) {
		return fmt.Errorf("no %q in sipp's messages", text)
	}
	return nil
}

// goroutines reads go_goroutines from the station's /metrics.
func (st *station) goroutines() (int, error) {
	body, err := st.get("/metrics")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, fmt.Errorf("no go_goroutines in /metrics:\n%s", body)
}
