package sipagent

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pion/sdp/v3"
)

// Codec is an RTP audio codec with an 8000 Hz clock. Only PCMU (payload
// type 0) and PCMA (payload type 8) are supported.
type Codec struct {
	Name        string
	PayloadType uint8
}

// MediaOffer is the local side of an audio stream: where we receive RTP and
// what we can send and receive.
type MediaOffer struct {
	// Addr is the local RTP address. An unspecified IP is replaced by the
	// local IP that the agent uses toward the SIP peer.
	Addr netip.AddrPort
	// Codecs in order of preference.
	Codecs []Codec
	// DTMF offers or accepts RFC 4733 telephone-events.
	DTMF bool
	// Ptime is the packetization we ask the peer to send with (RFC 4566
	// section 6, "a=ptime"); zero means 20 ms.
	Ptime time.Duration
	// SRTP is the policy for SDES-keyed SRTP (audio.srtp); keys are only
	// ever put in SDP when the agent's signalling is TLS.
	SRTP SRTPPolicy
}

// MediaAnswer is the negotiated audio stream of an established call.
type MediaAnswer struct {
	Local, Remote netip.AddrPort
	Codec         Codec
	// DTMFPayloadType is the RFC 4733 telephone-event payload type; 0 means
	// the peer does not send or accept telephone-events (0 is PCMU and never
	// a telephone-event type).
	DTMFPayloadType uint8
	// Ptime is the packetization the peer asked for, 20 ms when it did not.
	Ptime time.Duration
	// Direction is what we do with the stream, mirroring the peer's
	// attribute (RFC 3264 section 6.1): "sendrecv", "sendonly" (the peer
	// holds us: it only receives), "recvonly" (the peer put us on hold)
	// or "inactive"; "" means sendrecv.
	Direction string
	// SRTP is the call's SDES keying; a zero Suite means plain RTP.
	SRTP SRTPKeys
}

// Stream directions (RFC 4566 section 6, RFC 3264 section 5.1).
const (
	dirSendRecv = "sendrecv"
	dirSendOnly = "sendonly"
	dirRecvOnly = "recvonly"
	dirInactive = "inactive"
)

// normDirection spells sendrecv as "", the zero value.
func normDirection(d string) string {
	if d == dirSendRecv {
		return ""
	}
	return d
}

// mirrorDirection is the answerer's direction for an offered one (RFC
// 3264 section 6.1); "" stands for sendrecv both ways.
func mirrorDirection(d string) string {
	switch d {
	case dirSendOnly:
		return dirRecvOnly
	case dirRecvOnly:
		return dirSendOnly
	case dirInactive:
		return dirInactive
	}
	return ""
}

const (
	// dtmfPayloadType is the dynamic payload type we offer for
	// telephone-event; answers echo whatever the offer used.
	dtmfPayloadType = 101
	defaultPtime    = 20 * time.Millisecond
	maxPtime        = 200 * time.Millisecond
)

var staticCodecs = []Codec{{Name: "PCMU", PayloadType: 0}, {Name: "PCMA", PayloadType: 8}}

var (
	// errSDPSyntax marks a body that is not SDP at all (answered 400).
	errSDPSyntax = errors.New("malformed sdp")
	// errSDPUnacceptable marks SDP that parses but offers nothing we can
	// use (answered 488, RFC 3261 section 21.4.26).
	errSDPUnacceptable = errors.New("unacceptable sdp")
)

// normalizeCodecs checks codec names and fills in their static payload
// types, dropping duplicates.
func normalizeCodecs(in []Codec) ([]Codec, error) {
	if len(in) == 0 {
		return nil, errors.New("sipagent: no codecs")
	}
	out := make([]Codec, 0, len(in))
	for _, c := range in {
		i := slices.IndexFunc(staticCodecs, func(s Codec) bool { return strings.EqualFold(s.Name, c.Name) })
		if i < 0 {
			return nil, fmt.Errorf("sipagent: unsupported codec %q", c.Name)
		}
		if !slices.Contains(out, staticCodecs[i]) {
			out = append(out, staticCodecs[i])
		}
	}
	return out, nil
}

// remoteMedia is what a peer's SDP says about its audio stream.
type remoteMedia struct {
	addr   netip.AddrPort
	codecs []Codec // supported codecs in the peer's order, with its payload types
	dtmfPT uint8   // 0: no telephone-event
	ptime  time.Duration
	// dir is the peer's direction attribute; "" is sendrecv.
	dir string
	// savp is an RTP/SAVP stream; crypto its usable a=crypto lines (RTP/AVP
	// may carry them too, as best-effort SRTP), in the peer's order.
	savp   bool
	crypto []sdesLine
}

