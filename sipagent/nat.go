package sipagent

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// observedAddr reads where the registrar saw our request come from: the
// received and rport parameters it put into our top Via (RFC 3261 section
// 18.2.1, RFC 3581 section 4), each defaulting to our own sent-by.
func observedAddr(res *sip.Response) (netip.AddrPort, bool) {
	via := res.Via()
	if via == nil {
		return netip.AddrPort{}, false
	}
	host := via.Host
	if v, ok := via.Params.Get("received"); ok && v != "" {
		host = v
	}
	ip, err := netip.ParseAddr(strings.Trim(host, "[]"))
	if err != nil {
		return netip.AddrPort{}, false
	}
	port := via.Port
	if v, ok := via.Params.Get("rport"); ok && v != "" {
		p, err := strconv.ParseUint(v, 10, 16)
		if err != nil || p == 0 {
			return netip.AddrPort{}, false
		}
		port = int(p)
	}
	if port == 0 {
		port = defaultSIPPort
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), true
}

// publicAddr is the address our Contact should carry toward the registrar
// given what it observed, or the zero value when our own address will do.
// Over UDP we send from the listening socket, so any difference means a
// NAT. Over TCP and TLS our connection leaves from an ephemeral port, so
// only the IP tells; behind a NAT the Contact then names the connection's
// public end, which the registrar reaches by reusing that connection.
func publicAddr(local, observed netip.AddrPort, tcp bool) netip.AddrPort {
	if observed.Addr() == local.Addr() && (tcp || observed.Port() == local.Port()) {
		return netip.AddrPort{}
	}
	return observed
}

// learnPublic records the public address the registrar's response shows
// for local IP ip; true when it changed, so that our Contact must change.
func (a *Agent) learnPublic(ip netip.Addr, res *sip.Response) bool {
	observed, ok := observedAddr(res)
	if !ok {
		return false
	}
	pub := publicAddr(netip.AddrPortFrom(ip, a.addr.Port()), observed, a.transport != "UDP")
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.public[ip] == pub {
		return false
	}
	if pub.IsValid() {
		a.public[ip] = pub
	} else {
		delete(a.public, ip)
	}
	a.log.Info("sipagent: public address", "local", ip, "public", pub, "via", res.Via().Value())
	return true
}

// responseSource is the transport address a response came from.
func responseSource(res *sip.Response) netip.AddrPort {
	ap, err := netip.ParseAddrPort(res.Source())
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// sameContact compares the parts of two Contact URIs that make a binding
// (RFC 3261 section 10.3 compares URIs; user, host and port suffice for
// ours), an IPv6 host with or without brackets and an absent port as 5060.
func sameContact(x, y *sip.Uri) bool {
	host := func(u *sip.Uri) string { return strings.ToLower(strings.Trim(u.Host, "[]")) }
	port := func(u *sip.Uri) int {
		if u.Port == 0 {
			return defaultSIPPort
		}
		return u.Port
	}
	return x.User == y.User && host(x) == host(y) && port(x) == port(y)
}
