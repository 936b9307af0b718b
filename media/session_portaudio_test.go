//go:build cgo && !noportaudio && linux

package media

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestSessionKeepsACardFed runs a call's frame loop on PortAudio streams
// (see portaudio_test.go): a speaker written right after each microphone
// frame must not run dry. Without the frame of silence ahead, a card that
// starts playing with one frame queued underflows several times a second.
func TestSessionKeepsACardFed(t *testing.T) {
	src, sink := openStreams(t, openPA(t, "default", "default"), fmt20ms)
	conn, _ := listen(t, "127.0.0.1")
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	s, err := NewSession(SessionConfig{Conn: conn, Remote: localAddr(peer), Codec: PCMU, Source: src, Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	go func() {
		to := localAddr(conn)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for seq := uint16(0); ctx.Err() == nil; seq++ {
			peer.WriteToUDPAddrPort(audioPacket(seq, 0, 3000), to)
			<-tick.C
		}
	}()
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	over, under := src.(*paSource).Overflows(), sink.(*paSink).Underflows()
	t.Logf("overflows %d, underflows %d, sent %d, received %d", over, under, st.PacketsSent, st.PacketsReceived)
	// A loaded machine may miss a deadline or two; a starved speaker
	// misses dozens in 3 s.
	if under > 3 || over > 3 || st.PacketsSent < 100 || st.PacketsReceived < 100 {
		t.Fatalf("overflows %d, underflows %d, stats %+v", over, under, st)
	}
}
