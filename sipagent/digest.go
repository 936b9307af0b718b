package sipagent

// Digest authentication of the requests we send (RFC 3261 section 22),
// with the algorithms of RFC 8760 (SHA-256, SHA-512-256 and their -sess
// variants beside MD5) and the qop, cnonce and nonce-count of RFC 7616.

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/emiago/sipgo/sip"
)

// digestAlgorithm is one hash algorithm a challenge may name.
type digestAlgorithm struct {
	newHash func() hash.Hash
	sess    bool
	// strength orders the algorithms: RFC 8760 section 2.4 has the UAC
	// choose the strongest one it supports among several challenges.
	strength int
}

// digestAlgorithms are the algorithms we answer, by upper-case name (RFC
// 7616 section 6.1 registers them). RFC 3261 section 25.1 makes MD5 the
// default when a challenge names none.
var digestAlgorithms = map[string]digestAlgorithm{
	"MD5":              {newHash: md5.New, strength: 1},
	"MD5-SESS":         {newHash: md5.New, sess: true, strength: 1},
	"SHA-256":          {newHash: sha256.New, strength: 2},
	"SHA-256-SESS":     {newHash: sha256.New, sess: true, strength: 2},
	"SHA-512-256":      {newHash: sha512.New512_256, strength: 3},
	"SHA-512-256-SESS": {newHash: sha512.New512_256, sess: true, strength: 3},
}

// maxChallengeLen bounds the header value parseChallenge reads; real
// challenges are a few hundred bytes.
const maxChallengeLen = 4096

// challenge is one parsed digest challenge (RFC 3261 section 25.1,
// "digest-cln"; RFC 7616 section 3.3).
type challenge struct {
	realm, nonce, opaque string
	// algorithm is the name as offered, "" when absent (MD5).
	algorithm string
	qop       []string // offered qop values, lower case
	stale     bool
}

// errNotDigest is a challenge of another scheme (Basic, say), which a
// SIP UA ignores (RFC 3261 section 22.4 forbids Basic).
var errNotDigest = errors.New("not a Digest challenge")

// parseChallenge reads a WWW-Authenticate or Proxy-Authenticate value:
// "Digest" LWS auth-param *(COMMA auth-param), each auth-param a token,
// "=" and a token or quoted-string.
func parseChallenge(v string) (challenge, error) {
	var c challenge
	if len(v) > maxChallengeLen {
		return c, fmt.Errorf("challenge longer than %d bytes", maxChallengeLen)
	}
	if !utf8.ValidString(v) {
		// RFC 3261 section 25.1 allows only UTF-8 beyond ASCII.
		return c, errors.New("challenge is not UTF-8")
	}
	v = strings.TrimLeft(v, " \t")
	n := tokenLen(v)
	if !strings.EqualFold(v[:n], "Digest") {
		return c, errNotDigest
	}
	rest := v[n:]
	if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
		return c, errors.New("no space after Digest")
	}
	seen := map[string]bool{}
	p := paramScanner{s: rest}
	for {
		name, value, quoted, ok, err := p.next()
		if err != nil {
			return c, err
		}
		if !ok {
			break
		}
		name = strings.ToLower(name)
		if seen[name] {
			return c, fmt.Errorf("parameter %s twice", name)
		}
		seen[name] = true
		switch name {
		case "realm":
			c.realm = value
		case "nonce":
			c.nonce = value
		case "opaque":
			c.opaque = value
		case "algorithm":
			c.algorithm = value
		case "stale":
			c.stale = strings.EqualFold(value, "true")
		case "qop":
			// RFC 7616 section 3.3 quotes the list; some servers send a
			// single bare token.
			if !quoted && strings.Contains(value, ",") {
				return c, errors.New("unquoted qop list")
			}
			for q := range strings.SplitSeq(value, ",") {
				if q = strings.ToLower(strings.Trim(q, " \t")); q != "" {
					c.qop = append(c.qop, q)
				}
			}
		}
	}
	if !seen["realm"] || c.nonce == "" {
		return c, errors.New("challenge lacks realm or nonce")
	}
	return c, nil
}

