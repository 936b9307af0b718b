package config

import "strings"

// MatchURI reports whether uri matches an auto-answer allow pattern such as
// "sip:*@pbx.example.com". uri may be a bare URI or a From header value
// ("Name" <sip:201@pbx.example.com>;tag=x); URI parameters and headers are
// ignored. In the pattern '*' matches any run of characters, including
// none, but never crosses from the user part into the host or from the host
// into the port. Scheme and host compare case-insensitively, the user part
// case-sensitively (RFC 3261 §19.1.4). A pattern without a port matches any
// port; one with a port matches the URI's port, 5060 (5061 for sips) when
// the URI has none.
func MatchURI(pattern, uri string) bool {
	p, ok := parseURI(pattern)
	if !ok {
		return false
	}
	u, ok := parseURI(uri)
	if !ok || p.scheme != u.scheme {
		return false
	}
	if !glob(p.user, u.user) || !glob(strings.ToLower(p.host), strings.ToLower(u.host)) {
		return false
	}
	if p.port == "" {
		return true
	}
	port := u.port
	if port == "" {
		port = "5060"
		if u.scheme == "sips" {
			port = "5061"
		}
	}
	return glob(p.port, port)
}

type sipURI struct {
	scheme, user, host, port string
}

// parseURI splits a sip: or sips: URI into the parts MatchURI compares.
func parseURI(s string) (sipURI, bool) {
	if i := strings.IndexByte(s, '<'); i >= 0 {
		j := strings.IndexByte(s[i:], '>')
		if j < 0 {
			return sipURI{}, false
		}
		s = s[i+1 : i+j]
	}
	scheme, rest, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return sipURI{}, false
	}
	u := sipURI{scheme: strings.ToLower(scheme)}
	if u.scheme != "sip" && u.scheme != "sips" {
		return sipURI{}, false
	}
	// Headers start at '?', which cannot occur in the user part; URI
	// parameters start at the first ';' after the host begins.
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest = rest[:i]
	}
	if user, host, ok := strings.Cut(rest, "@"); ok {
		if strings.Contains(host, "@") {
			return sipURI{}, false
		}
		u.user, rest = user, host
	}
	if i := strings.IndexByte(rest, ';'); i >= 0 {
		rest = rest[:i]
	}
	u.host, u.port = splitHostPort(rest)
	if u.host == "" {
		return sipURI{}, false
	}
	return u, true
}

// splitHostPort splits host[:port], where host may be a bracketed IPv6
// reference (RFC 3261 §25.1); unlike net.SplitHostPort the port is optional.
func splitHostPort(s string) (host, port string) {
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", ""
		}
		host, rest := s[:end+1], s[end+1:]
		if p, ok := strings.CutPrefix(rest, ":"); ok {
			return host, p
		}
		if rest != "" {
			return "", ""
		}
		return host, ""
	}
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		return s[:i], s[i+1:]
	}
	return s, ""
}

// glob matches s against pattern, where '*' matches any run of bytes. It
// backtracks only to the last star, so it runs in O(len(pattern)*len(s)).
func glob(pattern, s string) bool {
	px, sx := 0, 0
	starPx, starSx := -1, 0
	for px < len(pattern) || sx < len(s) {
		if px < len(pattern) {
			switch c := pattern[px]; {
			case c == '*':
				starPx, starSx = px, sx
				px++
				continue
			case sx < len(s) && s[sx] == c:
				px++
				sx++
				continue
			}
		}
		if starPx >= 0 && starSx < len(s) {
			starSx++
			px, sx = starPx+1, starSx
			continue
		}
		return false
	}
	return true
}
