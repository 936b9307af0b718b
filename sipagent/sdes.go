package sipagent

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// SRTPPolicy says whether calls use SRTP keyed by SDES (RFC 4568).
type SRTPPolicy string

const (
	// SRTPOff never offers or accepts SRTP; "" means the same.
	SRTPOff SRTPPolicy = "off"
	// SRTPOptional uses SRTP when the signalling is TLS and the peer
	// takes it: our offers are RTP/AVP with a=crypto (best-effort SRTP,
	// as baresip's mediaenc=srtp and most phones do), answered with or
	// without keys; an RTP/SAVP offer is answered with SRTP.
	SRTPOptional SRTPPolicy = "optional"
	// SRTPRequired offers RTP/SAVP only, refuses calls whose offer or
	// answer has no key we support (488 for incoming), and needs TLS.
	SRTPRequired SRTPPolicy = "required"
)

// SDES crypto suites we support (RFC 4568 section 6.2), strongest first.
const (
	SuiteAES128SHA1_80 = "AES_CM_128_HMAC_SHA1_80"
	SuiteAES128SHA1_32 = "AES_CM_128_HMAC_SHA1_32"
)

var sdesSuites = []string{SuiteAES128SHA1_80, SuiteAES128SHA1_32}

// SDESKeyLen is an SDES inline key's length: a 128-bit master key and a
// 112-bit master salt (RFC 4568 section 6.1).
const SDESKeyLen = 30

// SRTPKeys is a call's SDES keying: the suite and each side's master key
// and salt. Each side protects what it sends with its own key.
type SRTPKeys struct {
	Suite  string           // "" for plain RTP
	Local  [SDESKeyLen]byte // ours: protects what we send
	Remote [SDESKeyLen]byte // the peer's: protects what it sends
}

// String names the suite only: keys never reach a log.
func (k SRTPKeys) String() string {
	if k.Suite == "" {
		return "none"
	}
	return k.Suite
}

// GoString is String: %#v must not print keys either.
func (k SRTPKeys) GoString() string { return k.String() }

// LogValue is String for slog.
func (k SRTPKeys) LogValue() slog.Value { return slog.StringValue(k.String()) }

// MarshalText is String, for JSON and other encoders of a MediaAnswer.
func (k SRTPKeys) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

var _ slog.LogValuer = SRTPKeys{}

// sdesLine is one a=crypto attribute with a single inline key (RFC 4568
// section 9.1): "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:<base64>".
type sdesLine struct {
	tag   uint32
	suite string
	key   [SDESKeyLen]byte
}

// String is the attribute's value, key included: for SDP only.
func (c sdesLine) String() string {
	return fmt.Sprintf("%d %s inline:%s", c.tag, c.suite, base64.StdEncoding.EncodeToString(c.key[:]))
}

// errSRTPInsecure refuses SRTP keys over signalling that is not TLS: SDES
// keys travel in the SDP (RFC 4568 section 8.3).
var errSRTPInsecure = errors.New("audio.srtp is required but SIP signalling is not TLS")

// Offers and answers that SRTP makes unacceptable; both wrap
// errSDPUnacceptable.
var (
	errSRTPRequired    = fmt.Errorf("%w: SRTP required", errSDPUnacceptable)
	errSRTPUnavailable = fmt.Errorf("%w: SRTP not available (audio.srtp off, or SIP not over TLS)", errSDPUnacceptable)
)

// NotAcceptableReason is the reason phrase of a 488 for err from Negotiate
// or Accept, telling the caller when SRTP is why.
func NotAcceptableReason(err error) string {
	switch {
	case errors.Is(err, errSRTPRequired), errors.Is(err, errSRTPInsecure):
		return "Not Acceptable Here: SRTP Required"
	case errors.Is(err, errSRTPUnavailable):
		return "Not Acceptable Here: SRTP Not Available"
	}
	return "Not Acceptable Here"
}

