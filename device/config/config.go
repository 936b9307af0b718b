// Package config is the door station's configuration file (DESIGN §4): its
// schema, its defaults and its validation, with every error naming the file,
// the line and the key path so that `intercom config check` can point at it.
// The effective configuration is the local file with the provisioned
// documents merged over it; ParseLayers documents how they merge.
package config

import (
	"time"

	"intercom/media/tone"
)

// Config is the whole configuration file. The yaml tags are the key names of
// DESIGN §4 and are part of the product's contract.
type Config struct {
	Device       Device       `yaml:"device"`
	SIP          SIP          `yaml:"sip"`
	Calls        Calls        `yaml:"calls"`
	GPIO         GPIO         `yaml:"gpio"`
	Buttons      []Button     `yaml:"buttons"`
	Relays       []Relay      `yaml:"relays"`
	Inputs       []Input      `yaml:"inputs"`
	LEDs         []LED        `yaml:"leds"`
	Door         Door         `yaml:"door"`
	Audio        Audio        `yaml:"audio"`
	API          API          `yaml:"api"`
	Provisioning Provisioning `yaml:"provisioning"`
}

// Device identifies the door station.
type Device struct {
	Name string `yaml:"name"`
	// Timezone is an IANA name such as Europe/Berlin for the day/night
	// schedules of buttons; empty means the system's local time.
	Timezone string `yaml:"timezone"`
}

// SIP configures the user agent. An empty Registrar means peer-to-peer: no
// registration, calls go straight to the URIs.
type SIP struct {
	Transport     string `yaml:"transport"` // udp | tcp | tls
	Listen        string `yaml:"listen"`    // host:port
	Registrar     string `yaml:"registrar"`
	OutboundProxy string `yaml:"outbound_proxy"`
	User          string `yaml:"user"`
	// AuthUser is set to User by Parse when the file leaves it empty.
	AuthUser        string        `yaml:"auth_user"`
	Password        string        `yaml:"password"`
	DisplayName     string        `yaml:"display_name"`
	RegisterExpires time.Duration `yaml:"register_expires"`
	Keepalive       time.Duration `yaml:"keepalive"` // 0 disables
	// NAT is auto (use the public address the registrar reports in its
	// Via received/rport, RFC 3581, in our Contact) or off.
	NAT string `yaml:"nat"`
	// TLS names the PEM files of sip.transport tls.
	TLS SIPTLS `yaml:"tls"`
	// Defence limits what strangers can make the station do.
	Defence Defence `yaml:"defence"`
}

// Defence limits SIP messages from strangers: sources other than the
// registrar, the outbound proxy and the peer of an answered call.
type Defence struct {
	Rate     float64       `yaml:"rate"`      // messages per second per source IP, on average
	Burst    int           `yaml:"burst"`     // messages at once
	BlockFor time.Duration `yaml:"block_for"` // ignore a source this long after it went over, or scanned
	Scanners []string      `yaml:"scanners"`  // extra User-Agent substrings to drop, besides the built-in list
}

