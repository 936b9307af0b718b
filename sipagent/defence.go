package sipagent

import (
	"bytes"
	"container/list"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"intercom/internal/clock"
)

// DefenceConfig limits what strangers can make the agent do. A stranger
// is any source other than the registrar, the outbound proxy and the peer
// of a call we answered. Zero values take the documented defaults.
type DefenceConfig struct {
	// Rate is how many SIP messages per second a stranger's IP may send on
	// average; default 5.
	Rate float64
	// Burst is how many it may send at once; default 20.
	Burst int
	// BlockFor is how long a source that went over its rate, or announced
	// itself as a known scanner, is ignored; default 60 s.
	BlockFor time.Duration
	// Scanners are extra User-Agent substrings (case-insensitive) whose
	// requests are dropped without an answer, besides the built-in list.
	Scanners []string
	// Sources bounds how many stranger IPs are tracked at once; the least
	// recently seen is forgotten first. Default 4096.
	Sources int
}

// DefenceStats reports what the defence against strangers has dropped.
func (a *Agent) DefenceStats() DefenceStats { return a.def.stats() }

// DefenceStats counts what the defence dropped since the agent started.
type DefenceStats struct {
	// RateLimited counts messages dropped, and TCP or TLS connections
	// refused, because their source was over its rate or blocked, or held
	// as many connections open as a stranger may.
	RateLimited uint64
	// Scanners counts requests dropped for a scanner's User-Agent.
	Scanners uint64
	// Blocks counts the times a source was blocked.
	Blocks uint64
	// BlockedNow is how many sources are blocked at the moment.
	BlockedNow int
}

const (
	defaultDefenceRate  = 5
	defaultDefenceBurst = 20
	defaultBlockFor     = time.Minute
	defaultSources      = 4096
)

// scannerAgents are User-Agent substrings of SIP scanners and war-diallers
// (SIPVicious and its "friendly-scanner" default, sipcli ("sipcli/v1.8";
// the slash keeps "SIPClient" phones out), VaxSIPUserAgent,
// pplsip, sundayddr, iWar, sip-scan). "Asterisk PBX" is absent on purpose:
// scanners forge it, but real PBXs send it too.
var scannerAgents = []string{
	"friendly-scanner", "sipvicious", "sipcli/", "vaxsipuseragent",
	"pplsip", "sundayddr", "iwar", "sip-scan", "sipscan",
}

// defence rate-limits strangers per source IP with a token bucket and drops
// scanners. Its table of sources is bounded, so a stranger can make it hold
// at most Sources entries however many addresses it sends from.
type defence struct {
	clk        clock.Clock
	rate       float64 // tokens per second
	burst      float64
	blockFor   time.Duration
	maxSources int
	scanners   [][]byte // lower case
	// trusted reports the registrar's and outbound proxy's addresses.
	trusted func(netip.Addr) bool

	mu      sync.Mutex
	sources map[netip.Addr]*list.Element // of *source
	lru     *list.List                   // front: most recently seen
	peers   map[netip.Addr]int           // peers of answered calls, counted per call

	rateLimited, scanned, blocks atomic.Uint64
}

type source struct {
	ip           netip.Addr
	tokens       float64
	last         time.Time
	blockedUntil time.Time
}

