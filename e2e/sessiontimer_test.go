package e2e

// Acceptance 5 of issue 8: session timers (RFC 4028) against sipp.

import (
	"testing"
	"time"
)

// TestSessionTimers: a caller asks for the RFC's minimum interval, 90 s.
// With refresher=uas the station refreshes (an UPDATE at about 45 s, as the
// caller allows UPDATE) and the call goes on; with refresher=uac and a
// caller that never refreshes, the station sends BYE before the interval
// runs out (at about 60 s). The two wait in parallel.
func TestSessionTimers(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	for _, refresher := range []string{"uas", "uac"} {
		t.Run("refresher="+refresher, func(t *testing.T) {
			t.Parallel()
			st := startStation(t, stationOptions{Allow: []string{"sip:301@127.0.0.1"}})
			ms := st.Events.mark()
			s := startScenario(t, "timer-"+refresher, "testdata/uac_session_timer.xml.tmpl",
				map[string]any{"From": "301", "Refresher": refresher}, st.SIPAddr, "100", 100*time.Second)
			st.Events.waitFor(t, ms, "answered", 10*time.Second)
			// The scenario fails unless the station sends what it expects:
			// an UPDATE refreshing 90 s, or a BYE, each within 70 s.
			if err := s.wait(90 * time.Second); err != nil {
				t.Fatal(err)
			}
			eventually(t, 5*time.Second, "station idle", st.callIs("idle"))
			if refresher == "uac" {
				if ev := st.Events.waitFor(t, ms, "hangup", 5*time.Second); ev.Fields["reason"] != "session expired" {
					t.Errorf("hangup event %s, want reason session expired", ev.Raw)
				}
			}
		})
	}
}
