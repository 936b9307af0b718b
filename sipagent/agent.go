// Package sipagent is the door station's SIP user agent, built on
// github.com/emiago/sipgo: it registers with a registrar, places and answers
// calls with G.711 SDP offer/answer, and reports registrations, calls and
// SIP INFO DTMF as events. It knows nothing of audio devices or GPIO.
package sipagent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"intercom/internal/clock"
	"intercom/internal/lograte"
)

// Config configures an Agent. Zero values take the documented defaults.
type Config struct {
	// Transport is "udp" (default), "tcp" or "tls". Over TCP and TLS the
	// agent keeps one connection open to the registrar (or outbound proxy)
	// for its registration and the requests it sends there, and
	// reconnects and re-registers at once when that connection is lost.
	Transport string
	// TLS configures certificates and the clock wait for Transport "tls".
	TLS TLS
	// Listen is the local IP:port ("[::]:5060" for IPv6); default
	// "0.0.0.0:5060", "0.0.0.0:5061" over TLS. Port 0 picks a free port
	// (see Agent.Addr).
	Listen string
	// Registrar is host[:port] or a sip: URI, the port defaulting to 5060
	// (5061 over TLS);
	// an IPv6 address is written in brackets ("[2001:db8::1]:5060") or
	// alone ("2001:db8::1"). Empty means peer-to-peer.
	Registrar string
	// OutboundProxy is written like Registrar; when set, requests that
	// start a dialog or a registration are routed through it.
	OutboundProxy string
	User          string
	AuthUser      string // digest user name; defaults to User
	Password      string
	DisplayName   string
	// RegisterExpires is the binding lifetime we ask for; default 300 s.
	RegisterExpires time.Duration
	// Keepalive is the interval of keep-alives to the registrar while
	// registered; 0: none. Over TCP each is a double-CRLF ping that must
	// be answered within 10 s (RFC 5626 section 4.4.1), or the connection
	// is dropped and the agent reconnects and re-registers. Over UDP a
	// CRLF datagram keeps NAT bindings open, and every fourth keep-alive
	// is an OPTIONS instead: an unanswered one re-registers at once.
	Keepalive time.Duration
	// NAT is "auto" (default) or "off". With auto, when the registrar
	// answers a REGISTER with a Via whose received/rport (RFC 3581) show
	// an address other than ours, the agent re-registers with that public
	// address in its Contact and uses it toward the registrar from then
	// on; off keeps the local address.
	NAT       string
	UserAgent string // default "intercom"
	Logger    *slog.Logger

	// Clock drives registration refresh and back-off, ring and answer
	// timeouts; default the wall clock.
	Clock clock.Clock
	// RetryMin and RetryMax bound the registration back-off (default 1 s and
	// 60 s); each failure doubles the delay, with ±20% jitter.
	RetryMin, RetryMax time.Duration
	// AnswerTimeout is how long an incoming call waits for Accept or Reject
	// before it is answered 480; default 30 s.
	AnswerTimeout time.Duration
	// Resolver finds registrar, outbound proxy and call targets named by
	// domain (RFC 3263); default sipdns on /etc/resolv.conf.
	Resolver Resolver
	// Defence limits what strangers can make the agent do (defence.go).
	Defence DefenceConfig
}

const (
	defaultListen        = "0.0.0.0:5060"
	defaultSIPPort       = 5060 // a SIP URI without a port, over UDP or TCP
	defaultExpires       = 300 * time.Second
	defaultRetryMin      = time.Second
	defaultRetryMax      = 60 * time.Second
	defaultAnswerTimeout = 30 * time.Second
	eventBuffer          = 64
	// emitWait bounds how long a slow event consumer can hold up a SIP
	// handler before the event is dropped.
	emitWait = time.Second
	// shutdownWait bounds each BYE and the un-REGISTER when Run stops.
	shutdownWait = 2 * time.Second
	allowMethods = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, UPDATE"
)