// newDefence checks cfg and fills in its defaults.
func newDefence(cfg DefenceConfig, clk clock.Clock, trusted func(netip.Addr) bool) (*defence, error) {
	switch {
	case cfg.Rate < 0:
		return nil, fmt.Errorf("sipagent: defence: rate %v is negative", cfg.Rate)
	case cfg.Burst < 0:
		return nil, fmt.Errorf("sipagent: defence: burst %d is negative", cfg.Burst)
	case cfg.BlockFor < 0:
		return nil, fmt.Errorf("sipagent: defence: block_for %v is negative", cfg.BlockFor)
	case cfg.Sources < 0:
		return nil, fmt.Errorf("sipagent: defence: sources %d is negative", cfg.Sources)
	}
	d := &defence{
		clk: clk, rate: cfg.Rate, burst: float64(cfg.Burst), blockFor: cfg.BlockFor, maxSources: cfg.Sources,
		trusted: trusted, sources: map[netip.Addr]*list.Element{}, lru: list.New(), peers: map[netip.Addr]int{},
	}
	if d.rate == 0 {
		d.rate = defaultDefenceRate
	}
	if d.burst == 0 {
		d.burst = defaultDefenceBurst
	}
	if d.blockFor == 0 {
		d.blockFor = defaultBlockFor
	}
	if d.maxSources == 0 {
		d.maxSources = defaultSources
	}
	if d.trusted == nil {
		d.trusted = func(netip.Addr) bool { return false }
	}
	for _, s := range scannerAgents {
		d.scanners = append(d.scanners, []byte(s))
	}
	for i, s := range cfg.Scanners {
		s = strings.TrimSpace(s)
		if s == "" {
			return nil, fmt.Errorf("sipagent: defence: scanner pattern %d is empty", i)
		}
		d.scanners = append(d.scanners, []byte(strings.ToLower(s)))
	}
	return d, nil
}

// isTrusted reports whether ip is the registrar, the outbound proxy or
// the peer of an answered call.
func (d *defence) isTrusted(ip netip.Addr) bool {
	ip = ip.Unmap()
	if d.trusted(ip) {
		return true
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.peers[ip] > 0
}

// admit decides whether a message from ip goes on to the SIP stack;
// scanner reports that it is a request with a scanner's User-Agent.
func (d *defence) admit(ip netip.Addr, scanner bool) bool {
	ip = ip.Unmap()
	trusted := d.trusted(ip)
	now := d.clk.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	trusted = trusted || d.peers[ip] > 0
	if scanner {
		d.scanned.Add(1)
		if !trusted {
			s := d.lookup(ip, now)
			d.block(s, now)
		}
		return false
	}
	if trusted {
		return true
	}
	s := d.lookup(ip, now)
	if now.Before(s.blockedUntil) {
		d.rateLimited.Add(1)
		return false
	}
	s.tokens = min(d.burst, s.tokens+now.Sub(s.last).Seconds()*d.rate)
	s.last = now
	if s.tokens >= 1 {
		s.tokens--
		return true
	}
	// Past its burst: ignore the source for a while, so that a flood costs
	// one lookup per datagram and gets no answer to learn from.
	d.rateLimited.Add(1)
	d.block(s, now)
	return false
}

// block ignores s until BlockFor from now; the caller holds d.mu.
func (d *defence) block(s *source, now time.Time) {
	if !now.Before(s.blockedUntil) {
		d.blocks.Add(1)
	}
	s.blockedUntil = now.Add(d.blockFor)
	s.tokens = 0
	s.last = s.blockedUntil
}

// lookup finds or makes ip's entry, forgetting the least recently seen
// source when the table is full; the caller holds d.mu.
func (d *defence) lookup(ip netip.Addr, now time.Time) *source {
	if e, ok := d.sources[ip]; ok {
		d.lru.MoveToFront(e)
		return e.Value.(*source)
	}
	if d.lru.Len() >= d.maxSources {
		old := d.lru.Back()
		d.lru.Remove(old)
		delete(d.sources, old.Value.(*source).ip)
	}
	s := &source{ip: ip, tokens: d.burst, last: now}
	d.sources[ip] = d.lru.PushFront(s)
	return s
}

// trustPeer exempts ip while a call with it lasts: its in-dialog requests
// must not be rate limited. The returned func ends the exemption.
func (d *defence) trustPeer(ip netip.Addr) (release func()) {
	ip = ip.Unmap()
	d.mu.Lock()
	d.peers[ip]++
	d.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.peers[ip]--; d.peers[ip] <= 0 {
				delete(d.peers, ip)
			}
		})
	}
}

func (d *defence) stats() DefenceStats {
	st := DefenceStats{RateLimited: d.rateLimited.Load(), Scanners: d.scanned.Load(), Blocks: d.blocks.Load()}
	now := d.clk.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, e := range d.sources {
		if now.Before(e.Value.(*source).blockedUntil) {
			st.BlockedNow++
		}
	}
	return st
}