// paramScanner walks the comma-separated auth-params of a challenge.
type paramScanner struct {
	s     string
	count int
}

func (p *paramScanner) skipSpace() {
	p.s = strings.TrimLeft(p.s, " \t")
}

// next returns the next parameter; ok is false at the end.
func (p *paramScanner) next() (name, value string, quoted, ok bool, err error) {
	p.skipSpace()
	if p.count > 0 {
		if p.s == "" {
			return "", "", false, false, nil
		}
		if p.s[0] != ',' {
			return "", "", false, false, fmt.Errorf("expected comma at %q", p.s)
		}
		p.s = p.s[1:]
		p.skipSpace()
	}
	if p.s == "" {
		if p.count == 0 {
			return "", "", false, false, errors.New("no parameters")
		}
		return "", "", false, false, errors.New("trailing comma")
	}
	p.count++
	n := tokenLen(p.s)
	if n == 0 {
		return "", "", false, false, fmt.Errorf("expected parameter name at %q", p.s)
	}
	name, p.s = p.s[:n], p.s[n:]
	p.skipSpace()
	if p.s == "" || p.s[0] != '=' {
		return "", "", false, false, fmt.Errorf("parameter %s has no value", name)
	}
	p.s = p.s[1:]
	p.skipSpace()
	if p.s != "" && p.s[0] == '"' {
		value, err = p.quotedString()
		return name, value, true, err == nil, err
	}
	n = tokenLen(p.s)
	if n == 0 {
		return "", "", false, false, fmt.Errorf("parameter %s has no value", name)
	}
	value, p.s = p.s[:n], p.s[n:]
	return name, value, false, true, nil
}

// quotedString reads a quoted-string with its quoted-pairs (RFC 3261
// section 25.1); control characters are refused, so that nothing read
// here can break the header we echo it in.
func (p *paramScanner) quotedString() (string, error) {
	var b strings.Builder
	for i := 1; i < len(p.s); i++ {
		ch := p.s[i]
		switch {
		case ch == '"':
			p.s = p.s[i+1:]
			return b.String(), nil
		case ch == '\\' && i+1 < len(p.s):
			i++
			ch = p.s[i]
		case ch == '\\':
			return "", errors.New("unterminated quoted-pair")
		}
		if (ch < 0x20 && ch != '\t') || ch == 0x7f {
			return "", errors.New("control character in quoted-string")
		}
		b.WriteByte(ch)
	}
	return "", errors.New("unterminated quoted-string")
}

// tokenLen is the length of the RFC 3261 token at the start of s.
func tokenLen(s string) int {
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ('a' <= ch && ch <= 'z') || ('A' <= ch && ch <= 'Z') || ('0' <= ch && ch <= '9') ||
			strings.IndexByte("-.!%*_+`'~", ch) >= 0 {
			continue
		}
		return i
	}
	return len(s)
}

// usable returns the algorithm and qop we answer c with, or why we cannot.
func (c *challenge) usable() (digestAlgorithm, string, error) {
	name := c.algorithm
	if name == "" {
		name = "MD5"
	}
	alg, ok := digestAlgorithms[strings.ToUpper(name)]
	if !ok {
		return alg, "", fmt.Errorf("algorithm %q not supported", c.algorithm)
	}
	var qop string
	switch {
	case slices.Contains(c.qop, "auth"):
		qop = "auth"
	case slices.Contains(c.qop, "auth-int"):
		qop = "auth-int"
	case len(c.qop) > 0:
		return alg, "", fmt.Errorf("qop %q not supported", strings.Join(c.qop, ","))
	case alg.sess:
		// A -sess A1 needs the cnonce that only comes with a qop.
		return alg, "", fmt.Errorf("algorithm %s without qop", c.algorithm)
	}
	return alg, qop, nil
}

