package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// layersErr runs ParseLayers over local.yaml, common.yaml and station.yaml
// (an empty common is left out) and returns the error text, failing the
// test when the layers are accepted.
func layersErr(t *testing.T, local, common, station string) string {
	t.Helper()
	cfg, err := ParseLayers(Layer{"local.yaml", []byte(local)}, docs(common, station)...)
	if err == nil {
		t.Fatalf("ParseLayers accepted\nlocal:\n%s\ncommon:\n%s\nstation:\n%s", local, common, station)
	}
	if cfg != nil {
		t.Errorf("ParseLayers returned a config with an error")
	}
	return err.Error()
}

func mustLayers(t *testing.T, local, common, station string) *Config {
	t.Helper()
	cfg, err := ParseLayers(Layer{"local.yaml", []byte(local)}, docs(common, station)...)
	if err != nil {
		t.Fatalf("ParseLayers: %v", err)
	}
	return cfg
}

func docs(common, station string) []Layer {
	var ds []Layer
	if common != "" {
		ds = append(ds, Layer{"common.yaml", []byte(common)})
	}
	return append(ds, Layer{"station.yaml", []byte(station)})
}

// TestPrecedence: defaults < local < common < station < local marked !local.
func TestPrecedence(t *testing.T) {
	const (
		def     = "0.0.0.0:5060"
		local   = "0.0.0.0:5061"
		common  = "0.0.0.0:5062"
		station = "0.0.0.0:5063"
	)
	// Each layer holds one unrelated key so that it is never empty.
	doc := func(listen, tag string) string {
		s := "device: {name: x}\n"
		if listen != "" {
			s += "sip:\n  listen: " + tag + listen + "\n"
		}
		return s
	}
	tests := []struct {
		name                   string
		local, common, station string
		marked                 bool
		want                   string
	}{
		{"default", "", "", "", false, def},
		{"local", local, "", "", false, local},
		{"common", "", common, "", false, common},
		{"station", "", "", station, false, station},
		{"common over local", local, common, "", false, common},
		{"station over local", local, "", station, false, station},
		{"station over common", "", common, station, false, station},
		{"station over all", local, common, station, false, station},
		{"marked local over all", local, common, station, true, local},
		{"marked local over station", local, "", station, true, local},
		{"marked local over common", local, common, "", true, local},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tag := ""
			if tt.marked {
				tag = "!local "
			}
			cfg := mustLayers(t, doc(tt.local, tag), doc(tt.common, ""), doc(tt.station, ""))
			if cfg.SIP.Listen != tt.want {
				t.Errorf("sip.listen = %q, want %q", cfg.SIP.Listen, tt.want)
			}
		})
	}
}

func TestMappingsMergeKeyByKey(t *testing.T) {
	cfg := mustLayers(t,
		"device:\n  name: Front door\nsip:\n  user: '100'\n  listen: 0.0.0.0:5070\ncalls:\n  ring_timeout: 20s\n",
		"sip:\n  registrar: pbx.example.com\ncalls:\n  max_duration: 2m\n  auto_answer: {delay: 1s}\n",
		"sip:\n  user: '201'\ncalls:\n  auto_answer: {enabled: false}\n",
	)
	got := []any{cfg.Device.Name, cfg.SIP.User, cfg.SIP.AuthUser, cfg.SIP.Listen, cfg.SIP.Registrar, cfg.SIP.Transport,
		cfg.Calls.RingTimeout, cfg.Calls.MaxDuration, cfg.Calls.AutoAnswer.Delay, cfg.Calls.AutoAnswer.Enabled}
	want := []any{"Front door", "201", "201", "0.0.0.0:5070", "pbx.example.com", "udp",
		20 * time.Second, 2 * time.Minute, time.Second, false}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %v\nwant %v", got, want)
	}
}

