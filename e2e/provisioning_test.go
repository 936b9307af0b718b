package e2e

// Auto-provisioning (issue 5) end to end: the station fetches its document
// from nginx over HTTPS, applies it, registers with it at kamailio, refuses
// bad documents, rolls back a document it cannot register with, and checks
// again when the registrar sends a NOTIFY check-sync. The tests assert what
// nginx served (its access log), what kamailio holds (ul.dump) and what the
// station's API reports.

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"intercom/provisioning"
)

// provOptions shape a provisioned station
// (testdata/provisioning/station.yaml.tmpl).
type provOptions struct {
	Registrar *kamailio // nil: peer-to-peer
	Server    *nginx
	// CA is the station's provisioning.ca; default the server's CA.
	CA string
	// User and Password are the local file's SIP account.
	User, Password string
	// RollbackAfter defaults to the minimum the config allows, 10s.
	RollbackAfter time.Duration
	// PublicKey, when set, makes the station accept signed documents only.
	PublicKey ed25519.PublicKey
}

// provStation is a running station whose document is DocName on the
// provisioning server.
type provStation struct {
	*station
	DocName string // <mac>.yaml, the file to publish on nginx
	DocURI  string // /<mac>.yaml, as nginx logs it
	dir     string // the station's directory: intercom.yaml, state/
}

// stationMAC is the MAC address the station puts in place of {mac}.
func stationMAC(t testing.TB) string {
	t.Helper()
	mac, err := provisioning.DefaultMAC()
	if err != nil {
		t.Fatalf("the station needs a MAC address for {mac}: %v", err)
	}
	return mac
}

// startProvisionedStation runs a station whose local file points at

// startWithDocument starts kamailio, nginx serving the station's document
// for user (with the password kamailio expects) and a station whose local
// file is user 100 with a wrong password.
func startWithDocument(t *testing.T, user string) (*kamailio, *nginx, string, *provStation) {
	t.Helper()
	k := startKamailio(t, kamailioOptions{})
	n := startNginx(t, nginxOptions{})
	mac := stationMAC(t)
	n.publish(t, mac+".yaml", stationDoc(user, "pw-"+user, "provisioned door"))
	st := startProvisionedStation(t, provOptions{Registrar: k, Server: n, User: "100", Password: "wrong"})
	return k, n, mac, st
}

// registeredByDocument starts kamailio, nginx serving the station's
// document (user 100 with the right password) and a station whose local
// file has a wrong one, and waits until the document registered it. nginx
// logs a request after its response went out: its log line is awaited too,
// so that it cannot land after a mark the test takes next.
func registeredByDocument(t *testing.T) (*kamailio, *nginx, string, *provStation) {
	t.Helper()
	k, n, mac, st := startWithDocument(t, "100")
	eventually(t, 20*time.Second, "station registered with its document", all(
		k.registered("100"), st.registrationIs("registered"), st.provStateIs(provisioning.StateApplied),
		n.served(0, st.DocURI, 200)))
	st.settled()
	return k, n, mac, st
}

// settled gives the "provisioned" event of the document applied at start a
// moment to arrive: the station publishes it just after its status says
// applied, so it could land after the test's next mark. It is not awaited
// as a condition: a quick station publishes it before the test subscribed.
func (st *provStation) settled() {
	_ = poll(2*time.Second, func() error {
		if len(st.Events.since(0, "provisioned")) == 0 {
			return errors.New("no provisioned event yet")
		}
		return nil
	})
}