// Agent is a SIP user agent bound to one listening socket.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	clk       clock.Clock
	transport string // as sipgo spells it: "UDP", "TCP" or "TLS"
	natAuto   bool
	listenIP  netip.Addr
	addr      netip.AddrPort
	udp       *net.UDPConn
	tcp       *net.TCPListener
	flows     *flowListener // serves tcp or tls to sipgo
	registrar *sip.Uri      // nil: no registration
	proxy     *sip.Uri      // nil: no outbound proxy
	domain    string        // host part of our address-of-record

	ua   *sipgo.UserAgent
	srv  *sipgo.Server
	dns  dnsState  // RFC 3263 resolution and failover (resolve.go)
	def  *defence  // rate limits and scanner filter (defence.go)
	late lateForks // our INVITEs' forks, for late 2xx (dial.go)
	// renewAfter is how many source changes a UDP serve sees before it is
	// renewed, renewGrace how long reading pauses first (serveUDP);
	// udpRenewAfter and udpRenewGrace, tests change them.
	renewAfter int
	renewGrace time.Duration
	// nonces counts digest nonce use across requests (RFC 7616 section
	// 3.4; digest.go).
	nonces nonceCounts

	events  chan Event
	dropped atomic.Uint64
	// ignoredNotifies counts NOTIFYs refused for their source.
	ignoredNotifies atomic.Uint64

	mu       sync.Mutex
	state    int // stateNew, stateRunning, stateStopping
	runCtx   context.Context
	locals   map[endKey]*localEnd
	calls    map[string]*Call // by sipgo dialog ID
	proxyIPs []netip.Addr
	// public maps a local IP to the address the registrar saw it as,
	// when that differs (behind a NAT, sip.nat auto).
	public map[netip.Addr]netip.AddrPort
	// flowContact is our end of the TLS connection to the registrar when
	// our Contact toward it names that end (tls.go, setFlowContact).
	flowContact netip.AddrPort
	wg          sync.WaitGroup // goroutines and handlers started while running
}

const (
	stateNew = iota
	stateRunning
	stateStopping
)

// localEnd is our side of the network toward some peer: the local IP the
// kernel routes from, and a sipgo client whose Via and Contact carry it
// (the Contact carries the public address instead when the peer is the
// registrar or outbound proxy and a NAT is in between).
type localEnd struct {
	ip     netip.Addr
	client *sipgo.Client
	dua    *sipgo.DialogUA
}

// endKey finds a localEnd: a local IP, and the address its Contact
// carries instead of our listening one, if any: the public address a NAT
// maps us to, or our end of the TLS connection to the registrar.
type endKey struct {
	ip     netip.Addr
	public netip.AddrPort
}

