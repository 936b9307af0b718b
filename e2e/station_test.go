package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"
)

// binDir holds the intercom binary built once for the whole test run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "intercom-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// intercomBinary builds intercom/cmd/intercom once (with -race when the
// tests run with it) and returns its path.
func intercomBinary(t testing.TB) string {
	t.Helper()
	skipShort(t)
	buildOnce.Do(func() {
		binPath = filepath.Join(binDir, "intercom")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "intercom/cmd/intercom")
		// go test puts its own go first on PATH.
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// stationOptions shape the door station's config (testdata/station.yaml.tmpl).
type stationOptions struct {
	Registrar *kamailio // nil: peer-to-peer
	// Call are the bell's targets, rung in parallel; default 201 at the registrar.
	Call []string
	// Allow is calls.auto_answer.allow; empty: calls from the registrar only.
	Allow           []string
	RegisterExpires time.Duration // default 60s
	ToneHz          int           // the station's microphone (file input); default 440
	// PortAudio switches audio.backend from file to portaudio on the
	// default devices; ToneHz and Output do not apply then.
	PortAudio bool
	// RegistrarHost, when set, is sip.registrar instead of Registrar's
	// address: a domain the station resolves itself.
	RegistrarHost string
	// Wrap is a command the station binary and its arguments are appended
	// to, e.g. to run it in a mount namespace.
	Wrap []string
}

// station is a running intercom with its API and an SSE subscription.
type station struct {
	SIPAddr string // 127.0.0.1:port of its SIP listener
	API     string // http://127.0.0.1:port
	Output  string // WAV of what its speaker played
	proc    *proc
	Events  *eventLog
	wrap    []string // see stationOptions.Wrap
}

// stationStatus is the part of GET /api/v1/status the tests read (DESIGN §5).
type stationStatus struct {
	Registration struct {
		State     string `json:"state"`
		Registrar string `json:"registrar"`
		ExpiresIn string `json:"expires_in"`
		Transport string `json:"transport"`
		Address   string `json:"address"`
	} `json:"registration"`
	Call struct {
		State  string `json:"state"`
		Remote string `json:"remote"`
	} `json:"call"`
	Relays map[string]struct {
		Active bool   `json:"active"`
		Cycles uint64 `json:"cycles"`
	} `json:"relays"`
}

// startStation writes the config, runs `intercom run -config FILE`, waits
// for the API and subscribes to its events.
func startStation(t testing.TB, opts stationOptions) *station {
	t.Helper()
	requireTools(t, "sox")
	dir := filepath.Join(t.TempDir(), "station")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if opts.ToneHz == 0 {
		opts.ToneHz = 440
	}
	if opts.RegisterExpires == 0 {
		opts.RegisterExpires = 60 * time.Second
	}
	registrar := ""
	if opts.Registrar != nil {
		registrar = opts.Registrar.Addr
		if len(opts.Call) == 0 {
			opts.Call = []string{opts.Registrar.URI("201")}
		}
	}
	if opts.RegistrarHost != "" {
		registrar = opts.RegistrarHost
	}
	if len(opts.Call) == 0 {
		opts.Call = []string{"sip:201@127.0.0.1"}
	}
	st := &station{
		wrap:    opts.Wrap,
		SIPAddr: fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)),
		API:     fmt.Sprintf("http://127.0.0.1:%d", freePorts(t, 1)),
		Output:  filepath.Join(dir, "speaker.wav"),
		Events:  &eventLog{},
	}
	backend, input, output := "file", filepath.Join(dir, "mic.wav"), st.Output
	if opts.PortAudio {
		backend, input, output, st.Output = "portaudio", "default", "default", ""
	} else {
		sineWAV(t, input, opts.ToneHz, 10) // the file backend loops it
	}

	st.runTemplate(t, dir, template.Must(template.ParseFiles("testdata/station.yaml.tmpl")), map[string]any{
		"SIPListen": st.SIPAddr, "Registrar": registrar,
		"RegisterExpires": opts.RegisterExpires.String(),
		"Allow":           opts.Allow, "Call": opts.Call,
		"Backend": backend, "Input": input, "Output": output,
		"API": strings.TrimPrefix(st.API, "http://"),
	})
	return st
}

// runTemplate writes tmpl executed with data to dir/intercom.yaml and runs
// the station on it in dir.
func (st *station) runTemplate(t testing.TB, dir string, tmpl *template.Template, data any) {
	t.Helper()
	var cfg bytes.Buffer
	if err := tmpl.Execute(&cfg, data); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "intercom.yaml")
	if err := os.WriteFile(path, cfg.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	st.run(t, dir, dir, path)
}

