package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"net"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"intercom/device/config"
	"intercom/internal/clock/clocktest"
	"intercom/media"
	"intercom/media/wav"
	"intercom/sipagent/sipdns"
)

var doctorNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestCheckClock(t *testing.T) {
	if r := checkClock(doctorNow, earliestPlausible); r.status != ok {
		t.Errorf("2026: %+v, want ok", r)
	}
	r := checkClock(time.Unix(42, 0), earliestPlausible)
	if r.status != fail || !strings.Contains(r.what, "1970-01-01") || r.fix != "enable NTP: timedatectl set-ntp true" {
		t.Errorf("1970: %+v, want FAIL with the NTP fix", r)
	}
}

const routeHeader = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"

// fakeProc makes root/proc/net with the given route tables; an empty
// ipv6 table is left out, as on a kernel without IPv6.
func fakeProc(t *testing.T, route, ipv6 string) string {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "proc", "net")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if route != "" {
		if err := os.WriteFile(filepath.Join(dir, "route"), []byte(route), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if ipv6 != "" {
		if err := os.WriteFile(filepath.Join(dir, "ipv6_route"), []byte(ipv6), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func fakeAddrs(byIface map[string]string) func(string) ([]net.Addr, error) {
	return func(name string) ([]net.Addr, error) {
		cidr, found := byIface[name]
		if !found {
			return nil, errors.New("no such interface")
		}
		if cidr == "" {
			return nil, nil
		}
		ip, n, err := net.ParseCIDR(cidr)
		if err != nil {
			return nil, err
		}
		n.IP = ip
		return []net.Addr{n}, nil
	}
}

func TestCheckNetwork(t *testing.T) {
	const (
		v4Default = "eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
		v4LAN     = "eth0\t0001A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
		v6Default = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 fe800000000000000000000000000001 00000400 00000002 00000000 00000003     wlan0\n"
		// The kernel keeps an unreachable default on lo; it is no route.
		v6Reject = "00000000000000000000000000000000 00 00000000000000000000000000000000 00 00000000000000000000000000000000 ffffffff 00000001 00000000 00200200       lo\n"
	)
	tests := []struct {
		name         string
		route, ipv6  string
		addrs        map[string]string
		needed       bool
		want         status
		wantInResult string
	}{
		{"ipv4 default", routeHeader + v4LAN + v4Default, "", map[string]string{"eth0": "192.168.1.20/24"}, true, ok, "via 192.168.1.1 on eth0, address 192.168.1.20"},
		{"ipv6 only", routeHeader + v4LAN, v6Reject + v6Default, map[string]string{"wlan0": "2001:db8::5/64"}, true, ok, "via fe80::1 on wlan0"},
		{"no default route", routeHeader + v4LAN, v6Reject, map[string]string{"eth0": "192.168.1.20/24"}, true, fail, "no default route"},
		{"no default route, LAN only", routeHeader + v4LAN, "", nil, false, warn, "peer-to-peer"},
		{"no address", routeHeader + v4Default, "", map[string]string{"eth0": ""}, true, fail, "eth0 has no usable address"},
		{"link-local address only", routeHeader + v4Default, "", map[string]string{"eth0": "169.254.3.4/16"}, true, fail, "eth0 has no usable address"},
		{"no proc", "", "", nil, true, fail, "read routes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := checkNetwork(fakeProc(t, tt.route, tt.ipv6), fakeAddrs(tt.addrs), tt.needed)
			if r.status != tt.want || !strings.Contains(r.what, tt.wantInResult) {
				t.Errorf("got %+v, want %s with %q", r, tt.want, tt.wantInResult)
			}
			if r.status == fail && r.fix == "" {
				t.Errorf("FAIL without a fix: %+v", r)
			}
		})
	}
}

// fakeResolver knows a few names; like sipdns it lists IPv4 first and
// takes port 5060 (5061 for tls) when the query names none.
type fakeResolver map[string][]netip.Addr

var _ resolver = fakeResolver(nil)

func (f fakeResolver) Resolve(_ context.Context, q sipdns.Query) ([]sipdns.Target, error) {
	port := q.Port
	switch {
	case port != 0:
	case q.Transport == "tls":
		port = 5061
	default:
		port = 5060
	}
	if ip, err := netip.ParseAddr(q.Host); err == nil {
		return []sipdns.Target{{Host: q.Host, Addr: netip.AddrPortFrom(ip, uint16(port))}}, nil
	}
	ips, found := f[q.Host]
	if !found {
		return nil, &net.DNSError{Err: "no such host", Name: q.Host, IsNotFound: true}
	}
	ips = slices.Clone(ips)
	slices.SortStableFunc(ips, func(a, b netip.Addr) int {
		return cmp.Compare(a.Unmap().BitLen(), b.Unmap().BitLen())
	})
	var ts []sipdns.Target
	for _, ip := range ips {
		ts = append(ts, sipdns.Target{Host: q.Host, Addr: netip.AddrPortFrom(ip, uint16(port))})
	}
	return ts, nil
}

var pbxResolver = fakeResolver{"pbx.test": {netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.1")}}

// udpResponder answers each datagram on loopback with reply, and hands
// the requests it got to the test; it stops when the test ends.
func udpResponder(t *testing.T, reply string) (port string, requests <-chan string) {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 8)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 65535)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			select {
			case got <- string(buf[:n]):
			default:
			}
			if reply != "" {
				conn.WriteTo([]byte(reply), from)
			}
		}
	}()
	t.Cleanup(func() { conn.Close(); <-done })
	_, port, _ = net.SplitHostPort(conn.LocalAddr().String())
	return port, got
}

func TestCheckRegistrarUDP(t *testing.T) {
	port, requests := udpResponder(t, "SIP/2.0 404 Not Found\r\nContent-Length: 0\r\n\r\n")
	s := config.SIP{Transport: "udp", Registrar: "pbx.test:" + port}
	rs := checkRegistrar(context.Background(), s, pbxResolver, 2*time.Second)
	if len(rs) != 2 || rs[0].status != ok || rs[1].status != ok {
		t.Fatalf("got %+v, want DNS and reachability ok", rs)
	}
	if !strings.Contains(rs[0].what, "resolves to 127.0.0.1") || !strings.Contains(rs[1].what, "404 Not Found") {
		t.Errorf("got %+v, want the IPv4 address and the status line", rs)
	}
	req := <-requests
	for _, want := range []string{"OPTIONS sip:pbx.test SIP/2.0\r\n", "\r\nVia: SIP/2.0/UDP 127.0.0.1:", "\r\nCSeq: 1 OPTIONS\r\n", "\r\nCall-ID: ", "\r\n\r\n"} {
		if !strings.Contains(req, want) {
			t.Errorf("request lacks %q:\n%s", want, req)
		}
	}
}

func TestCheckRegistrarOutboundProxy(t *testing.T) {
	port, _ := udpResponder(t, "SIP/2.0 200 OK\r\n\r\n")
	s := config.SIP{Transport: "udp", Registrar: "unknown.test", OutboundProxy: "sip:127.0.0.1:" + port}
	rs := checkRegistrar(context.Background(), s, pbxResolver, 2*time.Second)
	if len(rs) != 2 || rs[1].status != ok || !strings.Contains(rs[1].what, "200 OK") {
		t.Errorf("got %+v, want the outbound proxy reached", rs)
	}
}

func TestCheckRegistrarTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		if _, err := c.Read(buf); err == nil {
			c.Write([]byte("SIP/2.0 401 Unauthorized\r\n\r\n"))
		}
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	s := config.SIP{Transport: "tcp", Registrar: ln.Addr().String()}
	rs := checkRegistrar(context.Background(), s, pbxResolver, 2*time.Second)
	if len(rs) != 2 || rs[1].status != ok || !strings.Contains(rs[1].what, "401 Unauthorized") {
		t.Errorf("got %+v, want reachable over tcp", rs)
	}
}

