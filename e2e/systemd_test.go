package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdNotify runs the station as systemd would with Type=notify and
// WatchdogSec=2s: a fake NOTIFY_SOCKET must receive a status line, READY,
// periodic WATCHDOG pings, and STOPPING on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	bin := intercomBinary(t)
	dir := t.TempDir()
	sockPath := filepath.Join(dir, "notify.sock")
	sock, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	sipPort := freePorts(t, 1)
	cfg := filepath.Join(dir, "station.yaml")
	yaml := fmt.Sprintf("sip: {listen: \"127.0.0.1:%d\", user: door}\ngpio: {driver: sim}\naudio: {backend: \"null\"}\napi: {listen: \"\"}\n", sipPort)
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "-config", cfg)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sockPath, "WATCHDOG_USEC=2000000")
	log, err := os.Create(filepath.Join(dir, "station.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-exited
		}
	}()

	msgs := make(chan string, 64)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := sock.Read(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	var status string
	ready, pings := false, 0
	deadline := time.After(15 * time.Second)
	for !ready || pings < 3 {
		select {
		case m := <-msgs:
			switch {
			case m == "READY=1":
				if status == "" {
					t.Error("READY before any STATUS line")
				}
				ready = true
			case m == "WATCHDOG=1":
				pings++
			case strings.HasPrefix(m, "STATUS="):
				status = strings.TrimPrefix(m, "STATUS=")
			}
		case <-deadline:
			t.Fatalf("after 15 s: ready %v, %d watchdog pings, status %q", ready, pings, status)
		}
	}
	if want := fmt.Sprintf("peer-to-peer, listening on 127.0.0.1:%d", sipPort); status != want {
		t.Errorf("status %q, want %q", status, want)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	for {
		select {
		case m := <-msgs:
			if m == "STOPPING=1" {
				if err := <-exited; err != nil {
					t.Errorf("exit after SIGTERM: %v", err)
					dumpFile(t, "station", log.Name())
				}
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no STOPPING=1 after SIGTERM")
		}
	}
}
