package device

import (
	"context"
	"strings"
	"testing"

	"intercom/device/api"
	"intercom/sipagent"
)

// defendingPhone is a Phone whose SIP agent reports defence counters.
type defendingPhone struct {
	*fakePhone
	stats sipagent.DefenceStats
}

func (p defendingPhone) DefenceStats() sipagent.DefenceStats { return p.stats }

func TestStatusReportsSIPDefence(t *testing.T) {
	h := newHarness(t, testYAML)
	if st, err := h.st.Status(context.Background()); err != nil || st.SIPDefence != nil {
		t.Fatalf("a phone without a defence: sip_defence %+v, %v; want none", st.SIPDefence, err)
	}

	h = newHarnessWith(t, testYAML, func(h *harness, c *Config) {
		c.Phone = defendingPhone{fakePhone: h.phone, stats: sipagent.DefenceStats{RateLimited: 1900, Scanners: 7, Blocks: 3, BlockedNow: 2}}
	})
	st, err := h.st.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := (api.SIPDefenceStatus{RateLimited: 1900, Scanners: 7, Blocks: 3, BlockedNow: 2}); st.SIPDefence == nil || *st.SIPDefence != want {
		t.Fatalf("sip_defence %+v, want %+v", st.SIPDefence, want)
	}
	var b strings.Builder
	if err := h.st.WriteMetrics(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"intercom_sip_dropped_total{reason=\"rate\"} 1900\n", "intercom_sip_dropped_total{reason=\"scanner\"} 7\n",
		"intercom_sip_blocks_total 3\n", "intercom_sip_sources_blocked 2\n", "# TYPE intercom_sip_dropped_total counter\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("metrics lack %q:\n%s", want, b.String())
		}
	}
}
