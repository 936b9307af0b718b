package device

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"intercom/media"
	"intercom/sipagent"
)

func TestRTPStreamRunsAgainOnItsPortsAfterRearm(t *testing.T) {
	backend, err := media.NewBackend("null", media.BackendConfig{})
	if err != nil {
		t.Fatal(err)
	}
	m := &RTPMedia{Backend: backend, Ptime: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	st, err := m.Open(netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	local := st.LocalAddr()
	ans := sipagent.MediaAnswer{Local: local, Remote: netip.MustParseAddrPort("127.0.0.1:9"),
		Codec: sipagent.Codec{Name: "PCMU"}, Ptime: 20 * time.Millisecond}
	for i := range 2 {
		if i > 0 {
			if err := st.(Rearmer).Rearm(); err != nil {
				t.Fatalf("Rearm: %v", err)
			}
		}
		if got := st.LocalAddr(); got != local {
			t.Fatalf("run %d on %v, want %v", i, got, local)
		}
		for _, port := range []uint16{local.Port(), local.Port() + 1} {
			if c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(local.Addr(), port))); err == nil {
				c.Close()
				t.Fatalf("run %d: port %d is not bound", i, port)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Millisecond)
		err := st.Run(ctx, ans, nil)
		cancel()
		if err != nil {
			t.Fatalf("run %d: %v", i, err)
		}
		if stats, ok := st.Stats(); !ok || stats.PacketsSent == 0 {
			t.Fatalf("run %d sent nothing: %+v", i, stats)
		}
	}
}
