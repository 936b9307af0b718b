package config

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"intercom/media/tone"
)

// normalize fills in the defaults that depend on other values.
func (c *Config) normalize() {
	if c.SIP.Listen == "" {
		// SIP over TLS has its own port (RFC 3261 section 19.1.2).
		c.SIP.Listen = "0.0.0.0:5060"
		if c.SIP.Transport == "tls" {
			c.SIP.Listen = "0.0.0.0:5061"
		}
	}
	if c.SIP.AuthUser == "" {
		c.SIP.AuthUser = c.SIP.User
	}
	for i := range c.Buttons {
		for j := range c.Buttons[i].Schedule {
			if c.Buttons[i].Schedule[j].Ring == "" {
				c.Buttons[i].Schedule[j].Ring = c.Buttons[i].Ring
			}
		}
	}
	for i := range c.Inputs {
		in := &c.Inputs[i]
		if in.Role == "" {
			in.Role = "generic"
		}
		if in.Role == "exit_button" && in.Relay == "" && len(c.Relays) > 0 {
			in.Relay = c.Relays[0].Name
		}
	}
}

func (d *decoder) validate(c *Config) {
	if c.Device.Timezone != "" {
		if _, err := time.LoadLocation(c.Device.Timezone); err != nil {
			d.errf("device.timezone", "%q is not a time zone name such as Europe/Berlin or UTC (from the system's tzdata)", c.Device.Timezone)
		}
	}
	d.validateSIP(&c.SIP)
	d.validateCalls(&c.Calls)
	d.oneOf("gpio.driver", c.GPIO.Driver, "auto", "sim")
	d.validatePins(c)
	d.validateDoor(c)
	d.validateAudio(&c.Audio)
	if c.Audio.SRTP == "required" && c.SIP.Transport != "tls" {
		// SDES keys in SDP over plain SIP would be readable by anyone on
		// the path (RFC 4568 section 8.3).
		d.errf("audio.srtp", "required needs sip.transport tls, which is %q", c.SIP.Transport)
	}
	d.validateAPI(&c.API)
	d.validateProvisioning(&c.Provisioning)
}

func (d *decoder) validateSIP(s *SIP) {
	d.oneOf("sip.transport", s.Transport, "udp", "tcp", "tls")
	if err := checkHostPort(s.Listen); err != nil {
		d.errf("sip.listen", "%v", err)
	}
	if s.Registrar != "" && s.User == "" {
		d.errf("sip.user", "required when sip.registrar is set")
	}
	// Expires is a whole number of seconds (RFC 3261 §20.19).
	if s.RegisterExpires < time.Second {
		d.errf("sip.register_expires", "must be at least 1s, got %v", s.RegisterExpires)
	}
	d.nonNegative("sip.keepalive", s.Keepalive)
	d.oneOf("sip.nat", s.NAT, "auto", "off")
	d.validateSIPTLS(s)
	d.validateDefence(&s.Defence)
}

// validateDefence checks sip.defence; the limits must let some traffic
// through, or the station could not even be called.
func (d *decoder) validateDefence(f *Defence) {
	if !(f.Rate > 0) {
		d.errf("sip.defence.rate", "must be a positive number of messages per second, got %v", f.Rate)
	}
	if f.Burst < 1 {
		d.errf("sip.defence.burst", "must be at least 1, got %d", f.Burst)
	}
	d.positive("sip.defence.block_for", f.BlockFor)
	for i, s := range f.Scanners {
		if strings.TrimSpace(s) == "" {
			d.errf(fmt.Sprintf("sip.defence.scanners[%d]", i), "must not be empty")
		}
	}
}

// validateSIPTLS checks that sip.tls names certificates with their keys,
// and only for sip.transport tls, where they are used.
func (d *decoder) validateSIPTLS(s *SIP) {
	t := s.TLS
	if t != (SIPTLS{}) && s.Transport != "tls" {
		d.errf("sip.tls", "only used with sip.transport tls, which is %q", s.Transport)
		return
	}
	for _, p := range []struct{ cert, key, certPath, keyPath string }{
		{t.Cert, t.Key, "sip.tls.cert", "sip.tls.key"},
		{t.ClientCert, t.ClientKey, "sip.tls.client_cert", "sip.tls.client_key"},
	} {
		switch {
		case p.cert != "" && p.key == "":
			d.errf(p.keyPath, "required with %s", p.certPath)
		case p.cert == "" && p.key != "":
			d.errf(p.certPath, "required with %s", p.keyPath)
		}
	}
}

