// Package sipdns resolves a SIP URI to an ordered list of transport
// targets per RFC 3263 (NAPTR, then SRV, then A/AAAA), with a TTL cache.
// It speaks DNS itself, to the nameservers of resolv.conf, because the
// standard library's resolver does not give TTLs or NAPTR records.
package sipdns

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"intercom/internal/clock"
)

// Family says which addresses the caller's socket can reach.
type Family int

const (
	// AnyFamily asks for IPv4 and IPv6 addresses, IPv4 first.
	AnyFamily Family = iota
	// IPv4 asks for A records only.
	IPv4
	// IPv6 asks for AAAA records only.
	IPv6
)

// Query is what to resolve: the host and port of a SIP URI and the
// transport the caller will use.
type Query struct {
	// Host is a domain name or an IP literal (IPv6 with or without
	// brackets).
	Host string
	// Port is the URI's port; 0 when it has none.
	Port int
	// Transport is "udp", "tcp" or "tls". It is fixed by the caller, so NAPTR
	// records only name the SRV record for it; a transport parameter in
	// the URI is not consulted.
	Transport string
	Family    Family
}

// Target is one place to send the request to.
type Target struct {
	// Host is the name the address belongs to: the SRV target, or the
	// queried host.
	Host string
	Addr netip.AddrPort
}

// Config configures a Resolver. Zero values take the documented defaults.
type Config struct {
	// ResolvConf is read for nameserver lines and the timeout: and
	// attempts: options before each lookup that misses the cache;
	// default /etc/resolv.conf.
	ResolvConf string
	// Hosts is consulted for A/AAAA before DNS; default /etc/hosts.
	Hosts string
	// Servers, when set, are asked instead of resolv.conf's nameservers.
	Servers []netip.AddrPort
	// Timeout per query and server, and Attempts (rounds over all
	// servers) override resolv.conf (default 5 s and 2).
	Timeout  time.Duration
	Attempts int
	// Clock dates cache entries; default the wall clock.
	Clock clock.Clock
	// RandN returns a uniform int in [0, n) for the SRV weight draw;
	// default math/rand/v2.IntN.
	RandN func(n int) int
	// NegativeTTL is how long a name or record found missing is believed
	// when the answer carries no SOA to say; default 30 s.
	NegativeTTL time.Duration
}

const (
	defaultNegativeTTL = 30 * time.Second
	// maxNegativeTTL caps what a SOA may ask for a missing name, so that
	// records added later are found soon (RFC 2308 section 5 allows caps).
	maxNegativeTTL = 5 * time.Minute
	// maxCNAMEs bounds a CNAME chain inside one answer.
	maxCNAMEs = 8
	// cacheLimit bounds the cache; expired entries go first.
	cacheLimit = 256
	// sipPort and sipsPort are the default ports of SIP over UDP and TCP
	// and of SIP over TLS (RFC 3261 section 19.1.2), used when neither the
	// URI nor SRV gives one.
	sipPort  = 5060
	sipsPort = 5061
)

// Resolver resolves SIP hosts; it is safe for concurrent use.
type Resolver struct {
	cfg Config

	mu    sync.Mutex
	cache map[cacheKey]cacheEntry
}

type cacheKey struct {
	name string // lower case, absolute
	typ  dnsmessage.Type
}

type cacheEntry struct {
	expires time.Time
	ans     answer
}

// answer holds the records of one type for one name; all empty for a
// name error or no data.
type answer struct {
	addrs  []netip.Addr
	srvs   []srv
	naptrs []naptr
}