func TestCheckRegistrarFailures(t *testing.T) {
	silent, _ := udpResponder(t, "")
	notSIP, _ := udpResponder(t, "HTTP/1.1 400 Bad Request\r\n\r\n")
	tests := []struct {
		name, registrar string
		wantLines       int
		want            string
	}{
		{"unknown name", "nowhere.test", 1, "does not resolve"},
		{"no answer", "pbx.test:" + silent, 2, "no SIP answer"},
		{"not SIP", "127.0.0.1:" + notSIP, 2, "not SIP"},
		{"bad value", "sip:100@", 1, "sip.registrar"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := config.SIP{Transport: "udp", Registrar: tt.registrar}
			rs := checkRegistrar(context.Background(), s, pbxResolver, 100*time.Millisecond)
			last := rs[len(rs)-1]
			if len(rs) != tt.wantLines || last.status != fail || !strings.Contains(last.what, tt.want) || last.fix == "" {
				t.Errorf("got %+v, want %d lines ending in FAIL %q with a fix", rs, tt.wantLines, tt.want)
			}
		})
	}
}

func TestCheckRegistrarNone(t *testing.T) {
	rs := checkRegistrar(context.Background(), config.SIP{Transport: "udp"}, pbxResolver, time.Second)
	if len(rs) != 1 || rs[0].status != ok || !strings.Contains(rs[0].what, "peer-to-peer") {
		t.Errorf("got %+v", rs)
	}
}

