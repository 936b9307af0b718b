//go:build linux

// Command bench compares the door station with baresip on this machine
// (issue 3, acceptance 4): the same G.711 call, placed by a baresip caller
// on loopback, is answered once by `intercom run` and once by baresip, and
// the CPU time and peak RSS of each answering process are printed side by
// side. It then measures the station's software-path latency at 0 jitter
// with a media.Session between a paced test source and sink and a raw UDP
// peer. Budgets are printed as PASS or OVER; only a broken setup makes it
// exit non-zero.
//
//	go run ./e2e/bench -intercom bin/intercom -seconds 60
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pion/rtp"
	"github.com/zaf/g711"

	"intercom/media"
	"intercom/media/wav"
)

const (
	ptime      = 20 * time.Millisecond
	jitterMin  = 20 * time.Millisecond
	rate       = 8000
	phaseSteps = 4
)

func main() {
	seconds := 60
	if s := os.Getenv("BENCH_SECONDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 {
			fmt.Fprintf(os.Stderr, "bench: BENCH_SECONDS=%q: want a whole number of seconds >= 2\n", s)
			os.Exit(2)
		}
		seconds = n
	}
	bin := flag.String("intercom", "bin/intercom", "the station binary to run")
	flag.IntVar(&seconds, "seconds", seconds, "length of each call (default: BENCH_SECONDS or 60)")
	latSeconds := flag.Int("latency-seconds", 12, "length of each latency measurement")
	keep := flag.Bool("keep", false, "keep the working directory (configs, logs, recordings)")
	flag.Parse()
	if err := run(*bin, time.Duration(seconds)*time.Second, time.Duration(*latSeconds)*time.Second, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(bin string, callLen, latLen time.Duration, keep bool) (err error) {
	baresip, err := exec.LookPath("baresip")
	if err != nil {
		return fmt.Errorf("%w (install baresip-core)", err)
	}
	if bin, err = filepath.Abs(bin); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "intercom-bench")
	if err != nil {
		return err
	}
	defer func() {
		// Keep the configs, logs and recordings to look at after a failure.
		if keep || err != nil {
			fmt.Println("working directory kept:", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()

	fmt.Printf("== whole process: a %v G.711 call (PCMU, ptime %v) from a baresip caller, peer-to-peer on loopback\n", callLen, ptime)
	st, err := callScenario(filepath.Join(dir, "station"), baresip, callLen, func(d string, port int) (*proc, string, error) {
		return startStation(d, bin, port)
	})
	if err != nil {
		return fmt.Errorf("station: %w", err)
	}
	bs, err := callScenario(filepath.Join(dir, "baresip"), baresip, callLen, func(d string, port int) (*proc, string, error) {
		return startBaresipCallee(d, baresip, port, callLen)
	})
	if err != nil {
		return fmt.Errorf("baresip: %w", err)
	}
	printProcess(st, bs)
	fmt.Printf("\n== station software path at 0 jitter (media.Session, ptime %v, jitter.min %v), %v each way\n", ptime, jitterMin, latLen)
	// Where packets arrive within the speaker's frame period decides up to
	// a frame of the receive delay; a real call gets any phase, so the
	// measurement spreads over phaseSteps of them.
	var rx, tx []time.Duration
	for i := range phaseSteps {
		phase := ptime * time.Duration(2*i+1) / (2 * phaseSteps)
		r, t, err := measureLatency(latLen/phaseSteps, phase)
		if err != nil {
			return fmt.Errorf("latency: %w", err)
		}
		rx, tx = append(rx, r...), append(tx, t...)
	}
	printLatency("receive (RTP arrival -> samples to sink)", rx, jitterMin+ptime)
	printLatency("send (source frame -> RTP on the wire)", tx, ptime+time.Millisecond)
	return nil
}

// result is what one answering process cost during a call.
type result struct {
	cpu         time.Duration // user+sys over its life (rusage of the child)
	hwm         int64         // VmHWM in KiB, read just before it was stopped
	switches    int64         // voluntary and involuntary context switches over its life
	played      float64       // seconds of the caller's audio it played or recorded
	callerHeard float64       // seconds of its audio the caller recorded
}

// callScenario starts an answering process, lets a baresip caller talk to
// it for callLen, hangs up and collects the figures.
func callScenario(dir, baresip string, callLen time.Duration, start func(dir string, port int) (*proc, string, error)) (result, error) {
	var r result
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return r, err
	}
	port, err := freePorts(2)
	if err != nil {
		return r, err
	}
	callee, played, err := start(filepath.Join(dir, "callee"), port)
	if err != nil {
		return r, err
	}
	defer callee.stop()
	if err := waitBound(callee, port, 10*time.Second); err != nil {
		return r, err
	}
	caller, heard, err := startCaller(filepath.Join(dir, "caller"), baresip, port, callLen)
	if err != nil {
		return r, err
	}
	defer caller.stop()

	time.Sleep(callLen)
	if done, err := callee.exited(); done {
		return r, fmt.Errorf("%s exited during the call: %v (log %s)", callee.name, err, callee.log)
	}
	if r.hwm, err = vmHWM(callee.cmd.Process.Pid); err != nil {
		return r, err
	}
	caller.stop() // baresip sends BYE on SIGTERM
	time.Sleep(500 * time.Millisecond)
	callee.stop()
	ru, ok := callee.cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		return r, errors.New("no rusage for the answering process")
	}
	r.cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	r.switches = int64(ru.Nvcsw + ru.Nivcsw)
	r.played, r.callerHeard = wavSeconds(played), wavSeconds(heard)
	if r.played < callLen.Seconds()/2 || r.callerHeard < callLen.Seconds()/2 {
		return r, fmt.Errorf("the call carried too little audio (callee played %.1fs, caller recorded %.1fs); logs in %s",
			r.played, r.callerHeard, dir)
	}
	return r, nil
}

func printProcess(st, bs result) {
	fmt.Printf("%-24s %10s %10s %16s  %s\n", "", "station", "baresip", "station/baresip", "budget")
	row := func(name, unit string, s, b float64) {
		ratio := s / b
		verdict := "PASS"
		if ratio > 1 {
			verdict = "OVER"
		}
		fmt.Printf("%-24s %10.3f %10.3f %16.2f  <= 1.00 %s\n", name+" ("+unit+")", s, b, ratio, verdict)
	}
	row("CPU user+sys", "s", st.cpu.Seconds(), bs.cpu.Seconds())
	row("peak RSS VmHWM", "MiB", float64(st.hwm)/1024, float64(bs.hwm)/1024)
	fmt.Printf("%-24s %10d %10d\n", "context switches", st.switches, bs.switches)
	fmt.Printf("%-24s %10.1f %10.1f\n", "callee played (s)", st.played, bs.played)
	fmt.Printf("%-24s %10.1f %10.1f\n", "caller heard (s)", st.callerHeard, bs.callerHeard)
}

func printLatency(name string, samples []time.Duration, budget time.Duration) {
	p50, p99 := percentile(samples, 50), percentile(samples, 99)
	verdict := "PASS"
	if p99 > budget {
		verdict = "OVER"
	}
	fmt.Printf("%-42s p50 %6.2f ms  p99 %6.2f ms  (%d frames)  budget p99 <= %.0f ms %s\n",
		name, ms(p50), ms(p99), len(samples), ms(budget), verdict)
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func percentile(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	s = slices.Clone(s)
	slices.Sort(s)
	return s[min(len(s)-1, int(math.Ceil(float64(p)/100*float64(len(s))))-1)]
}

// proc is a process in its own group with its output in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	once sync.Once
}

func startProc(dir, name, path string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, args...)
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() (bool, error) {
	select {
	case <-p.done:
		return true, errors.New(p.cmd.ProcessState.String())
	default:
		return false, nil
	}
}

// stop sends SIGTERM, then SIGKILL after 5s, and waits for the exit.
func (p *proc) stop() {
	p.once.Do(func() {
		pgid := -p.cmd.Process.Pid
		_ = syscall.Kill(pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(pgid, syscall.SIGKILL)
			<-p.done
		}
	})
}

// startStation runs `intercom run` answering calls peer-to-peer on port,
// with a WAV as microphone and a WAV as speaker.
func startStation(dir, bin string, port int) (*proc, string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	mic, speaker := filepath.Join(dir, "mic.wav"), filepath.Join(dir, "speaker.wav")
	if err := sineWAV(mic, 440, 10*time.Second); err != nil { // the file backend loops it
		return nil, "", err
	}
	api, err := freePorts(1)
	if err != nil {
		return nil, "", err
	}
	cfg := fmt.Sprintf(stationYAML, port, mic, speaker, api)
	path := filepath.Join(dir, "intercom.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return nil, "", err
	}
	p, err := startProc(dir, "intercom", bin, "run", "-config", path)
	return p, speaker, err
}

// stationYAML is examples/sim.yaml with the ports and files of one run.
const stationYAML = `device:
  name: bench door
sip:
  transport: udp
  listen: 127.0.0.1:%d
  registrar: ""
  user: door
calls:
  ring_timeout: 30s
  max_duration: 30m
  auto_answer:
    enabled: true
    delay: 0s
    allow: ["sip:*@127.0.0.1"]
gpio:
  driver: sim
buttons:
  - {name: bell, pin: GPIO17, active: low, pull: up, debounce: 30ms, call: ["sip:flat@127.0.0.1:9"]}
relays:
  - {name: door, pin: GPIO27, active: high, pulse: 3s, max_on: 10s}
door:
  codes:
    - {code: "1234", relay: door}
audio:
  backend: file
  input: %s
  output: %s
  codecs: [PCMU, PCMA]
  ptime: 20ms
  jitter: {min: 20ms, max: 200ms}
api:
  listen: 127.0.0.1:%d
`

// baresipConfig is what both baresip instances share: a WAV as microphone
// (aufile), no player, the decoded stream recorded by sndfile.
func baresipConfig(dir string, port int, mic string) string {
	return strings.Join([]string{
		"poll_method epoll",
		"net_interface 127.0.0.1",
		fmt.Sprintf("sip_listen 127.0.0.1:%d", port),
		"call_local_timeout 120",
		"audio_source aufile," + mic,
		"ausrc_srate 8000",
		"auplay_srate 8000",
		"ausrc_channels 1",
		"auplay_channels 1",
		"audio_buffer 20",
		"jitter_buffer_delay 1-10",
		"statmode_default off",
		"module_path /usr/lib/baresip/modules",
		"module g711.so",
		"module aufile.so",
		"module sndfile.so",
		"module_tmp account.so",
		"module_app menu.so",
		"snd_path " + dir,
		"",
	}, "\n")
}

// startBaresipCallee runs baresip answering calls on port by itself.
func startBaresipCallee(dir, baresip string, port int, callLen time.Duration) (*proc, string, error) {
	p, err := startBaresip(dir, baresip, port, "door", "auto", callLen+30*time.Second)
	return p, filepath.Join(dir, "dec"), err
}

// startCaller runs the baresip that calls the answering process on port.
func startCaller(dir, baresip string, port int, callLen time.Duration) (*proc, string, error) {
	callerPort, err := freePorts(2)
	if err != nil {
		return nil, "", err
	}
	p, err := startBaresip(dir, baresip, callerPort, "caller", "manual", callLen+30*time.Second,
		"-e", fmt.Sprintf("/dial sip:door@127.0.0.1:%d", port))
	return p, filepath.Join(dir, "dec"), err
}

func startBaresip(dir, baresip string, port int, user, answer string, tone time.Duration, args ...string) (*proc, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	mic := filepath.Join(dir, "mic.wav")
	// aufile plays it once, and baresip's audio stops at its end.
	if err := sineWAV(mic, 1000, tone); err != nil {
		return nil, err
	}
	account := fmt.Sprintf("<sip:%s@127.0.0.1>;regint=0;answermode=%s;audio_codecs=PCMU\n", user, answer)
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(baresipConfig(dir, port, mic)), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(account), 0o644); err != nil {
		return nil, err
	}
	return startProc(dir, "baresip-"+user, baresip, append([]string{"-f", dir}, args...)...)
}