// New validates cfg, binds the listening socket and prepares the sipgo
// stack. Run must be called to serve it; Run also releases the socket.
func New(cfg Config) (*Agent, error) {
	a := &Agent{cfg: cfg, log: cfg.Logger, clk: cfg.Clock}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.clk == nil {
		a.clk = clock.Real{}
	}
	if a.cfg.UserAgent == "" {
		a.cfg.UserAgent = "intercom"
	}
	switch {
	case a.cfg.RegisterExpires <= 0:
		a.cfg.RegisterExpires = defaultExpires
	case a.cfg.RegisterExpires < time.Second:
		// Expires counts whole seconds, and 0 would remove the binding.
		a.cfg.RegisterExpires = time.Second
	}
	if a.cfg.RetryMin <= 0 {
		a.cfg.RetryMin = defaultRetryMin
	}
	if a.cfg.RetryMax < a.cfg.RetryMin {
		a.cfg.RetryMax = max(defaultRetryMax, a.cfg.RetryMin)
	}
	if a.cfg.AnswerTimeout <= 0 {
		a.cfg.AnswerTimeout = defaultAnswerTimeout
	}
	if a.cfg.AuthUser == "" {
		a.cfg.AuthUser = a.cfg.User
	}
	switch strings.ToLower(cfg.Transport) {
	case "", "udp":
		a.transport = "UDP"
	case "tcp":
		a.transport = "TCP"
	case "tls":
		a.transport = "TLS"
	default:
		return nil, fmt.Errorf("sipagent: unsupported transport %q", cfg.Transport)
	}
	switch strings.ToLower(cfg.NAT) {
	case "", "auto":
		a.natAuto = true
	case "off":
	default:
		return nil, fmt.Errorf("sipagent: nat %q: want auto or off", cfg.NAT)
	}
	if strings.ContainsAny(a.cfg.User, "@:;<> ") {
		return nil, fmt.Errorf("sipagent: invalid user %q", a.cfg.User)
	}
	def, err := newDefence(cfg.Defence, a.clk, a.fromProxy)
	if err != nil {
		return nil, err
	}
	a.def = def
	a.renewAfter, a.renewGrace = udpRenewAfter, udpRenewGrace
	listen := cfg.Listen
	if listen == "" {
		listen = defaultListen
		if a.transport == "TLS" {
			listen = net.JoinHostPort("0.0.0.0", strconv.Itoa(defaultTLSPort))
		}
	}
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("sipagent: listen %q: %w", listen, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return nil, fmt.Errorf("sipagent: listen %q: need an IP address: %w", listen, err)
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("sipagent: listen %q: bad port: %w", listen, err)
	}
	a.listenIP = ip.Unmap()
	if a.registrar, err = parseServer(cfg.Registrar); err != nil {
		return nil, fmt.Errorf("sipagent: registrar: %w", err)
	}
	if a.proxy, err = parseServer(cfg.OutboundProxy); err != nil {
		return nil, fmt.Errorf("sipagent: outbound proxy: %w", err)
	}
	if a.registrar != nil {
		if a.cfg.User == "" {
			return nil, errors.New("sipagent: registrar set but user empty")
		}
		a.domain = a.registrar.Host
	}
	var tlsClient, tlsServer *tls.Config
	if a.transport == "TLS" {
		// The first hop's certificate must name the host we were
		// configured with; calls go out through it too.
		hop := ""
		if a.proxy != nil {
			hop = strings.Trim(a.proxy.Host, "[]")
		} else if a.registrar != nil {
			hop = strings.Trim(a.registrar.Host, "[]")
		}
		tlsClient, tlsServer = a.tlsConfigs(hop)
	}

	sipLog := SipgoLogger(a.log)
	a.ua, err = sipgo.NewUA(
		sipgo.WithUserAgent(a.cfg.UserAgent),
		// sipgo's own TLS connections (failover, calls) verify like ours.
		sipgo.WithUserAgenTLSConfig(tlsClient),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(sipLog),
			sip.WithTransactionLayerUnhandledResponseHandler(a.unmatchedResponse),
		),
		sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerLogger(sipLog)),
	)
	if err != nil {
		return nil, fmt.Errorf("sipagent: user agent: %w", err)
	}
	a.srv, err = sipgo.NewServer(a.ua, sipgo.WithServerLogger(sipLog))
	if err != nil {
		_ = a.ua.Close()
		return nil, fmt.Errorf("sipagent: server: %w", err)
	}
	if err := a.bind(netip.AddrPortFrom(a.listenIP, uint16(p)), tlsClient, tlsServer); err != nil {
		_ = a.ua.Close()
		return nil, err
	}
	a.events = make(chan Event, eventBuffer)
	a.locals = map[endKey]*localEnd{}
	a.public = map[netip.Addr]netip.AddrPort{}
	a.calls = map[string]*Call{}
	a.routes()
	return a, nil
}

