package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"intercom/device/config"
)

const stationTemplate = `device:
  name: {{yaml .Name}}
sip:
  registrar: pbx.example.com
  user: {{yaml .Extension}}
  password: {{yaml .Password}}
buttons:
  - name: bell
    pin: GPIO17
    call: ["sip:{{.Extension}}0@pbx.example.com"]
`

// renderFiles writes the template and CSV to a temporary directory and
// runs `intercom provision render`; it returns the output directory.
func renderFiles(t *testing.T, tmpl, csv string) (outDir string, stdout string, err error) {
	t.Helper()
	dir := t.TempDir()
	tp, cp := filepath.Join(dir, "station.tmpl"), filepath.Join(dir, "stations.csv")
	if err := os.WriteFile(tp, []byte(tmpl), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cp, []byte(csv), 0o600); err != nil {
		t.Fatal(err)
	}
	outDir = filepath.Join(dir, "out")
	var out, errOut bytes.Buffer
	err = run([]string{"provision", "render", tp, cp, outDir}, &out, &errOut)
	return outDir, out.String(), err
}

func TestProvisionRender(t *testing.T) {
	const tricky = `p: #'"\ x`
	csv := "Name,password,MAC,extension\n" +
		"Front door,s3cret,AA:BB:CC:DD:EE:01,201\n" +
		`"Back door, yard","` + strings.ReplaceAll(tricky, `"`, `""`) + `",aa-bb-cc-dd-ee-02,202` + "\n" +
		",x,AABBCCDDEE03,203\n"
	outDir, stdout, err := renderFiles(t, stationTemplate, csv)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct{ mac, name, user, password string }{
		{"aabbccddee01", "Front door", "201", "s3cret"},
		{"aabbccddee02", "Back door, yard", "202", tricky},
		{"aabbccddee03", "", "203", "x"},
	}
	var lines []string
	for _, w := range want {
		path := filepath.Join(outDir, w.mac+".yaml")
		lines = append(lines, "wrote "+path)
		info, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", path, info.Mode().Perm())
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := config.ParseLayers(config.Layer{Name: "local.yaml", Data: []byte("device: {name: local}\n")},
			config.Layer{Name: path, Data: data})
		if err != nil {
			t.Fatalf("%s does not merge: %v\n%s", path, err, data)
		}
		if cfg.Device.Name != w.name || cfg.SIP.User != w.user || cfg.SIP.Password != w.password {
			t.Errorf("%s: name %q, user %q, password %q; want %+v", path, cfg.Device.Name, cfg.SIP.User, cfg.SIP.Password, w)
		}
	}
	if got := strings.Join(lines, "\n") + "\n"; stdout != got {
		t.Errorf("stdout\n%s\nwant\n%s", stdout, got)
	}
	entries, err := os.ReadDir(outDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Errorf("output directory holds %d files, want %d (temporary files left?)", len(entries), len(want))
	}
}