// digestRequest is what a response is computed over.
type digestRequest struct {
	method, uri        string
	body               []byte
	username, password string
	cnonce             string
	nc                 uint32
}

// credentials computes the Authorization (or Proxy-Authorization) value
// answering c: RFC 7616 section 3.4.1 (with qop), RFC 2617 section
// 3.2.2.1 (without, as RFC 3261 section 22.4 still allows).
func (c *challenge) credentials(r digestRequest) (string, error) {
	alg, qop, err := c.usable()
	if err != nil {
		return "", err
	}
	h := func(parts ...string) string {
		hh := alg.newHash()
		hh.Write([]byte(strings.Join(parts, ":")))
		return hex.EncodeToString(hh.Sum(nil))
	}
	ha1 := h(r.username, c.realm, r.password)
	if alg.sess {
		// RFC 7616 section 3.4.2.
		ha1 = h(ha1, c.nonce, r.cnonce)
	}
	a2 := []string{r.method, r.uri}
	if qop == "auth-int" {
		// RFC 7616 section 3.4.3: the hash of the body, empty or not.
		bh := alg.newHash()
		bh.Write(r.body)
		a2 = append(a2, hex.EncodeToString(bh.Sum(nil)))
	}
	nc := fmt.Sprintf("%08x", r.nc)
	var response string
	if qop == "" {
		response = h(ha1, c.nonce, h(a2...))
	} else {
		response = h(ha1, c.nonce, nc, r.cnonce, qop, h(a2...))
	}

	var b strings.Builder
	fmt.Fprintf(&b, "Digest username=%s, realm=%s, nonce=%s, uri=%s, response=%s",
		quote(r.username), quote(c.realm), quote(c.nonce), quote(r.uri), quote(response))
	if c.algorithm != "" {
		b.WriteString(", algorithm=" + c.algorithm)
	}
	if c.opaque != "" {
		b.WriteString(", opaque=" + quote(c.opaque))
	}
	if qop != "" {
		fmt.Fprintf(&b, ", qop=%s, nc=%s, cnonce=%s", qop, nc, quote(r.cnonce))
	}
	return b.String(), nil
}

// quote makes s a quoted-string (RFC 3261 section 25.1).
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// realmKey tells the challenges of one response apart: each protection
// space (header and realm) is answered once (RFC 3261 section 22.3).
type realmKey struct {
	proxy bool
	realm string
}

// offered is a usable challenge of a response and where it came from.
type offered struct {
	challenge
	key realmKey
}

// strongestChallenges picks, for each realm a response challenges, the
// challenge with the strongest algorithm we support (RFC 8760 section
// 2.4); among equals the first offered wins. Challenges of other schemes,
// unparsable ones and ones naming unknown algorithms are skipped; when
// nothing is left, the error says why.
func strongestChallenges(res *sip.Response) ([]offered, error) {
	var picked []offered
	var strength []int
	var why []error
	for _, name := range []string{"WWW-Authenticate", "Proxy-Authenticate"} {
		for _, hdr := range res.GetHeaders(name) {
			c, err := parseChallenge(hdr.Value())
			if errors.Is(err, errNotDigest) {
				continue
			}
			var alg digestAlgorithm
			if err == nil {
				alg, _, err = c.usable()
			}
			if err != nil {
				why = append(why, fmt.Errorf("%s: %w", name, err))
				continue
			}
			key := realmKey{proxy: name == "Proxy-Authenticate", realm: c.realm}
			i := slices.IndexFunc(picked, func(o offered) bool { return o.key == key })
			switch {
			case i < 0:
				picked = append(picked, offered{challenge: c, key: key})
				strength = append(strength, alg.strength)
			case alg.strength > strength[i]:
				picked[i].challenge, strength[i] = c, alg.strength
			}
		}
	}
	if len(picked) == 0 {
		if len(why) == 0 {
			why = append(why, errors.New("no Digest challenge"))
		}
		return nil, fmt.Errorf("sipagent: digest: %d %s: %w", res.StatusCode, res.Reason, errors.Join(why...))
	}
	return picked, nil
}