// New returns a Resolver; the files are read when needed, not here.
func New(cfg Config) *Resolver {
	if cfg.ResolvConf == "" {
		cfg.ResolvConf = "/etc/resolv.conf"
	}
	if cfg.Hosts == "" {
		cfg.Hosts = "/etc/hosts"
	}
	if cfg.Timeout <= 0 && len(cfg.Servers) > 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.Attempts <= 0 && len(cfg.Servers) > 0 {
		cfg.Attempts = defaultAttempts
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.RandN == nil {
		cfg.RandN = rand.IntN
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = defaultNegativeTTL
	}
	return &Resolver{cfg: cfg, cache: map[cacheKey]cacheEntry{}}
}

// Resolve returns the targets for q in the order to try them (RFC 3263
// section 4): an IP literal or an explicit port skips NAPTR and SRV
// (section 4.2); otherwise the NAPTR records of the host name the SRV
// record for q.Transport (services SIP+D2U, SIP+D2T, SIPS+D2T), else
// _sip._udp, _sip._tcp or _sips._tcp is asked directly; without SRV records
// (or when the SRV lookups fail) the host's own addresses on port 5060
// (5061 for TLS) are used. Each SRV target contributes its addresses in SRV
// order (RFC 2782).
func (r *Resolver) Resolve(ctx context.Context, q Query) ([]Target, error) {
	var service, srvPrefix string
	defaultPort := uint16(sipPort)
	switch strings.ToLower(q.Transport) {
	case "udp":
		service, srvPrefix = "SIP+D2U", "_sip._udp."
	case "tcp":
		service, srvPrefix = "SIP+D2T", "_sip._tcp."
	case "tls":
		service, srvPrefix, defaultPort = "SIPS+D2T", "_sips._tcp.", sipsPort
	default:
		return nil, fmt.Errorf("sipdns: unsupported transport %q", q.Transport)
	}
	if q.Port < 0 || q.Port > 65535 {
		return nil, fmt.Errorf("sipdns: %s: bad port %d", q.Host, q.Port)
	}
	if q.Family < AnyFamily || q.Family > IPv6 {
		return nil, fmt.Errorf("sipdns: bad address family %d", q.Family)
	}
	port := uint16(q.Port)
	if port == 0 {
		port = defaultPort
	}
	host := strings.TrimSuffix(q.Host, ".")
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); err == nil {
		return []Target{{Host: q.Host, Addr: netip.AddrPortFrom(ip.Unmap(), port)}}, nil
	}
	if !validName(host) {
		return nil, fmt.Errorf("sipdns: bad host %q", q.Host)
	}
	if q.Port != 0 {
		return r.hostTargets(ctx, host, port, q.Family)
	}

	names, err := r.srvNames(ctx, host, service)
	if err != nil {
		return nil, err
	}
	if fallback := srvPrefix + host + "."; !slices.ContainsFunc(names, func(n string) bool { return strings.EqualFold(n, fallback) }) {
		names = append(names, fallback)
	}
	var srvErrs []error
	for _, name := range names {
		ans, err := r.lookup(ctx, name, dnsmessage.TypeSRV)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			srvErrs = append(srvErrs, err)
			continue
		}
		if len(ans.srvs) > 0 {
			return r.srvTargets(ctx, name, ans.srvs, q.Family)
		}
	}
	// A failed SRV lookup falls through to the addresses too, so that a
	// host in the hosts file is found while DNS is down.
	targets, err := r.hostTargets(ctx, host, defaultPort, q.Family)
	if err != nil {
		return nil, errors.Join(append(srvErrs, err)...)
	}
	return targets, nil
}

// srvNames returns the SRV names the host's NAPTR records give for
// service, best first (RFC 3263 section 4.1: order, then preference; only
// "s" records with a replacement and no regexp). NAPTR is optional and
// often mishandled on the way, so a failed NAPTR lookup counts as none.
func (r *Resolver) srvNames(ctx context.Context, host, service string) ([]string, error) {
	ans, err := r.lookup(ctx, host+".", typeNAPTR)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("sipdns: %s: %w", host, ctxErr)
		}
		return nil, nil
	}
	var use []naptr
	for _, n := range ans.naptrs {
		if strings.EqualFold(n.flags, "s") && strings.EqualFold(n.services, service) && n.regexp == "" && n.replacement != "." {
			use = append(use, n)
		}
	}
	slices.SortStableFunc(use, func(x, y naptr) int {
		if x.order != y.order {
			return int(x.order) - int(y.order)
		}
		return int(x.preference) - int(y.preference)
	})
	names := make([]string, 0, len(use))
	for _, n := range use {
		names = append(names, n.replacement)
	}
	return names, nil
}

// srvTargets orders the SRV records and resolves their targets.
func (r *Resolver) srvTargets(ctx context.Context, name string, recs []srv, fam Family) ([]Target, error) {
	// RFC 2782: a single record with target "." means the service is
	// decidedly not available at this domain.
	if len(recs) == 1 && recs[0].target == "." {
		return nil, fmt.Errorf("sipdns: %s: service not available", strings.TrimSuffix(name, "."))
	}
	var targets []Target
	var errs []error
	for _, rec := range orderSRV(recs, r.cfg.RandN) {
		if rec.target == "." {
			continue
		}
		host := strings.TrimSuffix(rec.target, ".")
		addrs, err := r.addrs(ctx, host, fam)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			errs = append(errs, err)
			continue
		}
		for _, a := range addrs {
			targets = append(targets, Target{Host: host, Addr: netip.AddrPortFrom(a, rec.port)})
		}
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("sipdns: %s: no addresses for the SRV targets: %w", strings.TrimSuffix(name, "."), errors.Join(errs...))
	}
	return targets, nil
}