// opts.Server's https://127.0.0.1:PORT/{mac}.yaml.
func startProvisionedStation(t testing.TB, opts provOptions) *provStation {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "station")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if opts.CA == "" {
		opts.CA = opts.Server.CA.Path
	}
	if opts.RollbackAfter == 0 {
		opts.RollbackAfter = 10 * time.Second
	}
	registrar, call := "", "sip:201@127.0.0.1"
	if opts.Registrar != nil {
		registrar, call = opts.Registrar.Addr, opts.Registrar.URI("201")
	}
	pub := ""
	if opts.PublicKey != nil {
		pub = base64.StdEncoding.EncodeToString(opts.PublicKey)
	}
	mac := stationMAC(t)
	st := &provStation{
		station: &station{
			SIPAddr: fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)),
			API:     fmt.Sprintf("http://127.0.0.1:%d", freePorts(t, 1)),
			Events:  &eventLog{},
		},
		DocName: mac + ".yaml",
		DocURI:  "/" + mac + ".yaml",
		dir:     dir,
	}
	st.runTemplate(t, dir, template.Must(template.ParseFiles("testdata/provisioning/station.yaml.tmpl")), map[string]any{
		"SIPListen": st.SIPAddr, "Registrar": registrar, "Call": call,
		"User": opts.User, "Password": opts.Password,
		"API":           strings.TrimPrefix(st.API, "http://"),
		"URL":           opts.Server.URL("/{mac}.yaml"),
		"CA":            opts.CA,
		"StateDir":      filepath.Join(dir, "state"),
		"RollbackAfter": opts.RollbackAfter.String(),
		"PublicKey":     pub,
	})
	return st
}

// restart stops the station and runs it again on the same local file and
// state directory.
func (st *provStation) restart(t testing.TB) {
	t.Helper()
	st.proc.stop(t)
	st.run(t, st.dir, st.dir, filepath.Join(st.dir, "intercom.yaml"))
}

// provStatus is the part of GET /api/v1/status these tests read.
type provStatus struct {
	Registration struct {
		State string `json:"state"`
		Error string `json:"error"`
	} `json:"registration"`
	Provisioning *struct {
		State      string `json:"state"`
		URL        string `json:"url"`
		Error      string `json:"error"`
		LastCheck  string `json:"last_check"`
		LastChange string `json:"last_change"`
		Checks     uint64 `json:"checks"`
		Refused    uint64 `json:"refused"`
		Rollbacks  uint64 `json:"rollbacks"`
	} `json:"provisioning"`
}

func (st *provStation) provStatus() (provStatus, error) {
	var s provStatus
	body, err := st.get("/api/v1/status")
	if err != nil {
		return s, err
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("status: %v: %s", err, body)
	}
	if s.Provisioning == nil {
		return s, fmt.Errorf("status has no provisioning: %s", body)
	}
	return s, nil
}

// ProvStatus returns the status or fails the test.
func (st *provStation) ProvStatus(t testing.TB) provStatus {
	t.Helper()
	s, err := st.provStatus()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// provIs is a condition on the status document.
func (st *provStation) provIs(what string, ok func(provStatus) bool) func() error {
	return statusCond(st.proc, st.provStatus, what, ok)
}

func (st *provStation) provStateIs(state string) func() error {
	return st.provIs("provisioning.state "+state, func(s provStatus) bool { return s.Provisioning.State == state })
}

// check asks for a check over the API; DESIGN §5 answers 202.
func (st *provStation) check(t testing.TB) {
	t.Helper()
	if code, body := st.post(t, "/api/v1/provisioning/check", nil); code != http.StatusAccepted {
		t.Fatalf("POST /api/v1/provisioning/check: %d %s; want 202", code, body)
	}
}

// noEvent is a condition for consistently: no event of type typ since i.
func (st *provStation) noEvent(i int, typ string) func() error {
	return func() error {
		if es := st.Events.since(i, typ); len(es) > 0 {
			return fmt.Errorf("unexpected event %s", es[0].Raw)
		}
		return nil
	}
}

// binding is a registration as kamailio holds it; a new Call-ID is a new
// registration (RFC 3261 10.2.4: refreshes keep the Call-ID).
type binding struct {
	Contact, CallID string
}

// bindings returns user's registrations from ul.dump.
func bindings(k *kamailio, user string) ([]binding, error) {
	out, err := k.kamcmd("ul.dump")
	if err != nil {
		return nil, err
	}
	var bs []binding
	aor := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "AoR: "):
			aor = strings.TrimPrefix(line, "AoR: ")
		case aor != user:
		case strings.HasPrefix(line, "Address: "):
			bs = append(bs, binding{Contact: strings.TrimPrefix(line, "Address: ")})
		case strings.HasPrefix(line, "Call-ID: ") && len(bs) > 0:
			bs[len(bs)-1].CallID = strings.TrimPrefix(line, "Call-ID: ")
		}
	}
	return bs, sc.Err()
}