func TestListsAreReplacedWhole(t *testing.T) {
	cfg := mustLayers(t, `buttons:
  - {name: bell, pin: GPIO17, call: ["sip:201@pbx"], debounce: 10ms}
  - {name: bell2, pin: GPIO18, call: ["sip:202@pbx"]}
calls:
  auto_answer:
    allow: ["sip:*@a", "sip:*@b"]
`, "", `buttons:
  - {name: gate, pin: GPIO19, call: ["sip:300@pbx"]}
calls:
  auto_answer:
    allow: ["sip:*@c"]
`)
	want := []Button{{Name: "gate", Pin: "GPIO19", Active: "low", Pull: "up", Debounce: 30 * time.Millisecond,
		Call: []string{"sip:300@pbx"}, Ring: "parallel"}}
	if !reflect.DeepEqual(cfg.Buttons, want) {
		t.Errorf("buttons = %+v\nwant %+v", cfg.Buttons, want)
	}
	if !reflect.DeepEqual(cfg.Calls.AutoAnswer.Allow, []string{"sip:*@c"}) {
		t.Errorf("allow = %q", cfg.Calls.AutoAnswer.Allow)
	}

	// An empty list is a list too: it replaces, it does not keep.
	cfg = mustLayers(t, "calls:\n  auto_answer:\n    allow: ['sip:*@a']\n", "", "calls:\n  auto_answer:\n    allow: []\n")
	if len(cfg.Calls.AutoAnswer.Allow) != 0 {
		t.Errorf("allow = %q, want empty", cfg.Calls.AutoAnswer.Allow)
	}
}

func TestLocalTagAtSeveralDepths(t *testing.T) {
	const common = `device: {name: provisioned, timezone: UTC}
sip: {listen: 0.0.0.0:5099, user: '555', transport: tcp}
calls: {ring_timeout: 45s, auto_answer: {enabled: false, delay: 5s}}
api: {listen: 127.0.0.1:9999, token: provisioned}
buttons: [{name: p, pin: GPIO5, call: ['sip:5@p']}]
`
	tests := []struct {
		name  string
		local string
		check func(c *Config) []any // got, want pairs
	}{
		{"whole document", "!local\ndevice: {name: mine}\n", func(c *Config) []any {
			return []any{c.Device.Name, "mine", c.SIP.Listen, "0.0.0.0:5060", c.Buttons, []Button(nil)}
		}},
		{"section", "api: !local {listen: 127.0.0.1:8081}\n", func(c *Config) []any {
			// The whole section is the local file's, keys it leaves out included.
			return []any{c.API.Listen, "127.0.0.1:8081", c.API.Token, "", c.SIP.Listen, "0.0.0.0:5099"}
		}},
		{"block section", "sip: !local\n  listen: 0.0.0.0:5062\n", func(c *Config) []any {
			return []any{c.SIP.Listen, "0.0.0.0:5062", c.SIP.User, "", c.SIP.Transport, "udp", c.Device.Name, "provisioned"}
		}},
		{"scalar", "sip:\n  listen: !local 0.0.0.0:5062\n", func(c *Config) []any {
			return []any{c.SIP.Listen, "0.0.0.0:5062", c.SIP.User, "555", c.SIP.Transport, "tcp"}
		}},
		{"scalar at depth three", "calls:\n  auto_answer:\n    delay: !local 1s\n", func(c *Config) []any {
			return []any{c.Calls.AutoAnswer.Delay, time.Second, c.Calls.AutoAnswer.Enabled, false, c.Calls.RingTimeout, 45 * time.Second}
		}},
		{"nested section", "calls:\n  auto_answer: !local\n    delay: 2s\n", func(c *Config) []any {
			return []any{c.Calls.AutoAnswer.Delay, 2 * time.Second, c.Calls.AutoAnswer.Enabled, true, c.Calls.RingTimeout, 45 * time.Second}
		}},
		{"whole list", "buttons: !local\n  - {name: bell, pin: GPIO17, call: ['sip:1@l']}\n", func(c *Config) []any {
			return []any{len(c.Buttons), 1, c.Buttons[0].Name, "bell"}
		}},
		{"empty value", "device:\n  timezone: !local\n", func(c *Config) []any {
			return []any{c.Device.Timezone, "", c.Device.Name, "provisioned"}
		}},
		{"through an alias", "device: {name: &n mine}\nsip:\n  user: !local *n\n", func(c *Config) []any {
			return []any{c.SIP.User, "mine", c.Device.Name, "provisioned"}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := mustLayers(t, tt.local, common, "device: {}\n")
			pairs := tt.check(cfg)
			for i := 0; i < len(pairs); i += 2 {
				if !reflect.DeepEqual(pairs[i], pairs[i+1]) {
					t.Errorf("value %d = %v, want %v", i/2, pairs[i], pairs[i+1])
				}
			}
		})
	}
}