func (r *Resolver) hostTargets(ctx context.Context, host string, port uint16, fam Family) ([]Target, error) {
	addrs, err := r.addrs(ctx, host, fam)
	if err != nil {
		return nil, err
	}
	targets := make([]Target, 0, len(addrs))
	for _, a := range addrs {
		targets = append(targets, Target{Host: host, Addr: netip.AddrPortFrom(a, port)})
	}
	return targets, nil
}

// addrs returns host's addresses of fam, IPv4 first: from the hosts file
// if it names host, else from DNS.
func (r *Resolver) addrs(ctx context.Context, host string, fam Family) ([]netip.Addr, error) {
	if found, err := r.hostsLookup(host, fam); err != nil || len(found) > 0 {
		return found, err
	}
	var out []netip.Addr
	var errs []error
	for _, t := range []struct {
		typ  dnsmessage.Type
		want bool
	}{{dnsmessage.TypeA, fam != IPv6}, {dnsmessage.TypeAAAA, fam != IPv4}} {
		if !t.want {
			continue
		}
		ans, err := r.lookup(ctx, host+".", t.typ)
		if err != nil {
			if ctx.Err() != nil {
				return nil, err
			}
			errs = append(errs, err)
			continue
		}
		out = append(out, ans.addrs...)
	}
	switch {
	case len(out) > 0:
		return out, nil
	case len(errs) > 0:
		return nil, errors.Join(errs...)
	default:
		return nil, fmt.Errorf("sipdns: %s: no addresses", host)
	}
}

// lookup returns the records of typ for the absolute name, from the cache
// while they are fresh. Name errors and empty answers are cached too;
// failures are not.
func (r *Resolver) lookup(ctx context.Context, name string, typ dnsmessage.Type) (answer, error) {
	key := cacheKey{name: strings.ToLower(name), typ: typ}
	now := r.cfg.Clock.Now()
	r.mu.Lock()
	e, ok := r.cache[key]
	r.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.ans, nil
	}
	qname, err := dnsmessage.NewName(name)
	if err != nil {
		return answer{}, fmt.Errorf("sipdns: %s: %w", name, err)
	}
	q := dnsmessage.Question{Name: qname, Type: typ, Class: dnsmessage.ClassINET}
	p, err := r.exchange(ctx, q)
	if err != nil {
		return answer{}, fmt.Errorf("sipdns: %s %s: %w", strings.TrimSuffix(name, "."), typeName(typ), err)
	}
	ans, ttl, err := r.parseAnswer(&p, name, typ)
	if err != nil {
		return answer{}, fmt.Errorf("sipdns: %s %s: %w", strings.TrimSuffix(name, "."), typeName(typ), err)
	}
	r.store(key, cacheEntry{expires: r.cfg.Clock.Now().Add(ttl), ans: ans})
	return ans, nil
}

func (r *Resolver) store(key cacheKey, e cacheEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cache) >= cacheLimit {
		now := r.cfg.Clock.Now()
		for k, old := range r.cache {
			if !now.Before(old.expires) {
				delete(r.cache, k)
			}
		}
		for k := range r.cache {
			if len(r.cache) < cacheLimit {
				break
			}
			delete(r.cache, k)
		}
	}
	r.cache[key] = e
}