// maxNonces bounds the nonces whose counts a nonceCounts remembers; the
// nonces come from the network.
const maxNonces = 32

// nonceCounts numbers the requests sent with each nonce: nc is their count
// (RFC 7616 section 3.4), so a server that issues a nonce again sees it
// grow instead of a replay.
type nonceCounts struct {
	mu     sync.Mutex
	counts map[string]uint32
}

// next counts one more request with nonce in the protection space k.
func (n *nonceCounts) next(k realmKey, nonce string) uint32 {
	n.mu.Lock()
	defer n.mu.Unlock()
	key := fmt.Sprintf("%t\x00%s\x00%s", k.proxy, k.realm, nonce)
	if _, ok := n.counts[key]; !ok && len(n.counts) >= maxNonces {
		// Old nonces are stale anyway; starting over is what a server
		// that forgot them expects.
		clear(n.counts)
	}
	if n.counts == nil {
		n.counts = map[string]uint32{}
	}
	n.counts[key]++
	return n.counts[key]
}

// digestAuth answers the challenges to one request, across its rounds.
type digestAuth struct {
	username, password string
	nonces             *nonceCounts
	// cnonce makes client nonces; tests fix it.
	cnonce func() string
	// answered holds our credentials per protection space.
	answered map[realmKey]string
	order    []realmKey
}

func newDigestAuth(username, password string, nonces *nonceCounts) *digestAuth {
	return &digestAuth{username: username, password: password, nonces: nonces, cnonce: rand.Text, answered: map[realmKey]string{}}
}

// isChallenge reports whether res asks for credentials.
func isChallenge(res *sip.Response) bool {
	return res.StatusCode == sip.StatusUnauthorized || res.StatusCode == sip.StatusProxyAuthRequired
}

// answer adds credentials answering the challenge res to req, the
// request res answers, and readies req to be sent again as a new
// transaction: CSeq incremented, Via removed (RFC 3261 sections 8.1.3.5
// and 22.2). retry is false when res only re-challenges a realm we
// have answered without saying our nonce was stale: the credentials
// were refused, and res is final. A response with no challenge we
// can answer is an error.
func (d *digestAuth) answer(req *sip.Request, res *sip.Response) (retry bool, err error) {
	chals, err := strongestChallenges(res)
	if err != nil {
		return false, err
	}
	for _, c := range chals {
		if _, done := d.answered[c.key]; done && !c.stale {
			return false, nil
		}
	}
	creds := make([]string, len(chals))
	for i, c := range chals {
		nc := d.nonces.next(c.key, c.nonce)
		v, err := c.credentials(digestRequest{
			method: string(req.Method), uri: req.Recipient.String(), body: req.Body(),
			username: d.username, password: d.password, cnonce: d.cnonce(), nc: nc,
		})
		if err != nil {
			return false, fmt.Errorf("sipagent: digest: %w", err)
		}
		creds[i] = v
	}
	for i, c := range chals {
		if _, ok := d.answered[c.key]; !ok {
			d.order = append(d.order, c.key)
		}
		d.answered[c.key] = creds[i]
	}
	for req.RemoveHeader("Authorization") {
	}
	for req.RemoveHeader("Proxy-Authorization") {
	}
	for _, k := range d.order {
		name := "Authorization"
		if k.proxy {
			name = "Proxy-Authorization"
		}
		req.AppendHeader(sip.NewHeader(name, d.answered[k]))
	}
	req.RemoveHeader("Via")
	if cseq := req.CSeq(); cseq != nil {
		cseq.SeqNo++
	}
	return true, nil
}
