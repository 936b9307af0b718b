package provisioning

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// MaxDocument is the largest configuration document accepted; a station's
// YAML is a few KiB, so anything near this is a wrong file.
const MaxDocument = 1 << 20

const maxSignature = 1 << 10

// Source is where one document comes from and how it is authenticated.
type Source struct {
	URL string
	// User and Password select HTTP basic auth; Token a bearer token.
	User, Password, Token string
	// PublicKey, when set, requires a detached ed25519 signature of the
	// document at URL with ".sig" appended to its path.
	PublicKey ed25519.PublicKey
}

// Document is one fetched configuration document.
type Document struct {
	URL          string
	Body         []byte
	ETag         string
	LastModified string
	Fetched      time.Time
}

// ErrUnsigned means a signature was required but the server has none.
var ErrUnsigned = errors.New("unsigned")

// ErrBadSignature means the signature does not match the document.
var ErrBadSignature = errors.New("bad signature")

// Fetch gets src.URL, conditionally when prev was fetched from the same URL
// (RFC 9110 §13.1.2 If-None-Match, §13.1.3 If-Modified-Since). A 304 gives
// back prev and changed=false. Errors never carry credentials or the URL's
// query.
func Fetch(ctx context.Context, client *http.Client, src Source, prev Document) (Document, bool, error) {
	return fetch(ctx, client, src, prev, time.Now())
}

func fetch(ctx context.Context, client *http.Client, src Source, prev Document, now time.Time) (Document, bool, error) {
	masked := MaskURL(src.URL)
	if client == nil {
		return prev, false, errors.New("provisioning: fetch: no http client")
	}
	if src.User != "" && src.Token != "" {
		return prev, false, fmt.Errorf("provisioning: %s: both user and token set", masked)
	}
	// A validator that is no valid header value (a hand-edited state file)
	// is left out rather than failing every request.
	etag, modified := headerValue(prev.ETag), headerValue(prev.LastModified)
	conditional := prev.URL == src.URL && (etag != "" || modified != "")
	resp, err := get(ctx, client, src, src.URL, func(h http.Header) {
		if !conditional {
			return
		}
		if etag != "" {
			h.Set("If-None-Match", etag)
		}
		if modified != "" {
			h.Set("If-Modified-Since", modified)
		}
	})
	if err != nil {
		return prev, false, err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotModified && conditional:
		return prev, false, nil
	case resp.StatusCode != http.StatusOK:
		return prev, false, fmt.Errorf("provisioning: %s: HTTP %s", masked, resp.Status)
	}
	body, err := readBody(resp, MaxDocument)
	if err != nil {
		return prev, false, fmt.Errorf("provisioning: %s: %w", masked, err)
	}
	if src.PublicKey != nil {
		if err := verify(ctx, client, src, body); err != nil {
			return prev, false, err
		}
	}
	return Document{
		URL:          src.URL,
		Body:         body,
		ETag:         resp.Header.Get("ETag"),
		LastModified: resp.Header.Get("Last-Modified"),
		Fetched:      now,
	}, true, nil
}

func get(ctx context.Context, client *http.Client, src Source, rawURL string, headers func(http.Header)) (*http.Response, error) {
	masked := MaskURL(rawURL)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("provisioning: %s: bad url", masked)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return nil, fmt.Errorf("provisioning: %s: scheme must be http or https", masked)
	}
	switch {
	case src.User != "":
		req.SetBasicAuth(src.User, src.Password)
	case src.Token != "":
		req.Header.Set("Authorization", "Bearer "+src.Token)
	}
	headers(req.Header)
	resp, err := client.Do(req)
	if err != nil {
		// url.Error repeats the full URL, query included: keep only its cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("provisioning: %s: %w", masked, err)
	}
	return resp, nil
}

// headerValue returns v if it may be sent as a header field value
// (RFC 9110 §5.5: no control characters but tab), else "".
func headerValue(v string) string {
	for _, c := range []byte(v) {
		if c < ' ' && c != '\t' || c == 0x7f {
			return ""
		}
	}
	return v
}

// readBody reads a complete body of at most limit bytes.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("too large: %d bytes, limit %d", resp.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return nil, fmt.Errorf("truncated: got %d bytes: %w", len(body), err)
	}
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("too large: over %d bytes", limit)
	}
	if resp.ContentLength >= 0 && int64(len(body)) != resp.ContentLength {
		return nil, fmt.Errorf("truncated: got %d of %d bytes: %w", len(body), resp.ContentLength, io.ErrUnexpectedEOF)
	}
	return body, nil
}

