package e2e

// Acceptance 1 of issue 7, its TLS half: registration and a call over TLS
// through kamailio with a certificate the test makes, and a kamailio whose
// certificate comes from another CA refused.

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"text/template"
	"time"
)

// startTLSKamailio runs kamailio with a TLS port whose certificate (for
// 127.0.0.1) is issued by ca.
func startTLSKamailio(t *testing.T, ca *testCA) *kamailio {
	t.Helper()
	dir := t.TempDir()
	cert, key := ca.issue(t, dir, "kamailio")
	return startKamailio(t, kamailioOptions{RecordRoute: true, TLS: &kamailioTLS{CertPath: cert, KeyPath: key}})
}

// tlsPeers starts kamailio with a TLS port whose certificate comes from a
// new test CA, and phone 201 (on UDP, a 1000 Hz tone) registered at it.
func tlsPeers(t *testing.T) (*testCA, *kamailio, *phone) {
	t.Helper()
	ca := newTestCA(t, t.TempDir(), "ca")
	k := startTLSKamailio(t, ca)
	return ca, k, startPhone(t, phoneOptions{User: "201", Registrar: k, ToneHz: 1000})
}

// registeredOverTLS waits until st is registered as 100 at k over TLS.
func registeredOverTLS(t *testing.T, k *kamailio, st *station) {
	t.Helper()
	eventually(t, registerTimeout, "station registered over TLS",
		all(k.registeredOver("100", "tls"), st.registrationIs("registered")))
}

// startTLSStation runs a station registered to k's TLS port as user 100,
// trusting the CA in caPath; its bell calls 201 at k, over TLS too, its
// microphone a 440 Hz tone. With own, the station has a server
// certificate from it for its listening port.
func startTLSStation(t *testing.T, k *kamailio, caPath string, own *testCA) *station {
	t.Helper()
	st, dir, data := newFileStation(t)
	cert, key := "", ""
	if own != nil {
		cert, key = own.issue(t, dir, "station")
	}
	data["Transport"], data["Registrar"], data["CA"], data["Cert"], data["Key"] = "tls", k.TLSAddr, caPath, cert, key
	data["Call"] = fmt.Sprintf("sip:201@%s", k.TLSAddr)
	st.runTemplate(t, dir, template.Must(template.New("station").Parse(streamStationYAML)), data)
	return st
}

// registrationError reads the station's registration state and error,
// which stationStatus leaves out.
func (st *station) registrationError() (state, msg string, err error) {
	body, err := st.get("/api/v1/status")
	if err != nil {
		return "", "", err
	}
	var s struct {
		Registration struct {
			State string `json:"state"`
			Error string `json:"error"`
		} `json:"registration"`
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return "", "", fmt.Errorf("status: %v: %s", err, body)
	}
	return s.Registration.State, s.Registration.Error, nil
}

// TestTLSRegisterAndCall: the station registers with kamailio over TLS,
// verifying kamailio's certificate against the test's CA, and its bell
// rings phone 201 (on UDP) with audio both ways; the signalling to the
// station, the phone's answer and the BYE included, goes over TLS.
func TestTLSRegisterAndCall(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	ca, k, p := tlsPeers(t)
	st := startTLSStation(t, k, ca.Path, nil)
	registeredOverTLS(t, k, st)
	if r := st.Status(t).Registration; r.Transport != "tls" || r.Address != k.TLSAddr {
		t.Errorf("status registration transport %q address %q, want tls and kamailio's %s", r.Transport, r.Address, k.TLSAddr)
	}

	bellCallWithTones(t, st, p)

	// kamailio routes a call to the station over its TLS connection.
	phoneCallsStation(t, st, p, k)
	p.Hangup(t)
	eventually(t, 5*time.Second, "station idle", st.callIs("idle"))
}

// TestTLSUnknownCARefused: kamailio's certificate is signed by a CA the
// station does not trust: registration fails naming the certificate, and
// nothing registers.
func TestTLSUnknownCARefused(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	dir := t.TempDir()
	trusted := newTestCA(t, dir, "trusted")
	other := newTestCA(t, dir, "other")
	k := startTLSKamailio(t, other)
	st := startTLSStation(t, k, trusted.Path, nil)
	eventually(t, registerTimeout, "registration failed over the certificate", func() error {
		state, msg, err := st.registrationError()
		if err != nil {
			return err
		}
		if state != "failed" || !strings.Contains(msg, "certificate") {
			return fmt.Errorf("registration %q, error %q", state, msg)
		}
		return nil
	})
	c, err := k.Contacts()
	if err != nil {
		t.Fatal(err)
	}
	if len(c) != 0 {
		t.Errorf("kamailio has registrations %v", c)
	}
}

// TestTLSStationCertificate: with a server certificate the station
// registers its listening address, and kamailio opens a TLS connection to
// it for a call from the phone.
func TestTLSStationCertificate(t *testing.T) {
	t.Parallel()
	requirePeers(t)
	ca, k, p := tlsPeers(t)
	st := startTLSStation(t, k, ca.Path, ca)
	contact := "@" + st.SIPAddr + ";transport=tls"
	eventually(t, registerTimeout, "station registered its listening address over TLS", all(st.registrationIs("registered"), func() error {
		c, err := k.Contacts()
		if err != nil {
			return err
		}
		for _, addr := range c["100"] {
			if strings.Contains(addr, contact) {
				return nil
			}
		}
		return fmt.Errorf("100 registered as %v, want a contact with %s", c["100"], contact)
	}))

	mp := phoneCallsStation(t, st, p, k)
	hangupWithTones(t, st, p, mp)
}
