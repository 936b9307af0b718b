package sipagent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"intercom/sipagent/sipdns"
)

// Resolver finds where requests for a SIP host go (RFC 3263).
type Resolver interface {
	Resolve(ctx context.Context, q sipdns.Query) ([]sipdns.Target, error)
}

var _ Resolver = (*sipdns.Resolver)(nil)

// targetTimeout bounds one attempt at one target before failing over to
// the next (RFC 3263 section 4.3). sipgo reports a silent target only when
// Timer B or F fires, after 32 s: too late to move on while the
// registration is still wanted.
const targetTimeout = 4 * time.Second

// dnsState is the agent's RFC 3263 resolution: the resolver, made on
// first use, and the target that last answered for each next hop.
type dnsState struct {
	once     sync.Once
	resolver Resolver
	// timeout is targetTimeout; tests shorten it.
	timeout time.Duration

	mu        sync.Mutex
	preferred map[string]netip.AddrPort // by hopKey
}

func (a *Agent) resolver() Resolver {
	a.dns.once.Do(func() {
		a.dns.resolver = a.cfg.Resolver
		if a.dns.resolver == nil {
			a.dns.resolver = sipdns.New(sipdns.Config{Clock: a.clk})
		}
		if a.dns.timeout <= 0 {
			a.dns.timeout = targetTimeout
		}
	})
	return a.dns.resolver
}

// family is what the listening socket can reach: it is bound to one IP
// family.
func (a *Agent) family() sipdns.Family {
	if a.listenIP.Is6() {
		return sipdns.IPv6
	}
	return sipdns.IPv4
}

// hopURI is where out-of-dialog requests to target physically go first:
// the outbound proxy if there is one.
func (a *Agent) hopURI(target *sip.Uri) *sip.Uri {
	if a.proxy != nil {
		return a.proxy
	}
	return target
}

func hopKey(u *sip.Uri) string {
	return strings.ToLower(u.Host) + ":" + strconv.Itoa(u.Port)
}

// targets resolves u per RFC 3263, the target that answered last first.
func (a *Agent) targets(ctx context.Context, u *sip.Uri) ([]sipdns.Target, error) {
	return a.hostTargets(ctx, u.Host, u.Port)
}

func (a *Agent) hostTargets(ctx context.Context, host string, port int) ([]sipdns.Target, error) {
	targets, err := a.resolver().Resolve(ctx, sipdns.Query{
		Host: host, Port: port, Transport: strings.ToLower(a.transport), Family: a.family(),
	})
	if err != nil {
		return nil, fmt.Errorf("sipagent: resolve: %w", err)
	}
	if len(targets) == 0 {
		return nil, fmt.Errorf("sipagent: resolve %s: no targets", host)
	}
	a.dns.mu.Lock()
	pref, ok := a.dns.preferred[hopKey(&sip.Uri{Host: host, Port: port})]
	a.dns.mu.Unlock()
	if i := slices.IndexFunc(targets, func(t sipdns.Target) bool { return t.Addr == pref }); ok && i > 0 {
		// The resolver's slice is not ours to reorder.
		targets = slices.Concat(targets[i:i+1], targets[:i], targets[i+1:])
	}
	return targets, nil
}

// setPreferred remembers the target that answered for hop, or forgets it
// when it failed (ok false).
func (a *Agent) setPreferred(hop *sip.Uri, addr netip.AddrPort, ok bool) {
	a.dns.mu.Lock()
	defer a.dns.mu.Unlock()
	key := hopKey(hop)
	switch {
	case ok:
		if a.dns.preferred == nil {
			a.dns.preferred = map[string]netip.AddrPort{}
		}
		a.dns.preferred[key] = addr
	case a.dns.preferred[key] == addr:
		delete(a.dns.preferred, key)
	}
}

