package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// phoneOptions describe one of the flat's phones.
type phoneOptions struct {
	User string // SIP user at the registrar, password "pw-"+User
	// Registrar is where the phone registers and sends its calls; nil: none,
	// the account is sip:User@127.0.0.1 and calls go straight to their URI.
	Registrar *kamailio
	SIPPort   int // where it listens for SIP (TLS on the next port); 0: a free port
	// AutoAnswer answers every incoming call at once; otherwise the phone
	// rings until told to /accept, or until the caller cancels.
	AutoAnswer bool
	ToneHz     int // what the phone's microphone hears (aufile source)
	// MaxCalls above which baresip answers 486 (default 4).
	MaxCalls int
}

// phone is a baresip instance: a flat's phone with a WAV as microphone, a
// recording of what it hears (sndfile), and ctrl_tcp for commands and events.
type phone struct {
	User     string
	SIPPort  int
	CtrlPort int
	recDir   string
	proc     *proc
	Events   *eventLog

	conn    net.Conn
	mu      sync.Mutex
	pending map[string]chan ctrlResponse
	token   int
}

// ctrlResponse is baresip's answer to a ctrl_tcp command.
type ctrlResponse struct {
	OK    bool   `json:"ok"`
	Data  string `json:"data"`
	Token string `json:"token"`
}

// startPhone writes the baresip config, starts it, connects to ctrl_tcp and
// waits until kamailio lists the phone's registration, if it has a registrar.
func startPhone(t testing.TB, opts phoneOptions) *phone {
	t.Helper()
	requireTools(t, "baresip", "sox")
	dir := filepath.Join(t.TempDir(), "phone-"+opts.User)
	recDir := filepath.Join(dir, "rec")
	if err := os.MkdirAll(recDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if opts.ToneHz == 0 {
		opts.ToneHz = 1000
	}
	if opts.MaxCalls == 0 {
		opts.MaxCalls = 4
	}
	if opts.SIPPort == 0 {
		opts.SIPPort = freePorts(t, 2) // UDP+TCP on the port, TLS on the next
	}
	tone := filepath.Join(dir, "mic.wav")
	// aufile plays its file once: make it outlast any test call.
	sineWAV(t, tone, opts.ToneHz, 120)

	p := &phone{
		User:     opts.User,
		SIPPort:  opts.SIPPort,
		CtrlPort: freePorts(t, 1),
		recDir:   recDir,
		Events:   &eventLog{},
		pending:  map[string]chan ctrlResponse{},
	}
	answer := "manual"
	if opts.AutoAnswer {
		answer = "auto"
	}
	config := strings.Join([]string{
		"poll_method epoll",
		// Without it baresip puts the host's first interface into its SDP.
		"net_interface 127.0.0.1",
		fmt.Sprintf("sip_listen 127.0.0.1:%d", p.SIPPort),
		"call_local_timeout 120",
		fmt.Sprintf("call_max_calls %d", opts.MaxCalls),
		"audio_source aufile," + tone,
		// No player: sndfile records the decoded stream before playback.
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
		"module_app ctrl_tcp.so",
		fmt.Sprintf("ctrl_tcp_listen 127.0.0.1:%d", p.CtrlPort),
		"snd_path " + recDir,
		"",
	}, "\n")
	// Without a registrar, the README's account line.
	account := fmt.Sprintf("<sip:%s@127.0.0.1>;regint=0;answermode=%s\n", opts.User, answer)
	if opts.Registrar != nil {
		account = fmt.Sprintf("<sip:%s@%s>;auth_pass=pw-%s;answermode=%s;audio_codecs=PCMU,PCMA;regint=600\n",
			opts.User, opts.Registrar.Addr, opts.User, answer)
	}
	if err := os.WriteFile(filepath.Join(dir, "config"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts"), []byte(account), 0o644); err != nil {
		t.Fatal(err)
	}
	p.proc = startProc(t, dir, "baresip-"+opts.User, tool(t, "baresip"), "-f", dir)

	eventually(t, 10*time.Second, "baresip "+opts.User+" ctrl_tcp", all(p.proc.alive, func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p.CtrlPort), time.Second)
		if err != nil {
			return err
		}
		p.conn = c
		return nil
	}))
	go p.readLoop()
	// Closing the connection ends readLoop. Cleanups run last-in first-out:
	// this one before baresip is stopped.
	t.Cleanup(func() {
		p.conn.Close()
		if t.Failed() {
			p.Events.logEvents(t, "baresip-"+opts.User)
		}
	})
	if opts.Registrar != nil {
		eventually(t, 10*time.Second, "phone "+opts.User+" registered",
			all(p.proc.alive, opts.Registrar.registered(opts.User)))
	}
	return p
}