func TestLayerErrors(t *testing.T) {
	tests := []struct {
		name                   string
		local, common, station string
		want                   string // a line of the error
	}{
		{"unknown key in station", "device: {name: x}\n", "", "device: {}\nsip:\n  colour: red\n",
			`station.yaml:3: sip.colour: unknown key`},
		{"bad duration in common", "device: {name: x}\n", "calls:\n  ring_timeout: 30x\n", "device: {}\n",
			`common.yaml:2: calls.ring_timeout: invalid duration "30x"`},
		{"wrong type in station", "device: {name: x}\n", "", "buttons: {name: bell}\n",
			`station.yaml:1: buttons: expected a list, got a mapping`},
		{"malformed YAML in station", "device: {name: x}\n", "", "sip:\n  listen: [0.0.0.0:5060\n",
			`station.yaml:2: invalid YAML:`},
		{"malformed YAML in common", "device: {name: x}\n", "sip: {\n", "device: {}\n",
			`common.yaml:`},
		{"two documents", "device: {name: x}\n", "", "device: {}\n---\ndevice: {}\n",
			`station.yaml:3: more than one YAML document`},
		{"empty station", "device: {name: x}\n", "", "", `station.yaml: empty document`},
		{"blank station", "device: {name: x}\n", "", " \n\n", `station.yaml: empty document`},
		{"comments only", "device: {name: x}\n", "# nothing\n", "device: {}\n", `common.yaml: empty document`},
		{"null station", "device: {name: x}\n", "", "~\n", `station.yaml:1: empty document`},
		{"provisioning in station", "device: {name: x}\n", "", "device: {}\nprovisioning:\n  url: https://evil.example.com/\n",
			`station.yaml:2: provisioning: set only in the local file`},
		{"empty provisioning in common", "device: {name: x}\n", "provisioning: {}\n", "device: {}\n",
			`common.yaml:1: provisioning: set only in the local file`},
		{"!local in station", "device: {name: x}\n", "", "sip:\n  listen: !local 0.0.0.0:5070\n",
			`station.yaml:2: sip.listen: !local belongs in the local file only`},
		{"!local section in common", "device: {name: x}\n", "api: !local {listen: 127.0.0.1:1}\n", "device: {}\n",
			`common.yaml:1: api: !local belongs in the local file only`},
		{"!local inside a list", "buttons:\n  - name: bell\n    pin: !local GPIO17\n    call: ['sip:1@p']\n", "", "device: {}\n",
			`local.yaml:3: buttons[0].pin: !local inside a list: mark the whole list instead`},
		{"misspelt tag", "sip:\n  listen: !lcoal 0.0.0.0:5070\n", "", "device: {}\n",
			`local.yaml:2: sip.listen: unknown tag !lcoal: only !local is understood`},
		{"standard tag", "device: {name: x}\n", "", "sip:\n  user: !!str 100\n",
			`station.yaml:2: sip.user: unknown tag !!str`},
		{"locked value still checked", "sip:\n  listen: !local 0.0.0.0:5070\n", "", "sip:\n  listen: [a]\n",
			`station.yaml:2: sip.listen: expected a string, got a list`},
		{"locked section still checked", "api: !local {listen: 127.0.0.1:1}\n", "", "api:\n  colour: red\n",
			`station.yaml:2: api.colour: unknown key`},
		// Validation of the merged result names the layer that set the key.
		{"cross-key error in station", "relays: [{name: door, pin: P1}]\n", "", "device: {}\ndoor:\n  codes:\n    - {code: '1234', relay: gate}\n",
			`station.yaml:4: door.codes[0].relay: no relay named "gate" (relays: door)`},
		{"local value made invalid by station", "audio:\n  jitter:\n    min: 100ms\n", "", "audio:\n  jitter: {max: 50ms}\n",
			`local.yaml:3: audio.jitter.min: 100ms exceeds audio.jitter.max 50ms`},
		{"pin used in two layers", "relays:\n  - {name: door, pin: GPIO17}\n", "", "device: {}\nbuttons:\n  - {name: bell, pin: GPIO17, call: ['sip:1@p']}\n",
			`local.yaml:2: relays[0].pin: pin GPIO17 is already used by buttons[0].pin`},
		{"replaced list forgets the old lines", "buttons:\n  - name: bell\n    pin: GPIO17\n    call: ['sip:1@p']\n", "",
			"device: {}\nbuttons:\n  - name: gate\n    call: ['sip:2@p']\n",
			`station.yaml:3: buttons[0].pin: required`},
		{"missing key points at the last layer's section", "device: {name: x}\n", "sip:\n  transport: udp\n", "sip:\n  registrar: pbx\n",
			`station.yaml:1: sip.user: required when sip.registrar is set`},
		{"bad value in common", "device: {name: x}\n", "device: {}\nsip:\n  transport: sctp\n", "device: {}\n",
			`common.yaml:3: sip.transport: "sctp" is not one of udp, tcp, tls`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := layersErr(t, tt.local, tt.common, tt.station)
			if !containsLine(got, tt.want) {
				t.Errorf("error\n%s\nhas no line starting with\n%s", got, tt.want)
			}
		})
	}
}