// resolve returns the first address of a next hop given as host or
// host:port, the one the local end is chosen for.
func (a *Agent) resolve(ctx context.Context, hostport string) (netip.Addr, error) {
	host, port := hostport, 0
	if h, p, err := net.SplitHostPort(hostport); err == nil {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("sipagent: resolve %s: bad port", hostport)
		}
		host, port = h, int(n)
	}
	targets, err := a.hostTargets(ctx, host, port)
	if err != nil {
		return netip.Addr{}, err
	}
	return targets[0].Addr.Addr(), nil
}

// sendToHop sends req to the first target of its next hop and waits for
// the final response; a target that does not answer is forgotten as the
// preferred one, so that the next failover send starts from the top.
func (a *Agent) sendToHop(ctx context.Context, le *localEnd, req *sip.Request, target *sip.Uri) (*sip.Response, error) {
	hop := a.hopURI(target)
	targets, err := a.targets(ctx, hop)
	if err != nil {
		return nil, err
	}
	req.SetDestination(targets[0].Addr.String())
	res, err := le.client.Do(ctx, req)
	if err != nil {
		a.setPreferred(hop, targets[0].Addr, false)
	}
	return res, err
}

// sendFailover sends req, authenticating when challenged, to the targets
// of its next hop in turn until one gives a final response other than 503
// (RFC 3263 section 4.3); each target gets dns.timeout. The target that
// answered is tried first next time. When none answers, the last 503 is
// returned, else the errors.
func (a *Agent) sendFailover(ctx context.Context, le *localEnd, req *sip.Request, target *sip.Uri) (*sip.Response, error) {
	hop := a.hopURI(target)
	targets, err := a.targets(ctx, hop)
	if err != nil {
		return nil, err
	}
	var unavailable *sip.Response
	var errs []error
	for i, t := range targets {
		if i > 0 {
			// A new request for the next target (RFC 3263 section 4.3): a
			// new transaction, so a new Via branch and CSeq, and no
			// credentials answering another server's challenge.
			req.RemoveHeader("Via")
			req.RemoveHeader("Authorization")
			req.RemoveHeader("Proxy-Authorization")
			if cseq := req.CSeq(); cseq != nil {
				cseq.SeqNo++
			}
		}
		req.SetDestination(t.Addr.String())
		tctx, cancel := context.WithTimeout(ctx, a.dns.timeout)
		res, err := a.doAuth(tctx, le, req)
		cancel()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("%s: %w", t.Addr, ctx.Err())
		}
		if err == nil && res.StatusCode != sip.StatusServiceUnavailable {
			a.setPreferred(hop, t.Addr, true)
			return res, nil
		}
		a.setPreferred(hop, t.Addr, false)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", t.Addr, err))
		} else {
			unavailable = res
		}
	}
	if unavailable != nil {
		return unavailable, nil
	}
	return nil, errors.Join(errs...)
}

// doAuth sends req and answers digest challenges with the configured
// credentials.
func (a *Agent) doAuth(ctx context.Context, le *localEnd, req *sip.Request) (*sip.Response, error) {
	res, err := le.client.Do(ctx, req)
	if err != nil || a.cfg.Password == "" {
		return res, err
	}
	return a.answerChallenges(ctx, req, res, func(ctx context.Context, req *sip.Request) (*sip.Response, error) {
		return le.client.Do(ctx, req)
	})
}

// answerChallenges answers the challenges res and its successors make to
// req with the configured credentials, sending req again with send: the
// first challenge of each realm, and one more when it says our nonce was
// stale (RFC 7616 section 3.3).
func (a *Agent) answerChallenges(ctx context.Context, req *sip.Request, res *sip.Response, send func(context.Context, *sip.Request) (*sip.Response, error)) (*sip.Response, error) {
	auth := newDigestAuth(a.cfg.AuthUser, a.cfg.Password, &a.nonces)
	for round := 0; round < maxAuthRounds && isChallenge(res); round++ {
		retry, err := auth.answer(req, res)
		if err != nil {
			return nil, err
		}
		if !retry {
			return res, nil
		}
		if res, err = send(ctx, req); err != nil {
			return nil, err
		}
	}
	return res, nil
}