// oneBinding returns user's only registration or fails the test.
func oneBinding(t testing.TB, k *kamailio, user string) binding {
	t.Helper()
	bs, err := bindings(k, user)
	if err != nil {
		t.Fatal(err)
	}
	if len(bs) != 1 || bs[0].CallID == "" {
		t.Fatalf("kamailio holds %+v for %s; want one binding with a Call-ID", bs, user)
	}
	return bs[0]
}

// sameBinding is a condition: user is still registered by the same
// registration (the SIP agent was not restarted).
func sameBinding(k *kamailio, user string, want binding) func() error {
	return func() error {
		bs, err := bindings(k, user)
		if err != nil {
			return err
		}
		if len(bs) != 1 || bs[0] != want {
			return fmt.Errorf("kamailio holds %+v for %s; want only %+v", bs, user, want)
		}
		return nil
	}
}

// newBinding is a condition: user is registered by another registration
// than old.
func newBinding(k *kamailio, user string, old binding) func() error {
	return func() error {
		bs, err := bindings(k, user)
		if err != nil {
			return err
		}
		for _, b := range bs {
			if b.CallID != "" && b.CallID != old.CallID {
				return nil
			}
		}
		return fmt.Errorf("kamailio holds %+v for %s; want a registration other than Call-ID %s", bs, user, old.CallID)
	}
}

// neverRegistered is a condition for consistently: kamailio holds nothing
// for user.
func neverRegistered(k *kamailio, user string) func() error {
	return func() error {
		bs, err := bindings(k, user)
		if err != nil {
			return err
		}
		if len(bs) > 0 {
			return fmt.Errorf("kamailio holds %+v for %s", bs, user)
		}
		return nil
	}
}

// stationDoc is a provisioned document that registers the station as user
// with password, under the device name given.
func stationDoc(user, password, name string) []byte {
	return fmt.Appendf(nil, "device:\n  name: %s\nsip:\n  user: %q\n  password: %q\n", name, user, password)
}

// publishSigned publishes body and its detached ed25519 signature (base64)
// at name + ".sig".
func publishSigned(t testing.TB, n *nginx, key ed25519.PrivateKey, name string, body []byte) {
	t.Helper()
	n.publish(t, name+".sig", []byte(base64.StdEncoding.EncodeToString(ed25519.Sign(key, body))+"\n"))
	n.publish(t, name, body)
}

// TestProvisioningFetchApplyRegister (issue 5): a station whose local file
// has a wrong SIP password fetches its document from nginx at start,
// registers at kamailio as the user the document names, and a second check
// gets a 304 that changes nothing.
func TestProvisioningFetchApplyRegister(t *testing.T) {
	t.Parallel()
	requireTools(t, "kamailio", "kamcmd", "nginx")
	k, n, _, st := startWithDocument(t, "150")
	eventually(t, 20*time.Second, "kamailio holds the provisioned user 150", k.registered("150"))
	eventually(t, 10*time.Second, "station registered, document applied", all(
		st.registrationIs("registered"), st.provStateIs(provisioning.StateApplied)))
	eventually(t, 5*time.Second, "nginx served the document", n.served(0, st.DocURI, 200))
	if err := neverRegistered(k, "100")(); err != nil {
		t.Errorf("the local file's user registered with a wrong password: %v", err)
	}
	s := st.ProvStatus(t)
	if want := n.URL(st.DocURI); s.Provisioning.URL != want {
		t.Errorf("provisioning.url %q; want %q", s.Provisioning.URL, want)
	}
	if s.Provisioning.Error != "" || s.Provisioning.LastCheck == "" || s.Provisioning.LastChange == "" {
		t.Errorf("provisioning status after applying: %+v", *s.Provisioning)
	}
	reg := oneBinding(t, k, "150")
	st.settled()

	m, ev := n.mark(t), st.Events.mark()
	st.check(t)
	eventually(t, 10*time.Second, "nginx answers the second check with 304", n.served(m, st.DocURI, 304))
	eventually(t, 5*time.Second, "the check is counted", st.provIs(
		fmt.Sprintf("checks > %d, state applied", s.Provisioning.Checks), func(p provStatus) bool {
			return p.Provisioning.Checks > s.Provisioning.Checks && p.Provisioning.State == provisioning.StateApplied
		}))
	// Nothing to apply: no event, the registration is the same one.
	consistently(t, 2*time.Second, "after a 304", all(
		st.noEvent(ev, "provisioned"), st.noEvent(ev, "error"),
		st.registrationIs("registered"), sameBinding(k, "150", reg)))
	if got := n.requestsFor(t, m, st.DocURI); len(got) != 1 {
		t.Errorf("nginx saw %v for one check; want one GET", got)
	}
}

