package provisioning

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"
)

// TLSConfig names the PEM files that secure the connection to the
// provisioning server.
type TLSConfig struct {
	// CA is the only trusted root when set; empty trusts the system roots.
	CA string
	// ClientCert and ClientKey identify the station (mutual TLS); both or neither.
	ClientCert, ClientKey string
}

const (
	clientTimeout       = 30 * time.Second
	tlsHandshakeTimeout = 10 * time.Second
	maxRedirects        = 5
)

// NewClient returns an HTTP client for provisioning: certificates are
// always verified, TLS 1.2 is the minimum, a whole request is bounded by
// 30 s and a redirect may not leave HTTPS for plain HTTP.
func NewClient(c TLSConfig) (*http.Client, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CA != "" {
		pem, err := os.ReadFile(c.CA)
		if err != nil {
			return nil, fmt.Errorf("provisioning: ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("provisioning: ca: %s holds no PEM certificate", c.CA)
		}
		tc.RootCAs = pool
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		return nil, errors.New("provisioning: client certificate and key must be given together")
	}
	if c.ClientCert != "" {
		pair, err := tls.LoadX509KeyPair(c.ClientCert, c.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("provisioning: client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	tr.TLSHandshakeTimeout = tlsHandshakeTimeout
	tr.Proxy = http.ProxyFromEnvironment
	return &http.Client{
		Transport:     tr,
		Timeout:       clientTimeout,
		CheckRedirect: checkRedirect,
	}, nil
}

// checkRedirect refuses a downgrade from HTTPS: it would send the
// credentials and fetch the configuration in the clear.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return errors.New("provisioning: too many redirects")
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return errors.New("provisioning: redirect from https to " + req.URL.Scheme + " refused")
	}
	return nil
}