func TestLayerErrorsInLayerOrder(t *testing.T) {
	got := layersErr(t,
		"sip:\n  transport: sctp\n",
		"calls:\n  ring_timeout: 30x\n",
		"device: {}\naudio:\n  colour: red\n")
	want := strings.Join([]string{
		`local.yaml:2: sip.transport: "sctp" is not one of udp, tcp, tls`,
		`common.yaml:2: calls.ring_timeout: invalid duration "30x"`,
		`station.yaml:3: audio.colour: unknown key`,
	}, "\n")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}

	// Syntax errors of every layer are reported together.
	got = layersErr(t, "device: {name: x}\n", "sip: [\n", "calls: {\n")
	if !strings.Contains(got, "common.yaml:") || !strings.Contains(got, "station.yaml:") {
		t.Errorf("want syntax errors from both documents, got\n%s", got)
	}
}

func TestLayerErrorsAreStructured(t *testing.T) {
	_, err := ParseLayers(Layer{"local.yaml", []byte("device: {name: x}\n")},
		Layer{"https://prov.example.com/common.yaml", []byte("device: {}\ncalls:\n  ring_timeout: 30x\n")})
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v is not a *config.Error", err)
	}
	want := Error{File: "https://prov.example.com/common.yaml", Line: 3, Path: "calls.ring_timeout", Msg: `invalid duration "30x"`}
	if *e != want {
		t.Errorf("got %+v, want %+v", *e, want)
	}
}

func TestProvisioningStaysLocal(t *testing.T) {
	cfg := mustLayers(t, "provisioning:\n  url: https://prov.example.com/{mac}.yaml\n  interval: 10m\n", "", "device: {name: x}\n")
	if cfg.Provisioning.URL != "https://prov.example.com/{mac}.yaml" || cfg.Provisioning.Interval != 10*time.Minute {
		t.Errorf("provisioning = %+v", cfg.Provisioning)
	}
}

func TestEmptyMappingDocumentChangesNothing(t *testing.T) {
	// {} is a deliberate "nothing for this station", unlike an empty body.
	cfg := mustLayers(t, "device: {name: x}\n", "{}\n", "{}\n")
	want := mustParse(t, "device: {name: x}\n")
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("got %+v\nwant %+v", cfg, want)
	}
}

