// Package e2e holds the end-to-end acceptance tests: the intercom binary
// against real SIP peers (kamailio as registrar, baresip as the flat's
// phones, sipp for scripted calls and RFC 4733 digits, nginx as the
// provisioning server) on loopback. Tests
// assert what the peers saw and heard and what the HTTP API reports, never
// the station's log lines.
//
// The peers are Debian packages. Without them the tests skip, unless
// INTERCOM_E2E=1 (CI), where a missing tool is a failure; -short skips
// everything. The TestPeers* tests exercise the harness on the peers alone,
// so a failure can be placed on the harness or on the station.
package e2e

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const installHint = "install with: apt-get install kamailio kamailio-tls-modules baresip-core sip-tester sox nginx-light dnsmasq-base"

// lookTool finds a peer's binary. kamailio and kamcmd live in /usr/sbin,
// which is not on an ordinary user's PATH.
func lookTool(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s not found", name)
}

// requireTools skips the test when a peer is missing, or fails it in CI.
// Every end-to-end test passes through it or intercomBinary, so both also
// skip in -short mode.
func requireTools(t testing.TB, names ...string) {
	t.Helper()
	skipShort(t)
	var missing []string
	for _, n := range names {
		if _, err := lookTool(n); err != nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		missingPeer(t, strings.Join(missing, ", "))
	}
}

func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
}

// missingPeer skips the test, or fails it in CI (INTERCOM_E2E=1).
func missingPeer(t testing.TB, what string) {
	t.Helper()
	msg := fmt.Sprintf("missing %s; %s", what, installHint)
	if os.Getenv("INTERCOM_E2E") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// requirePeers checks for every peer at the start of a test, before any of
// them is started.
func requirePeers(t testing.TB) {
	t.Helper()
	requireTools(t, "kamailio", "kamcmd", "baresip", "sipp", "sox")
}

// tool returns the path of a peer checked by requireTools.
func tool(t testing.TB, name string) string {
	t.Helper()
	p, err := lookTool(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// simPorts are the fixed ports of examples/sim.yaml (SIP 5060, API 8080)
// and of the README's softphone (SIP 5070, TLS 5071), which
// TestSimExampleWithSoftphone uses as they are.
var simPorts = []int{5060, 5070, 5071, 8080}

var (
	portMu sync.Mutex
	// taken starts with simPorts so that freePorts never hands them out,
	// whatever the system's ephemeral port range.
	taken    = reserve(simPorts)
	loopback = net.IPv4(127, 0, 0, 1)
)

func reserve(ports []int) map[int]bool {
	m := map[int]bool{}
	for _, p := range ports {
		m[p] = true
	}
	return m
}

// freePorts returns the first of n consecutive ports that are free for both
// UDP and TCP on 127.0.0.1 (baresip listens on UDP and TCP at its SIP port
// and on TLS at the next one). Ports handed out once are never handed out
// again by this process, so parallel tests do not collide. They come from
// portBand when there is one.
func freePorts(t testing.TB, n int) int {
	t.Helper()
	portMu.Lock()
	defer portMu.Unlock()
	for range 200 {
		base := 0
		if lo := portBand(); lo > 0 {
			base = lo + rand.IntN(65535-n-lo+1)
		} else {
			probe, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopback})
			if err != nil {
				t.Fatalf("free port: %v", err)
			}
			base = probe.LocalAddr().(*net.UDPAddr).Port
			probe.Close()
		}
		if base+n > 65535 {
			continue
		}
		ok := true
		for p := base; p < base+n && ok; p++ {
			ok = !taken[p] && portFree(p)
		}
		if ok {
			for p := base; p < base+n; p++ {
				taken[p] = true
			}
			return base
		}
	}
	t.Fatalf("free port: no %d consecutive free ports found", n)
	return 0
}

// portBand is the lowest port of the band freePorts draws from: above the
// kernel's ephemeral range and above the RTP ports that baresip (1024-49152)
// and the station (16384-32766) pick at random. A port between being handed
// out and its owner binding it is free to anyone, and in that band no
// parallel test's peer takes it for a connection, a socket bound to port 0
// or its RTP. It is 0 when the band holds fewer than 1000 ports; freePorts
// then takes the kernel's ephemeral ports.
var portBand = sync.OnceValue(func() int {
	lo, hi := 0, 0
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	if _, err := fmt.Sscan(string(b), &lo, &hi); err != nil {
		return 0
	}
	band := max(hi, 49152) + 1
	if 65535-band < 1000 {
		return 0
	}
	return band
})

func portFree(port int) bool {
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopback, Port: port})
	if err != nil {
		return false
	}
	defer u.Close()
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: loopback, Port: port})
	if err != nil {
		return false
	}
	return l.Close() == nil
}

// proc is a peer or station process. Its combined output goes to a file in
// the test's directory, dumped into the test log if the test fails.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	err     error // valid after done is closed
}

// startProc starts a process in its own process group (kamailio forks
// workers) and arranges for it to be stopped when the test ends. It runs in
// dir, where its log goes too.
func startProc(t testing.TB, dir, name string, path string, args ...string) *proc {
	t.Helper()
	return startProcIn(t, dir, dir, name, path, args...)
}