// TestProvisioningRefusesUntrustedServer: a provisioning server whose
// certificate another CA issued gets no request for the document; the
// station reports the certificate error.
func TestProvisioningRefusesUntrustedServer(t *testing.T) {
	t.Parallel()
	requireTools(t, "nginx")
	n := startNginx(t, nginxOptions{})
	mac := stationMAC(t)
	n.publish(t, mac+".yaml", stationDoc("150", "pw-150", "provisioned door"))
	other := newTestCA(t, t.TempDir(), "other")

	st := startProvisionedStation(t, provOptions{Server: n, CA: other.Path, User: "100", Password: "pw-100"})
	eventually(t, 10*time.Second, "provisioning error names the certificate", st.provIs(
		"provisioning.state error mentioning the certificate", func(p provStatus) bool {
			return p.Provisioning.State == provisioning.StateError &&
				strings.Contains(p.Provisioning.Error, "certificate")
		}))
	if got := n.requestsFor(t, 0, st.DocURI); len(got) != 0 {
		t.Errorf("nginx served %v to a station that does not trust it", got)
	}
	if s := st.ProvStatus(t); s.Provisioning.LastChange != "" {
		t.Errorf("provisioning.last_change %q; nothing was applied", s.Provisioning.LastChange)
	}
}

// TestProvisioningRefusesBadDocuments (issue 5): documents that do not
// parse, have an unknown key or a bad duration, carry a wrong signature or
// arrive cut short are each refused with a reason that names the fault;
// the station stays registered on the document it had, kamailio keeps the
// same registration, and the station still answers a call.
func TestProvisioningRefusesBadDocuments(t *testing.T) {
	t.Parallel()
	requireTools(t, "kamailio", "kamcmd", "nginx", "sipp")
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := startKamailio(t, kamailioOptions{})
	// The backend gets the document's URL once the file is gone from
	// nginx's root: the transfer cut short.
	cut := stationDoc("100", "pw-100", "door "+strings.Repeat("x", 4000))
	n := startNginx(t, nginxOptions{Backend: startTruncatingBackend(t, cut)})
	mac := stationMAC(t)
	good := stationDoc("100", "pw-100", "provisioned door")
	publishSigned(t, n, key, mac+".yaml", good)

	st := startProvisionedStation(t, provOptions{Registrar: k, Server: n, User: "100", Password: "wrong", PublicKey: pub})
	eventually(t, 20*time.Second, "station registered with the signed document", all(
		k.registered("100"), st.registrationIs("registered"), st.provStateIs(provisioning.StateApplied),
		n.served(0, st.DocURI, 200)))
	reg := oneBinding(t, k, "100")
	st.settled()

	cases := []struct {
		name   string
		body   []byte
		sign   ed25519.PrivateKey // nil: the document is removed, the backend cuts it
		result string             // of the error event
		reason string             // in the event's reason and in provisioning.error
	}{
		// Validation errors name the document, the line and the key.
		{"malformed YAML", []byte("sip:\n  password: [pw-100\n"), key, "refused", ".yaml:2: invalid YAML"},
		{"unknown key", []byte("sip:\n  pasword: pw-100\n"), key, "refused", ".yaml:2: sip.pasword: unknown key"},
		{"bad duration", []byte("sip:\n  register_expires: 60 parsecs\n"), key, "refused", ".yaml:2: sip.register_expires: invalid duration"},
		{"wrong signature", stationDoc("100", "pw-100", "forged door"), otherKey, "error", "bad signature"},
		{"truncated", nil, nil, "error", "truncated"},
	}
	refused := st.ProvStatus(t).Provisioning.Refused
	for _, c := range cases {
		ev, m := st.Events.mark(), n.mark(t)
		if c.sign != nil {
			publishSigned(t, n, c.sign, mac+".yaml", c.body)
		} else {
			n.remove(t, mac+".yaml")
		}
		st.check(t)
		e := st.Events.waitFor(t, ev, "error", 10*time.Second)
		if e.Fields["source"] != "provisioning" || e.Fields["result"] != c.result {
			t.Errorf("%s: event %s; want source provisioning, result %s", c.name, e.Raw, c.result)
		}
		if reason, _ := e.Fields["reason"].(string); !strings.Contains(reason, c.reason) {
			t.Errorf("%s: event reason %q; want it to mention %q", c.name, reason, c.reason)
		}
		s := st.ProvStatus(t)
		if !strings.Contains(s.Provisioning.Error, c.reason) {
			t.Errorf("%s: provisioning.error %q; want it to mention %q", c.name, s.Provisioning.Error, c.reason)
		}
		if c.result == "refused" {
			refused++
		}
		if s.Provisioning.Refused != refused {
			t.Errorf("%s: provisioning.refused %d; want %d", c.name, s.Provisioning.Refused, refused)
		}
		eventually(t, 2*time.Second, c.name+": nginx served the document", n.served(m, st.DocURI, 200))
		if es := st.Events.since(ev, "provisioned"); len(es) > 0 {
			t.Errorf("%s: a bad document was applied: %s", c.name, es[0].Raw)
		}
		eventually(t, 2*time.Second, c.name+": still registered the same way", all(
			st.registrationIs("registered"), sameBinding(k, "100", reg)))
	}
	if r := n.requestsFor(t, 0, st.DocURI); r[len(r)-1].BodyBytes >= len(cut) {
		t.Errorf("nginx sent %d of %d bytes of the cut document; want fewer", r[len(r)-1].BodyBytes, len(cut))
	}

	// A good document again is applied; it leaves the sip section alone,
	// so the registration is the same one.
	ev := st.Events.mark()
	publishSigned(t, n, key, mac+".yaml", []byte("device:\n  name: renamed door\nsip:\n  password: pw-100\n"))
	st.check(t)
	if e := st.Events.waitFor(t, ev, "provisioned", 10*time.Second); e.Fields["result"] != "applied" {
		t.Fatalf("event %s; want result applied", e.Raw)
	}
	consistently(t, time.Second, "a change outside sip keeps the registration", all(
		st.registrationIs("registered"), sameBinding(k, "100", reg)))

	// The configuration in effect works: kamailio routes a call to the
	// station, which answers it (calls from the registrar only).
	sippCall{
		Name: "after-refusals", Target: k.Addr, Service: "100", From: "301", FromHost: "127.0.0.1",
		Expect: 200, Hold: time.Second,
	}.run(t)
}