// parseSDP extracts the first usable RTP/AVP or RTP/SAVP audio stream (RFC
// 4566, RFC 3264 section 5, RFC 4568); RTP/SAVP is usable only with an
// a=crypto line we support. Errors wrap errSDPSyntax or errSDPUnacceptable.
func parseSDP(body []byte) (remoteMedia, error) {
	if len(body) == 0 {
		return remoteMedia{}, fmt.Errorf("%w: empty body", errSDPUnacceptable)
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(body); err != nil {
		return remoteMedia{}, fmt.Errorf("%w: %v", errSDPSyntax, err)
	}
	sessionPtime := parsePtime(&sd.Attributes)
	sessionDir := parseDirection(sd.Attributes)
	var lastErr error = fmt.Errorf("%w: no RTP/AVP audio stream", errSDPUnacceptable)
	for _, md := range sd.MediaDescriptions {
		proto := strings.Join(md.MediaName.Protos, "/")
		if md.MediaName.Media != "audio" || md.MediaName.Port.Value == 0 || (proto != "RTP/AVP" && proto != "RTP/SAVP") {
			continue
		}
		rm, err := parseAudio(&sd, md)
		if err != nil {
			lastErr = err
			continue
		}
		rm.savp = proto == "RTP/SAVP"
		rm.crypto = parseCrypto(md.Attributes)
		if rm.savp && len(rm.crypto) == 0 {
			lastErr = fmt.Errorf("%w: RTP/SAVP without a usable a=crypto", errSDPUnacceptable)
			continue
		}
		if rm.ptime == 0 {
			rm.ptime = sessionPtime
		}
		// A media-level attribute overrides the session's (RFC 4566
		// section 6).
		if d := parseDirection(md.Attributes); d != "" {
			rm.dir = d
		} else {
			rm.dir = sessionDir
		}
		if rm.addr.Addr().IsUnspecified() {
			// Old-style hold (RFC 3264 section 8.4): c=0.0.0.0 means the
			// peer will not receive, whatever else it says.
			switch rm.dir {
			case dirSendRecv, "":
				rm.dir = dirSendOnly
			case dirRecvOnly:
				rm.dir = dirInactive
			}
		}
		rm.dir = normDirection(rm.dir)
		return rm, nil
	}
	return remoteMedia{}, lastErr
}

func parseAudio(sd *sdp.SessionDescription, md *sdp.MediaDescription) (remoteMedia, error) {
	var rm remoteMedia
	port := md.MediaName.Port.Value
	if port < 1 || port > 65535 {
		return rm, fmt.Errorf("%w: bad port %d", errSDPUnacceptable, port)
	}
	ci := md.ConnectionInformation
	if ci == nil {
		ci = sd.ConnectionInformation
	}
	if ci == nil || ci.Address == nil || ci.NetworkType != "IN" {
		return rm, fmt.Errorf("%w: no connection address", errSDPUnacceptable)
	}
	ip, err := netip.ParseAddr(ci.Address.Address)
	if err == nil && ip.Is4() != strings.EqualFold(ci.AddressType, "IP4") {
		err = fmt.Errorf("address type %s", ci.AddressType)
	}
	if err != nil || ip.IsMulticast() {
		return rm, fmt.Errorf("%w: unusable connection address %q", errSDPUnacceptable, ci.Address.Address)
	}
	rm.addr = netip.AddrPortFrom(ip.Unmap(), uint16(port))

	rtpmap := map[uint8]string{}
	for _, a := range md.Attributes {
		if a.Key != "rtpmap" {
			continue
		}
		ptText, enc, ok := strings.Cut(a.Value, " ")
		pt, err := strconv.ParseUint(ptText, 10, 7)
		if !ok || err != nil {
			continue
		}
		rtpmap[uint8(pt)] = strings.ToUpper(strings.TrimSpace(enc))
	}
	for _, f := range md.MediaName.Formats {
		v, err := strconv.ParseUint(f, 10, 7)
		if err != nil {
			continue // RTP/AVP formats are payload types; ignore junk
		}
		pt := uint8(v)
		enc, mapped := rtpmap[pt]
		switch {
		case mapped && (enc == "PCMU/8000" || enc == "PCMU/8000/1"):
			rm.codecs = append(rm.codecs, Codec{Name: "PCMU", PayloadType: pt})
		case mapped && (enc == "PCMA/8000" || enc == "PCMA/8000/1"):
			rm.codecs = append(rm.codecs, Codec{Name: "PCMA", PayloadType: pt})
		case mapped && strings.HasPrefix(enc, "TELEPHONE-EVENT/8000"):
			if rm.dtmfPT == 0 && pt != 0 {
				rm.dtmfPT = pt
			}
		case !mapped && (pt == 0 || pt == 8):
			// RFC 3551 static payload types need no rtpmap.
			rm.codecs = append(rm.codecs, staticCodecs[slices.IndexFunc(staticCodecs, func(c Codec) bool { return c.PayloadType == pt })])
		}
	}
	if len(rm.codecs) == 0 {
		return rm, fmt.Errorf("%w: no PCMU or PCMA", errSDPUnacceptable)
	}
	rm.ptime = parsePtime(&md.Attributes)
	return rm, nil
}

// parseDirection returns the last direction attribute among attrs, "" when
// there is none.
func parseDirection(attrs []sdp.Attribute) string {
	dir := ""
	for _, a := range attrs {
		switch a.Key {
		case dirSendRecv, dirSendOnly, dirRecvOnly, dirInactive:
			dir = a.Key
		}
	}
	return dir
}

// parsePtime returns the a=ptime value, or 0 when absent or unreasonable.
func parsePtime(attrs *[]sdp.Attribute) time.Duration {
	for _, a := range *attrs {
		if a.Key != "ptime" {
			continue
		}
		ms, err := strconv.ParseFloat(strings.TrimSpace(a.Value), 64)
		d := time.Duration(ms * float64(time.Millisecond))
		if err != nil || d <= 0 || d > maxPtime {
			return 0
		}
		return d
	}
	return 0
}

// buildSDP writes a new session with one sendrecv audio stream.
func buildSDP(addr netip.AddrPort, codecs []Codec, dtmfPT uint8, ptime time.Duration) ([]byte, error) {
	l := localSDP{addr: addr, codecs: codecs, dtmfPT: dtmfPT, ptime: ptime}
	if err := l.newSession(); err != nil {
		return nil, err
	}
	return l.marshal()
}

// localSDP is the session description we send for one call. Offers and
// answers within a dialog keep the o= session id and raise the version only
// when something else changed (RFC 3264 section 8).
type localSDP struct {
	addr    netip.AddrPort
	codecs  []Codec
	dtmfPT  uint8
	ptime   time.Duration
	dir     string // "" is sendrecv
	savp    bool   // RTP/SAVP rather than RTP/AVP
	crypto  []sdesLine
	id, ver uint64
}

// newSession picks a fresh o= session id. RFC 4566 section 5.2 recommends
// an NTP timestamp; any number unique to this session works. Keep it
// within int64 for picky parsers, with room to count versions up.
func (l *localSDP) newSession() error {
	var idb [8]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return fmt.Errorf("sipagent: sdp: session id: %w", err)
	}
	l.id = binary.BigEndian.Uint64(idb[:]) >> 2
	l.ver = l.id
	return nil
}

