package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"intercom/provisioning"
	"intercom/sipagent/sipdns"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/emiago/sipgo/sip"
	pgpio "periph.io/x/conn/v3/gpio"
	"periph.io/x/conn/v3/gpio/gpioreg"

	"intercom/device/config"
	"intercom/internal/clock"
	"intercom/media"
	"intercom/sipagent"
)

// doctorEnv is everything the doctor's checks take from the machine, so
// that tests can hand in fakes instead of hardware and network.
type doctorEnv struct {
	clock clock.Clock
	// notBefore is the earliest plausible time: a clock behind it was
	// never set (boards without an RTC boot in 1970).
	notBefore time.Time
	// root is where proc/net/route is read from: "/" on the board.
	root       string
	ifaceAddrs func(iface string) ([]net.Addr, error)
	resolver   resolver
	// sipTimeout bounds the wait for the registrar's answer.
	sipTimeout   time.Duration
	soundDevices func() ([]media.AudioDevice, error)
	gpioInit     func() error
	lookupPin    pinLookup
}

// resolver finds a SIP server's addresses the way the SIP agent does.
type resolver interface {
	Resolve(ctx context.Context, q sipdns.Query) ([]sipdns.Target, error)
}

var _ resolver = (*sipdns.Resolver)(nil)

// pinLookup describes a pin of the board by name without touching it.
type pinLookup func(name string) (pinStatus, error)

// pinStatus is what the kernel's line info says about a pin.
type pinStatus struct {
	exists bool
	// known is false when the driver does not tell whether the line is
	// in use.
	known    bool
	consumer string // who holds the line; empty when free
}

// earliestPlausible is the floor of notBefore for builds without a
// commit time.
var earliestPlausible = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// doctorCmd is `intercom doctor [-config PATH]`: the installer's checks at
// the board, one line each, with a fix for each failure. It never starts
// the station, plays sound or claims a pin.
func doctorCmd(args []string, stdout, stderr io.Writer) error {
	path, err := configFlag("doctor", args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	env := doctorEnv{
		clock:        clock.Real{},
		notBefore:    buildTime(),
		root:         "/",
		ifaceAddrs:   interfaceAddrs,
		resolver:     sipdns.New(sipdns.Config{}),
		sipTimeout:   2 * time.Second,
		soundDevices: portAudioDevices,
		gpioInit:     func() error { return hostBoard{}.init() },
		lookupPin:    boardPin,
	}
	return doctor(ctx, env, path, stdout)
}

// doctor runs every check on the config at path and prints the results.
// A config that does not load is a usage error (exit 2); the checks that
// need no config still run so the installer sees them at once.
func doctor(ctx context.Context, env doctorEnv, path string, w io.Writer) error {
	var results []result
	local, cfg, err := loadLocal(path)
	if err != nil {
		print1(w, result{fail, "config: " + path + " does not load", "correct the problems below; `intercom config check " + path + "` repeats them"})
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(w, "     %s\n", line)
		}
	} else {
		results = append(results, result{ok, "config: " + path + " parses and validates", ""})
	}
	results = append(results, checkClock(env.clock.Now(), env.notBefore))
	results = append(results, checkNetwork(env.root, env.ifaceAddrs, cfg == nil || needsUplink(cfg)))
	if cfg != nil && cfg.Provisioning.URL != "" {
		results = append(results, checkProvisioning(ctx, local, cfg.Provisioning))
		// The checks below look at what the station would run.
		if store, err := provisioning.OpenStore(provisioningDir(cfg.Provisioning)); err == nil {
			cfg = effective(store, local, cfg)
		}
	}
	if cfg != nil {
		results = append(results, checkRegistrar(ctx, cfg.SIP, env.resolver, env.sipTimeout)...)
		results = append(results, checkSound(cfg.Audio, env.soundDevices)...)
		results = append(results, checkPrompts(cfg.Audio.Prompts)...)
		results = append(results, checkGPIO(cfg, env.gpioInit, env.lookupPin)...)
	}
	failed := 0
	for _, r := range results {
		print1(w, r)
		if r.status == fail {
			failed++
		}
	}
	switch {
	case cfg == nil:
		return usageError{fmt.Errorf("doctor: %s does not load", path)}
	case failed > 0:
		return fmt.Errorf("doctor: %d check(s) failed", failed)
	}
	return nil
}

