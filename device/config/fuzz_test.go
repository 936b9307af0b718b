package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzParse checks that no input panics Parse, and that every accepted
// configuration survives Marshal and Parse unchanged (what `config show`
// prints must read back as the same config).
func FuzzParse(f *testing.F) {
	examples, _ := filepath.Glob("../../examples/*.yaml")
	for _, path := range examples {
		data, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, seed := range []string{
		"",
		"device: {name: x}\n",
		"sip:\n  listen: [\n",
		"buttons:\n  - {name: bell, pin: P, call: [sip:a@b]}\n",
		"calls:\n  ring_timeout: 30x\n",
		"a: &x [*x]\n",
		"door:\n  codes: &c [{code: '1#', relay: r}]\nrelays: *c\n",
		"- a\n- b\n",
		"--- 1\n--- 2\n",
		"audio: {mic_gain_db: .nan, codecs: !!str PCMU}\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.yaml", data)
		if err != nil {
			if cfg != nil {
				t.Fatal("config returned with an error")
			}
			return
		}
		roundTrip(t, cfg)
	})
}

// fuzzLocal is the fixed local file FuzzParseLayers merges the fuzzed
// documents over: it marks values !local at several depths.
const fuzzLocal = `device:
  name: Front door
sip:
  listen: !local 0.0.0.0:5062
  user: "100"
calls:
  auto_answer:
    delay: !local 1s
api: !local
  listen: 127.0.0.1:8081
relays:
  - {name: door, pin: GPIO27}
buttons: !local
  - {name: bell, pin: GPIO17, call: ["sip:201@pbx"]}
provisioning:
  url: https://prov.example.com/{mac}.yaml
  common_url: https://prov.example.com/common.yaml
`

// FuzzParseLayers checks that no pair of provisioned documents panics
// ParseLayers, that a document CheckDocument refuses is refused by
// ParseLayers as well, that the local file's !local values and its
// provisioning section survive every accepted document, and that the
// merged result survives Marshal and Parse unchanged. The seed corpus is in
// testdata/fuzz/FuzzParseLayers; an empty common document stands for none.
func FuzzParseLayers(f *testing.F) {
	local := Layer{Name: "local.yaml", Data: []byte(fuzzLocal)}
	base, err := ParseLayers(local)
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte(""), []byte("sip:\n  registrar: pbx\n  user: '201'\n"))
	f.Fuzz(func(t *testing.T, common, station []byte) {
		docs := []Layer{{Name: "station.yaml", Data: station}}
		if len(common) > 0 {
			docs = append([]Layer{{Name: "common.yaml", Data: common}}, docs...)
		}
		cfg, err := ParseLayers(local, docs...)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("config %v with error %v", cfg != nil, err)
		}
		for _, d := range docs {
			if cerr := CheckDocument(d.Name, d.Data); cerr != nil && err == nil {
				t.Fatalf("CheckDocument refused %s (%v) but ParseLayers accepted it", d.Name, cerr)
			}
		}
		if err != nil {
			return
		}
		if cfg.SIP.Listen != base.SIP.Listen || cfg.Calls.AutoAnswer.Delay != base.Calls.AutoAnswer.Delay ||
			cfg.API != base.API || !reflect.DeepEqual(cfg.Buttons, base.Buttons) || cfg.Provisioning != base.Provisioning {
			t.Fatalf("a provisioned document changed a local value:\n got %+v\nwant %+v", cfg, base)
		}
		roundTrip(t, cfg)
	})
}

// roundTrip checks that an accepted config survives Marshal and Parse
// unchanged, and that masking it does not panic.
func roundTrip(t *testing.T, cfg *Config) {
	t.Helper()
	out, err := Marshal(cfg)
	if err != nil {
		t.Fatalf("Marshal: %v", err)
	}
	back, err := Parse("marshaled.yaml", out)
	if err != nil {
		t.Fatalf("Parse(Marshal(cfg)): %v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, cfg) {
		t.Fatalf("round trip changed the config:\n got %+v\nwant %+v", back, cfg)
	}
	cfg.Masked()
}