func (d *decoder) validateCalls(c *Calls) {
	d.positive("calls.ring_timeout", c.RingTimeout)
	d.positive("calls.max_duration", c.MaxDuration)
	d.nonNegative("calls.max_duration_warning", c.MaxDurationWarning)
	if c.MaxDuration > 0 && c.MaxDurationWarning >= c.MaxDuration {
		d.errf("calls.max_duration_warning", "%v must be shorter than calls.max_duration %v", c.MaxDurationWarning, c.MaxDuration)
	}
	d.oneOf("calls.button_during_call", c.ButtonDuringCall, "hangup", "ignore")
	d.nonNegative("calls.hangup_after_door_open", c.HangupAfterDoorOpen)
	d.nonNegative("calls.auto_answer.delay", c.AutoAnswer.Delay)
	for i, p := range c.AutoAnswer.Allow {
		if err := checkPattern(p); err != nil {
			d.errf(fmt.Sprintf("calls.auto_answer.allow[%d]", i), "%v", err)
		}
	}
}

// validatePins checks buttons, relays, inputs and LEDs: names unique per
// kind, each pin used once across all kinds.
func (d *decoder) validatePins(c *Config) {
	pins := map[string]string{} // upper-case pin -> path of its first use
	pin := func(path, p string) {
		switch {
		case p == "":
			d.errf(path, "required")
		case pins[strings.ToUpper(p)] != "":
			d.errf(path, "pin %s is already used by %s", p, pins[strings.ToUpper(p)])
		default:
			pins[strings.ToUpper(p)] = path
		}
	}
	names := func(kind string, n int, name func(i int) string) {
		seen := map[string]bool{}
		for i := range n {
			path := fmt.Sprintf("%s[%d].name", kind, i)
			switch nm := name(i); {
			case nm == "":
				d.errf(path, "required")
			case !validName(nm):
				d.errf(path, "%q: use letters, digits, '_', '-' and '.' only (names appear in API paths)", nm)
			case seen[nm]:
				d.errf(path, "%q is used by another entry in %s", nm, kind)
			default:
				seen[nm] = true
			}
		}
	}

	names("buttons", len(c.Buttons), func(i int) string { return c.Buttons[i].Name })
	for i, b := range c.Buttons {
		p := fmt.Sprintf("buttons[%d]", i)
		pin(p+".pin", b.Pin)
		d.oneOf(p+".active", b.Active, "low", "high")
		d.oneOf(p+".pull", b.Pull, "up", "down", "none")
		d.nonNegative(p+".debounce", b.Debounce)
		if len(b.Call) == 0 {
			d.errf(p+".call", "at least one sip: or sips: URI is required")
		}
		for j, uri := range b.Call {
			if err := checkURI(uri); err != nil {
				d.errf(fmt.Sprintf("%s.call[%d]", p, j), "%v", err)
			}
		}
		d.oneOf(p+".ring", b.Ring, "parallel", "sequential")
		d.nonNegative(p+".long_press", b.LongPress)
		if b.LongPress > 0 && b.LongPress <= b.Debounce {
			d.errf(p+".long_press", "%v must be longer than debounce %v", b.LongPress, b.Debounce)
		}
		d.validateSchedule(p+".schedule", b.Schedule)
	}

	names("relays", len(c.Relays), func(i int) string { return c.Relays[i].Name })
	for i, r := range c.Relays {
		p := fmt.Sprintf("relays[%d]", i)
		switch {
		case r.Pin != "" && r.URL != "":
			d.errf(p+".url", "set either pin or url (an HTTP relay), not both")
		case r.URL != "":
			d.validateHTTPRelay(p, r)
		default:
			pin(p+".pin", r.Pin)
			for _, k := range []struct{ key, value string }{{"user", r.User}, {"password", r.Password}, {"token", r.Token}} {
				if k.value != "" {
					d.errf(p+"."+k.key, "only an HTTP relay (url) takes credentials")
				}
			}
		}
		d.oneOf(p+".active", r.Active, "low", "high")
		d.oneOf(p+".mode", r.Mode, "pulse", "latch")
		d.positive(p+".max_on", r.MaxOn)
		switch {
		case r.Pulse <= 0:
			d.errf(p+".pulse", "must be positive, got %v", r.Pulse)
		case r.MaxOn > 0 && r.Pulse > r.MaxOn:
			d.errf(p+".pulse", "%v exceeds max_on %v", r.Pulse, r.MaxOn)
		}
	}

	names("inputs", len(c.Inputs), func(i int) string { return c.Inputs[i].Name })
	for i, in := range c.Inputs {
		p := fmt.Sprintf("inputs[%d]", i)
		pin(p+".pin", in.Pin)
		d.oneOf(p+".active", in.Active, "low", "high")
		d.oneOf(p+".pull", in.Pull, "up", "down", "none")
		d.oneOf(p+".role", in.Role, "door_sensor", "exit_button", "tamper", "generic")
		d.validateInputRole(p, in, c.Relays)
	}

	names("leds", len(c.LEDs), func(i int) string { return c.LEDs[i].Name })
	for i, l := range c.LEDs {
		p := fmt.Sprintf("leds[%d]", i)
		pin(p+".pin", l.Pin)
		d.oneOf(p+".active", l.Active, "low", "high")
		d.oneOf(p+".role", l.Role, "status", "illumination")
	}
}