// waitBound waits until something listens on UDP port: until binding it
// fails.
func waitBound(p *proc, port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if done, err := p.exited(); done {
			return fmt.Errorf("%s exited: %v (log %s)", p.name, err, p.log)
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
		if err != nil {
			// Give it a moment to finish starting after binding.
			time.Sleep(300 * time.Millisecond)
			return nil
		}
		c.Close()
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s not listening on UDP %d after %v (log %s)", p.name, port, timeout, p.log)
}

// freePorts returns the first of n consecutive ports free for UDP and TCP
// on 127.0.0.1 (baresip takes UDP and TCP on its SIP port, TLS on the next).
func freePorts(n int) (int, error) {
	for range 100 {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			return 0, err
		}
		base := c.LocalAddr().(*net.UDPAddr).Port
		c.Close()
		ok := base+n <= 65535
		for p := base; p < base+n && ok; p++ {
			ok = portFree(p)
		}
		if ok {
			return base, nil
		}
	}
	return 0, fmt.Errorf("no %d consecutive free ports", n)
}

func portFree(port int) bool {
	u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return false
	}
	defer u.Close()
	l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port})
	if err != nil {
		return false
	}
	return l.Close() == nil
}

// vmHWM returns a process's peak resident set size in KiB.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

// wavSeconds is the length of an 8 kHz mono 16-bit recording, from its
// size (a header may not have been rewritten when a process was killed).
// A path ending in "dec" names baresip's sndfile recording of the decoded
// stream in that directory.
func wavSeconds(path string) float64 {
	if filepath.Base(path) == "dec" {
		m, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "dump-*-dec.wav"))
		if len(m) == 0 {
			return 0
		}
		path = m[0]
	}
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return float64(max(fi.Size()-44, 0)) / (2 * rate)
}