// parseCrypto returns the usable a=crypto lines of a media description in
// their order; lines with a suite we do not support, a key that is not
// one inline key of the right length, an MKI, or session parameters
// (UNENCRYPTED_SRTP and the like, RFC 4568 section 6.3) are skipped, and
// so is a tag seen before (section 9.1: unique within the media).
func parseCrypto(attrs []sdp.Attribute) []sdesLine {
	var out []sdesLine
	for _, a := range attrs {
		if a.Key != "crypto" {
			continue
		}
		c, err := parseCryptoLine(a.Value)
		if err != nil || slices.ContainsFunc(out, func(o sdesLine) bool { return o.tag == c.tag }) {
			continue
		}
		out = append(out, c)
	}
	return out
}

// parseCryptoLine reads one a=crypto value (RFC 4568 section 9.1).
func parseCryptoLine(v string) (sdesLine, error) {
	f := strings.Fields(v)
	if len(f) != 3 {
		return sdesLine{}, fmt.Errorf("sipagent: a=crypto: want tag, suite and one key parameter, got %d fields", len(f))
	}
	// tag = 1*9DIGIT
	if len(f[0]) > 9 || strings.Trim(f[0], "0123456789") != "" {
		return sdesLine{}, fmt.Errorf("sipagent: a=crypto: bad tag %q", f[0])
	}
	tag, err := strconv.ParseUint(f[0], 10, 32)
	if err != nil {
		return sdesLine{}, fmt.Errorf("sipagent: a=crypto: bad tag %q", f[0])
	}
	c := sdesLine{tag: uint32(tag)}
	for _, s := range sdesSuites {
		if strings.EqualFold(f[1], s) {
			c.suite = s
		}
	}
	if c.suite == "" {
		return sdesLine{}, fmt.Errorf("sipagent: a=crypto: unsupported suite %q", f[1])
	}
	method, info, ok := strings.Cut(f[2], ":")
	if !ok || !strings.EqualFold(method, "inline") || strings.Contains(info, ";") {
		return sdesLine{}, errors.New("sipagent: a=crypto: want one inline key")
	}
	// key||salt ["|" lifetime] ["|" MKI ":" length]; we use no MKI, and
	// a call never lasts a key's lifetime at our packet rate.
	parts := strings.Split(info, "|")
	if len(parts) > 2 || (len(parts) == 2 && strings.Contains(parts[1], ":")) {
		return sdesLine{}, errors.New("sipagent: a=crypto: MKI not supported")
	}
	if len(parts) == 2 && !validLifetime(parts[1]) {
		return sdesLine{}, errors.New("sipagent: a=crypto: bad key lifetime")
	}
	key, err := base64.StdEncoding.DecodeString(parts[0])
	if err != nil || len(key) != SDESKeyLen {
		return sdesLine{}, errors.New("sipagent: a=crypto: key is not 30 bytes of base64")
	}
	copy(c.key[:], key)
	return c, nil
}

// validLifetime checks a key lifetime: decimal, or "2^" and a power (RFC
// 4568 section 9.2).
func validLifetime(s string) bool {
	s = strings.TrimPrefix(s, "2^")
	n, err := strconv.ParseUint(s, 10, 64)
	return err == nil && n > 0
}

// newSDESLine is a crypto line with a fresh random key; keys are new for
// every call (RFC 4568 section 6.1 requires them unpredictable).
func newSDESLine(tag uint32, suite string) (sdesLine, error) {
	c := sdesLine{tag: tag, suite: suite}
	if _, err := rand.Read(c.key[:]); err != nil {
		return sdesLine{}, fmt.Errorf("sipagent: srtp key: %w", err)
	}
	return c, nil
}

// sdesMode is what one call does about SDES.
type sdesMode struct {
	keys     bool // we may put keys in SDP
	required bool // a call without SRTP is refused
}

// secureSignalling reports whether the agent's SIP travels over TLS, so
// that SDP may carry keys. With sip.transport tls the agent has no other
// transport, incoming or outgoing.
func (a *Agent) secureSignalling() bool { return a.transport == "TLS" }