// validateSchedule checks a button's day/night routing entries.
func (d *decoder) validateSchedule(path string, entries []Schedule) {
	for i, e := range entries {
		p := fmt.Sprintf("%s[%d]", path, i)
		for j, day := range e.Days {
			if _, err := parseDays([]string{day}); err != nil {
				d.errf(fmt.Sprintf("%s.days[%d]", p, j), "%v", err)
			}
		}
		switch {
		case e.From == "" && e.To != "":
			d.errf(p+".from", "required with to (leave both out for the whole day)")
		case e.From != "" && e.To == "":
			d.errf(p+".to", "required with from (leave both out for the whole day)")
		case e.From != "":
			_, errFrom := parseClock(e.From)
			_, errTo := parseClock(e.To)
			switch {
			case errFrom != nil:
				d.errf(p+".from", "%v", errFrom)
			case errTo != nil:
				d.errf(p+".to", "%v", errTo)
			case e.From == e.To:
				d.errf(p+".to", "same as from; leave both out for the whole day")
			}
		}
		if len(e.Call) == 0 {
			d.errf(p+".call", "at least one sip: or sips: URI is required")
		}
		for j, uri := range e.Call {
			if err := checkURI(uri); err != nil {
				d.errf(fmt.Sprintf("%s.call[%d]", p, j), "%v", err)
			}
		}
		d.oneOf(p+".ring", e.Ring, "parallel", "sequential")
	}
}

// validateHTTPRelay checks the keys of a relay driven over HTTP. Messages
// never quote the URL or the credentials: they end up in logs.
func (d *decoder) validateHTTPRelay(p string, r Relay) {
	u, err := url.Parse(r.URL)
	switch {
	case err != nil:
		d.errf(p+".url", "not a valid URL")
	case u.Scheme != "http" && u.Scheme != "https":
		d.errf(p+".url", "scheme must be http or https, got %q", u.Scheme)
	case u.Host == "":
		d.errf(p+".url", "has no host")
	}
	d.oneOf(p+".method", r.Method, "GET", "POST")
	switch {
	case r.Password != "" && r.User == "":
		d.errf(p+".password", "needs user as well (HTTP basic auth)")
	case r.User != "" && r.Token != "":
		d.errf(p+".token", "use either user and password (basic auth) or token (bearer), not both")
	}
	if r.Mode == "latch" {
		d.errf(p+".mode", "latch needs a pin: an HTTP relay can only be pulsed")
	}
}