// isScanner reports whether ua, a User-Agent value, names a scanner.
func (d *defence) isScanner(ua []byte) bool {
	for _, s := range d.scanners {
		if containsFold(ua, s) {
			return true
		}
	}
	return false
}

// containsFold reports whether b contains lower, which is lower-case
// ASCII, ignoring ASCII case; it allocates nothing, as it runs per datagram.
func containsFold(b, lower []byte) bool {
	n := len(lower)
	for i := 0; i+n <= len(b); i++ {
		j := 0
		for ; j < n; j++ {
			c := b[i+j]
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != lower[j] {
				break
			}
		}
		if j == n {
			return true
		}
	}
	return false
}

// rawScanner reports whether msg, a datagram as received, is a request
// whose User-Agent header names a scanner. It reads only the header lines
// (RFC 3261 section 7: they end at the first empty line) and needs no full
// parse: it runs before sipgo's parser sees the datagram.
func (d *defence) rawScanner(msg []byte) bool {
	if bytes.HasPrefix(msg, []byte("SIP/")) {
		return false // a response
	}
	_, rest, _ := bytes.Cut(msg, []byte("\n")) // the request line
	// ua: the header line above is a User-Agent.
	ua := false
	for len(rest) > 0 {
		var line []byte
		line, rest, _ = bytes.Cut(rest, []byte("\n"))
		line = bytes.TrimRight(line, "\r")
		if len(line) == 0 {
			return false
		}
		if line[0] == ' ' || line[0] == '\t' {
			// A folded line continues the header above (RFC 3261
			// section 7.3.1).
			if ua && d.isScanner(line) {
				return true
			}
			continue
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		ua = ok && bytes.EqualFold(bytes.TrimSpace(name), []byte("User-Agent"))
		if ua && d.isScanner(value) {
			return true
		}
	}
	return false
}

// filterConn is the UDP listening socket as sipgo reads it: datagrams the
// defence drops never reach sipgo's parser, transaction layer or
// connection pool, so they leave no state and get no answer.
type filterConn struct {
	*net.UDPConn
	d *defence
	// end, when set, is asked before each read whether this serve should
	// end, given the times the source changed: sipgo remembers each new
	// source address of a serve until the serve ends. Only the reading
	// goroutine touches end, last, changes and ended.
	end     func(changes int) bool
	last    netip.AddrPort
	changes int
	ended   bool
}

var _ net.PacketConn = (*filterConn)(nil)

// packetConn wraps the listening socket for one of sipgo's serves on it;
// end is filterConn.end.
func (d *defence) packetConn(c *net.UDPConn, end func(changes int) bool) *filterConn {
	return &filterConn{UDPConn: c, d: d, end: end}
}

// ReadFrom returns the next datagram the defence admits. A dropped one
// allocates nothing: a flood makes no garbage. When end says so, it
// reports the connection closed instead, which ends sipgo's serve; the
// socket stays open.
func (c *filterConn) ReadFrom(b []byte) (int, net.Addr, error) {
	if c.end != nil && c.end(c.changes) {
		c.ended = true
		return 0, nil, net.ErrClosed
	}
	for {
		n, from, err := c.ReadFromUDPAddrPort(b)
		if err != nil {
			return n, nil, err
		}
		if c.d.admit(from.Addr(), c.d.rawScanner(b[:n])) {
			if from != c.last {
				c.last = from
				c.changes++
			}
			return n, net.UDPAddrFromAddrPort(from), nil
		}
	}
}

// admitRequest applies the defence to a parsed request that came over a
// stream transport; over UDP filterConn admitted the datagram already. The
// transport is the one sipgo received the request on, not what its Via
// claims; a request handed to the handlers by no transport passes.
func (d *defence) admitRequest(req *sip.Request) bool {
	switch strings.ToUpper(req.MessageData.Transport()) {
	case "TCP", "TLS", "WS", "WSS":
	default:
		return true
	}
	src := requestSource(req)
	if !src.IsValid() {
		return true
	}
	scanner := false
	if h := req.GetHeader("User-Agent"); h != nil {
		scanner = d.isScanner([]byte(h.Value()))
	}
	return d.admit(src.Addr(), scanner)
}