// verify fetches the detached signature of body and checks it.
func verify(ctx context.Context, client *http.Client, src Source, body []byte) error {
	u, err := url.Parse(src.URL)
	if err != nil {
		return fmt.Errorf("provisioning: %s: bad url", MaskURL(src.URL))
	}
	// Appended to the path, not the raw string, so a query stays a query.
	u.Path += ".sig"
	u.RawPath = ""
	sigURL := u.String()
	masked := MaskURL(sigURL)
	resp, err := get(ctx, client, src, sigURL, func(http.Header) {})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		return fmt.Errorf("provisioning: %s: %w", masked, ErrUnsigned)
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("provisioning: %s: HTTP %s", masked, resp.Status)
	}
	raw, err := readBody(resp, maxSignature)
	if err != nil {
		return fmt.Errorf("provisioning: %s: %w", masked, err)
	}
	sig, err := decodeSignature(raw)
	if err != nil {
		return fmt.Errorf("provisioning: %s: %w: %w", masked, ErrBadSignature, err)
	}
	if !ed25519.Verify(src.PublicKey, body, sig) {
		return fmt.Errorf("provisioning: %s: %w", masked, ErrBadSignature)
	}
	return nil
}

// decodeSignature accepts the 64 raw bytes or their base64 text.
func decodeSignature(raw []byte) ([]byte, error) {
	// Raw bytes first: trimming could eat signature bytes that happen to be
	// whitespace.
	if len(raw) == ed25519.SignatureSize {
		return raw, nil
	}
	text := strings.TrimSpace(string(raw))
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if sig, err := enc.DecodeString(text); err == nil {
			if len(sig) != ed25519.SignatureSize {
				return nil, fmt.Errorf("%d bytes, want %d", len(sig), ed25519.SignatureSize)
			}
			return sig, nil
		}
	}
	return nil, errors.New("neither 64 raw bytes nor base64")
}

// ErrNotKeyText is ParsePublicKeyText's answer to text that is neither
// base64 nor PEM: a caller may then take it for a file's path.
var ErrNotKeyText = errors.New("not an ed25519 public key (base64 of 32 bytes or a PEM PUBLIC KEY block)")

// ParsePublicKeyText reads an ed25519 public key written out as base64 of
// its 32 bytes or as one PEM "PUBLIC KEY" (PKIX) block. Its errors say
// what is wrong with the text, without a prefix: the caller names where
// the text came from.
func ParsePublicKeyText(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "-----BEGIN") {
		return parsePEMKey(s)
	}
	raw, err := base64.StdEncoding.DecodeString(s)
	switch {
	case err != nil || s == "":
		return nil, ErrNotKeyText
	case len(raw) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("base64 of %d bytes; an ed25519 public key is %d", len(raw), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

func parsePEMKey(s string) (ed25519.PublicKey, error) {
	block, rest := pem.Decode([]byte(s))
	switch {
	case block == nil:
		return nil, errors.New("malformed PEM block")
	case block.Type != "PUBLIC KEY":
		return nil, fmt.Errorf("PEM block is %q; want PUBLIC KEY", block.Type)
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, errors.New("text after the PEM block; want one PUBLIC KEY block")
	}
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("PEM PUBLIC KEY: %w", err)
	}
	key, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("PEM PUBLIC KEY holds a %T; want an ed25519 key", pub)
	}
	return key, nil
}

// ParsePublicKey reads an ed25519 public key given as ParsePublicKeyText
// takes it, or as the path of a file holding such text.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("provisioning: public key: empty")
	}
	key, err := ParsePublicKeyText(s)
	if err == nil {
		return key, nil
	}
	if !errors.Is(err, ErrNotKeyText) && !filepath.IsAbs(s) {
		return nil, fmt.Errorf("provisioning: public key: %w", err)
	}
	data, rerr := os.ReadFile(s)
	if rerr != nil {
		return nil, fmt.Errorf("provisioning: public key: %w, nor a readable file: %w", err, rerr)
	}
	if key, err = ParsePublicKeyText(string(data)); err != nil {
		return nil, fmt.Errorf("provisioning: public key: %s: %w", s, err)
	}
	return key, nil
}

// MaskURL returns rawURL fit for logs, events and status: without user
// information, with the query replaced by "***" (it often carries a token).
func MaskURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable url)"
	}
	u.User = nil
	if u.RawQuery != "" || u.ForceQuery {
		u.RawQuery = "***"
	}
	u.Fragment, u.RawFragment = "", ""
	return u.String()
}
