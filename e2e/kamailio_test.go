package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"text/template"
	"time"
)

// kamailioOptions shape the registrar and proxy.
type kamailioOptions struct {
	// AuthInvite challenges INVITEs with 407 like a PBX does (RFC 3261
	// 22.3); the caller's password is "pw-" plus its user name.
	AuthInvite bool
	// RecordRoute keeps kamailio in the path of in-dialog requests.
	RecordRoute bool
	// Redirect answers INVITEs for a user (key) with 302 Moved Temporarily
	// and the value as Contact, like a PBX's call forwarding; a value that
	// is a bare user means that user at this kamailio.
	Redirect map[string]string
	// TCP makes kamailio listen on TCP too, on the same port.
	TCP bool
	// TLS makes kamailio listen on TLS too, on its own port (TLSPort),
	// with this certificate.
	TLS *kamailioTLS
	// DigestSHA256 makes kamailio's digest SHA-256 (RFC 8760): REGISTERs
	// are challenged with qop=auth after a decoy MD5 challenge in the same
	// 401 that kamailio cannot verify, and a REGISTER whose credentials
	// are not SHA-256 is refused with 403 "Weak Digest"; with AuthInvite,
	// INVITEs get a SHA-256 407.
	DigestSHA256 bool
	// AuthBye challenges the BYEs of user 100 (the station) with 407, as
	// PBXs that authenticate requests inside a call do.
	AuthBye bool
}

// kamailioTLS is the server certificate and key of kamailio's TLS port.
type kamailioTLS struct {
	CertPath, KeyPath string
}

// kamailio is a registrar with digest auth (password "pw-<user>") and a
// proxy that routes calls to registered contacts, on 127.0.0.1:Port.
type kamailio struct {
	Port    int
	Addr    string // 127.0.0.1:Port
	TLSPort int    // with kamailioOptions.TLS, else 0
	TLSAddr string // 127.0.0.1:TLSPort, or ""
	dir     string
	cfgPath string
	ctl     string // unix socket of the ctl module, for kamcmd
	runs    int
	proc    *proc
}

// startKamailio renders testdata/kamailio.cfg.tmpl, starts kamailio and
// waits until it answers kamcmd.
func startKamailio(t testing.TB, opts kamailioOptions) *kamailio {
	t.Helper()
	requireTools(t, "kamailio", "kamcmd")
	dir := filepath.Join(t.TempDir(), "kamailio")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// A unix socket path must fit in 108 bytes; t.TempDir() can be long.
	sockDir, err := os.MkdirTemp("", "kam")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	k := &kamailio{dir: dir, ctl: filepath.Join(sockDir, "ctl.sock")}
	k.Port = freePorts(t, 1)
	k.Addr = fmt.Sprintf("127.0.0.1:%d", k.Port)
	k.cfgPath = filepath.Join(dir, "kamailio.cfg")
	tlsConfig := ""
	if opts.TLS != nil {
		k.TLSPort = freePorts(t, 1)
		k.TLSAddr = fmt.Sprintf("127.0.0.1:%d", k.TLSPort)
		tlsConfig = filepath.Join(dir, "tls.cfg")
		// The server verifies no client certificates; the client side
		// (kamailio connecting out) is not used by the tests.
		tc := fmt.Sprintf("[server:default]\nmethod = TLSv1.2+\nverify_certificate = no\nrequire_certificate = no\n"+
			"certificate = %s\nprivate_key = %s\n\n[client:default]\nverify_certificate = no\nrequire_certificate = no\n",
			opts.TLS.CertPath, opts.TLS.KeyPath)
		if err := os.WriteFile(tlsConfig, []byte(tc), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	redirect := map[string]string{}
	for user, contact := range opts.Redirect {
		if !strings.Contains(contact, ":") {
			contact = k.URI(contact)
		}
		redirect[user] = contact
	}
	tmpl := template.Must(template.ParseFiles("testdata/kamailio.cfg.tmpl"))
	var cfg bytes.Buffer
	err = tmpl.Execute(&cfg, map[string]any{
		"Addr": k.Addr, "CtlSocket": k.ctl,
		"AuthInvite": opts.AuthInvite, "RecordRoute": opts.RecordRoute, "Redirect": redirect, "TCP": opts.TCP,
		"TLSAddr": k.TLSAddr, "TLSConfig": tlsConfig,
		"DigestSHA256": opts.DigestSHA256, "AuthBye": opts.AuthBye,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.cfgPath, cfg.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	k.Start(t)
	return k
}

// Start (re)starts kamailio on the same port; registrations start empty.
func (k *kamailio) Start(t testing.TB) {
	t.Helper()
	k.runs++
	k.proc = startProc(t, k.dir, fmt.Sprintf("kamailio-%d", k.runs), tool(t, "kamailio"),
		"-f", k.cfgPath, "-DD", "-E", "-Y", k.dir, "-w", k.dir, "-m", "32", "-M", "4")
	eventually(t, 10*time.Second, "kamailio ready", all(k.proc.alive, func() error {
		_, err := k.kamcmd("core.version")
		return err
	}))
}

// Stop ends kamailio, its workers included.
func (k *kamailio) Stop(t testing.TB) {
	t.Helper()
	k.proc.stop(t)
	// The port must be free again before a restart on it.
	eventually(t, 5*time.Second, "kamailio port released", func() error {
		if !portFree(k.Port) {
			return fmt.Errorf("port %d still in use", k.Port)
		}
		return nil
	})
}

func (k *kamailio) kamcmd(args ...string) (string, error) {
	path, err := lookTool("kamcmd")
	if err != nil {
		return "", err
	}
	cmd := exec.Command(path, append([]string{"-s", "unix:" + k.ctl}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kamcmd %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// stat is one of kamailio's counters, by name (kamcmd
// stats.get_statistics rcv_requests_bye prints
// "core:rcv_requests_bye = N").
func (k *kamailio) stat(t testing.TB, name string) int {
	t.Helper()
	out, err := k.kamcmd("stats.get_statistics", name)
	if err != nil {
		t.Fatal(err)
	}
	_, v, ok := strings.Cut(strings.TrimSpace(out), "=")
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if !ok || err != nil {
		t.Fatalf("kamailio statistic %s: %q", name, out)
	}
	return n
}

// Contacts returns the registered contacts by AoR (user), from ul.dump.
func (k *kamailio) Contacts() (map[string][]string, error) {
	out, err := k.kamcmd("ul.dump")
	if err != nil {
		return nil, err
	}
	contacts := map[string][]string{}
	aor := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if v, ok := strings.CutPrefix(line, "AoR: "); ok {
			aor = v
			contacts[aor] = nil
		} else if v, ok := strings.CutPrefix(line, "Address: "); ok && aor != "" {
			contacts[aor] = append(contacts[aor], v)
		}
	}
	return contacts, sc.Err()
}

// registered is a condition: user has a contact in kamailio's location table.
func (k *kamailio) registered(user string) func() error {
	return func() error {
		if err := k.proc.alive(); err != nil {
			return err
		}
		c, err := k.Contacts()
		if err != nil {
			return err
		}
		if len(c[user]) == 0 {
			users := make([]string, 0, len(c))
			for u := range c {
				users = append(users, u)
			}
			slices.Sort(users)
			return fmt.Errorf("%s not registered; registered: %v", user, users)
		}
		return nil
	}
}

// URI is the SIP URI of a user at this registrar.
func (k *kamailio) URI(user string) string {
	return fmt.Sprintf("sip:%s@%s", user, k.Addr)
}