// bind opens the listening socket; with TLS configurations the TCP
// listener's flows speak TLS.
func (a *Agent) bind(ap netip.AddrPort, tlsClient, tlsServer *tls.Config) error {
	v := "4"
	if a.listenIP.Is6() {
		v = "6"
	}
	if a.transport == "UDP" {
		c, err := net.ListenUDP("udp"+v, net.UDPAddrFromAddrPort(ap))
		if err != nil {
			return fmt.Errorf("sipagent: listen: %w", err)
		}
		a.udp = c
		a.addr = c.LocalAddr().(*net.UDPAddr).AddrPort()
		return nil
	}
	l, err := net.ListenTCP("tcp"+v, net.TCPAddrFromAddrPort(ap))
	if err != nil {
		return fmt.Errorf("sipagent: listen: %w", err)
	}
	a.tcp = l
	a.flows = newFlowListener(l, a.clk)
	a.flows.client, a.flows.server = tlsClient, tlsServer
	a.flows.gate = newInbound(a.def)
	a.addr = l.Addr().(*net.TCPAddr).AddrPort()
	return nil
}

// parseServer accepts "host", "host:port", an IPv6 address with or
// without brackets, or a sip: URI; "" gives nil. A missing port is left 0:
// 5060 is applied where the address is used (RFC 3261 section 19.1.2).
func parseServer(s string) (*sip.Uri, error) {
	if s == "" {
		return nil, nil
	}
	text := s
	switch lower := strings.ToLower(s); {
	case strings.HasPrefix(lower, "sips:"):
		return nil, fmt.Errorf("%q: sips is not supported", s)
	case !strings.HasPrefix(lower, "sip:"):
		if ip, err := netip.ParseAddr(s); err == nil && ip.Is6() {
			// A bare IPv6 address: its colons are not a port separator.
			s = "[" + s + "]"
		}
		text = "sip:" + s
	}
	var u sip.Uri
	if err := sip.ParseUri(text, &u); err != nil {
		return nil, fmt.Errorf("%q: %w", s, err)
	}
	if u.Host == "" || u.User != "" {
		return nil, fmt.Errorf("%q: need a sip host", s)
	}
	return &sip.Uri{Scheme: "sip", Host: u.Host, Port: u.Port, UriParams: u.UriParams}, nil
}

// Addr is the bound listening address.
func (a *Agent) Addr() netip.AddrPort { return a.addr }

// Events delivers what happens. Read it continuously: when it is full for
// more than a second, events are dropped and counted in DroppedEvents.
func (a *Agent) Events() <-chan Event { return a.events }

// DroppedEvents counts events lost to a slow consumer.
func (a *Agent) DroppedEvents() uint64 { return a.dropped.Load() }

func (a *Agent) emit(ev Event) {
	select {
	case a.events <- ev:
		return
	default:
	}
	t := time.NewTimer(emitWait)
	defer t.Stop()
	select {
	case a.events <- ev:
	case <-t.C:
		a.dropped.Add(1)
		a.log.Warn("sipagent: event dropped, consumer too slow", "event", fmt.Sprintf("%T", ev))
	}
}