// checkProvisioning fetches the provisioned documents once, without
// storing or applying them, and checks that they merge over the local file.
func checkProvisioning(ctx context.Context, local config.Layer, pc config.Provisioning) result {
	const fix = "check provisioning.url and the server; the station keeps its last good documents meanwhile"
	stationURL, commonURL, err := expandURLs(pc)
	if err != nil {
		return result{fail, "provisioning: " + err.Error(), "set the placeholders' sources or change provisioning.url"}
	}
	var key ed25519.PublicKey
	if pc.PublicKey != "" {
		if key, err = provisioning.ParsePublicKey(pc.PublicKey); err != nil {
			return result{fail, "provisioning: " + err.Error(), "set provisioning.public_key to the server's ed25519 key"}
		}
	}
	client, err := provisioning.NewClient(provisioning.TLSConfig{CA: pc.CA, ClientCert: pc.ClientCert, ClientKey: pc.ClientKey})
	if err != nil {
		return result{fail, "provisioning: " + err.Error(), "check provisioning.ca, client_cert and client_key"}
	}
	var b provisioning.Bundle
	for _, d := range []struct {
		url string
		doc *provisioning.Document
	}{{commonURL, &b.Common}, {stationURL, &b.Station}} {
		if d.url == "" {
			continue
		}
		src := provisioning.Source{URL: d.url, User: pc.User, Password: pc.Password, Token: pc.Token, PublicKey: key}
		if *d.doc, _, err = provisioning.Fetch(ctx, client, src, provisioning.Document{}); err != nil {
			return result{fail, err.Error(), fix}
		}
	}
	if _, err := config.ParseLayers(local, layers(b)...); err != nil {
		return result{fail, "provisioning: the documents would be refused: " + strings.ReplaceAll(err.Error(), "\n", "; "), "correct the documents on the server"}
	}
	return result{ok, "provisioning: " + provisioning.MaskURL(stationURL) + " fetched; it merges over the local file and validates", ""}
}

type status string

const (
	ok   status = "ok"
	warn status = "warn"
	fail status = "FAIL"
)

// result is one line of the doctor's report.
type result struct {
	status status
	what   string // what was checked and what was found
	fix    string // what to do; empty when nothing is to be done
}

func print1(w io.Writer, r result) {
	line := fmt.Sprintf("%-4s %s", r.status, r.what)
	if r.fix != "" {
		line += "; fix: " + r.fix
	}
	fmt.Fprintln(w, line)
}

// buildTime is the commit time stamped into the binary, or
// earliestPlausible when it is older or absent: the clock cannot be
// behind the code it runs.
func buildTime() time.Time {
	t := earliestPlausible
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key != "vcs.time" {
				continue
			}
			if bt, err := time.Parse(time.RFC3339, s.Value); err == nil && bt.After(t) {
				t = bt
			}
		}
	}
	return t
}

func checkClock(now, notBefore time.Time) result {
	if now.Before(notBefore) {
		return result{fail, fmt.Sprintf("clock: %s is before %s, the clock was never set (TLS and schedules need the time)",
			now.UTC().Format(time.RFC3339), notBefore.UTC().Format("2006-01-02")),
			"enable NTP: timedatectl set-ntp true"}
	}
	return result{ok, "clock: " + now.UTC().Format(time.RFC3339) + " is plausible", ""}
}

// needsUplink tells whether the station must reach beyond its own LAN; a
// peer-to-peer station calling phones next to it needs no default route.
func needsUplink(cfg *config.Config) bool {
	return cfg.SIP.Registrar != "" || cfg.SIP.OutboundProxy != "" || cfg.Provisioning.URL != ""
}

// defaultRoute is a route to anywhere found in the kernel's tables.
type defaultRoute struct {
	iface   string
	gateway netip.Addr // invalid for a route without a gateway
}