func TestParseIsParseLayersWithoutDocuments(t *testing.T) {
	for _, doc := range []string{"device: {name: x}\nsip:\n  listen: !local 0.0.0.0:1\n", "sip: {transport: x}\n", ""} {
		c1, err1 := Parse("local.yaml", []byte(doc))
		c2, err2 := ParseLayers(Layer{"local.yaml", []byte(doc)})
		if !reflect.DeepEqual(c1, c2) || (err1 == nil) != (err2 == nil) || err1 != nil && err1.Error() != err2.Error() {
			t.Errorf("%q: Parse = %v, %v; ParseLayers = %v, %v", doc, c1, err1, c2, err2)
		}
	}
}

func TestCheckDocument(t *testing.T) {
	for _, ok := range []string{
		"device: {name: x}\n",
		"{}\n",
		// Cross-key problems need the merged result: not CheckDocument's.
		"door:\n  codes: [{code: '1234', relay: gate}]\n",
		"sip:\n  registrar: pbx\n",
	} {
		if err := CheckDocument("doc.yaml", []byte(ok)); err != nil {
			t.Errorf("CheckDocument(%q) = %v", ok, err)
		}
	}
	for _, tt := range []struct{ doc, want string }{
		{"sip:\n  colour: red\n", `doc.yaml:2: sip.colour: unknown key`},
		{"calls:\n  ring_timeout: 30\n", `doc.yaml:2: calls.ring_timeout: invalid duration "30"`},
		{"door:\n  lockout: {after: x}\n", `doc.yaml:2: door.lockout.after: expected an integer, got a string`},
		{"provisioning: {interval: 1m}\n", `doc.yaml:1: provisioning: set only in the local file`},
		{"sip:\n  listen: !local x:1\n", `doc.yaml:2: sip.listen: !local belongs in the local file only`},
		{"", `doc.yaml: empty document`},
		{"# only a comment\n", `doc.yaml: empty document`},
		{"sip: [\n", `doc.yaml:`},
	} {
		err := CheckDocument("doc.yaml", []byte(tt.doc))
		if err == nil || !containsLine(err.Error(), tt.want) {
			t.Errorf("CheckDocument(%q) = %v, want a line starting with %s", tt.doc, err, tt.want)
		}
	}
}

// A document cut short in transit must give an error or a valid config,
// never a panic. YAML cannot tell every cut: a block document cut at the
// end of a line is a shorter valid document. Truncation as such is caught
// by the transport (Content-Length) and the signature; a flow document, as
// below, is the exception where every cut is a syntax error.
func TestTruncatedDocuments(t *testing.T) {
	const local = "device: {name: x}\nrelays: [{name: door, pin: P1}]\n"
	block := `device:
  name: Front door
sip:
  registrar: pbx.example.com
  user: "201"
  password: "s3cret: #'x"
buttons:
  - name: bell
    pin: GPIO17
    call: ["sip:201@pbx.example.com", "sip:202@pbx.example.com"]
door:
  codes:
    - {code: "1234", relay: door}
`
	for i := range len(block) {
		cfg, err := ParseLayers(Layer{"local.yaml", []byte(local)}, Layer{"station.yaml", []byte(block[:i])})
		if (cfg == nil) == (err == nil) {
			t.Fatalf("cut at %d: config %v with error %v", i, cfg != nil, err)
		}
	}
	flow := `{sip: {registrar: pbx.example.com, user: "201"}, buttons: [{name: bell, pin: GPIO17, call: ["sip:201@pbx"]}]}`
	if _, err := ParseLayers(Layer{"local.yaml", []byte(local)}, Layer{"station.yaml", []byte(flow)}); err != nil {
		t.Fatalf("whole flow document: %v", err)
	}
	for i := range len(flow) {
		if _, err := ParseLayers(Layer{"local.yaml", []byte(local)}, Layer{"station.yaml", []byte(flow[:i])}); err == nil {
			t.Errorf("flow document cut at %d accepted: %q", i, flow[:i])
		}
		if err := CheckDocument("station.yaml", []byte(flow[:i])); err == nil {
			t.Errorf("CheckDocument: flow document cut at %d accepted: %q", i, flow[:i])
		}
	}
}