// TestProvisioningRollback (issue 5): a document whose SIP account cannot
// register is applied, then rolled back once rollback_after has passed;
// the station registers again with the last good document.
func TestProvisioningRollback(t *testing.T) {
	t.Parallel()
	requireTools(t, "kamailio", "kamcmd", "nginx")
	k, n, mac, st := registeredByDocument(t)
	old := oneBinding(t, k, "100")

	ev, m := st.Events.mark(), n.mark(t)
	n.publish(t, mac+".yaml", stationDoc("160", "wrong", "broken door"))
	st.check(t)
	eventually(t, 5*time.Second, "nginx served the bad account", n.served(m, st.DocURI, 200))
	// The new SIP agent un-registers the old account and fails with the new.
	eventually(t, 5*time.Second, "the station leaves 100 for the bad account", all(
		neverRegistered(k, "100"), st.registrationIs("failed")))
	st.Events.waitFor(t, ev, "unregistered", 5*time.Second)
	e := st.Events.waitFor(t, ev, "provisioned", 25*time.Second)
	if e.Fields["result"] != "rolled_back" {
		t.Fatalf("event %s; want result rolled_back", e.Raw)
	}
	if reason, _ := e.Fields["reason"].(string); !strings.Contains(reason, "not registered") {
		t.Errorf("rollback reason %q; want it to say the station did not register", reason)
	}
	t.Logf("rolled back: %s", e.Raw)
	eventually(t, 20*time.Second, "registered again with the good document", all(
		newBinding(k, "100", old), st.registrationIs("registered"),
		st.provIs("state rolled_back, one rollback", func(p provStatus) bool {
			return p.Provisioning.State == provisioning.StateRolledBack && p.Provisioning.Rollbacks == 1
		})))
	if err := neverRegistered(k, "160")(); err != nil {
		t.Errorf("the bad account registered: %v", err)
	}

	// The rolled back document is not applied again while the server
	// keeps it.
	back := oneBinding(t, k, "100")
	ev, m = st.Events.mark(), n.mark(t)
	st.check(t)
	eventually(t, 10*time.Second, "nginx answers 304", n.served(m, st.DocURI, 304))
	consistently(t, 2*time.Second, "the rolled back document stays off", all(
		st.noEvent(ev, "provisioned"), st.registrationIs("registered"), sameBinding(k, "100", back)))
}

