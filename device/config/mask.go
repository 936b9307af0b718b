package config

import (
	"fmt"
	"net/url"
	"slices"

	"github.com/goccy/go-yaml"
)

// masked replaces a secret in Masked's copy.
const masked = "***"

// Masked returns a deep copy of c with the secrets replaced by "***": the
// SIP password, the API token, the door codes, the provisioning password
// and token, and a password in a provisioning or relay URL. Empty secrets
// stay empty so that the copy still shows which ones are unset. c is not
// modified.
func (c *Config) Masked() *Config {
	m := c.clone()
	mask(&m.SIP.Password)
	mask(&m.API.Token)
	for i := range m.Door.Codes {
		mask(&m.Door.Codes[i].Code)
	}
	maskURL(&m.Provisioning.URL)
	maskURL(&m.Provisioning.CommonURL)
	mask(&m.Provisioning.Password)
	mask(&m.Provisioning.Token)
	for i := range m.Relays {
		mask(&m.Relays[i].Password)
		mask(&m.Relays[i].Token)
		maskURL(&m.Relays[i].URL)
	}
	return m
}

// maskURL hides a password written into a URL's user info.
func maskURL(s *string) {
	if u, err := url.Parse(*s); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), masked)
			*s = u.String()
		}
	}
}

func mask(s *string) {
	if *s != "" {
		*s = masked
	}
}

// clone copies c and every slice it holds.
func (c *Config) clone() *Config {
	m := *c
	m.Calls.AutoAnswer.Allow = slices.Clone(c.Calls.AutoAnswer.Allow)
	m.Buttons = slices.Clone(c.Buttons)
	for i := range m.Buttons {
		m.Buttons[i].Call = slices.Clone(c.Buttons[i].Call)
		m.Buttons[i].Schedule = slices.Clone(c.Buttons[i].Schedule)
		for j := range m.Buttons[i].Schedule {
			e := &m.Buttons[i].Schedule[j]
			e.Days, e.Call = slices.Clone(e.Days), slices.Clone(e.Call)
		}
	}
	m.Relays = slices.Clone(c.Relays)
	m.Inputs = slices.Clone(c.Inputs)
	m.LEDs = slices.Clone(c.LEDs)
	m.Door.Codes = slices.Clone(c.Door.Codes)
	m.Door.DTMF = slices.Clone(c.Door.DTMF)
	m.Audio.Codecs = slices.Clone(c.Audio.Codecs)
	return &m
}

// Marshal renders c as YAML with the keys of DESIGN §4, durations in Go
// syntax; Parse reads the result back to an equal Config. It does not mask:
// `intercom config show` marshals c.Masked().
func Marshal(c *Config) ([]byte, error) {
	b, err := yaml.MarshalWithOptions(c, yaml.Indent(2), yaml.IndentSequence(true))
	if err != nil {
		return nil, fmt.Errorf("config: marshal: %w", err)
	}
	return b, nil
}