// TestCheckRegistrarTLS: over TLS the doctor verifies the registrar's
// certificate against sip.tls.ca, as the station will.
func TestCheckRegistrarTLS(t *testing.T) {
	// httptest's certificate is its own CA and names 127.0.0.1.
	hs := httptest.NewUnstartedServer(nil)
	hs.StartTLS()
	t.Cleanup(hs.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: hs.TLS.Certificates})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			buf := make([]byte, 4096)
			if _, err := c.Read(buf); err == nil {
				c.Write([]byte("SIP/2.0 200 OK\r\n\r\n"))
			}
			c.Close()
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })

	s := config.SIP{Transport: "tls", Registrar: ln.Addr().String(), TLS: config.SIPTLS{CA: ca}}
	rs := checkRegistrar(context.Background(), s, pbxResolver, 2*time.Second)
	if len(rs) != 2 || rs[1].status != ok || !strings.Contains(rs[1].what, "200 OK") {
		t.Errorf("trusted: got %+v, want reachable over tls", rs)
	}
	s.TLS.CA = ""
	rs = checkRegistrar(context.Background(), s, pbxResolver, 2*time.Second)
	if len(rs) != 2 || rs[1].status != fail || !strings.Contains(rs[1].what, "certificate") || !strings.Contains(rs[1].fix, "sip.tls.ca") {
		t.Errorf("system roots: got %+v, want a failure naming the certificate", rs)
	}
	s.TLS.CA = filepath.Join(t.TempDir(), "missing.pem")
	rs = checkRegistrar(context.Background(), s, pbxResolver, 2*time.Second)
	if len(rs) != 1 || rs[0].status != fail || !strings.Contains(rs[0].what, "tls ca") {
		t.Errorf("missing ca: got %+v", rs)
	}
}

func TestCheckSoundPortAudio(t *testing.T) {
	devs := []media.AudioDevice{
		{Name: "USB Audio", HostAPI: "ALSA", MaxInputChannels: 1, MaxOutputChannels: 2, DefaultInput: true},
		{Name: "HDMI", HostAPI: "ALSA", MaxOutputChannels: 2, DefaultOutput: true},
	}
	list := func() ([]media.AudioDevice, error) { return devs, nil }
	rs := checkSound(config.Audio{Backend: "portaudio", Input: "default", Output: "USB Audio"}, list)
	if len(rs) != 2 || rs[0].status != ok || rs[1].status != ok || !strings.Contains(rs[0].what, `"USB Audio"`) {
		t.Errorf("present devices: %+v", rs)
	}
	rs = checkSound(config.Audio{Backend: "portaudio", Input: "HDMI", Output: "Speaker"}, list)
	for i, r := range rs {
		if r.status != fail || r.fix == "" {
			t.Errorf("line %d: %+v, want FAIL with a fix", i, r)
		}
	}
	if len(rs) != 2 || !strings.Contains(rs[0].what, `audio.input "HDMI"`) || !strings.Contains(rs[0].what, `have "USB Audio"`) ||
		!strings.Contains(rs[1].what, `audio.output "Speaker"`) {
		t.Errorf("missing devices: %+v", rs)
	}
	rs = checkSound(config.Audio{Backend: "portaudio"}, func() ([]media.AudioDevice, error) { return nil, errors.New("media: portaudio: boom") })
	if len(rs) != 1 || rs[0].status != fail || !strings.Contains(rs[0].what, "boom") {
		t.Errorf("portaudio error: %+v", rs)
	}
}

func writeTestWAV(t *testing.T, path string) {
	t.Helper()
	w, err := wav.Create(path, media.ClockRate)
	if err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(w.Write(make([]int16, 160)), w.Close()); err != nil {
		t.Fatal(err)
	}
}