// SIPTLS names the PEM files SIP over TLS uses; each is optional.
type SIPTLS struct {
	// CA verifies the registrar's (and every server's) certificate
	// instead of the system roots.
	CA string `yaml:"ca"`
	// Cert and Key let peers open TLS connections to sip.listen; without
	// them calls arrive only over the station's own connection to the
	// registrar.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// ClientCert and ClientKey are presented to servers that ask for a
	// client certificate.
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`
}

// Calls holds the call policy.
type Calls struct {
	RingTimeout         time.Duration `yaml:"ring_timeout"`
	MaxDuration         time.Duration `yaml:"max_duration"`
	MaxDurationWarning  time.Duration `yaml:"max_duration_warning"`   // tone this long before max_duration; 0 disables
	ButtonDuringCall    string        `yaml:"button_during_call"`     // hangup | ignore
	HangupAfterDoorOpen time.Duration `yaml:"hangup_after_door_open"` // 0 disables
	AutoAnswer          AutoAnswer    `yaml:"auto_answer"`
}

// AutoAnswer decides which incoming calls the door answers by itself.
type AutoAnswer struct {
	Enabled bool          `yaml:"enabled"`
	Delay   time.Duration `yaml:"delay"`
	// Allow holds caller URI patterns for MatchURI. Empty: only requests
	// from the registrar or outbound proxy address (DESIGN §6).
	Allow []string `yaml:"allow"`
}

// GPIO selects the pin driver.
type GPIO struct {
	Driver string `yaml:"driver"` // auto | sim
}

// Button is a push button that calls the URIs in Call.
type Button struct {
	Name     string        `yaml:"name"`
	Pin      string        `yaml:"pin"`
	Active   string        `yaml:"active"` // low | high
	Pull     string        `yaml:"pull"`   // up | down | none
	Debounce time.Duration `yaml:"debounce"`
	Call     []string      `yaml:"call"` // sip: or sips: URIs
	Ring     string        `yaml:"ring"` // parallel | sequential
	// LongPress is how long the button must be held for a long press;
	// 0 disables long presses.
	LongPress time.Duration `yaml:"long_press"`
	// Schedule overrides Call and Ring by time of day and weekday: the
	// first entry that contains the current time wins.
	Schedule []Schedule `yaml:"schedule"`
}

// Schedule is a time window in which a button calls other targets. A
// window whose From is after its To spans midnight and belongs to the day
// it starts on; without From and To it covers the whole day.
type Schedule struct {
	Days []string `yaml:"days"` // mon..sun or ranges such as mon-fri; empty: every day
	From string   `yaml:"from"` // HH:MM, inclusive
	To   string   `yaml:"to"`   // HH:MM, exclusive
	Call []string `yaml:"call"` // sip: or sips: URIs
	// Ring is parallel or sequential; Parse sets an empty Ring to the
	// button's.
	Ring string `yaml:"ring"`
}

// Relay is an output that opens a door: a pin, or an HTTP relay (a URL
// such as a Shelly's) when URL is set. MaxOn is the hard limit the relay
// driver enforces whatever the call logic asks for.
type Relay struct {
	Name   string        `yaml:"name"`
	Pin    string        `yaml:"pin"`
	Active string        `yaml:"active"` // low | high
	Pulse  time.Duration `yaml:"pulse"`
	MaxOn  time.Duration `yaml:"max_on"`
	// Mode is pulse (monostable: each opening is a pulse) or latch
	// (bistable: each opening toggles the relay; MaxOn still applies).
	Mode string `yaml:"mode"`
	// URL makes this an HTTP relay instead of a pin; "{seconds}" in it is
	// replaced by the pulse length in whole seconds.
	URL      string `yaml:"url"`
	Method   string `yaml:"method"` // GET | POST
	User     string `yaml:"user"`   // HTTP basic auth, with Password
	Password string `yaml:"password"`
	Token    string `yaml:"token"` // sent as "Authorization: Bearer TOKEN"
}

// Input is a contact such as a door sensor, an exit button or a tamper switch.
type Input struct {
	Name   string `yaml:"name"`
	Pin    string `yaml:"pin"`
	Active string `yaml:"active"` // low | high
	Pull   string `yaml:"pull"`   // up | down | none
	// Role is door_sensor, exit_button, tamper or generic; Parse turns an
	// empty role into generic.
	Role string `yaml:"role"`
	// HeldOpen is how long a door_sensor may report the door open before
	// an alarm; 0 disables the alarm.
	HeldOpen time.Duration `yaml:"held_open"`
	// Relay is the relay an exit_button opens (Parse defaults it to the
	// first relay), or the one that unlocks a door_sensor's door (empty:
	// any relay).
	Relay string `yaml:"relay"`
	// BlockRelays makes an active tamper input refuse relay openings by
	// code or API until it is inactive again.
	BlockRelays bool `yaml:"block_relays"`
}

// LED is a status light.
type LED struct {
	Name   string `yaml:"name"`
	Pin    string `yaml:"pin"`
	Active string `yaml:"active"` // low | high
	// Role is status (shows the station's state) or illumination (lights
	// the bell button, blinking while a call rings).
	Role string `yaml:"role"`
}

// Door holds the codes that open the door over DTMF.
type Door struct {
	Codes   []Code   `yaml:"codes"`
	DTMF    []string `yaml:"dtmf"` // rfc4733 | sip_info; never in-band
	Lockout Lockout  `yaml:"lockout"`
}

// Code pulses Relay when keyed during a call.
type Code struct {
	// Code is kept exactly as written: digits 0-9 and '*', optionally ended
	// by one '#', which the caller may key to terminate the code. The code
	// matcher treats a trailing '#' as that terminator.
	Code  string `yaml:"code"`
	Relay string `yaml:"relay"` // name of a Relay
}

// Lockout stops accepting codes for For after After wrong codes.
type Lockout struct {
	After int           `yaml:"after"`
	For   time.Duration `yaml:"for"`
}

// Audio selects the sound backend and the media parameters.
type Audio struct {
	Backend string `yaml:"backend"` // portaudio | file | null
	// Input and Output are device names, or WAV paths for the file backend.
	Input         string        `yaml:"input"`
	Output        string        `yaml:"output"`
	Codecs        []string      `yaml:"codecs"` // PCMU | PCMA, in order of preference
	Ptime         time.Duration `yaml:"ptime"`
	Jitter        Jitter        `yaml:"jitter"`
	MicGainDB     float64       `yaml:"mic_gain_db"`
	SpeakerGainDB float64       `yaml:"speaker_gain_db"`
	// Ringback is the tone the door plays while the flat rings, as a
	// cadence such as "425@1s/4s" (FREQ[+FREQ]@ON/OFF, comma-separated steps).
	Ringback string `yaml:"ringback"`
	// EchoSuppression attenuates the microphone while the far end talks,
	// for stations whose speaker and microphone sit close together.
	EchoSuppression bool    `yaml:"echo_suppression"`
	Prompts         Prompts `yaml:"prompts"`
	// SRTP is required | optional | off: SDES-keyed SRTP (RFC 4568),
	// only ever over TLS signalling, since the keys travel in the SDP.
	SRTP string `yaml:"srtp"`
}

// Prompts are recorded WAV files (8 kHz mono 16-bit) the door plays
// instead of its generated tones; an empty path keeps the tone.
type Prompts struct {
	DoorOpened  string `yaml:"door_opened"`
	Rejected    string `yaml:"rejected"`
	Busy        string `yaml:"busy"`
	Unreachable string `yaml:"unreachable"`
}

// Jitter bounds the jitter buffer's delay.
type Jitter struct {
	Min time.Duration `yaml:"min"`
	Max time.Duration `yaml:"max"`
}

// API configures the local HTTP API. An empty Listen disables it.
type API struct {
	Listen string `yaml:"listen"`
	Token  string `yaml:"token"` // required when Listen is not loopback
}

// Provisioning configures fetching the configuration over HTTP(S). An
// empty URL disables it. It is set only in the local file (see ParseLayers).
type Provisioning struct {
	// URL is the station's own document; CommonURL, optional, one shared
	// by the fleet and applied before it. Both are http or https URLs in
	// which {mac} and {serial} stand for the station's.
	URL       string        `yaml:"url"`
	Interval  time.Duration `yaml:"interval"`
	CommonURL string        `yaml:"common_url"`
	// CA is a PEM file of the only CAs trusted for the server (empty: the
	// system's); ClientCert and ClientKey, PEM files, authenticate the
	// station with a TLS client certificate.
	CA         string `yaml:"ca"`
	ClientCert string `yaml:"client_cert"`
	ClientKey  string `yaml:"client_key"`
	// User and Password (HTTP basic auth) or Token (sent as
	// "Authorization: Bearer TOKEN").
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Token    string `yaml:"token"`
	// PublicKey, when set, makes the station accept only documents signed
	// with its ed25519 key: the key as base64 of its 32 bytes, a PEM
	// PUBLIC KEY block, or the absolute path of a file holding either.
	PublicKey string `yaml:"public_key"`
	// RollbackAfter is how long a newly applied document has to register
	// the station before the last good one is restored.
	RollbackAfter time.Duration `yaml:"rollback_after"`
	// StateDir holds the fetched documents: the one in effect and the last
	// one known to work.
	StateDir string `yaml:"state_dir"`
}

// Default returns the values Parse uses for every key a file leaves out;
// the keys whose default depends on others (sip.listen, sip.auth_user)
// are empty here and filled in once the file is read.
func Default() *Config {
	return &Config{
		SIP: SIP{
			Transport:       "udp",
			RegisterExpires: 300 * time.Second,
			Keepalive:       25 * time.Second,
			NAT:             "auto",
			Defence:         Defence{Rate: 5, Burst: 20, BlockFor: time.Minute},
		},
		Calls: Calls{
			RingTimeout:         30 * time.Second,
			MaxDuration:         3 * time.Minute,
			MaxDurationWarning:  10 * time.Second,
			ButtonDuringCall:    "hangup",
			HangupAfterDoorOpen: 10 * time.Second,
			AutoAnswer:          AutoAnswer{Enabled: true},
		},
		GPIO: GPIO{Driver: "auto"},
		Door: Door{
			DTMF:    []string{"rfc4733", "sip_info"},
			Lockout: Lockout{After: 3, For: 5 * time.Minute},
		},
		Audio: Audio{
			Backend:  "portaudio",
			Input:    "default",
			Output:   "default",
			Codecs:   []string{"PCMU", "PCMA"},
			Ptime:    20 * time.Millisecond,
			Jitter:   Jitter{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond},
			Ringback: tone.Ringback().String(),
			SRTP:     "optional",
		},
		API:          API{Listen: "127.0.0.1:8080"},
		Provisioning: Provisioning{Interval: time.Hour, RollbackAfter: 2 * time.Minute, StateDir: "/var/lib/intercom"},
	}
}

// defaulter is implemented by list elements whose missing keys have
// defaults; the decoder calls it on each new element before decoding it.
type defaulter interface{ setDefaults() }

var (
	_ defaulter = (*Button)(nil)
	_ defaulter = (*Relay)(nil)
	_ defaulter = (*Input)(nil)
	_ defaulter = (*LED)(nil)
)

func (b *Button) setDefaults() {
	*b = Button{Active: "low", Pull: "up", Debounce: 30 * time.Millisecond, Ring: "parallel"}
}

func (r *Relay) setDefaults() {
	*r = Relay{Active: "high", Pulse: 3 * time.Second, MaxOn: 10 * time.Second, Mode: "pulse", Method: "GET"}
}

func (in *Input) setDefaults() {
	*in = Input{Active: "low", Pull: "up", Role: "generic", HeldOpen: time.Minute}
}

func (l *LED) setDefaults() { *l = LED{Active: "high", Role: "status"} }