func checkNetwork(root string, ifaceAddrs func(string) ([]net.Addr, error), needed bool) result {
	routes, err := defaultRoutes(root)
	if err != nil {
		return result{fail, "network: " + err.Error(), "run doctor on the board itself, where /proc is mounted"}
	}
	if len(routes) == 0 {
		r := result{fail, "network: no default route", "connect the network cable or set up Wi-Fi (sudo nmtui), then check `ip route`"}
		if !needed {
			r.status, r.what = warn, "network: no default route (fine for a peer-to-peer station on its own LAN)"
		}
		return r
	}
	var tried []string
	for _, rt := range routes {
		addrs, err := ifaceAddrs(rt.iface)
		if err != nil {
			tried = append(tried, fmt.Sprintf("%s: %v", rt.iface, err))
			continue
		}
		for _, a := range addrs {
			ipn, isIP := a.(*net.IPNet)
			if isIP && ipn.IP.IsGlobalUnicast() {
				via := ""
				if rt.gateway.IsValid() {
					via = " via " + rt.gateway.String()
				}
				return result{ok, fmt.Sprintf("network: default route%s on %s, address %s", via, rt.iface, ipn.IP), ""}
			}
		}
		tried = append(tried, rt.iface+" has no usable address")
	}
	return result{fail, "network: default route, but " + strings.Join(tried, "; "),
		"check the cable and the DHCP server (nmcli device status, journalctl -u NetworkManager)"}
}

// Route flags of the kernel's route tables (linux/route.h).
const (
	rtfUp     = 0x0001
	rtfReject = 0x0200
)

// defaultRoutes reads the IPv4 and IPv6 default routes from proc/net
// under root, IPv4 first. A machine without IPv6 has no ipv6_route.
func defaultRoutes(root string) ([]defaultRoute, error) {
	var routes []defaultRoute
	err := eachRouteLine(filepath.Join(root, "proc/net/route"), func(f []string) {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" || !hexFlags(f[3], rtfUp, rtfReject) {
			return
		}
		rt := defaultRoute{iface: f[0]}
		if b, err := hex.DecodeString(f[2]); err == nil && len(b) == 4 && f[2] != "00000000" {
			// The kernel prints the address in host order: little endian here.
			rt.gateway = netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]})
		}
		routes = append(routes, rt)
	})
	if err != nil {
		return nil, err
	}
	err = eachRouteLine(filepath.Join(root, "proc/net/ipv6_route"), func(f []string) {
		// dst dst_len src src_len next_hop metric refcnt use flags iface
		if len(f) < 10 || strings.Trim(f[0], "0") != "" || f[1] != "00" || f[9] == "lo" || !hexFlags(f[8], rtfUp, rtfReject) {
			return
		}
		rt := defaultRoute{iface: f[9]}
		if b, err := hex.DecodeString(f[4]); err == nil && len(b) == 16 {
			if gw := netip.AddrFrom16([16]byte(b)); !gw.IsUnspecified() {
				rt.gateway = gw
			}
		}
		routes = append(routes, rt)
	})
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	return routes, err
}

// hexFlags tells whether the hex flags s have all of set and none of unset.
func hexFlags(s string, set, unset uint64) bool {
	v, err := strconv.ParseUint(s, 16, 32)
	return err == nil && v&set == set && v&unset == 0
}

func eachRouteLine(path string, fn func(fields []string)) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read routes: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fn(strings.Fields(sc.Text()))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read routes: %s: %w", path, err)
	}
	return nil
}

func interfaceAddrs(name string) ([]net.Addr, error) {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return nil, err
	}
	return ifc.Addrs()
}

