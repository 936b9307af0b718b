package sipagent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"
)

// TLS configures SIP over TLS (Config.Transport "tls"). The Contact we
// register is sip:user@host:port;transport=tls, not a sips: URI: sips
// would demand TLS on every hop to the phone (RFC 3261 section 26.2.2),
// which PBXs with phones on UDP cannot give. Without Certificate the
// Contact names our end of the connection we opened to the registrar, so
// that the registrar sends calls over that connection; with Certificate it
// names our listening port, where peers connect to us.
type TLS struct {
	// RootCAs verifies every server we connect to; nil: the system roots.
	RootCAs *x509.CertPool
	// ClientCertificate is presented to servers that ask for one; nil:
	// none.
	ClientCertificate *tls.Certificate
	// Certificate is our listener's server certificate; nil: handshakes
	// on our listening port fail.
	Certificate *tls.Certificate
	// NotBefore is the earliest plausible time: registration does not
	// start its first handshake while the Clock is earlier, since a board
	// without a real-time clock boots in 1970 and every certificate would
	// look not yet valid. Zero: no wait.
	NotBefore time.Time
}

const (
	// defaultTLSPort is SIP over TLS's port when neither the URI nor DNS
	// names one (RFC 3261 section 19.1.2).
	defaultTLSPort = 5061
	// clockPoll is how often registration looks at an implausible clock
	// again; NTP usually sets it within a minute of boot.
	clockPoll = 5 * time.Second
)

// LoadTLS reads the PEM files of the sip.tls configuration keys: the CA
// bundle that replaces the system roots, our server certificate and key,
// and our client certificate and key. Empty names leave a part unset; a
// certificate needs its key.
func LoadTLS(caFile, certFile, keyFile, clientCertFile, clientKeyFile string) (TLS, error) {
	var t TLS
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return TLS{}, fmt.Errorf("sipagent: tls ca: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return TLS{}, fmt.Errorf("sipagent: tls ca %s: no PEM certificate in it", caFile)
		}
	}
	var err error
	if t.Certificate, err = loadPair("cert", certFile, keyFile); err != nil {
		return TLS{}, err
	}
	if t.ClientCertificate, err = loadPair("client_cert", clientCertFile, clientKeyFile); err != nil {
		return TLS{}, err
	}
	return t, nil
}

func loadPair(what, certFile, keyFile string) (*tls.Certificate, error) {
	if certFile == "" && keyFile == "" {
		return nil, nil
	}
	if certFile == "" || keyFile == "" {
		return nil, fmt.Errorf("sipagent: tls %s: need both the certificate and its key", what)
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("sipagent: tls %s: %w", what, err)
	}
	return &c, nil
}

// tlsConfigs builds the client and server configurations. The client
// verifies against serverName, the first hop's host (SNI with a name;
// an IP literal is checked against the certificate's IP addresses), and
// the Clock's time, so that the clock wait and verification agree.
func (a *Agent) tlsConfigs(serverName string) (client, server *tls.Config) {
	t := a.cfg.TLS
	client = &tls.Config{
		RootCAs:    t.RootCAs,
		ServerName: serverName,
		MinVersion: tls.VersionTLS12,
		Time:       a.clk.Now,
	}
	if t.ClientCertificate != nil {
		client.Certificates = []tls.Certificate{*t.ClientCertificate}
	}
	server = &tls.Config{MinVersion: tls.VersionTLS12, Time: a.clk.Now}
	if t.Certificate != nil {
		server.Certificates = []tls.Certificate{*t.Certificate}
	} else {
		server.GetCertificate = func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return nil, errors.New("sipagent: tls: no server certificate (sip.tls.cert) for incoming connections")
		}
	}
	return client, server
}

// setFlowContact makes our Contact toward the registrar name our end of
// the TLS connection fc when we have no server certificate: nobody could
// complete a handshake on our listening port, while a registrar (or PBX)
// that looks connections up by address sends requests for that address
// over fc itself (RFC 3261 section 18.2.2 for responses, connection reuse
// for requests). A new connection gets a new port, and registration then
// replaces the binding (register.go). nil: no connection of ours, back to
// the listening address.
func (a *Agent) setFlowContact(fc *flowConn) {
	if a.transport != "TLS" || a.cfg.TLS.Certificate != nil {
		return
	}
	var ap netip.AddrPort
	if fc != nil {
		if la, ok := fc.LocalAddr().(*net.TCPAddr); ok {
			ap = netip.AddrPortFrom(la.AddrPort().Addr().Unmap(), la.AddrPort().Port())
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.flowContact; old.IsValid() && old != ap {
		// The old connection's local end is of no further use; calls
		// that hold it keep their own reference.
		delete(a.locals, endKey{ip: old.Addr(), public: old})
	}
	a.flowContact = ap
}

// handshakeError is a failed TLS handshake on a connection we opened:
// the server is there but cannot be trusted (or does not trust us), so
// registration reports it instead of trying around it.
type handshakeError struct {
	addr netip.AddrPort
	err  error
}

func (e *handshakeError) Error() string {
	return fmt.Sprintf("sipagent: tls handshake with %s: %v", e.addr, e.err)
}

func (e *handshakeError) Unwrap() error { return e.err }

// waitClock holds registration, and with it the first TLS handshake,
// until the clock reaches TLS.NotBefore; false when ctx ended first.
// Registration stays "registering" meanwhile, the reason in its error.
func (r *registration) waitClock(ctx context.Context) bool {
	a := r.a
	nb := a.cfg.TLS.NotBefore
	if a.transport != "TLS" || nb.IsZero() {
		return true
	}
	reported := false
	for now := a.clk.Now(); now.Before(nb); now = a.clk.Now() {
		if !reported {
			err := fmt.Errorf("sipagent: tls: waiting for the clock: %s is before %s",
				now.UTC().Format(time.RFC3339), nb.UTC().Format(time.RFC3339))
			a.log.Warn("sipagent: clock not set, TLS waits for it", "now", now, "not_before", nb)
			r.report(StateRegistering, time.Time{}, err)
			reported = true
		}
		if !a.sleep(ctx, clockPoll) {
			return false
		}
	}
	if reported {
		// The clock is set: clear the reason from the status.
		r.report(StateRegistering, time.Time{}, nil)
	}
	return true
}