// sdesMode applies policy p to the agent's signalling.
func (a *Agent) sdesMode(p SRTPPolicy) (sdesMode, error) {
	switch p {
	case "", SRTPOff:
		return sdesMode{}, nil
	case SRTPOptional:
		return sdesMode{keys: a.secureSignalling()}, nil
	case SRTPRequired:
		if !a.secureSignalling() {
			return sdesMode{}, errSRTPInsecure
		}
		return sdesMode{keys: true, required: true}, nil
	}
	return sdesMode{}, fmt.Errorf("sipagent: unknown srtp policy %q", p)
}

// offerSDES is the crypto of a new offer: every suite we support, each
// with a key of its own, in RTP/SAVP only when SRTP is required.
func offerSDES(m sdesMode) (savp bool, lines []sdesLine, err error) {
	if !m.keys {
		return false, nil, nil
	}
	for i, s := range sdesSuites {
		c, err := newSDESLine(uint32(i+1), s)
		if err != nil {
			return false, nil, err
		}
		lines = append(lines, c)
	}
	return m.required, lines, nil
}

// answerSDES picks the crypto of our answer to offer (RFC 4568 section
// 7.1.2): the first offered line we support, with its tag and suite and
// our key. keep is the call's keying so far: its key is kept when the
// suite stays (a re-INVITE need not re-key). Errors wrap
// errSDPUnacceptable (answered 488).
func answerSDES(offer remoteMedia, m sdesMode, keep SRTPKeys) (SRTPKeys, []sdesLine, error) {
	if !m.keys {
		if offer.savp || m.required {
			return SRTPKeys{}, nil, fmt.Errorf("%w: RTP/SAVP offered", errSRTPUnavailable)
		}
		return SRTPKeys{}, nil, nil
	}
	if len(offer.crypto) == 0 {
		if m.required {
			return SRTPKeys{}, nil, fmt.Errorf("%w: the offer has no a=crypto we support", errSRTPRequired)
		}
		return SRTPKeys{}, nil, nil
	}
	pick := offer.crypto[0]
	ours := sdesLine{tag: pick.tag, suite: pick.suite, key: keep.Local}
	if keep.Suite != pick.suite {
		var err error
		if ours, err = newSDESLine(pick.tag, pick.suite); err != nil {
			return SRTPKeys{}, nil, err
		}
	}
	return SRTPKeys{Suite: pick.suite, Local: ours.key, Remote: pick.key}, []sdesLine{ours}, nil
}

// peerSDES reads the keying of an answer to our offer of lines: the
// answer's line must name one of our tags with its suite (RFC 4568
// section 7.1.3). Without one, the call goes on in plain RTP unless
// required. Errors wrap errSDPUnacceptable.
func peerSDES(answer remoteMedia, offered []sdesLine, required bool) (SRTPKeys, error) {
	if len(offered) == 0 {
		if answer.savp {
			return SRTPKeys{}, fmt.Errorf("%w: RTP/SAVP answer to an offer without keys", errSRTPUnavailable)
		}
		return SRTPKeys{}, nil
	}
	for _, a := range answer.crypto {
		for _, o := range offered {
			if a.tag == o.tag && a.suite == o.suite {
				return SRTPKeys{Suite: o.suite, Local: o.key, Remote: a.key}, nil
			}
		}
	}
	if required || answer.savp {
		return SRTPKeys{}, fmt.Errorf("%w: the answer has no a=crypto for our offer", errSRTPRequired)
	}
	return SRTPKeys{}, nil
}

// ownSDES is the crypto line that keeps a call's keying in a new offer of
// ours; none for plain RTP.
func ownSDES(k SRTPKeys) []sdesLine {
	if k.Suite == "" {
		return nil
	}
	return []sdesLine{{tag: 1, suite: k.Suite, key: k.Local}}
}

// answerToOffer reads the answer rm to our offer: codec, telephone-event
// and keying.
func answerToOffer(rm remoteMedia, offer localSDP, dtmf, required bool) (MediaAnswer, error) {
	m, err := answerFromPeer(rm, offer.codecs, dtmf)
	if err != nil {
		return MediaAnswer{}, err
	}
	if m.SRTP, err = peerSDES(rm, offer.crypto, required); err != nil {
		return MediaAnswer{}, fmt.Errorf("sipagent: %w", err)
	}
	return m, nil
}