// sameMedia reports whether l and o describe the same stream, o= aside.
func (l localSDP) sameMedia(o localSDP) bool {
	return l.addr == o.addr && slices.Equal(l.codecs, o.codecs) && l.dtmfPT == o.dtmfPT &&
		l.ptime == o.ptime && normDirection(l.dir) == normDirection(o.dir) &&
		l.savp == o.savp && slices.Equal(l.crypto, o.crypto)
}

// next is l changed to n's media: the same session, its version raised
// only when the media differ.
func (l localSDP) next(n localSDP) localSDP {
	n.id, n.ver = l.id, l.ver
	if !l.sameMedia(n) {
		n.ver++
	}
	return n
}

func (l localSDP) marshal() ([]byte, error) {
	addr := l.addr
	if !addr.IsValid() || addr.Port() == 0 || addr.Addr().IsUnspecified() {
		return nil, fmt.Errorf("sipagent: sdp: unusable media address %v", addr)
	}
	ptime := l.ptime
	if ptime <= 0 {
		ptime = defaultPtime
	}
	ip := addr.Addr().Unmap()
	addrType := "IP4"
	if ip.Is6() {
		addrType = "IP6"
	}
	dir := l.dir
	if dir == "" {
		dir = dirSendRecv
	}

	var formats []string
	var attrs []sdp.Attribute
	for _, c := range l.codecs {
		formats = append(formats, strconv.Itoa(int(c.PayloadType)))
		attrs = append(attrs, sdp.NewAttribute("rtpmap", fmt.Sprintf("%d %s/8000", c.PayloadType, c.Name)))
	}
	if l.dtmfPT != 0 {
		formats = append(formats, strconv.Itoa(int(l.dtmfPT)))
		attrs = append(attrs,
			sdp.NewAttribute("rtpmap", fmt.Sprintf("%d telephone-event/8000", l.dtmfPT)),
			sdp.NewAttribute("fmtp", fmt.Sprintf("%d 0-16", l.dtmfPT)))
	}
	for _, c := range l.crypto {
		attrs = append(attrs, sdp.NewAttribute("crypto", c.String()))
	}
	attrs = append(attrs,
		sdp.NewAttribute("ptime", strconv.Itoa(int(ptime/time.Millisecond))),
		sdp.NewPropertyAttribute(dir))
	protos := []string{"RTP", "AVP"}
	if l.savp {
		protos = []string{"RTP", "SAVP"}
	}

	sd := sdp.SessionDescription{
		Origin: sdp.Origin{
			Username: "-", SessionID: l.id, SessionVersion: l.ver,
			NetworkType: "IN", AddressType: addrType, UnicastAddress: ip.String(),
		},
		SessionName: "intercom",
		ConnectionInformation: &sdp.ConnectionInformation{
			NetworkType: "IN", AddressType: addrType, Address: &sdp.Address{Address: ip.String()},
		},
		TimeDescriptions: []sdp.TimeDescription{{}},
		MediaDescriptions: []*sdp.MediaDescription{{
			MediaName: sdp.MediaName{
				Media: "audio", Port: sdp.RangedPort{Value: int(addr.Port())},
				Protos: protos, Formats: formats,
			},
			Attributes: attrs,
		}},
	}
	return sd.Marshal()
}