// validateInputRole checks the keys that belong to one input role.
func (d *decoder) validateInputRole(p string, in Input, relays []Relay) {
	d.nonNegative(p+".held_open", in.HeldOpen)
	if in.BlockRelays && in.Role != "tamper" {
		d.errf(p+".block_relays", "only a tamper input blocks relays; this one is %s", in.Role)
	}
	switch {
	case in.Relay != "" && in.Role != "exit_button" && in.Role != "door_sensor":
		d.errf(p+".relay", "only exit_button and door_sensor inputs name a relay; this one is %s", in.Role)
	case in.Relay == "" && in.Role == "exit_button":
		d.errf(p+".relay", "an exit_button opens a relay, and no relays are configured")
	case in.Relay != "" && !slices.ContainsFunc(relays, func(r Relay) bool { return r.Name == in.Relay }):
		d.errf(p+".relay", "no relay named %q", in.Relay)
	}
}

func (d *decoder) validateDoor(c *Config) {
	relays := make([]string, len(c.Relays))
	for i, r := range c.Relays {
		relays[i] = r.Name
	}
	seen := map[string]int{}
	for i, code := range c.Door.Codes {
		p := fmt.Sprintf("door.codes[%d]", i)
		// Messages never repeat a code: they end up in logs (DESIGN §6).
		if err := checkCode(code.Code); err != nil {
			d.errf(p+".code", "%v", err)
		} else if j, dup := seen[strings.TrimSuffix(code.Code, "#")]; dup {
			d.errf(p+".code", "same code as door.codes[%d]", j)
		} else {
			seen[strings.TrimSuffix(code.Code, "#")] = i
		}
		switch {
		case code.Relay == "":
			d.errf(p+".relay", "required")
		case !slices.Contains(relays, code.Relay):
			d.errf(p+".relay", "no relay named %q (relays: %s)", code.Relay, strings.Join(relays, ", "))
		}
	}
	for i, m := range c.Door.DTMF {
		p := fmt.Sprintf("door.dtmf[%d]", i)
		switch strings.ToLower(m) {
		case "inband", "in-band", "in_band":
			d.errf(p, "in-band DTMF never unlocks the door (anyone near the phone can play tones); use rfc4733 or sip_info")
		default:
			d.oneOf(p, m, "rfc4733", "sip_info")
		}
	}
	if len(c.Door.Codes) > 0 && len(c.Door.DTMF) == 0 {
		d.errf("door.dtmf", "empty: the door codes could never be keyed; use rfc4733 and/or sip_info")
	}
	if c.Door.Lockout.After < 1 {
		d.errf("door.lockout.after", "must be at least 1, got %d", c.Door.Lockout.After)
	}
	d.positive("door.lockout.for", c.Door.Lockout.For)
}

func (d *decoder) validateAudio(a *Audio) {
	d.oneOf("audio.backend", a.Backend, "portaudio", "file", "null")
	d.oneOf("audio.srtp", a.SRTP, "required", "optional", "off")
	if a.Backend == "file" {
		for _, f := range []struct{ path, value, what string }{
			{"audio.input", a.Input, "a WAV file to play (looped)"},
			{"audio.output", a.Output, "a WAV file to write"},
		} {
			if f.value == "" || f.value == "default" {
				d.errf(f.path, "the file backend needs the path of %s", f.what)
			}
		}
	}
	if len(a.Codecs) == 0 {
		d.errf("audio.codecs", "at least one codec is required (PCMU, PCMA)")
	}
	for i, c := range a.Codecs {
		p := fmt.Sprintf("audio.codecs[%d]", i)
		if j := slices.Index(a.Codecs[:i], c); j >= 0 {
			d.errf(p, "%s is listed twice", c)
			continue
		}
		d.oneOf(p, c, "PCMU", "PCMA")
	}
	if a.Ptime < 10*time.Millisecond || a.Ptime > 40*time.Millisecond || a.Ptime%(10*time.Millisecond) != 0 {
		d.errf("audio.ptime", "must be 10ms, 20ms, 30ms or 40ms, got %v", a.Ptime)
	}
	d.nonNegative("audio.jitter.min", a.Jitter.Min)
	d.positive("audio.jitter.max", a.Jitter.Max)
	if a.Jitter.Min > a.Jitter.Max && a.Jitter.Max > 0 {
		d.errf("audio.jitter.min", "%v exceeds audio.jitter.max %v", a.Jitter.Min, a.Jitter.Max)
	}
	if _, err := tone.ParseCadence(a.Ringback); err != nil {
		d.errf("audio.ringback", "%v", err)
	}
	// The files are read when the station starts, on the device; here only
	// what is wrong wherever the config is checked.
	for _, p := range []struct{ path, value string }{
		{"audio.prompts.door_opened", a.Prompts.DoorOpened},
		{"audio.prompts.rejected", a.Prompts.Rejected},
		{"audio.prompts.busy", a.Prompts.Busy},
		{"audio.prompts.unreachable", a.Prompts.Unreachable},
	} {
		if p.value != "" && !strings.EqualFold(filepath.Ext(p.value), ".wav") {
			d.errf(p.path, "must be the path of a .wav file (8 kHz mono 16-bit) or empty for the generated tone, got %q", p.value)
		}
	}
	// Beyond these bounds it is a typo, not a gain: it silences everything or
	// drives the soft limiter flat (the bounds of media/dsp).
	for _, g := range []struct {
		path string
		db   float64
	}{{"audio.mic_gain_db", a.MicGainDB}, {"audio.speaker_gain_db", a.SpeakerGainDB}} {
		if g.db < -60 || g.db > 40 {
			d.errf(g.path, "must be between -60 and 40 dB, got %v", g.db)
		}
	}
}