// Run serves SIP and, with a registrar, keeps the registration alive until
// ctx is done; then it hangs up calls, un-registers (each bounded by a
// short timeout), closes the socket and returns. Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.state != stateNew {
		a.mu.Unlock()
		return errors.New("sipagent: Run called twice")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.state = stateRunning
	a.runCtx = ctx
	a.mu.Unlock()

	serveDone := make(chan error, 1)
	if a.udp != nil {
		// Until ServeUDP registers the listener in sipgo's connection pool,
		// requests bound to the listening address would try to bind it
		// again; register it first so that requests can go out at once.
		a.addUDPListener()
		go func() { serveDone <- a.serveUDP() }()
	} else {
		go a.flows.acceptLoop()
		if a.transport == "TLS" {
			go func() { serveDone <- a.srv.ServeTLS(a.flows) }()
		} else {
			go func() { serveDone <- a.srv.ServeTCP(a.flows) }()
		}
	}
	a.log.Info("sipagent: listening", "transport", a.transport, "addr", a.addr)

	regDone := make(chan struct{})
	if a.registrar != nil {
		go func() {
			defer close(regDone)
			a.registerLoop(ctx)
		}()
	} else {
		close(regDone)
		if a.proxy != nil {
			a.track(func() { a.refreshProxyIPs(ctx) })
		}
		a.emit(RegistrationChanged{State: StateDisabled})
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-serveDone:
		serveErr = fmt.Errorf("sipagent: serve: %w", serveErr)
		cancel()
	}

	a.mu.Lock()
	a.state = stateStopping
	active := make([]*Call, 0, len(a.calls))
	for _, c := range a.calls {
		active = append(active, c)
	}
	a.mu.Unlock()
	var byes sync.WaitGroup
	for _, c := range active {
		byes.Go(func() {
			hctx, hcancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownWait)
			defer hcancel()
			if err := c.hangup(hctx, ReasonShutdown); err != nil {
				a.log.Debug("sipagent: hangup at shutdown", "call", c.ID(), "err", err)
			}
		})
	}
	byes.Wait()
	<-regDone

	// Closing the UA terminates every transaction, which releases handlers
	// and dialogs still waiting on one.
	_ = a.ua.Close()
	if a.udp != nil {
		_ = a.udp.Close()
	} else {
		// Ends acceptLoop, and with it sipgo's serve loop.
		_ = a.flows.Close()
	}
	if serveErr == nil {
		<-serveDone
	}
	a.wg.Wait()
	return serveErr
}

// SipgoLogger is the logger to hand sipgo, from the agent's: component
// sipgo, each message at most once a minute (strangers can make sipgo log
// at will: unparsable datagrams, unknown methods), and the warnings it
// gives about connections we close ourselves at debug level.
func SipgoLogger(l *slog.Logger) *slog.Logger {
	return lograte.Logger(l.With("component", "sipgo"), time.Minute,
		"TCP ref went negative", "UDP ref went negative on try close")
}

const (
	// udpRenewAfter bounds the remote addresses sipgo remembers on the
	// UDP socket, about 100 bytes each (see serveUDP).
	udpRenewAfter = 10000
	// udpRenewGrace lets the requests a serve has read find their source's
	// connection: sipgo looks it up in a goroutine of its own per request,
	// and the serve's end removes it.
	udpRenewGrace = 250 * time.Millisecond
)

// addUDPListener puts the listening socket in sipgo's connection pool, so
// that requests go out on it.
func (a *Agent) addUDPListener() {
	local := a.udp.LocalAddr().String()
	a.ua.TransportLayer().Pool("udp").Add(local, &sip.UDPConnection{PacketConn: a.udp, PacketAddr: local, Listener: true})
}

// serveUDP runs sipgo on the listening socket until the socket closes.
// sipgo's UDP transport remembers every source address a datagram came
// from until its serve ends, so a stranger that sends from ever new ports,
// slowly enough to pass the defence, would grow it without bound. Once a
// serve has seen renewAfter source changes and no call is up, it stops
// reading for renewGrace, ends, and a new one starts on the same socket;
// datagrams wait in the socket meanwhile. Transactions under way keep the
// old serve's connection, which still writes to the socket.
func (a *Agent) serveUDP() error {
	for {
		fc := a.def.packetConn(a.udp, func(changes int) bool {
			if changes < a.renewAfter || a.callsUp() {
				return false
			}
			t := a.clk.NewTimer(a.renewGrace)
			<-t.C()
			// Ending the serve takes its connection out of the pool; the
			// one put in first keeps requests going out meanwhile.
			a.addUDPListener()
			return true
		})
		if err := a.srv.ServeUDP(fc); err != nil || !fc.ended {
			return err
		}
		a.log.Debug("sipagent: UDP serve renewed", "sources", fc.changes)
	}
}