func sineWAV(path string, hz float64, d time.Duration) error {
	w, err := wav.Create(path, rate)
	if err != nil {
		return err
	}
	buf := make([]int16, int(d.Seconds()*rate))
	for i := range buf {
		buf[i] = int16(8000 * math.Sin(2*math.Pi*hz*float64(i)/rate))
	}
	if err := w.Write(buf); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// Latency at 0 jitter. Frames are marked by their first sample: a µ-law
// code (0x80 + frame number mod markCodes) that G.711 carries unchanged, so
// a frame is recognised on the wire and after decoding.
const markCodes = 100

func markSample(n int) int16 { return g711.DecodeUlawFrame(uint8(0x80 + n%markCodes)) }

// markOf returns the mark of a payload's first byte, or -1.
func markOf(code uint8) int {
	if code < 0x80 || code >= 0x80+markCodes {
		return -1
	}
	return int(code - 0x80)
}

// stamps records when each marked frame was produced, by mark.
type stamps struct {
	mu sync.Mutex
	at [markCodes]time.Time
}

func (s *stamps) set(mark int, t time.Time) {
	s.mu.Lock()
	s.at[mark] = t
	s.mu.Unlock()
}

func (s *stamps) since(mark int, now time.Time) (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.at[mark]
	return now.Sub(t), !t.IsZero()
}

// ticker paces frames like a sound card: one every ptime from start.
type ticker struct {
	start time.Time
	n     int
}

func (t *ticker) wait() {
	if t.start.IsZero() {
		t.start = time.Now()
	}
	t.n++
	time.Sleep(time.Until(t.start.Add(time.Duration(t.n) * ptime)))
}

// markSource is a microphone whose frames carry marks; it notes when each
// frame is ready.
type markSource struct {
	tick  ticker
	n     int
	ready *stamps
}

func (s *markSource) Read(frame []int16) error {
	s.tick.wait()
	v := markSample(s.n)
	for i := range frame {
		frame[i] = v
	}
	s.ready.set(s.n%markCodes, time.Now())
	s.n++
	return nil
}

func (s *markSource) Close() error { return nil }

// markSink is a speaker that notes how long after its packet was sent each
// marked frame reached it.
type markSink struct {
	tick    ticker
	sent    *stamps
	mu      sync.Mutex
	lat     []time.Duration
	started chan struct{} // closed at the first Write: the speaker's frame period starts
	once    sync.Once
}

func (s *markSink) Write(frame []int16) error {
	now := time.Now()
	s.once.Do(func() { close(s.started) })
	if m := markOf(g711.EncodeUlawFrame(frame[0])); m >= 0 {
		if d, ok := s.sent.since(m, now); ok {
			s.mu.Lock()
			s.lat = append(s.lat, d)
			s.mu.Unlock()
		}
	}
	s.tick.wait()
	return nil
}

func (s *markSink) Close() error { return nil }

var (
	_ media.Source = (*markSource)(nil)
	_ media.Sink   = (*markSink)(nil)
)

// measureLatency runs a Session against a raw UDP peer on loopback for d:
// the peer sends marked packets every ptime, starting phase after the
// session's first frame to the speaker, and reads the session's.
func measureLatency(d, phase time.Duration) (rx, tx []time.Duration, err error) {
	lo := netip.MustParseAddr("127.0.0.1")
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo.AsSlice()})
	if err != nil {
		return nil, nil, err
	}
	peer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: lo.AsSlice()})
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	defer peer.Close()
	ready, sent := &stamps{}, &stamps{}
	sink := &markSink{sent: sent, started: make(chan struct{})}
	sess, err := media.NewSession(media.SessionConfig{
		Conn:   conn,
		Remote: peer.LocalAddr().(*net.UDPAddr).AddrPort(),
		Codec:  media.PCMU,
		Ptime:  ptime,
		Source: &markSource{ready: ready},
		Sink:   sink,
		Jitter: media.JitterConfig{Min: jitterMin, Max: 200 * time.Millisecond},
	})
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var wg sync.WaitGroup
	var runErr error
	wg.Go(func() { runErr = sess.Run(ctx) })
	to := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	wg.Go(func() {
		// The phase is within the speaker's frame period, which starts
		// with its first frame: when that is (a session may play its
		// first frame only once the microphone gave one) is not the
		// receive path's delay.
		select {
		case <-sink.started:
		case <-ctx.Done():
			return
		}
		time.Sleep(phase)
		sendMarked(ctx, peer, to, sent)
	})
	tx = readMarked(ctx, peer, ready)
	wg.Wait()
	if runErr != nil {
		return nil, nil, runErr
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	return sink.lat, tx, nil
}