// TestProvisioningCheckSyncNotify (issue 5): a NOTIFY with Event:
// check-sync from the registrar (kamailio itself sends it) makes the
// station fetch its document; the same NOTIFY from another address is
// answered 403 and fetches nothing.
func TestProvisioningCheckSyncNotify(t *testing.T) {
	t.Parallel()
	requireTools(t, "kamailio", "kamcmd", "nginx", "sipp")
	k, n, _, st := registeredByDocument(t)
	checks := st.ProvStatus(t).Provisioning.Checks

	m := n.mark(t)
	stranger := sippNotify(t, "notify-stranger", st.SIPAddr, "127.0.0.2", 403)
	if err := stranger.wait(10 * time.Second); err != nil {
		t.Fatalf("NOTIFY from 127.0.0.2: %v; want 403", err)
	}
	consistently(t, time.Second, "no check after a stranger's NOTIFY", func() error {
		if got := n.requestsFor(t, m, st.DocURI); len(got) > 0 {
			return fmt.Errorf("nginx saw %v", got)
		}
		return nil
	})

	code, err := kamailioNotify(k, st.SIPAddr, "100")
	if err != nil {
		t.Fatal(err)
	}
	if code != 200 {
		t.Fatalf("station answered kamailio's NOTIFY with %d; want 200", code)
	}
	eventually(t, 10*time.Second, "nginx gets the check", n.served(m, st.DocURI, 304))
	eventually(t, 5*time.Second, "one more check", st.provIs(fmt.Sprintf("checks %d", checks+1), func(p provStatus) bool {
		return p.Provisioning.Checks == checks+1
	}))
	consistently(t, time.Second, "one check only", func() error {
		if got := n.requestsFor(t, m, st.DocURI); len(got) != 1 {
			return fmt.Errorf("nginx saw %v; want one GET", got)
		}
		return nil
	})
}

// sippNotify sends one NOTIFY check-sync from localIP to target with sipp
// and expects the final response expect
// (testdata/provisioning/notify.xml.tmpl).
func sippNotify(t testing.TB, name, target, localIP string, expect int) *sipp {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "sipp-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	tmpl := template.Must(template.ParseFiles("testdata/provisioning/notify.xml.tmpl"))
	var out bytes.Buffer
	if err := tmpl.Execute(&out, map[string]any{"Expect": expect}); err != nil {
		t.Fatal(err)
	}
	xml := filepath.Join(dir, name+".xml")
	if err := os.WriteFile(xml, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return startSipp(t, name, xml, target, "100", localIP)
}

// kamailioNotify makes kamailio send an out-of-dialog NOTIFY check-sync to
// the station at target, as an operator would with kamcmd (the tm module's
// t_uac_wait_block RPC: binrpc cannot wait asynchronously), and returns the
// station's final response code.
func kamailioNotify(k *kamailio, target, user string) (int, error) {
	// tm adds the From tag itself; it wants a Content-Type even for the
	// empty body ("s:" is kamcmd's empty string).
	headers := strings.Join([]string{
		fmt.Sprintf("From: <sip:provisioning@%s>", k.Addr),
		fmt.Sprintf("To: <sip:%s@%s>", user, target),
		"Event: check-sync",
		"Subscription-State: terminated",
		"Content-Type: text/plain",
		"",
	}, "\r\n")
	out, err := k.kamcmd("tm.t_uac_wait_block", "NOTIFY", fmt.Sprintf("sip:%s@%s", user, target), ".", ".", headers, "s:")
	if err != nil {
		return 0, err
	}
	// The reply prints as "{ code: 200 text: OK }".
	var code int
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "code: "); ok {
			if _, err := fmt.Sscan(v, &code); err == nil {
				return code, nil
			}
		}
	}
	return 0, fmt.Errorf("kamcmd tm.t_uac_wait_block: no status code in %q", out)
}