func (a *Agent) callsUp() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.calls) > 0
}

// track runs f as work owned by the running agent; false if it is not
// running (not started or stopping).
func (a *Agent) track(f func()) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state != stateRunning {
		return false
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		f()
	}()
	return true
}

// enter marks a handler as in progress; the caller must call a.wg.Done.
func (a *Agent) enter() (context.Context, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.state != stateRunning {
		return nil, false
	}
	a.wg.Add(1)
	return a.runCtx, true
}

// local returns our end toward host: the listen IP if it is specific,
// otherwise the IP the kernel would send from.
func (a *Agent) local(ctx context.Context, host string) (*localEnd, error) {
	ip := a.listenIP
	if ip.IsUnspecified() {
		remote, err := a.resolve(ctx, host)
		if err != nil {
			return nil, err
		}
		if ip, err = routeFrom(remote); err != nil {
			return nil, err
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	key := endKey{ip: ip}
	if a.towardRegistrarLocked(host) {
		if pub, ok := a.public[ip]; ok {
			key.public = pub
		} else if a.flowContact.Addr() == ip {
			key.public = a.flowContact
		}
	}
	if le, ok := a.locals[key]; ok {
		return le, nil
	}
	opts := []sipgo.ClientOption{
		sipgo.WithClientHostname(ip.String()),
		sipgo.WithClientPort(int(a.addr.Port())),
		// rport in our Via (RFC 3581 section 3): responses come back to
		// the address and port the request left from, through any NAT.
		sipgo.WithClientNAT(),
		sipgo.WithClientLogger(a.log.With("component", "sipgo")),
	}
	if a.udp != nil {
		// Send from the listening socket so that responses, NAT bindings
		// and the registrar's view of us all use one address.
		opts = append(opts, sipgo.WithClientConnectionAddr(a.udp.LocalAddr().String()))
	}
	client, err := sipgo.NewClient(a.ua, opts...)
	if err != nil {
		return nil, fmt.Errorf("sipagent: client: %w", err)
	}
	le := &localEnd{ip: ip, client: client}
	le.dua = &sipgo.DialogUA{Client: client, ContactHDR: a.contact(ip, key.public)}
	a.locals[key] = le
	return le, nil
}

// towardRegistrarLocked reports whether host, a name or an IP, is the
// first hop toward the registrar: the outbound proxy if there is one.
// The caller holds a.mu.
func (a *Agent) towardRegistrarLocked(host string) bool {
	hop := a.registrar
	if a.proxy != nil {
		hop = a.proxy
	}
	if hop == nil {
		return false
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, strings.Trim(hop.Host, "[]")) {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && slices.Contains(a.proxyIPs, ip.Unmap())
}

// contact is our Contact from local IP ip, or with the public address a
// NAT maps us to when public is valid. sipgo brackets an IPv6 host.
func (a *Agent) contact(ip netip.Addr, public netip.AddrPort) sip.ContactHeader {
	host, port := ip, a.addr.Port()
	if public.IsValid() {
		host, port = public.Addr(), public.Port()
	}
	u := sip.Uri{Scheme: "sip", User: a.cfg.User, Host: host.String(), Port: int(port)}
	if a.transport != "UDP" {
		u.UriParams = sip.HeaderParams{{K: "transport", V: strings.ToLower(a.transport)}}
	}
	return sip.ContactHeader{Address: u}
}

// firstHop is the transport address requests to the registrar go to
// first: the outbound proxy's, else the registrar's, as sendFailover
// tries them (RFC 3263; port 5060 when neither the URI nor DNS names one).
func (a *Agent) firstHop(ctx context.Context) (netip.AddrPort, error) {
	targets, err := a.targets(ctx, a.hopURI(a.registrar))
	if err != nil {
		return netip.AddrPort{}, err
	}
	return targets[0].Addr, nil
}

// routeFrom asks the kernel which local IP it would use toward remote;
// connecting a UDP socket sends nothing.
func routeFrom(remote netip.Addr) (netip.Addr, error) {
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(remote, 9)))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("sipagent: no route to %s: %w", remote, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap(), nil
}

// nextHop is where out-of-dialog requests physically go first, as host
// or host:port for local.
func (a *Agent) nextHop(target *sip.Uri) string {
	hop := a.hopURI(target)
	if hop.Port == 0 {
		return hop.Host
	}
	return net.JoinHostPort(strings.Trim(hop.Host, "[]"), strconv.Itoa(hop.Port))
}

// addRoute routes an out-of-dialog request through the outbound proxy
// (RFC 3261 section 8.1.2: a pre-existing route set with a loose router).
func (a *Agent) addRoute(req *sip.Request) {
	if a.proxy == nil {
		return
	}
	u := *a.proxy.Clone()
	if !u.UriParams.Has("lr") {
		u.UriParams = append(u.UriParams.Clone(), sip.HeaderKV{K: "lr"})
	}
	req.AppendHeader(&sip.RouteHeader{Address: u})
}

// refreshProxyIPs remembers the addresses of all the registrar's and
// outbound proxy's targets so that IncomingCall.FromProxy can be decided
// without a DNS lookup: a call may come from any of them.
func (a *Agent) refreshProxyIPs(ctx context.Context) {
	var ips []netip.Addr
	for _, u := range []*sip.Uri{a.registrar, a.proxy} {
		if u == nil {
			continue
		}
		targets, err := a.targets(ctx, u)
		if err != nil {
			a.log.Debug("sipagent: resolve", "host", u.Host, "err", err)
			continue
		}
		for _, t := range targets {
			if !slices.Contains(ips, t.Addr.Addr()) {
				ips = append(ips, t.Addr.Addr())
			}
		}
	}
	a.mu.Lock()
	if len(ips) > 0 {
		a.proxyIPs = ips
	}
	a.mu.Unlock()
}

func (a *Agent) fromProxy(ip netip.Addr) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range a.proxyIPs {
		if p == ip.Unmap() {
			return true
		}
	}
	return false
}

// aor is our address-of-record: sip:user@registrar-host, or our own IP
// when there is no registrar.
func (a *Agent) aor(local netip.Addr) sip.Uri {
	host := a.domain
	if host == "" {
		host = local.String()
	}
	return sip.Uri{Scheme: "sip", User: a.cfg.User, Host: host}
}

func (a *Agent) fromHeader(local netip.Addr) *sip.FromHeader {
	return &sip.FromHeader{
		DisplayName: a.cfg.DisplayName,
		Address:     a.aor(local),
		Params:      sip.HeaderParams{{K: "tag", V: sip.GenerateTagN(16)}},
	}
}

func (a *Agent) callByRequest(req *sip.Request) *Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	// Our role in the dialog decides which tag is local (RFC 3261 section
	// 12): look the request up both ways.
	if id, err := sip.DialogIDFromRequestUAS(req); err == nil {
		if c, ok := a.calls[id]; ok {
			return c
		}
	}
	if id, err := sip.DialogIDFromRequestUAC(req); err == nil {
		if c, ok := a.calls[id]; ok {
			return c
		}
	}
	return nil
}

// callWithID is the call with SIP Call-ID id, if one is up.
func (a *Agent) callWithID(id string) *Call {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range a.calls {
		if c.id == id {
			return c
		}
	}
	return nil
}

func (a *Agent) addCall(c *Call) {
	a.mu.Lock()
	a.calls[c.dialogID] = c
	a.mu.Unlock()
}

func (a *Agent) removeCall(c *Call) {
	a.mu.Lock()
	if a.calls[c.dialogID] == c {
		delete(a.calls, c.dialogID)
	}
	a.mu.Unlock()
}