func TestProvisionRenderOverwrites(t *testing.T) {
	outDir, _, err := renderFiles(t, stationTemplate, "mac,extension,password\n001122334455,201,old\n")
	if err != nil {
		t.Fatal(err)
	}
	tp := filepath.Join(filepath.Dir(outDir), "station.tmpl")
	cp := filepath.Join(filepath.Dir(outDir), "stations.csv")
	if err := os.WriteFile(cp, []byte("mac,extension,password\n001122334455,201,new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := run([]string{"provision", "render", tp, cp, outDir}, &bytes.Buffer{}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(outDir, "001122334455.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `password: "new"`) {
		t.Errorf("not overwritten:\n%s", data)
	}
}

// TestYAMLQuote reads values back through the config decoder, the
// document's real reader.
func TestYAMLQuote(t *testing.T) {
	for _, v := range []string{
		"", "plain", `: #'"`, `\`, "a: b", "# not a comment", "'single'", `"double"`, "- item", "[x]", "{x}",
		"*alias", "&anchor", "!local", "!!str", "%TAG", "@at", "`tick", "|", ">", "?", "yes", "no", "null", "~",
		"0123", "1e3", "0x1F", ".inf", " leading", "trailing ", "tab\there", "line\nbreak", "crlf\r\n",
		"ünïcödé", "日本語", "emoji 😀", "nul\x00byte", "del\x7f", "bell\a", "nel\u0085", "ls\u2028",
	} {
		doc := "sip:\n  password: " + yamlQuote(v) + "\n"
		cfg, err := config.Parse("t.yaml", []byte(doc))
		if err != nil {
			t.Errorf("%q: %v\n%s", v, err, doc)
			continue
		}
		if cfg.SIP.Password != v {
			t.Errorf("%q read back as %q from\n%s", v, cfg.SIP.Password, doc)
		}
	}
}

func TestNormalizeMAC(t *testing.T) {
	for in, want := range map[string]string{
		"aa:bb:cc:dd:ee:ff":   "aabbccddeeff",
		"AA-BB-CC-DD-EE-FF":   "aabbccddeeff",
		"AaBbCcDdEeFf":        "aabbccddeeff",
		" 00:11:22:33:44:55 ": "001122334455",
	} {
		if got, err := normalizeMAC(in); err != nil || got != want {
			t.Errorf("normalizeMAC(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "aabbccddee", "aabbccddeeff00", "aa:bb:cc:dd:ee:fg", "aa:bb-cc:dd:ee:ff", "aa.bb.cc.dd.ee.ff",
		"aabb.ccdd.eeff", "aa:bb:cc:dd:ee:f", "aa::bb:cc:dd:eeff", "gggggggggggg", "+abbccddeeff",
	} {
		if got, err := normalizeMAC(in); err == nil {
			t.Errorf("normalizeMAC(%q) = %q, want an error", in, got)
		}
	}
}

func TestProvisionRenderErrors(t *testing.T) {
	const good = "mac,extension,password\n001122334455,201,pw\n"
	tests := []struct {
		name, tmpl, csv string
		want            []string // substrings of the error
	}{
		{"extra columns", stationTemplate, "mac,extension,password,room,Floor\n001122334455,201,pw,1,2\n",
			[]string{`stations.csv line 1: unknown column "room", "Floor"`}},
		{"missing column", stationTemplate, "mac,extension\n001122334455,201\n",
			[]string{"stations.csv line 1: no password column"}},
		{"column twice", stationTemplate, "mac,extension,password,MAC\n001122334455,201,pw,001122334456\n",
			[]string{"stations.csv line 1: column mac appears twice"}},
		{"bad mac", stationTemplate, good + "00:11:22:33:44,202,pw\n",
			[]string{`stations.csv line 3: mac "00:11:22:33:44": want 12 hex digits`}},
		{"duplicate mac", stationTemplate, good + "002233445566,202,pw\n00-11-22-33-44-55,203,pw\n",
			[]string{"stations.csv line 4: mac 001122334455 is already on line 2"}},
		{"all row errors together", stationTemplate, good + "zz,202,pw\n001122334455,203,pw\n",
			[]string{"stations.csv line 3: mac", "stations.csv line 4: mac 001122334455 is already on line 2"}},
		{"empty password", stationTemplate, "mac,extension,password\n001122334455,201,\n",
			[]string{"stations.csv line 2: password is empty"}},
		{"invalid UTF-8", stationTemplate, "mac,extension,password\n001122334455,201,\xff\n",
			[]string{"stations.csv line 2: password is not valid UTF-8"}},
		{"wrong field count", stationTemplate, good + "002233445566,202\n",
			[]string{"stations.csv:", "line 3", "wrong number of fields"}},
		{"empty CSV", stationTemplate, "", []string{"stations.csv: empty"}},
		{"header only", stationTemplate, "mac,extension,password\n", []string{"stations.csv: no stations"}},
		{"unknown template field", "sip:\n  user: {{.Extenson}}\n", good,
			[]string{"station.tmpl:2: unknown field .Extenson"}},
		{"template syntax", "sip:\n  user: {{.Extension\n", good, []string{"provision render: station.tmpl:2: only {{.Field}}"}},
		{"template action", "{{if true}}x{{end}}\n", good, []string{"station.tmpl:1: only {{.Field}} and {{yaml .Field}}"}},
		{"document fails the schema", "sip:\n  user: {{.Extension}}\n  colour: red\n", good,
			[]string{"stations.csv line 2: 001122334455.yaml:3: sip.colour: unknown key"}},
		{"unquoted special characters", "sip:\n  password: {{.Password}}\n", "mac,extension,password\n001122334455,201,\"a: b\"\n",
			[]string{"stations.csv line 2: 001122334455.yaml:2: invalid YAML"}},
		{"provisioning in the template", "provisioning:\n  interval: 1h\n", good,
			[]string{"001122334455.yaml:1: provisioning: set only in the local file"}},
		{"empty rendering", "# {{.Name}}\n", good, []string{"001122334455.yaml: empty document"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			outDir, stdout, err := renderFiles(t, tt.tmpl, tt.csv)
			var ue usageError
			if !errors.As(err, &ue) {
				t.Fatalf("got %v, want a usage error (exit 2)", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\nlacks %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error shows a password: %v", err)
			}
			if _, statErr := os.Stat(outDir); !os.IsNotExist(statErr) || stdout != "" {
				t.Errorf("something was written: stat %v, stdout %q", statErr, stdout)
			}
		})
	}
}

// One bad row keeps the good rows from being written.
func TestProvisionRenderAllOrNothing(t *testing.T) {
	var csv string
	tmpl := "sip:\n  user: {{yaml .Extension}}\n  {{.Password}}: red\n"
	csv = "mac,extension,password\n001122334455,201,password\n002233445566,202,colour\n"
	outDir, stdout, err := renderFiles(t, tmpl, csv)
	if err == nil || !strings.Contains(err.Error(), "stations.csv line 3: 002233445566.yaml:3: sip.colour: unknown key") {
		t.Fatalf("got %v", err)
	}
	if !strings.HasPrefix(err.Error(), "provision render: nothing written: ") {
		t.Errorf("error %q does not say nothing was written", err)
	}
	if _, statErr := os.Stat(outDir); !os.IsNotExist(statErr) || stdout != "" {
		t.Errorf("something was written: stat %v, stdout %q", statErr, stdout)
	}
}

func TestProvisionUsage(t *testing.T) {
	for _, args := range [][]string{
		{"provision"},
		{"provision", "render"},
		{"provision", "render", "a", "b"},
		{"provision", "render", "a", "b", "c", "d"},
		{"provision", "publish"},
	} {
		var ue usageError
		if err := run(args, &bytes.Buffer{}, &bytes.Buffer{}); !errors.As(err, &ue) {
			t.Errorf("%q: got %v, want a usage error", args, err)
		}
	}
	dir := t.TempDir()
	var ue usageError
	err := run([]string{"provision", "render", filepath.Join(dir, "missing.tmpl"), filepath.Join(dir, "x.csv"), dir}, &bytes.Buffer{}, &bytes.Buffer{})
	if !errors.As(err, &ue) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing template: got %v", err)
	}
	var out bytes.Buffer
	if err := run([]string{"help"}, &out, &bytes.Buffer{}); err != nil || !strings.Contains(out.String(), "intercom provision render TEMPLATE CSV OUTDIR") {
		t.Errorf("usage lacks provision render: %v\n%s", err, out.String())
	}
}