// registerRequests counts the REGISTER requests from user in kamailio's
// log (its request_route logs every request with its From URI).
func registerRequests(t testing.TB, k *kamailio, user string) int {
	t.Helper()
	data, err := os.ReadFile(k.proc.logPath)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, "request REGISTER ") && strings.Contains(line, " from sip:"+user+"@") {
			n++
		}
	}
	return n
}

// TestProvisioningKeepsDocumentsAcrossRestart: a station restarted while
// its provisioning server is down starts from the documents it stored and
// registers as the provisioned user at once, never as the local file's.
func TestProvisioningKeepsDocumentsAcrossRestart(t *testing.T) {
	t.Parallel()
	requireTools(t, "kamailio", "kamcmd", "nginx")
	k, n, _, st := startWithDocument(t, "150")
	eventually(t, 20*time.Second, "station registered as the provisioned user", all(
		k.registered("150"), st.registrationIs("registered"), st.provStateIs(provisioning.StateApplied)))
	before := oneBinding(t, k, "150")

	n.proc.stop(t)
	tries := registerRequests(t, k, "100")
	st.restart(t)
	eventually(t, 20*time.Second, "registered again from the stored document", all(
		newBinding(k, "150", before), st.registrationIs("registered")))
	eventually(t, 10*time.Second, "the unreachable server is reported", st.provIs(
		"provisioning.state error", func(p provStatus) bool {
			return p.Provisioning.State == provisioning.StateError && p.Provisioning.Error != ""
		}))
	if got := registerRequests(t, k, "100"); got != tries {
		t.Errorf("kamailio got %d REGISTER from the local file's user 100 after the restart; want none", got-tries)
	}
}

// TestProvisioningWaitsForCallEnd: a document that changes the sip section
// arrives during a call; the station keeps the call and its registration
// until the caller hangs up, then applies the document.
func TestProvisioningWaitsForCallEnd(t *testing.T) {
	t.Parallel()
	requireTools(t, "kamailio", "kamcmd", "nginx", "sipp")
	k, n, mac, st := registeredByDocument(t)
	reg := oneBinding(t, k, "100")

	call := sippCall{
		Name: "during-change", Target: k.Addr, Service: "100", From: "301", FromHost: "127.0.0.1",
		Expect: 200, Hold: 4 * time.Second,
	}.start(t)
	eventually(t, 10*time.Second, "the station answered", st.callIs("active"))
	ev, m := st.Events.mark(), n.mark(t)
	n.publish(t, mac+".yaml", []byte("device:\n  name: renamed door\nsip:\n  password: pw-100\n  display_name: renamed door\n"))
	st.check(t)
	eventually(t, 5*time.Second, "nginx served the change", n.served(m, st.DocURI, 200))
	consistently(t, time.Second, "nothing applied during the call", all(
		st.callIs("active"), st.noEvent(ev, "provisioned"), sameBinding(k, "100", reg)))
	// The caller's BYE gets its 200: the call was never cut.
	if err := call.wait(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if e := st.Events.waitFor(t, ev, "provisioned", 10*time.Second); e.Fields["result"] != "applied" {
		t.Fatalf("event %s; want result applied", e.Raw)
	}
	if es := st.Events.since(ev, "hangup"); len(es) == 0 || st.Events.since(ev)[0].Type == "provisioned" {
		t.Errorf("events %s; want the hangup before the document is applied", st.Events.summary(ev))
	}
	eventually(t, 10*time.Second, "registered anew with the changed sip section", all(
		newBinding(k, "100", reg), st.registrationIs("registered")))
}
