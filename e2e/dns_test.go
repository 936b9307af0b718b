package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// dnsmasq is a DNS server on its own loopback address, port 53, serving
// only the records it was started with.
type dnsmasq struct {
	Addr string // 127.x.y.z, port 53
	proc *proc
}

// startDNSMasq runs dnsmasq in the foreground on a loopback address made
// from a port freePorts handed out, so that parallel tests do not share
// one. It answers for the names in records, says no other name in domain
// exists, and forwards nothing; it is ready once probeName resolves.
func startDNSMasq(t testing.TB, domain, probeName string, records ...string) *dnsmasq {
	t.Helper()
	requireTools(t, "dnsmasq")
	port := freePorts(t, 1)
	d := &dnsmasq{Addr: fmt.Sprintf("127.53.%d.%d", port>>8, port&0xff)}
	dir := filepath.Join(t.TempDir(), "dnsmasq")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--no-daemon", "--conf-file=/dev/null", "--pid-file=", "--no-resolv", "--no-hosts",
		"--listen-address=" + d.Addr, "--port=53", "--bind-interfaces",
		"--local=/" + domain + "/", "--local-ttl=60", "--log-queries", "--log-facility=-",
	}
	args = append(args, records...)
	d.proc = startProc(t, dir, "dnsmasq", tool(t, "dnsmasq"), args...)
	eventually(t, 5*time.Second, "dnsmasq answers", all(d.proc.alive, d.probe(probeName)))
	return d
}

// probe is a condition: dnsmasq answers an A query for name.
func (d *dnsmasq) probe(name string) func() error {
	r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dialer net.Dialer
		return dialer.DialContext(ctx, "udp", net.JoinHostPort(d.Addr, "53"))
	}}
	return func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := r.LookupHost(ctx, name)
		return err
	}
}

// requireRoot skips a test that needs to mount: the station reads
// /etc/resolv.conf, so it runs in a private mount namespace where that
// file is the test's (CI runs as root).
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs the station in a mount namespace with its own /etc/resolv.conf")
	}
	requireTools(t, "unshare", "mount")
	// A container without CAP_SYS_ADMIN has root but no mount namespaces.
	if out, err := exec.Command(tool(t, "unshare"), "--mount", "--propagation", "private", "true").CombinedOutput(); err != nil {
		msg := fmt.Sprintf("needs mount namespaces (unshare --mount: %v: %s)", err, strings.TrimSpace(string(out)))
		if os.Getenv("INTERCOM_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
}

// withResolvConf is a stationOptions.Wrap running the station with
// /etc/resolv.conf naming only server.
func withResolvConf(t testing.TB, server string) []string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "resolv.conf")
	if err := os.WriteFile(path, []byte("nameserver "+server+"\noptions timeout:2 attempts:2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{
		tool(t, "unshare"), "--mount", "--propagation", "private",
		"sh", "-c", `mount --bind "$0" /etc/resolv.conf && exec "$@"`, path,
	}
}

// TestDNSSRVFailover: the registrar is a domain whose SRV records name a
// dead server first (priority 10) and kamailio second (priority 20),
// reached through a NAPTR record (RFC 3263): the station registers with
// kamailio, keeping the domain in its address-of-record. The bell calls a
// phone at another domain with the same two SRV targets: the INVITE goes
// to kamailio after the dead one stayed silent, and the call has audio.
func TestDNSSRVFailover(t *testing.T) {
	requireRoot(t)
	requirePeers(t)
	requireTools(t, "dnsmasq")
	k := startKamailio(t, kamailioOptions{})
	dead := freePorts(t, 1) // nothing listens there
	dns := startDNSMasq(t, "pbx.test", "kam.pbx.test",
		"--naptr-record=pbx.test,10,50,s,SIP+D2U,,_sip._udp.pbx.test",
		fmt.Sprintf("--srv-host=_sip._udp.pbx.test,dead.pbx.test,%d,10,0", dead),
		fmt.Sprintf("--srv-host=_sip._udp.pbx.test,kam.pbx.test,%d,20,0", k.Port),
		fmt.Sprintf("--srv-host=_sip._udp.calls.pbx.test,dead.pbx.test,%d,10,0", dead),
		fmt.Sprintf("--srv-host=_sip._udp.calls.pbx.test,kam.pbx.test,%d,20,0", k.Port),
		"--host-record=dead.pbx.test,127.0.0.1",
		"--host-record=kam.pbx.test,127.0.0.1",
	)
	p := startPhone(t, phoneOptions{User: "201", Registrar: k, ToneHz: 1000})
	st := startStation(t, stationOptions{
		Registrar: k, RegistrarHost: "pbx.test", ToneHz: 440, Call: []string{"sip:201@calls.pbx.test"},
		Wrap: withResolvConf(t, dns.Addr),
	})
	// The dead target costs one per-target timeout (4 s) first.
	eventually(t, 20*time.Second, "station registered through the second SRV target",
		all(k.registered("100"), st.registrationIs("registered")))
	s := st.Status(t)
	if s.Registration.Registrar != "pbx.test" {
		t.Errorf("status registration.registrar %q, want pbx.test", s.Registration.Registrar)
	}
	c, err := k.Contacts()
	if err != nil {
		t.Fatal(err)
	}
	if got := c["100"]; len(got) != 1 || !strings.Contains(got[0], st.SIPAddr) {
		t.Errorf("kamailio contacts of 100: %q, want the station at %s", got, st.SIPAddr)
	}

	eventually(t, 10*time.Second, "201 registered", k.registered("201"))
	mp := bellAnswered(t, st, p)
	hangupWithTones(t, st, p, mp)
}