func TestCheckSoundFile(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "in.wav")
	writeTestWAV(t, in)
	noDevices := func() ([]media.AudioDevice, error) { t.Error("file backend listed devices"); return nil, nil }
	out := filepath.Join(dir, "out.wav")
	rs := checkSound(config.Audio{Backend: "file", Input: in, Output: out}, noDevices)
	if len(rs) != 2 || rs[0].status != ok || rs[1].status != ok {
		t.Errorf("good files: %+v", rs)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("doctor left %s behind: %v", out, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 1 {
		t.Errorf("doctor left files in %s: %v", dir, left)
	}
	notWAV := filepath.Join(dir, "not.wav")
	if err := os.WriteFile(notWAV, []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, a := range []config.Audio{
		{Backend: "file", Input: filepath.Join(dir, "missing.wav"), Output: filepath.Join(dir, "nodir", "out.wav")},
		{Backend: "file", Input: notWAV, Output: ""},
	} {
		rs := checkSound(a, noDevices)
		if len(rs) != 2 || rs[0].status != fail || rs[1].status != fail || rs[0].fix == "" || rs[1].fix == "" {
			t.Errorf("%+v: %+v, want both FAIL with fixes", a, rs)
		}
	}
	if rs := checkSound(config.Audio{Backend: "null"}, noDevices); len(rs) != 1 || rs[0].status != ok {
		t.Errorf("null: %+v", rs)
	}
}

// fakeBoardPins is a pinLookup over a fixed board.
func fakeBoardPins(pins map[string]pinStatus) pinLookup {
	return func(name string) (pinStatus, error) { return pins[name], nil }
}

func gpioConfig() *config.Config {
	cfg := config.Default()
	cfg.Buttons = []config.Button{{Name: "bell", Pin: "GPIO17"}}
	cfg.Relays = []config.Relay{{Name: "door", Pin: "GPIO27"}, {Name: "gate", URL: "http://shelly.local/relay/0?turn=on"}}
	cfg.Inputs = []config.Input{{Name: "contact", Pin: "GPIO5"}}
	cfg.LEDs = []config.LED{{Name: "status", Pin: "GPIO99"}}
	return cfg
}

func TestCheckGPIO(t *testing.T) {
	board := fakeBoardPins(map[string]pinStatus{
		"GPIO17": {exists: true, known: true},
		"GPIO27": {exists: true, known: true, consumer: "gpio-fan"},
		"GPIO5":  {exists: true},
	})
	rs := checkGPIO(gpioConfig(), func() error { return nil }, board)
	want := []struct {
		status status
		what   string
	}{
		{ok, `buttons "bell" pin GPIO17 exists and is free`},
		{fail, `relays "door" pin GPIO27 is claimed by "gpio-fan"`},
		{warn, `inputs "contact" pin GPIO5 exists`},
		{fail, `leds "status" pin GPIO99: no such line`},
	}
	if len(rs) != len(want) {
		t.Fatalf("got %d lines, want %d (the HTTP relay has no pin): %+v", len(rs), len(want), rs)
	}
	for i, w := range want {
		if rs[i].status != w.status || !strings.Contains(rs[i].what, w.what) || (w.status == fail) != (rs[i].fix != "") {
			t.Errorf("line %d: %+v, want %s %q", i, rs[i], w.status, w.what)
		}
	}
	if !strings.Contains(rs[1].fix, "stop that program") {
		t.Errorf("claimed pin fix %q", rs[1].fix)
	}
}

func TestCheckGPIOHeldByStation(t *testing.T) {
	board := fakeBoardPins(map[string]pinStatus{"GPIO17": {exists: true, known: true, consumer: "intercom@812"}})
	cfg := config.Default()
	cfg.Buttons = []config.Button{{Name: "bell", Pin: "GPIO17"}}
	rs := checkGPIO(cfg, func() error { return nil }, board)
	if len(rs) != 1 || rs[0].status != fail || !strings.Contains(rs[0].fix, "systemctl stop intercom") {
		t.Errorf("got %+v", rs)
	}
}

func TestCheckGPIONoBoard(t *testing.T) {
	lookup := func(string) (pinStatus, error) { t.Error("looked a pin up without drivers"); return pinStatus{}, nil }
	rs := checkGPIO(gpioConfig(), func() error { return errors.New("gpio: init host drivers: no GPIO chips found") }, lookup)
	if len(rs) != 1 || rs[0].status != fail || !strings.Contains(rs[0].what, "no GPIO chips") || rs[0].fix == "" {
		t.Errorf("got %+v", rs)
	}
	sim := gpioConfig()
	sim.GPIO.Driver = "sim"
	initHost := func() error { t.Error("sim initialised the board"); return nil }
	if rs := checkGPIO(sim, initHost, lookup); len(rs) != 1 || rs[0].status != ok || !strings.Contains(rs[0].what, "virtual") {
		t.Errorf("sim: %+v", rs)
	}
}

// fakeDoctorEnv is a healthy machine with nothing real behind it.
func fakeDoctorEnv(t *testing.T) doctorEnv {
	return doctorEnv{
		clock:        clocktest.New(doctorNow),
		notBefore:    earliestPlausible,
		root:         fakeProc(t, routeHeader+"eth0\t00000000\t0101A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n", ""),
		ifaceAddrs:   fakeAddrs(map[string]string{"eth0": "192.168.1.20/24"}),
		resolver:     pbxResolver,
		sipTimeout:   100 * time.Millisecond,
		soundDevices: func() ([]media.AudioDevice, error) { return nil, nil },
		gpioInit:     func() error { return nil },
		lookupPin:    fakeBoardPins(nil),
	}
}

// inRepoRoot runs the test from the repository root, where the relative
// paths of examples/sim.yaml resolve, and makes its input WAV the way the
// Makefile does when it is missing.
func inRepoRoot(t *testing.T) {
	t.Helper()
	t.Chdir(filepath.Join("..", ".."))
	const tone = "examples/test-tone.wav"
	if _, err := os.Stat(tone); errors.Is(err, os.ErrNotExist) {
		writeTestWAV(t, tone)
		t.Cleanup(func() { os.Remove(tone) })
	}
}

func TestDoctorSimExample(t *testing.T) {
	inRepoRoot(t)
	var out bytes.Buffer
	if err := doctor(context.Background(), fakeDoctorEnv(t), "examples/sim.yaml", &out); err != nil {
		t.Fatalf("doctor: %v\n%s", err, out.String())
	}
	want := []string{
		"ok   config: examples/sim.yaml parses and validates",
		"ok   clock: 2026-03-01T12:00:00Z is plausible",
		"ok   network: default route via 192.168.1.1 on eth0, address 192.168.1.20",
		"ok   registrar: none set (peer-to-peer), nothing to reach",
		"ok   sound: audio.input examples/test-tone.wav is a readable WAV",
		"ok   sound: audio.output /tmp/intercom-sim-out.wav can be written",
		"ok   gpio: driver sim, pins are virtual, nothing to check on the board",
	}
	if got := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), strings.Join(want, "\n"))
	}
}