// startProcIn is startProc with the working directory apart from the
// directory of the log.
func startProcIn(t testing.TB, workDir, logDir, name string, path string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(logDir, name+".log")
	out, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	fmt.Fprintf(out, "=== %s %s\n", path, strings.Join(args, " "))
	cmd := exec.Command(path, args...)
	cmd.Dir = workDir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		t.Fatalf("%s: start: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			p.dump(t)
		}
	})
	return p
}

// exited reports whether the process has ended, with its exit error.
func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// alive is a condition for eventually: it fails fast when a process that
// should keep running has died.
func (p *proc) alive() error {
	if done, err := p.exited(); done {
		return fmt.Errorf("%s exited early: %v", p.name, err)
	}
	return nil
}

// stop sends SIGTERM to the process group, then SIGKILL if it lingers.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	if done, _ := p.exited(); done {
		return
	}
	pgid := -p.cmd.Process.Pid
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		t.Logf("%s: no exit 5s after SIGTERM, sending SIGKILL", p.name)
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
}

// wait waits for the process to end by itself.
func (p *proc) wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %v", p.name, timeout)
	}
}

// dump logs the last part of the process output.
func (p *proc) dump(t testing.TB) {
	t.Helper()
	dumpFile(t, p.name, p.logPath)
}

func dumpFile(t testing.TB, name, path string) {
	t.Helper()
	const limit = 64 << 10
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		t.Logf("--- %s: none", name)
		return
	}
	if err != nil {
		t.Logf("--- %s: %v", name, err)
		return
	}
	if len(data) > limit {
		data = append([]byte("[...]\n"), data[len(data)-limit:]...)
	}
	t.Logf("--- %s (%s):\n%s", name, path, data)
}

const pollInterval = 50 * time.Millisecond

// eventually polls cond until it returns nil, failing the test with the last
// error when timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := poll(timeout, cond); err != nil {
		t.Fatalf("%s: not within %v: %v", what, timeout, err)
	}
}

func poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(pollInterval)
	}
}

// consistently checks that cond keeps returning nil for the whole duration:
// the way to assert that something does not happen.
func consistently(t testing.TB, d time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		if err := cond(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(pollInterval)
	}
}

// all combines conditions for eventually, checked in order.
func all(conds ...func() error) func() error {
	return func() error {
		for _, c := range conds {
			if err := c(); err != nil {
				return err
			}
		}
		return nil
	}
}

// sineWAV writes an 8 kHz mono 16-bit WAV with a sine tone (sox).
func sineWAV(t testing.TB, path string, freq int, seconds int) {
	t.Helper()
	cmd := exec.Command(tool(t, "sox"), "-n", "-r", "8000", "-c", "1", "-b", "16", path,
		"synth", fmt.Sprint(seconds), "sine", fmt.Sprint(freq), "vol", "0.5")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sox: %v\n%s", err, out)
	}
}

// event is one event of a peer or of the station: baresip's ctrl_tcp JSON
// events and the station's Server-Sent Events alike.
type event struct {
	Type   string
	Fields map[string]any
	Raw    string
	At     time.Time
}

// eventLog collects events in arrival order; tests mark a position and wait
// for events after it.
type eventLog struct {
	mu     sync.Mutex
	events []event
	closed error
}

func (l *eventLog) add(e event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.At = time.Now()
	l.events = append(l.events, e)
}

// close records why no more events will come (connection ended).
func (l *eventLog) close(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		err = errors.New("event stream ended")
	}
	l.closed = err
}

// mark returns the position of the next event.
func (l *eventLog) mark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.events)
}

// since returns the events from position i on, of the given types (all
// types when none are given).
func (l *eventLog) since(i int, types ...string) []event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []event
	for _, e := range l.events[min(i, len(l.events)):] {
		if len(types) == 0 || slices.Contains(types, e.Type) {
			out = append(out, e)
		}
	}
	return out
}

// waitFor waits for the first event of type typ at or after position i.
func (l *eventLog) waitFor(t testing.TB, i int, typ string, timeout time.Duration) event {
	t.Helper()
	var found event
	eventually(t, timeout, "event "+typ, func() error {
		if es := l.since(i, typ); len(es) > 0 {
			found = es[0]
			return nil
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.closed != nil {
			return fmt.Errorf("%w; got %s", l.closed, l.summaryLocked(i))
		}
		return fmt.Errorf("got %s", l.summaryLocked(i))
	})
	return found
}

// summary lists the types of the events from position i, for messages.
func (l *eventLog) summary(i int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.summaryLocked(i)
}

func (l *eventLog) summaryLocked(i int) string {
	var types []string
	for _, e := range l.events[min(i, len(l.events)):] {
		types = append(types, e.Type)
	}
	return "[" + strings.Join(types, " ") + "]"
}

// logEvents writes every event into the test log (for failures).
func (l *eventLog) logEvents(t testing.TB, name string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, e := range l.events {
		fmt.Fprintf(&b, "%s %s\n", e.At.Format("15:04:05.000"), e.Raw)
	}
	t.Logf("--- %s events:\n%s", name, b.String())
}

// grepFile reports whether a file contains a line with all the given parts.
func grepFile(path string, parts ...string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		ok := true
		for _, p := range parts {
			if !strings.Contains(line, p) {
				ok = false
				break
			}
		}
		if ok {
			return true, nil
		}
	}
	return false, sc.Err()
}