// sendMarked sends a PCMU packet every ptime, noting when each left.
func sendMarked(ctx context.Context, c *net.UDPConn, to netip.AddrPort, sent *stamps) {
	pkt := rtp.Packet{
		Header:  rtp.Header{Version: 2, PayloadType: media.PCMU.PayloadType, SSRC: 0x1234, SequenceNumber: 1000, Timestamp: 5000},
		Payload: make([]byte, int(ptime.Seconds()*rate)),
	}
	buf := make([]byte, 1500)
	var tick ticker
	for n := 0; ctx.Err() == nil; n++ {
		for i := range pkt.Payload {
			pkt.Payload[i] = uint8(0x80 + n%markCodes)
		}
		b, err := pkt.MarshalTo(buf)
		if err != nil {
			return
		}
		sent.set(n%markCodes, time.Now())
		if _, err := c.WriteToUDPAddrPort(buf[:b], to); err != nil {
			return
		}
		pkt.SequenceNumber++
		pkt.Timestamp += uint32(len(pkt.Payload))
		tick.wait()
	}
}

// readMarked reads the session's packets until ctx ends and returns how
// long after its frame was ready each arrived.
func readMarked(ctx context.Context, c *net.UDPConn, ready *stamps) []time.Duration {
	stop := context.AfterFunc(ctx, func() { _ = c.SetReadDeadline(time.Now()) })
	defer stop()
	var lat []time.Duration
	var pkt rtp.Packet
	buf := make([]byte, 1500)
	for {
		n, err := c.Read(buf)
		now := time.Now()
		if err != nil {
			return lat
		}
		if pkt.Unmarshal(buf[:n]) != nil || len(pkt.Payload) == 0 {
			continue
		}
		if m := markOf(pkt.Payload[0]); m >= 0 {
			if d, ok := ready.since(m, now); ok {
				lat = append(lat, d)
			}
		}
	}
}