// TestDoctorCommandSim runs `intercom doctor` as an installer would, on
// this machine: examples/sim.yaml needs no uplink, board or sound card,
// so every check passes or at most warns.
func TestDoctorCommandSim(t *testing.T) {
	inRepoRoot(t)
	var stdout, stderr bytes.Buffer
	if err := run([]string{"doctor", "-config", "examples/sim.yaml"}, &stdout, &stderr); err != nil {
		t.Fatalf("doctor: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	lines := strings.Split(strings.TrimSuffix(stdout.String(), "\n"), "\n")
	for i, prefix := range []string{"ok   config:", "ok   clock:", "network:", "ok   registrar:", "ok   sound:", "ok   sound:", "ok   gpio:"} {
		if i >= len(lines) || !strings.Contains(lines[i], prefix) {
			t.Errorf("line %d missing %q:\n%s", i, prefix, stdout.String())
		}
	}
}

func TestDoctorNamesEveryFailure(t *testing.T) {
	port, _ := udpResponder(t, "") // a registrar that never answers
	path := filepath.Join(t.TempDir(), "intercom.yaml")
	yaml := "sip:\n  registrar: pbx.test:" + port + "\n  user: \"100\"\naudio:\n  backend: portaudio\n  input: USB Mic\n"
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	env := fakeDoctorEnv(t)
	env.soundDevices = func() ([]media.AudioDevice, error) {
		return []media.AudioDevice{{Name: "HDMI", MaxOutputChannels: 2, DefaultOutput: true}}, nil
	}
	var out bytes.Buffer
	err := doctor(context.Background(), env, path, &out)
	var ue usageError
	if err == nil || errors.As(err, &ue) {
		t.Fatalf("doctor: %v, want a runtime error (exit 1)", err)
	}
	for _, want := range []string{"FAIL registrar: no SIP answer over udp: 127.0.0.1:" + port, `FAIL sound: audio.input "USB Mic": no such input device`, "ok   sound: audio.output"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if !strings.Contains(err.Error(), "2 check(s) failed") {
		t.Errorf("error %q", err)
	}
}

func TestDoctorConfigErrorIsUsage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "intercom.yaml")
	if err := os.WriteFile(path, []byte("sip:\n  transport: carrier-pigeon\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := doctor(context.Background(), fakeDoctorEnv(t), path, &out)
	var ue usageError
	if !errors.As(err, &ue) {
		t.Fatalf("doctor: %v, want a usage error (exit 2)", err)
	}
	for _, want := range []string{"FAIL config: " + path, "sip.transport", "ok   clock:", "ok   network:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "registrar:") {
		t.Errorf("checks that need the config ran without one:\n%s", out.String())
	}
	if err := run([]string{"doctor", "extra"}, &out, &out); !errors.As(err, &ue) {
		t.Errorf("doctor extra: %v, want a usage error", err)
	}
}