func (d *decoder) validateAPI(a *API) {
	if a.Listen == "" {
		return
	}
	if err := checkHostPort(a.Listen); err != nil {
		d.errf("api.listen", "%v", err)
		return
	}
	if a.Token == "" && !isLoopback(a.Listen) {
		d.errf("api.listen", "%q is not a loopback address: set api.token", a.Listen)
	}
}

func (d *decoder) oneOf(path, value string, allowed ...string) {
	if !slices.Contains(allowed, value) {
		d.errf(path, "%q is not one of %s", value, strings.Join(allowed, ", "))
	}
}

func (d *decoder) positive(path string, v time.Duration) {
	if v <= 0 {
		d.errf(path, "must be positive, got %v", v)
	}
}

func (d *decoder) nonNegative(path string, v time.Duration) {
	if v < 0 {
		d.errf(path, "must not be negative, got %v", v)
	}
}

func validName(s string) bool {
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.') {
			return false
		}
	}
	return s != "" && s != "." && s != ".."
}

// checkHostPort accepts host:port where host is empty (all addresses), an
// IP address or a host name, and port is a number.
func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("%q: invalid port %q", s, port)
	}
	if host == "" {
		return nil
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	if !validHostname(host) {
		return fmt.Errorf("%q: invalid host %q", s, host)
	}
	return nil
}

func validHostname(h string) bool {
	if len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
				return false
			}
		}
	}
	return true
}

// isLoopback reports whether a valid host:port only listens on loopback.
func isLoopback(hostport string) bool {
	host, _, _ := net.SplitHostPort(hostport)
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// checkCode accepts digits 0-9 and '*', optionally ended by one '#'. The
// error never quotes the code.
func checkCode(code string) error {
	body := strings.TrimSuffix(code, "#")
	if body == "" {
		return fmt.Errorf("empty code")
	}
	digits := 0
	for _, r := range body {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == '*':
		case r == '#':
			return fmt.Errorf("'#' may only end a code")
		default:
			return fmt.Errorf("invalid character: use digits 0-9, * and a trailing #")
		}
	}
	if digits == 0 {
		return fmt.Errorf("needs at least one digit 0-9")
	}
	return nil
}

// checkURI accepts a sip: or sips: URI with a host.
func checkURI(s string) error {
	u, ok := parseURI(s)
	if !ok || strings.ContainsAny(s, " \t\r\n<>") {
		return fmt.Errorf("%q is not a sip: or sips: URI", s)
	}
	if strings.Contains(u.user+u.host+u.port, "*") {
		return fmt.Errorf("%q: wildcards are not allowed here", s)
	}
	return nil
}

// checkPattern accepts what MatchURI understands: a sip: or sips: URI with a
// host, where '*' may stand for any run of characters.
func checkPattern(s string) error {
	if _, ok := parseURI(s); !ok || strings.ContainsAny(s, " \t\r\n<>;?") {
		return fmt.Errorf("%q is not a sip: or sips: URI pattern such as sip:*@pbx.example.com", s)
	}
	return nil
}