// readLoop decodes ctrl_tcp netstrings ("LEN:JSON,") until the connection
// closes: responses go to the waiting command, events to the log.
func (p *phone) readLoop() {
	r := bufio.NewReader(p.conn)
	for {
		msg, err := readNetstring(r)
		if err != nil {
			p.Events.close(err)
			p.mu.Lock()
			for tok, ch := range p.pending {
				close(ch)
				delete(p.pending, tok)
			}
			p.mu.Unlock()
			return
		}
		var head struct {
			Event    bool   `json:"event"`
			Response bool   `json:"response"`
			Type     string `json:"type"`
		}
		if json.Unmarshal(msg, &head) != nil {
			continue
		}
		switch {
		case head.Response:
			var resp ctrlResponse
			if json.Unmarshal(msg, &resp) != nil {
				continue
			}
			p.mu.Lock()
			ch := p.pending[resp.Token]
			delete(p.pending, resp.Token)
			p.mu.Unlock()
			if ch != nil {
				ch <- resp
			}
		case head.Event:
			fields := map[string]any{}
			_ = json.Unmarshal(msg, &fields)
			p.Events.add(event{Type: head.Type, Fields: fields, Raw: string(msg)})
		}
	}
}

func readNetstring(r *bufio.Reader) ([]byte, error) {
	lenStr, err := r.ReadString(':')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(lenStr, ":")))
	if err != nil || n < 0 || n > 1<<20 {
		return nil, fmt.Errorf("ctrl_tcp: bad netstring length %q", lenStr)
	}
	buf := make([]byte, n+1)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	if buf[n] != ',' {
		return nil, errors.New("ctrl_tcp: netstring without trailing comma")
	}
	return buf[:n], nil
}

// Command runs a baresip command (the menu module's, without the slash).
func (p *phone) Command(t testing.TB, command, params string) ctrlResponse {
	t.Helper()
	p.mu.Lock()
	p.token++
	tok := strconv.Itoa(p.token)
	ch := make(chan ctrlResponse, 1)
	p.pending[tok] = ch
	p.mu.Unlock()
	msg, err := json.Marshal(map[string]string{"command": command, "params": params, "token": tok})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(p.conn, "%d:%s,", len(msg), msg); err != nil {
		t.Fatalf("phone %s: %s: %v", p.User, command, err)
	}
	select {
	case resp, ok := <-ch:
		if !ok {
			t.Fatalf("phone %s: %s: ctrl_tcp connection closed", p.User, command)
		}
		if !resp.OK {
			t.Fatalf("phone %s: %s %s: %s", p.User, command, params, resp.Data)
		}
		return resp
	case <-time.After(5 * time.Second):
		t.Fatalf("phone %s: %s: no response", p.User, command)
	}
	return ctrlResponse{}
}

// Dial calls uri.
func (p *phone) Dial(t testing.TB, uri string) { t.Helper(); p.Command(t, "dial", uri) }

// Hangup ends the current call.
func (p *phone) Hangup(t testing.TB) { t.Helper(); p.Command(t, "hangup", "") }

// Accept answers the ringing call.
func (p *phone) Accept(t testing.TB) { t.Helper(); p.Command(t, "accept", "") }

// decRecording returns the newest recording of what the phone heard
// (sndfile's dump-<time>-dec.wav).
func (p *phone) decRecording() (string, error) {
	files, err := filepath.Glob(filepath.Join(p.recDir, "dump-*-dec.wav"))
	if err != nil {
		return "", err
	}
	if len(files) == 0 {
		return "", errors.New("no recording yet")
	}
	slices.Sort(files) // names carry the time, to the second
	return files[len(files)-1], nil
}

// heard is a condition: the phone has recorded at least d of audio.
func (p *phone) heard(d time.Duration) func() error {
	return func() error {
		path, err := p.decRecording()
		if err != nil {
			return err
		}
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		// sndfile writes as it goes; the header is completed at the end.
		want := 44 + int64(d.Seconds()*8000*2)
		if fi.Size() < want {
			return fmt.Errorf("%s: %d bytes, want %d", path, fi.Size(), want)
		}
		return nil
	}
}