// checkRegistrar resolves the first hop of the station's SIP traffic (the
// outbound proxy when set, else the registrar) as the SIP agent does (RFC
// 3263: NAPTR, SRV, then A/AAAA) and sends each target an OPTIONS in order
// until one answers: any SIP answer, even 401 or 404, shows that it is
// reachable.
func checkRegistrar(ctx context.Context, s config.SIP, r resolver, timeout time.Duration) []result {
	if s.Registrar == "" && s.OutboundProxy == "" {
		return []result{{ok, "registrar: none set (peer-to-peer), nothing to reach", ""}}
	}
	key, server := "sip.registrar", s.Registrar
	if s.OutboundProxy != "" {
		key, server = "sip.outbound_proxy", s.OutboundProxy
	}
	host, port, err := sipServer(server)
	if err != nil {
		return []result{{fail, fmt.Sprintf("registrar: %s %q: %v", key, server, err), "write " + key + " as host or host:port"}}
	}
	q := sipdns.Query{Host: host, Port: port, Transport: s.Transport}
	var tlsConf *tls.Config
	if s.Transport == "tls" {
		// As the SIP agent does: the certificate must name the configured
		// host.
		t, err := sipagent.LoadTLS(s.TLS.CA, "", "", s.TLS.ClientCert, s.TLS.ClientKey)
		if err != nil {
			return []result{{fail, "registrar: " + err.Error(), "check the files named in sip.tls"}}
		}
		tlsConf = &tls.Config{RootCAs: t.RootCAs, ServerName: host, MinVersion: tls.VersionTLS12}
		if t.ClientCertificate != nil {
			tlsConf.Certificates = []tls.Certificate{*t.ClientCertificate}
		}
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	targets, err := r.Resolve(rctx, q)
	cancel()
	if err == nil && len(targets) == 0 {
		err = errors.New("no addresses")
	}
	if err != nil {
		return []result{{fail, fmt.Sprintf("registrar: %s %s does not resolve: %v", key, host, err),
			"check the name in " + key + " and the DNS server (resolvectl status or /etc/resolv.conf)"}}
	}
	addrs := make([]string, len(targets))
	for i, t := range targets {
		addrs[i] = t.Addr.String()
	}
	dns := result{ok, fmt.Sprintf("registrar: %s resolves to %s", host, strings.Join(addrs, ", ")), ""}
	switch s.Transport {
	case "udp", "tcp", "tls":
	default:
		return []result{dns, {warn, fmt.Sprintf("registrar: reachability over %s not checked", s.Transport), ""}}
	}
	var failures []string
	for _, addr := range addrs {
		answer, err := sipOptions(ctx, s.Transport, addr, host, timeout, tlsConf)
		if err == nil {
			return []result{dns, {ok, fmt.Sprintf("registrar: %s answers OPTIONS over %s: %s", addr, s.Transport, answer), ""}}
		}
		failures = append(failures, fmt.Sprintf("%s: %v", addr, err))
	}
	fix := "check that the PBX runs and listens on " + strings.Join(addrs, " or ") + ", and that no firewall drops SIP"
	if tlsConf != nil {
		fix += "; its certificate must name " + host + " and chain to sip.tls.ca (or the system roots)"
	}
	return []result{dns, {fail, fmt.Sprintf("registrar: no SIP answer over %s: %s", s.Transport, strings.Join(failures, "; ")), fix}}
}

// sipServer splits a server as the SIP agent takes it (host[:port] or a
// sip: URI) into host and port; port 0 means the URI names none, which
// lets DNS (SRV) choose it.
func sipServer(s string) (string, int, error) {
	text := s
	if !strings.HasPrefix(strings.ToLower(s), "sip:") {
		text = "sip:" + s
	}
	var u sip.Uri
	if err := sip.ParseUri(text, &u); err != nil {
		return "", 0, err
	}
	if u.Host == "" || u.User != "" {
		return "", 0, errors.New("need a sip host")
	}
	if u.Port < 0 || u.Port >= 1<<16 {
		return "", 0, fmt.Errorf("bad port %d", u.Port)
	}
	return strings.Trim(u.Host, "[]"), u.Port, nil
}

// sipOptions sends an OPTIONS to addr and returns the status line of the
// first SIP response. Over UDP it resends at 500 ms and 1 s, as SIP's
// timer A does, so that one lost datagram does not fail the check. With
// tlsConf (network "tls") it talks TLS over TCP.
func sipOptions(ctx context.Context, network, addr, host string, timeout time.Duration, tlsConf *tls.Config) (string, error) {
	deadline := time.Now().Add(timeout)
	d := net.Dialer{Deadline: deadline}
	dialNet := network
	if tlsConf != nil {
		dialNet = "tcp"
	}
	conn, err := d.DialContext(ctx, dialNet, addr)
	if err != nil {
		return "", err
	}
	if tlsConf != nil {
		hctx, cancel := context.WithDeadline(ctx, deadline)
		tc := tls.Client(conn, tlsConf)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			conn.Close()
			return "", fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	req := optionsRequest(strings.ToUpper(network), conn.LocalAddr().String(), host)
	buf := make([]byte, 65535)
	resend := 500 * time.Millisecond
	for {
		if _, err := conn.Write(req); err != nil {
			return "", err
		}
		wait := deadline
		if network == "udp" {
			if next := time.Now().Add(resend); next.Before(deadline) {
				wait = next
			}
			resend *= 2
		}
		if err := conn.SetReadDeadline(wait); err != nil {
			return "", err
		}
		n, err := conn.Read(buf)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && ctx.Err() == nil && time.Now().Before(deadline) {
			continue
		}
		if err != nil {
			if ctx.Err() != nil {
				return "", ctx.Err()
			}
			return "", err
		}
		line, _, _ := strings.Cut(string(buf[:n]), "\r\n")
		if !strings.HasPrefix(line, "SIP/2.0 ") {
			return "", fmt.Errorf("answer is not SIP: %q", truncate(line, 40))
		}
		return strings.TrimPrefix(line, "SIP/2.0 "), nil
	}
}

func optionsRequest(transport, local, host string) []byte {
	target := host
	if strings.Contains(host, ":") {
		target = "[" + host + "]"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "OPTIONS sip:%s SIP/2.0\r\n", target)
	fmt.Fprintf(&b, "Via: SIP/2.0/%s %s;branch=z9hG4bK%s;rport\r\n", transport, local, randomToken())
	b.WriteString("Max-Forwards: 70\r\n")
	fmt.Fprintf(&b, "From: <sip:doctor@%s>;tag=%s\r\n", target, randomToken())
	fmt.Fprintf(&b, "To: <sip:%s>\r\n", target)
	fmt.Fprintf(&b, "Call-ID: %s\r\n", randomToken())
	b.WriteString("CSeq: 1 OPTIONS\r\n")
	fmt.Fprintf(&b, "Contact: <sip:doctor@%s>\r\n", local)
	b.WriteString("User-Agent: intercom-doctor\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n")
	return []byte(b.String())
}

func randomToken() string { return rand.Text()[:16] }

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}

// checkSound checks that the sound devices the config names exist,
// without opening them: doctor plays no sound.
// checkPrompts loads the recorded prompts as the station does at start,
// since config check only sees their names.
func checkPrompts(p config.Prompts) []result {
	if p == (config.Prompts{}) {
		return nil
	}
	if _, err := loadPrompts(p); err != nil {
		return []result{{fail, "sound: " + err.Error(), "fix the file or empty the key to use the generated tone"}}
	}
	return []result{{ok, "sound: the recorded prompts load", ""}}
}

func checkSound(a config.Audio, devices func() ([]media.AudioDevice, error)) []result {
	switch a.Backend {
	case "portaudio":
		devs, err := devices()
		if err != nil {
			return []result{{fail, "sound: " + err.Error(),
				"plug in the sound card (aplay -l lists it) and add this user to group audio; a build without PortAudio needs audio.backend: file"}}
		}
		return []result{soundDevice(devs, "audio.input", a.Input, true), soundDevice(devs, "audio.output", a.Output, false)}
	case "file":
		return []result{soundInputFile(a.Input), soundOutputFile(a.Output)}
	default:
		return []result{{ok, fmt.Sprintf("sound: audio.backend %s, no devices to check", a.Backend), ""}}
	}
}

// soundDevice finds name among devs the way the portaudio backend does:
// by exact name, or the default device for "default" or "".
func soundDevice(devs []media.AudioDevice, key, name string, input bool) result {
	dir := "output"
	if input {
		dir = "input"
	}
	var names []string
	for _, d := range devs {
		channels, isDefault := d.MaxOutputChannels, d.DefaultOutput
		if input {
			channels, isDefault = d.MaxInputChannels, d.DefaultInput
		}
		if channels == 0 {
			continue
		}
		if (name == "" || name == "default") && isDefault || d.Name == name {
			return result{ok, fmt.Sprintf("sound: %s %q is %s device %q (%s)", key, name, dir, d.Name, d.HostAPI), ""}
		}
		names = append(names, strconv.Quote(d.Name))
	}
	have := "none"
	if len(names) > 0 {
		have = strings.Join(names, ", ")
	}
	if name == "" || name == "default" {
		return result{fail, fmt.Sprintf("sound: no default %s device (have %s)", dir, have),
			"plug in the sound card, or set " + key + " to one of the names `intercom audio devices` lists"}
	}
	return result{fail, fmt.Sprintf("sound: %s %q: no such %s device (have %s)", key, name, dir, have),
		"set " + key + " to one of the names `intercom audio devices` lists"}
}

func soundInputFile(path string) result {
	if path == "" {
		return result{fail, "sound: audio.input is empty", "set audio.input to a mono 16-bit 8 kHz WAV file"}
	}
	if _, err := media.NewBackend("file", media.BackendConfig{Input: path}); err != nil {
		return result{fail, "sound: audio.input: " + err.Error(),
			"make " + path + " a readable mono 16-bit 8 kHz WAV (sox IN -r 8000 -c 1 -b 16 " + path + ")"}
	}
	return result{ok, "sound: audio.input " + path + " is a readable WAV", ""}
}

func soundOutputFile(path string) result {
	if path == "" {
		return result{fail, "sound: audio.output is empty", "set audio.output to a WAV path in a writable directory"}
	}
	if err := writable(path); err != nil {
		return result{fail, "sound: audio.output: " + err.Error(),
			"make " + filepath.Dir(path) + " writable for this user, or point audio.output elsewhere"}
	}
	return result{ok, "sound: audio.output " + path + " can be written", ""}
}

// writable tells whether path can be written without changing it: an
// existing file is opened for writing, else a scratch file is made next
// to it and removed.
func writable(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if errors.Is(err, os.ErrNotExist) {
		f, err = os.CreateTemp(filepath.Dir(path), ".intercom-doctor-*")
		if err == nil {
			defer os.Remove(f.Name())
		}
	}
	if err != nil {
		return err
	}
	return f.Close()
}

func portAudioDevices() ([]media.AudioDevice, error) {
	terminate, err := media.InitPortAudio()
	if err != nil {
		return nil, err
	}
	devs, err := media.PortAudioDevices()
	return devs, errors.Join(err, terminate())
}

// configPin is a pin the config names, with the key that names it.
type configPin struct{ key, pin string }

func configPins(cfg *config.Config) []configPin {
	var pins []configPin
	for _, b := range cfg.Buttons {
		pins = append(pins, configPin{fmt.Sprintf("buttons %q", b.Name), b.Pin})
	}
	for _, r := range cfg.Relays {
		if r.URL == "" { // an HTTP relay has no pin
			pins = append(pins, configPin{fmt.Sprintf("relays %q", r.Name), r.Pin})
		}
	}
	for _, in := range cfg.Inputs {
		pins = append(pins, configPin{fmt.Sprintf("inputs %q", in.Name), in.Pin})
	}
	for _, l := range cfg.LEDs {
		pins = append(pins, configPin{fmt.Sprintf("leds %q", l.Name), l.Pin})
	}
	return pins
}

// checkGPIO checks that each pin the config names exists and that no
// other program holds it. It reads the kernel's line info only: reading
// or configuring a line would claim it and could switch on a pull-up
// that energises a relay module.
func checkGPIO(cfg *config.Config, initHost func() error, lookup pinLookup) []result {
	if cfg.GPIO.Driver == "sim" {
		return []result{{ok, "gpio: driver sim, pins are virtual, nothing to check on the board", ""}}
	}
	pins := configPins(cfg)
	if len(pins) == 0 {
		return []result{{ok, "gpio: no pins configured", ""}}
	}
	if err := initHost(); err != nil {
		return []result{{fail, err.Error(), "run on the board as a user in group gpio (sudo usermod -aG gpio $USER), or set gpio.driver: sim"}}
	}
	results := make([]result, 0, len(pins))
	for _, p := range pins {
		what := fmt.Sprintf("gpio: %s pin %s", p.key, p.pin)
		st, err := lookup(p.pin)
		switch {
		case err != nil:
			results = append(results, result{fail, what + ": " + err.Error(), "check the pin with `intercom gpio list`"})
		case !st.exists:
			results = append(results, result{fail, what + ": no such line on this board", "use a name `intercom gpio list` shows"})
		case st.consumer != "":
			fix := "stop that program (or remove the dtoverlay that claims it from /boot/firmware/config.txt), or pick another pin"
			if strings.HasPrefix(st.consumer, "intercom") {
				fix = "stop the running station first: sudo systemctl stop intercom"
			}
			results = append(results, result{fail, fmt.Sprintf("%s is claimed by %q", what, st.consumer), fix})
		case !st.known:
			results = append(results, result{warn, what + " exists; this driver does not tell whether another program holds it", ""})
		default:
			results = append(results, result{ok, what + " exists and is free", ""})
		}
	}
	return results
}

// lineConsumer is the gpio character device driver's line, whose line
// info (read by host.Init, without requesting the line) names its holder.
type lineConsumer interface{ Consumer() string }

// boardPin looks name up in periph's registry; host.Init must have run.
func boardPin(name string) (pinStatus, error) {
	p := gpioreg.ByName(name)
	if p == nil {
		return pinStatus{}, nil
	}
	if r, isAlias := p.(pgpio.RealPin); isAlias {
		p = r.Real()
	}
	st := pinStatus{exists: true}
	if c, isLine := p.(lineConsumer); isLine {
		st.known, st.consumer = true, c.Consumer()
	}
	return st, nil
}