// parseLocalSDP reads back a session description we sent, so that later
// offers and answers continue its o= line.
func parseLocalSDP(body []byte) (localSDP, error) {
	rm, err := parseSDP(body)
	if err != nil {
		return localSDP{}, err
	}
	var sd sdp.SessionDescription
	if err := sd.Unmarshal(body); err != nil {
		return localSDP{}, fmt.Errorf("%w: %v", errSDPSyntax, err)
	}
	return localSDP{
		addr: rm.addr, codecs: rm.codecs, dtmfPT: rm.dtmfPT, ptime: rm.ptime, dir: rm.dir,
		savp: rm.savp, crypto: rm.crypto,
		id: sd.Origin.SessionID, ver: sd.Origin.SessionVersion,
	}, nil
}

// answerFor picks the media for answering offer (RFC 3264 section 6.1):
// the offerer's first codec that we also allow, since the offer lists the
// caller's preference, with the offer's payload type, and telephone-event
// echoing the offer's type.
func answerFor(offer remoteMedia, local MediaOffer) (MediaAnswer, error) {
	codecs, err := normalizeCodecs(local.Codecs)
	if err != nil {
		return MediaAnswer{}, err
	}
	ans := MediaAnswer{Local: local.Addr, Remote: offer.addr, Ptime: usablePtime(offer.ptime), Direction: mirrorDirection(offer.dir)}
	found := false
	for _, oc := range offer.codecs {
		if slices.ContainsFunc(codecs, func(c Codec) bool { return c.Name == oc.Name }) {
			ans.Codec, found = oc, true
			break
		}
	}
	if !found {
		return MediaAnswer{}, fmt.Errorf("sipagent: %w: no codec in common", errSDPUnacceptable)
	}
	if local.DTMF {
		ans.DTMFPayloadType = offer.dtmfPT
	}
	if ans.Ptime == 0 {
		ans.Ptime = defaultPtime
	}
	return ans, nil
}

// usablePtime honours a peer's a=ptime from 10 to 40 ms in 10 ms steps;
// anything else (absent, 60 ms, 25 ms) falls back to the default, which
// a=ptime allows since it is only a preference (RFC 4566 section 6).
func usablePtime(p time.Duration) time.Duration {
	if p < 10*time.Millisecond || p > 40*time.Millisecond || p%(10*time.Millisecond) != 0 {
		return defaultPtime
	}
	return p
}

// answerFromPeer reads the answer to our offer: the first codec in the
// answer that we offered, and its telephone-event type if we offered DTMF.
func answerFromPeer(answer remoteMedia, offered []Codec, dtmf bool) (MediaAnswer, error) {
	ans := MediaAnswer{Remote: answer.addr, Ptime: usablePtime(answer.ptime), Direction: mirrorDirection(answer.dir)}
	found := false
	for _, c := range answer.codecs {
		if slices.ContainsFunc(offered, func(o Codec) bool { return o.Name == c.Name }) {
			ans.Codec, found = c, true
			break
		}
	}
	if !found {
		return MediaAnswer{}, fmt.Errorf("sipagent: %w: answer has no codec we offered", errSDPUnacceptable)
	}
	if dtmf {
		ans.DTMFPayloadType = answer.dtmfPT
	}
	if ans.Ptime == 0 {
		ans.Ptime = defaultPtime
	}
	return ans, nil
}
