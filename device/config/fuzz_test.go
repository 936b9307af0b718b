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
	})
}
