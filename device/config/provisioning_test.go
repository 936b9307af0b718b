package config

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
	"time"
)

func testPublicKey(t *testing.T) (b64, pemText string) {
	t.Helper()
	pub := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(pub), string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

// yamlBlock indents text as a YAML literal block under a key at depth 1.
func yamlBlock(text string) string {
	return "|\n    " + strings.ReplaceAll(strings.TrimSpace(text), "\n", "\n    ") + "\n"
}

func TestProvisioningKeys(t *testing.T) {
	b64, pemText := testPublicKey(t)
	cfg := mustParse(t, `provisioning:
  url: https://prov.example.com/intercom/{mac}.yaml
  common_url: https://prov.example.com/intercom/common.yaml?serial={serial}
  interval: 15m
  ca: /etc/intercom/ca.pem
  client_cert: /etc/intercom/client.pem
  client_key: /etc/intercom/client.key
  user: door
  password: pr0v
  public_key: `+b64+`
  rollback_after: 1m
  state_dir: /data/intercom
`)
	want := Provisioning{
		URL: "https://prov.example.com/intercom/{mac}.yaml", CommonURL: "https://prov.example.com/intercom/common.yaml?serial={serial}",
		Interval: 15 * time.Minute, CA: "/etc/intercom/ca.pem", ClientCert: "/etc/intercom/client.pem", ClientKey: "/etc/intercom/client.key",
		User: "door", Password: "pr0v", PublicKey: b64, RollbackAfter: time.Minute, StateDir: "/data/intercom",
	}
	if cfg.Provisioning != want {
		t.Errorf("got  %+v\nwant %+v", cfg.Provisioning, want)
	}
	assertRoundTrip(t, cfg)

	for _, ok := range []string{
		"  public_key: " + yamlBlock(pemText),
		"  public_key: /etc/intercom/provisioning.pub\n",
		// A path made only of base64 characters is still a path.
		"  public_key: /etc/keys/ab\n",
		"  url: https://{mac}.prov.example.com/x\n  token: t0k\n",
		"  url: http://10.0.0.1:8080/{serial}/{mac}\n  interval: 1m\n",
		// Without url the interval is unused: only positive.
		"  interval: 10s\n",
	} {
		cfg := mustParse(t, "provisioning:\n"+ok)
		assertRoundTrip(t, cfg)
	}
}

func TestProvisioningValidation(t *testing.T) {
	_, pemText := testPublicKey(t)
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKIXPublicKey(&ec.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	certPEM := strings.ReplaceAll(pemText, "PUBLIC KEY", "CERTIFICATE")
	short := base64.StdEncoding.EncodeToString(make([]byte, 16))

	const u = "  url: https://prov.example.com/{mac}.yaml\n"
	tests := []struct{ name, doc, want string }{
		{"url scheme", "  url: ftp://prov.example.com/x.yaml\n", `t.yaml:2: provisioning.url: scheme must be https or http, got "ftp"`},
		{"url no host", "  url: https:///x.yaml\n", `t.yaml:2: provisioning.url: has no host`},
		{"url invalid", "  url: 'https://%zz'\n", `t.yaml:2: provisioning.url: not a valid URL`},
		{"url unknown placeholder", "  url: https://prov.example.com/{MAC}.yaml\n", `t.yaml:2: provisioning.url: unknown placeholder "{MAC}": use {mac} or {serial}`},
		{"url stray brace", "  url: https://prov.example.com/{mac.yaml\n", `t.yaml:2: provisioning.url: '{' and '}' only enclose the placeholders`},
		{"common_url scheme", u + "  common_url: file:///etc/x.yaml\n", `t.yaml:3: provisioning.common_url: scheme must be https or http, got "file"`},
		{"common_url without url", "  common_url: https://prov.example.com/common.yaml\n", `t.yaml:2: provisioning.common_url: needs provisioning.url as well`},
		{"interval zero", "  interval: 0s\n", `t.yaml:2: provisioning.interval: must be positive, got 0s`},
		{"interval short with url", u + "  interval: 30s\n", `t.yaml:3: provisioning.interval: must be at least 1m0s, got 30s`},
		{"client_cert alone", u + "  client_cert: /etc/c.pem\n", `t.yaml:1: provisioning.client_key: required with client_cert`},
		{"client_key alone", u + "  client_key: /etc/c.key\n", `t.yaml:1: provisioning.client_cert: required with client_key`},
		{"password alone", u + "  password: pr0v\n", `t.yaml:3: provisioning.password: needs user as well (HTTP basic auth)`},
		{"basic and token", u + "  user: door\n  password: pr0v\n  token: t0k\n", `t.yaml:5: provisioning.token: use either user and password (basic auth) or token (bearer), not both`},
		{"public_key short base64", "  public_key: " + short + "\n", `t.yaml:2: provisioning.public_key: base64 of 16 bytes; an ed25519 public key is 32`},
		{"public_key junk", "  public_key: not a key\n", `t.yaml:2: provisioning.public_key: not an ed25519 public key`},
		{"public_key relative path", "  public_key: keys/prov.pub\n", `t.yaml:2: provisioning.public_key: not an ed25519 public key`},
		{"public_key ecdsa PEM", "  public_key: " + yamlBlock(ecPEM), `t.yaml:2: provisioning.public_key: PEM PUBLIC KEY holds a *ecdsa.PublicKey; want an ed25519 key`},
		{"public_key certificate PEM", "  public_key: " + yamlBlock(certPEM), `t.yaml:2: provisioning.public_key: PEM block is "CERTIFICATE"; want PUBLIC KEY`},
		{"public_key broken PEM", "  public_key: '-----BEGIN PUBLIC KEY----- xx'\n", `t.yaml:2: provisioning.public_key: malformed PEM block`},
		{"public_key two PEM blocks", "  public_key: " + yamlBlock(pemText+pemText), `t.yaml:2: provisioning.public_key: text after the PEM block`},
		{"rollback_after short", "  rollback_after: 5s\n", `t.yaml:2: provisioning.rollback_after: must be at least 10s, got 5s`},
		{"state_dir relative", "  state_dir: var/lib/intercom\n", `t.yaml:2: provisioning.state_dir: must be an absolute directory path, got "var/lib/intercom"`},
		{"state_dir empty", "  state_dir: ''\n", `t.yaml:2: provisioning.state_dir: must be an absolute directory path, got ""`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseErr(t, "provisioning:\n"+tt.doc)
			if !containsLine(got, tt.want) {
				t.Errorf("error\n%s\nhas no line starting with\n%s", got, tt.want)
			}
		})
	}
}

func TestProvisioningSecretsMaskedAndOutOfErrors(t *testing.T) {
	cfg := mustParse(t, `provisioning:
  url: https://door:s3cret1@prov.example.com/{mac}.yaml
  common_url: https://door:s3cret2@prov.example.com/common.yaml
  user: door
  password: s3cret3
`)
	m := cfg.Masked()
	out, err := Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"s3cret1", "s3cret2", "s3cret3"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("masked output shows %q:\n%s", secret, out)
		}
	}
	if m.Provisioning.Password != "***" || m.Provisioning.User != "door" || cfg.Provisioning.Password != "s3cret3" {
		t.Errorf("masked %+v, original %+v", m.Provisioning, cfg.Provisioning)
	}
	tok := mustParse(t, "provisioning:\n  token: t0ken\n").Masked()
	if tok.Provisioning.Token != "***" {
		t.Errorf("token = %q", tok.Provisioning.Token)
	}

	for _, doc := range []string{
		"provisioning:\n  url: 'https://u:s3cret@%zz/'\n",
		"provisioning:\n  url: 'ftp://u:s3cret@h/'\n  common_url: 'https://u:s3cret@h/{x'\n",
		"provisioning:\n  password: s3cret\n",
		"provisioning:\n  user: u\n  password: s3cret\n  token: s3cret\n",
	} {
		if got := parseErr(t, doc); strings.Contains(got, "s3cret") {
			t.Errorf("error shows a secret:\n%s", got)
		}
	}
}