// parseAnswer collects the records of typ for name from the answer
// section, following a CNAME chain there; the TTL is the smallest of the
// records used. A name error or an answer without such records is
// negative, believed for the SOA's negative TTL (RFC 2308 section 5).
func (r *Resolver) parseAnswer(p *dnsmessage.Parser, name string, typ dnsmessage.Type) (answer, time.Duration, error) {
	type rr struct {
		owner string
		ttl   uint32
		body  any // netip.Addr, srv, naptr or string (a CNAME's target)
	}
	var rrs []rr
	for {
		rh, err := p.AnswerHeader()
		if errors.Is(err, dnsmessage.ErrSectionDone) {
			break
		}
		if err != nil {
			return answer{}, 0, fmt.Errorf("answer: %w", err)
		}
		owner := strings.ToLower(rh.Name.String())
		var body any
		switch {
		case rh.Class != dnsmessage.ClassINET:
			err = p.SkipAnswer()
		case rh.Type == dnsmessage.TypeCNAME:
			var c dnsmessage.CNAMEResource
			if c, err = p.CNAMEResource(); err == nil {
				body = strings.ToLower(c.CNAME.String())
			}
		case rh.Type != typ:
			err = p.SkipAnswer()
		case typ == dnsmessage.TypeA:
			var a dnsmessage.AResource
			if a, err = p.AResource(); err == nil {
				body = netip.AddrFrom4(a.A)
			}
		case typ == dnsmessage.TypeAAAA:
			var a dnsmessage.AAAAResource
			if a, err = p.AAAAResource(); err == nil {
				body = netip.AddrFrom16(a.AAAA).Unmap()
			}
		case typ == dnsmessage.TypeSRV:
			var s dnsmessage.SRVResource
			if s, err = p.SRVResource(); err == nil {
				body = srv{priority: s.Priority, weight: s.Weight, port: s.Port, target: strings.ToLower(s.Target.String())}
			}
		case typ == typeNAPTR:
			var u dnsmessage.UnknownResource
			if u, err = p.UnknownResource(); err == nil {
				body, err = parseNAPTR(u.Data)
			}
		default:
			err = p.SkipAnswer()
		}
		if err != nil {
			return answer{}, 0, fmt.Errorf("answer: %w", err)
		}
		if body != nil {
			rrs = append(rrs, rr{owner: owner, ttl: rh.TTL, body: body})
		}
	}

	owner := strings.ToLower(name)
	ttl := uint32(1<<31 - 1)
	for range maxCNAMEs {
		next := ""
		for _, x := range rrs {
			if t, ok := x.body.(string); ok && x.owner == owner {
				next, ttl = t, min(ttl, x.ttl)
				break
			}
		}
		if next == "" {
			break
		}
		owner = next
	}
	var ans answer
	found := false
	for _, x := range rrs {
		if x.owner != owner {
			continue
		}
		switch b := x.body.(type) {
		case netip.Addr:
			ans.addrs = append(ans.addrs, b)
		case srv:
			ans.srvs = append(ans.srvs, b)
		case naptr:
			ans.naptrs = append(ans.naptrs, b)
		default:
			continue
		}
		found = true
		ttl = min(ttl, x.ttl)
	}
	if found {
		return ans, time.Duration(ttl) * time.Second, nil
	}
	return answer{}, r.negativeTTL(p), nil
}

// negativeTTL reads the SOA of the authority section: the smaller of its
// TTL and its MINIMUM field (RFC 2308 section 5), capped.
func (r *Resolver) negativeTTL(p *dnsmessage.Parser) time.Duration {
	if err := p.SkipAllAnswers(); err != nil {
		return r.cfg.NegativeTTL
	}
	for {
		rh, err := p.AuthorityHeader()
		if err != nil {
			return r.cfg.NegativeTTL
		}
		if rh.Type != dnsmessage.TypeSOA {
			if p.SkipAuthority() != nil {
				return r.cfg.NegativeTTL
			}
			continue
		}
		soa, err := p.SOAResource()
		if err != nil {
			return r.cfg.NegativeTTL
		}
		return min(time.Duration(min(rh.TTL, soa.MinTTL))*time.Second, maxNegativeTTL)
	}
}

func typeName(t dnsmessage.Type) string {
	if t == typeNAPTR {
		return "NAPTR"
	}
	return strings.TrimPrefix(t.String(), "Type")
}

// hostsLookup returns host's addresses from the hosts file, IPv4 first;
// none when the file or the name is missing.
func (r *Resolver) hostsLookup(host string, fam Family) ([]netip.Addr, error) {
	data, err := os.ReadFile(r.cfg.Hosts)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sipdns: %w", err)
	}
	var v4, v6 []netip.Addr
	for line := range strings.Lines(string(data)) {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		ip, err := netip.ParseAddr(f[0])
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		for _, name := range f[1:] {
			if !strings.EqualFold(strings.TrimSuffix(name, "."), host) {
				continue
			}
			if ip.Is4() && fam != IPv6 && !slices.Contains(v4, ip) {
				v4 = append(v4, ip)
			} else if ip.Is6() && fam != IPv4 && !slices.Contains(v6, ip) {
				v6 = append(v6, ip)
			}
		}
	}
	return append(v4, v6...), nil
}

// validName accepts a domain name of letters, digits, '-' and '_' in
// labels of 1 to 63 octets, at most 253 in all (RFC 1035 section 2.3.4).
func validName(s string) bool {
	if len(s) == 0 || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if len(label) == 0 || len(label) > 63 {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
