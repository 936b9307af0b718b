package config

import (
	"errors"
	"fmt"
	"intercom/provisioning"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// Bounds of the provisioning timers: checking more often than once a
// minute only loads the server, and a new document needs time to register
// before it is judged.
const (
	minProvisioningInterval = time.Minute
	minRollbackAfter        = 10 * time.Second
)

// Messages never quote the URLs or the credentials: they end up in logs.
func (d *decoder) validateProvisioning(p *Provisioning) {
	for _, u := range []struct{ path, value string }{
		{"provisioning.url", p.URL},
		{"provisioning.common_url", p.CommonURL},
	} {
		if u.value == "" {
			continue
		}
		if err := checkProvisioningURL(u.value); err != nil {
			d.errf(u.path, "%v", err)
		}
	}
	if p.CommonURL != "" && p.URL == "" {
		d.errf("provisioning.common_url", "needs provisioning.url as well (the station's own document)")
	}
	switch {
	case p.Interval <= 0:
		d.errf("provisioning.interval", "must be positive, got %v", p.Interval)
	case p.URL != "" && p.Interval < minProvisioningInterval:
		d.errf("provisioning.interval", "must be at least %v, got %v", minProvisioningInterval, p.Interval)
	}
	switch {
	case p.ClientCert != "" && p.ClientKey == "":
		d.errf("provisioning.client_key", "required with client_cert")
	case p.ClientKey != "" && p.ClientCert == "":
		d.errf("provisioning.client_cert", "required with client_key")
	}
	switch {
	case p.Password != "" && p.User == "":
		d.errf("provisioning.password", "needs user as well (HTTP basic auth)")
	case p.User != "" && p.Token != "":
		d.errf("provisioning.token", "use either user and password (basic auth) or token (bearer), not both")
	}
	if p.PublicKey != "" {
		if err := checkPublicKey(p.PublicKey); err != nil {
			d.errf("provisioning.public_key", "%v", err)
		}
	}
	if p.RollbackAfter < minRollbackAfter {
		d.errf("provisioning.rollback_after", "must be at least %v, got %v", minRollbackAfter, p.RollbackAfter)
	}
	if !filepath.IsAbs(p.StateDir) {
		d.errf("provisioning.state_dir", "must be an absolute directory path, got %q", p.StateDir)
	}
}

// placeholders are what the station substitutes in a provisioning URL.
var placeholders = strings.NewReplacer("{mac}", "000000000000", "{serial}", "0")

// unknownPlaceholder is quoted back in errors: it cannot hold a password.
var unknownPlaceholder = regexp.MustCompile(`\{[A-Za-z_]*\}`)

// checkProvisioningURL accepts an http or https URL with a host, in which
// {mac} and {serial} may appear anywhere. The error never quotes the URL.
func checkProvisioningURL(s string) error {
	expanded := placeholders.Replace(s)
	if ph := unknownPlaceholder.FindString(expanded); ph != "" {
		return fmt.Errorf("unknown placeholder %q: use {mac} or {serial}", ph)
	}
	u, err := url.Parse(expanded)
	switch {
	case err != nil:
		// url.Parse quotes the URL, which may hold a password.
		return fmt.Errorf("not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Errorf("scheme must be https or http, got %q", u.Scheme)
	case u.Host == "":
		return fmt.Errorf("has no host")
	case strings.ContainsAny(expanded, "{}"):
		return fmt.Errorf("'{' and '}' only enclose the placeholders {mac} and {serial}")
	}
	return nil
}

// checkPublicKey accepts an ed25519 public key written inline, as base64
// of its 32 bytes or as a PEM PUBLIC KEY block, or an absolute path to a
// file holding one; the file is read when the station starts, not here,
// since the config may be checked elsewhere.
func checkPublicKey(s string) error {
	s = strings.TrimSpace(s)
	_, err := provisioning.ParsePublicKeyText(s)
	switch {
	case err == nil, filepath.IsAbs(s):
		return nil
	case errors.Is(err, provisioning.ErrNotKeyText):
		return fmt.Errorf("%w nor the absolute path of a file holding one", err)
	}
	return err
}