// run starts `intercom run -config cfg` in workDir with its log in logDir,
// waits for the API and subscribes to its events.
func (st *station) run(t testing.TB, workDir, logDir, cfg string) {
	t.Helper()
	args := []string{intercomBinary(t), "run", "-config", cfg}
	if len(st.wrap) > 0 {
		args = append(slices.Clone(st.wrap), args...)
	}
	st.proc = startProcIn(t, workDir, logDir, "intercom", args[0], args[1:]...)
	eventually(t, 10*time.Second, "station API up", all(st.proc.alive, func() error {
		_, err := st.status()
		return err
	}))
	st.subscribe(t)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if s, err := st.get("/api/v1/status"); err == nil {
			t.Logf("--- station status at the end: %s", s)
		}
		st.Events.logEvents(t, "station SSE")
	})
}

// subscribe reads GET /api/v1/events into st.Events until the test ends.
func (st *station) subscribe(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, st.API+"/api/v1/events", nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	// Response headers arrive once the server has registered the subscriber.
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("station events: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		cancel()
		t.Fatalf("station events: %s, Content-Type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer resp.Body.Close()
		st.Events.close(readSSE(resp.Body, st.Events))
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// readSSE parses Server-Sent Events ("event: T\ndata: JSON\n\n") into log.
func readSSE(r io.Reader, log *eventLog) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var typ string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if typ != "" || len(data) > 0 {
				raw := strings.Join(data, "\n")
				fields := map[string]any{}
				_ = json.Unmarshal([]byte(raw), &fields)
				if typ == "" {
					typ, _ = fields["type"].(string)
				}
				log.add(event{Type: typ, Fields: fields, Raw: "event: " + typ + " data: " + raw})
			}
			typ, data = "", nil
		case strings.HasPrefix(line, ":"): // comment, keep-alive
		case strings.HasPrefix(line, "event:"):
			typ = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data = append(data, strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " "))
		}
	}
	return sc.Err()
}

func (st *station) get(path string) ([]byte, error) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(st.API + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return body, nil
}

func (st *station) status() (stationStatus, error) {
	var s stationStatus
	body, err := st.get("/api/v1/status")
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("status: %v: %s", err, body)
	}
	return s, nil
}

// Status returns the station's status or fails the test.
func (st *station) Status(t testing.TB) stationStatus {
	t.Helper()
	s, err := st.status()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// post sends a JSON body (nil: none) and returns the status code and body.
func (st *station) post(t testing.TB, path string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(b)
	}
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Post(st.API+path, "application/json", r)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return resp.StatusCode, out
}

// postOK posts and fails the test unless the answer is 2xx.
func (st *station) postOK(t testing.TB, path string, body any) {
	t.Helper()
	code, out := st.post(t, path, body)
	if code/100 != 2 {
		t.Fatalf("POST %s: %d %s", path, code, out)
	}
}

// setPin drives a virtual input pin (gpio.driver sim).
func (st *station) setPin(t testing.TB, pin, level string) {
	t.Helper()
	st.postOK(t, "/api/v1/sim/pins/"+pin, map[string]string{"level": level})
}

// cond builds a polling condition on the status document.
func (st *station) cond(what string, ok func(stationStatus) bool) func() error {
	return statusCond(st.proc, st.status, what, ok)
}

// statusCond is a polling condition on a status document that get reads
// from the process p: it fails while p is dead or ok(status) is false.
func statusCond[S any](p *proc, get func() (S, error), what string, ok func(S) bool) func() error {
	return func() error {
		if err := p.alive(); err != nil {
			return err
		}
		s, err := get()
		if err != nil {
			return err
		}
		if !ok(s) {
			b, _ := json.Marshal(s)
			return fmt.Errorf("want %s; status %s", what, b)
		}
		return nil
	}
}

func (st *station) registrationIs(state string) func() error {
	return st.cond("registration.state "+state, func(s stationStatus) bool { return s.Registration.State == state })
}

func (st *station) callIs(state string) func() error {
	return st.cond("call.state "+state, func(s stationStatus) bool { return s.Call.State == state })
}

func (st *station) relayActive(name string, active bool) func() error {
	return st.cond(fmt.Sprintf("relays.%s.active %v", name, active), func(s stationStatus) bool {
		r, ok := s.Relays[name]
		return ok && r.Active == active
	})
}
