package sipdns

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

const (
	// Defaults and limits of resolv.conf(5) as glibc applies them.
	defaultTimeout  = 5 * time.Second
	defaultAttempts = 2
	maxTimeout      = 30 * time.Second
	maxAttempts     = 5
	maxServers      = 3
	// udpSize is the largest answer a plain DNS query over UDP gets (RFC
	// 1035 section 4.2.1); longer ones come truncated and are asked again
	// over TCP.
	udpSize = 512
)

// resolvConf is what the client takes from resolv.conf.
type resolvConf struct {
	servers  []netip.AddrPort
	timeout  time.Duration // per query and server
	attempts int           // rounds over all servers
}

// parseResolvConf reads the nameserver lines and the timeout: and
// attempts: options; everything else is ignored. Without a usable
// nameserver line the local host is asked, as glibc does.
func parseResolvConf(data []byte) resolvConf {
	rc := resolvConf{timeout: defaultTimeout, attempts: defaultAttempts}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if ip, err := netip.ParseAddr(f[1]); err == nil && len(rc.servers) < maxServers {
				rc.servers = append(rc.servers, netip.AddrPortFrom(ip.Unmap(), 53))
			}
		case "options":
			for _, o := range f[1:] {
				if v, ok := strings.CutPrefix(o, "timeout:"); ok {
					if n, err := strconv.Atoi(v); err == nil && n >= 1 {
						rc.timeout = min(time.Duration(n)*time.Second, maxTimeout)
					}
				} else if v, ok := strings.CutPrefix(o, "attempts:"); ok {
					if n, err := strconv.Atoi(v); err == nil && n >= 1 {
						rc.attempts = min(n, maxAttempts)
					}
				}
			}
		}
	}
	if len(rc.servers) == 0 {
		rc.servers = []netip.AddrPort{
			netip.MustParseAddrPort("127.0.0.1:53"),
			netip.MustParseAddrPort("[::1]:53"),
		}
	}
	return rc
}

// conf returns the servers to ask: Config.Servers, or resolv.conf read
// afresh so that a changed file (DHCP) takes effect.
func (r *Resolver) conf() (resolvConf, error) {
	if len(r.cfg.Servers) > 0 {
		return resolvConf{servers: r.cfg.Servers, timeout: r.cfg.Timeout, attempts: r.cfg.Attempts}, nil
	}
	data, err := os.ReadFile(r.cfg.ResolvConf)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return resolvConf{}, fmt.Errorf("sipdns: %w", err)
	}
	rc := parseResolvConf(data)
	if r.cfg.Timeout > 0 {
		rc.timeout = r.cfg.Timeout
	}
	if r.cfg.Attempts > 0 {
		rc.attempts = r.cfg.Attempts
	}
	return rc, nil
}

// serverError is an answer that says nothing about the name: the next
// server is asked.
type serverError struct{ rcode dnsmessage.RCode }

func (e *serverError) Error() string { return "server answered " + e.rcode.String() }

// exchange asks the servers in turn, for the configured number of rounds,
// until one gives an answer or a name error. The parser it returns is
// positioned at the answer section.
func (r *Resolver) exchange(ctx context.Context, q dnsmessage.Question) (dnsmessage.Parser, error) {
	rc, err := r.conf()
	if err != nil {
		return dnsmessage.Parser{}, err
	}
	var last error
	for range rc.attempts {
		for _, s := range rc.servers {
			if err := ctx.Err(); err != nil {
				return dnsmessage.Parser{}, err
			}
			p, _, err := exchangeWith(ctx, s, rc.timeout, q)
			if err == nil {
				return p, nil
			}
			last = fmt.Errorf("%s: %w", s, err)
		}
	}
	return dnsmessage.Parser{}, last
}

// exchangeWith sends one query to server over UDP, and again over TCP when
// the answer is truncated (RFC 1035 section 4.2.2, RFC 7766 section 5).
func exchangeWith(ctx context.Context, server netip.AddrPort, timeout time.Duration, q dnsmessage.Question) (dnsmessage.Parser, dnsmessage.Header, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	id := uint16(rand.Uint32())
	msg := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{q},
	}
	query, err := msg.Pack()
	if err != nil {
		return dnsmessage.Parser{}, dnsmessage.Header{}, fmt.Errorf("query: %w", err)
	}
	answer, err := exchangeUDP(ctx, server, query, id, q)
	if err != nil {
		return dnsmessage.Parser{}, dnsmessage.Header{}, err
	}
	p, h, err := checkAnswer(answer, id, q)
	if err != nil {
		return p, h, err
	}
	if h.Truncated {
		answer, err = exchangeTCP(ctx, server, query)
		if err != nil {
			return dnsmessage.Parser{}, dnsmessage.Header{}, fmt.Errorf("tcp: %w", err)
		}
		if p, h, err = checkAnswer(answer, id, q); err != nil {
			return p, h, fmt.Errorf("tcp: %w", err)
		}
		if h.Truncated {
			return p, h, errors.New("tcp: answer truncated")
		}
	}
	switch h.RCode {
	case dnsmessage.RCodeSuccess, dnsmessage.RCodeNameError:
		return p, h, nil
	default:
		return p, h, &serverError{rcode: h.RCode}
	}
}

// exchangeUDP sends query and waits for the answer to it; packets that are
// not that answer (another ID or question: late or forged) are skipped.
func exchangeUDP(ctx context.Context, server netip.AddrPort, query []byte, id uint16, q dnsmessage.Question) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "udp", server.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if _, err := c.Write(query); err != nil {
		return nil, ctxErr(ctx, err)
	}
	buf := make([]byte, udpSize)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, ctxErr(ctx, err)
		}
		if _, _, err := checkAnswer(buf[:n], id, q); errors.Is(err, errNotOurs) {
			continue
		}
		return buf[:n], nil
	}
}

// exchangeTCP sends query over a fresh TCP connection with the two-byte
// length prefix of RFC 1035 section 4.2.2.
func exchangeTCP(ctx context.Context, server netip.AddrPort, query []byte) ([]byte, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", server.String())
	if err != nil {
		return nil, err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	framed := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(query)), uint16(len(query)))
	if _, err := c.Write(append(framed, query...)); err != nil {
		return nil, ctxErr(ctx, err)
	}
	var l [2]byte
	if _, err := io.ReadFull(c, l[:]); err != nil {
		return nil, ctxErr(ctx, err)
	}
	answer := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(c, answer); err != nil {
		return nil, ctxErr(ctx, err)
	}
	return answer, nil
}

// ctxErr prefers the context's error to the I/O error its deadline caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// errNotOurs marks a packet that is not the answer to our query.
var errNotOurs = errors.New("not an answer to the query")

// checkAnswer parses the header and question of answer and checks that it
// answers q; the parser is left at the answer section.
func checkAnswer(answer []byte, id uint16, q dnsmessage.Question) (dnsmessage.Parser, dnsmessage.Header, error) {
	var p dnsmessage.Parser
	h, err := p.Start(answer)
	if err != nil || !h.Response || h.ID != id {
		return p, h, errNotOurs
	}
	qs, err := p.AllQuestions()
	if err != nil || len(qs) != 1 || qs[0].Type != q.Type || qs[0].Class != q.Class ||
		!strings.EqualFold(qs[0].Name.String(), q.Name.String()) {
		return p, h, errNotOurs
	}
	return p, h, nil
}
