package sipdns

import (
	"context"
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"intercom/internal/clock/clocktest"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// newTestResolver asks only the given servers, with no hosts file; the
// SRV draw always picks 0 (the first record of a priority).
func newTestResolver(t *testing.T, clk *clocktest.Fake, servers ...netip.AddrPort) *Resolver {
	t.Helper()
	if clk == nil {
		clk = clocktest.New(t0)
	}
	return New(Config{
		Servers: servers, Hosts: filepath.Join(t.TempDir(), "no-hosts"),
		Timeout: 2 * time.Second, Attempts: 1, Clock: clk,
		RandN: func(int) int { return 0 },
	})
}

func resolve(t *testing.T, r *Resolver, q Query) []string {
	t.Helper()
	targets, err := r.Resolve(context.Background(), q)
	if err != nil {
		t.Fatalf("Resolve(%+v): %v", q, err)
	}
	var out []string
	for _, tg := range targets {
		out = append(out, tg.Host+"="+tg.Addr.String())
	}
	return out
}

func wantTargets(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("targets\n got %q\nwant %q", got, want)
	}
}

// pbxZone is a domain with NAPTR records for TCP and UDP, two SRV
// priorities for UDP and hosts with IPv4 and IPv6 addresses.
func pbxZone(f *fakeDNS) {
	f.add(
		naptrRR("pbx.test.", naptr{order: 10, preference: 50, flags: "s", services: "SIP+D2T", replacement: "_sip._tcp.pbx.test."}, 300),
		naptrRR("pbx.test.", naptr{order: 20, preference: 50, flags: "S", services: "SIP+D2U", replacement: "_sip._udp.srv.pbx.test."}, 300),
		// Not for us: another protocol, and a regexp record.
		naptrRR("pbx.test.", naptr{order: 5, preference: 50, flags: "s", services: "SIPS+D2T", replacement: "_sips._tcp.pbx.test."}, 300),
		naptrRR("pbx.test.", naptr{order: 1, preference: 50, flags: "u", services: "SIP+D2U", regexp: "!^.*$!sip:x@y!", replacement: "."}, 300),
		srvRR("_sip._udp.srv.pbx.test.", 20, 0, 5080, "b.pbx.test.", 300),
		srvRR("_sip._udp.srv.pbx.test.", 10, 0, 5070, "a.pbx.test.", 300),
		srvRR("_sip._tcp.pbx.test.", 10, 0, 5090, "a.pbx.test.", 300),
		aRR("a.pbx.test.", "192.0.2.1", 300),
		aRR("b.pbx.test.", "192.0.2.2", 300),
		aaaaRR("b.pbx.test.", "2001:db8::2", 300),
	)
}

func TestResolveNAPTRThenSRVThenAddresses(t *testing.T) {
	f := newFakeDNS(t)
	pbxZone(f)
	r := newTestResolver(t, nil, f.addr())

	got := resolve(t, r, Query{Host: "pbx.test", Transport: "udp"})
	wantTargets(t, got, "a.pbx.test=192.0.2.1:5070", "b.pbx.test=192.0.2.2:5080", "b.pbx.test=[2001:db8::2]:5080")
	got = resolve(t, r, Query{Host: "PBX.test.", Transport: "TCP", Family: IPv4})
	wantTargets(t, got, "a.pbx.test=192.0.2.1:5090")

	// The NAPTR was asked once (cached), the fallback SRV names never.
	if n := f.count("pbx.test.", typeNAPTR); n != 1 {
		t.Errorf("NAPTR asked %d times, want 1", n)
	}
	if n := f.count("_sip._udp.pbx.test.", dnsmessage.TypeSRV); n != 0 {
		t.Errorf("fallback SRV asked %d times despite NAPTR", n)
	}
}

func TestResolveFamilyAsksOnlyItsRecords(t *testing.T) {
	f := newFakeDNS(t)
	pbxZone(f)
	r := newTestResolver(t, nil, f.addr())
	wantTargets(t, resolve(t, r, Query{Host: "pbx.test", Transport: "udp", Family: IPv6}), "b.pbx.test=[2001:db8::2]:5080")
	if n := f.count("a.pbx.test.", dnsmessage.TypeA) + f.count("b.pbx.test.", dnsmessage.TypeA); n != 0 {
		t.Errorf("A asked %d times for an IPv6 socket", n)
	}
}

func TestResolveSRVWithoutNAPTR(t *testing.T) {
	f := newFakeDNS(t)
	f.set(func(f *fakeDNS) { f.rcode[key("pbx.test.", typeNAPTR)] = dnsmessage.RCodeNameError })
	f.add(
		srvRR("_sip._udp.pbx.test.", 10, 0, 5070, "a.pbx.test.", 300),
		aRR("a.pbx.test.", "192.0.2.1", 300),
	)
	r := newTestResolver(t, nil, f.addr())
	wantTargets(t, resolve(t, r, Query{Host: "pbx.test", Transport: "udp"}), "a.pbx.test=192.0.2.1:5070")
}

func TestResolveNAPTRFailureFallsBackToSRV(t *testing.T) {
	f := newFakeDNS(t)
	f.set(func(f *fakeDNS) { f.rcode[key("pbx.test.", typeNAPTR)] = dnsmessage.RCodeServerFailure })
	f.add(
		srvRR("_sip._udp.pbx.test.", 10, 0, 5070, "a.pbx.test.", 300),
		aRR("a.pbx.test.", "192.0.2.1", 300),
	)
	r := newTestResolver(t, nil, f.addr())
	wantTargets(t, resolve(t, r, Query{Host: "pbx.test", Transport: "udp"}), "a.pbx.test=192.0.2.1:5070")
}

func TestResolveWithoutSRVUsesAddressesOnPort5060(t *testing.T) {
	f := newFakeDNS(t)
	f.add(aRR("pbx.test.", "192.0.2.9", 300), aaaaRR("pbx.test.", "2001:db8::9", 300))
	r := newTestResolver(t, nil, f.addr())
	wantTargets(t, resolve(t, r, Query{Host: "pbx.test", Transport: "tcp"}), "pbx.test=192.0.2.9:5060", "pbx.test=[2001:db8::9]:5060")
	if n := f.count("_sip._tcp.pbx.test.", dnsmessage.TypeSRV); n != 1 {
		t.Errorf("SRV asked %d times, want 1", n)
	}
}

func TestResolveTLS(t *testing.T) {
	f := newFakeDNS(t)
	pbxZone(f)
	f.add(
		srvRR("_sips._tcp.pbx.test.", 10, 0, 5071, "a.pbx.test.", 300),
		aRR("plain.test.", "192.0.2.7", 300),
	)
	r := newTestResolver(t, nil, f.addr())
	// The SIPS+D2T NAPTR names _sips._tcp; without SRV, TLS's port is 5061.
	wantTargets(t, resolve(t, r, Query{Host: "pbx.test", Transport: "tls", Family: IPv4}), "a.pbx.test=192.0.2.1:5071")
	wantTargets(t, resolve(t, r, Query{Host: "plain.test", Transport: "tls"}), "plain.test=192.0.2.7:5061")
	wantTargets(t, resolve(t, r, Query{Host: "192.0.2.8", Transport: "tls"}), "192.0.2.8=192.0.2.8:5061")
	if n := f.count("_sips._tcp.plain.test.", dnsmessage.TypeSRV); n != 1 {
		t.Errorf("_sips._tcp SRV asked %d times, want 1", n)
	}
}

func TestResolveExplicitPortSkipsNAPTRAndSRV(t *testing.T) {
	f := newFakeDNS(t)
	pbxZone(f)
	f.add(aRR("pbx.test.", "192.0.2.9", 300))
	r := newTestResolver(t, nil, f.addr())
	wantTargets(t, resolve(t, r, Query{Host: "pbx.test", Port: 5999, Transport: "udp", Family: IPv4}), "pbx.test=192.0.2.9:5999")
	if n := f.count("pbx.test.", typeNAPTR) + f.count("_sip._udp.pbx.test.", dnsmessage.TypeSRV); n != 0 {
		t.Errorf("NAPTR/SRV asked %d times with an explicit port", n)
	}
}

func TestResolveIPLiteralAsksNothing(t *testing.T) {
	f := newFakeDNS(t)
	r := newTestResolver(t, nil, f.addr())
	wantTargets(t, resolve(t, r, Query{Host: "192.0.2.5", Transport: "udp"}), "192.0.2.5=192.0.2.5:5060")
	wantTargets(t, resolve(t, r, Query{Host: "[2001:db8::5]", Port: 5070, Transport: "tcp"}), "[2001:db8::5]=[2001:db8::5]:5070")
	if n := f.total(); n != 0 {
		t.Errorf("%d queries for IP literals", n)
	}
}

func TestResolveFollowsCNAME(t *testing.T) {
	f := newFakeDNS(t)
	f.alias("pbx.test.", "real.pbx.test.", 100, aRR("real.pbx.test.", "192.0.2.7", 50))
	clk := clocktest.New(t0)
	r := newTestResolver(t, clk, f.addr())
	wantTargets(t, resolve(t, r, Query{Host: "pbx.test", Port: 5060, Transport: "udp", Family: IPv4}), "pbx.test=192.0.2.7:5060")
	// The smaller TTL of the chain counts.
	clk.Advance(51 * time.Second)
	resolve(t, r, Query{Host: "pbx.test", Port: 5060, Transport: "udp", Family: IPv4})
	if n := f.count("pbx.test.", dnsmessage.TypeA); n != 2 {
		t.Errorf("A asked %d times, want 2 (TTL 50 expired)", n)
	}
}

func TestResolveSRVWeightsAndPriorities(t *testing.T) {
	f := newFakeDNS(t)
	f.add(
		srvRR("_sip._udp.pbx.test.", 20, 0, 5001, "z.pbx.test.", 300),
		srvRR("_sip._udp.pbx.test.", 10, 10, 5002, "a.pbx.test.", 300),
		srvRR("_sip._udp.pbx.test.", 10, 30, 5003, "b.pbx.test.", 300),
		srvRR("_sip._udp.pbx.test.", 10, 0, 5004, "c.pbx.test.", 300),
		aRR("z.pbx.test.", "192.0.2.1", 300), aRR("a.pbx.test.", "192.0.2.2", 300),
		aRR("b.pbx.test.", "192.0.2.3", 300), aRR("c.pbx.test.", "192.0.2.4", 300),
	)
	// Priority 10 holds c (0), a (10), b (30): running sums 0, 10, 40.
	// The draws 25 (of 0..40) then 0 (of 0..10) pick b, then c, then a.
	var asked []int
	draws := []int{25, 0, 0, 0}
	r := New(Config{Servers: []netip.AddrPort{f.addr()}, Hosts: filepath.Join(t.TempDir(), "none"),
		Clock: clocktest.New(t0), RandN: func(n int) int {
			asked = append(asked, n)
			d := draws[0]
			draws = draws[1:]
			return d
		}})
	got := resolve(t, r, Query{Host: "pbx.test", Transport: "udp", Family: IPv4})
	wantTargets(t, got, "b.pbx.test=192.0.2.3:5003", "c.pbx.test=192.0.2.4:5004", "a.pbx.test=192.0.2.2:5002", "z.pbx.test=192.0.2.1:5001")
	if want := []int{41, 11, 11, 1}; !slices.Equal(asked, want) {
		t.Errorf("random draws over %v, want %v", asked, want)
	}
}

func TestOrderSRVDistribution(t *testing.T) {
	recs := []srv{{priority: 1, weight: 1, target: "light."}, {priority: 1, weight: 3, target: "heavy."}}
	first := map[string]int{}
	// Every draw 0..4 once: the running sums are 1 (light) and 4 (heavy),
	// so 0 and 1 pick light, 2..4 heavy.
	for pick := range 5 {
		out := orderSRV(recs, func(n int) int {
			if n != 5 {
				return 0
			}
			return pick
		})
		first[out[0].target]++
	}
	if first["light."] != 2 || first["heavy."] != 3 {
		t.Errorf("first picks %v, want light 2 heavy 3", first)
	}
}

func TestResolveSRVDotTargetIsUnavailable(t *testing.T) {
	f := newFakeDNS(t)
	f.add(srvRR("_sip._udp.pbx.test.", 0, 0, 0, ".", 300))
	r := newTestResolver(t, nil, f.addr())
	_, err := r.Resolve(context.Background(), Query{Host: "pbx.test", Transport: "udp"})
	if err == nil || !strings.Contains(err.Error(), "not available") {
		t.Fatalf("err %v, want service not available", err)
	}
}

func TestCacheHonoursTTL(t *testing.T) {
	f := newFakeDNS(t)
	f.add(aRR("pbx.test.", "192.0.2.9", 60))
	clk := clocktest.New(t0)
	r := newTestResolver(t, clk, f.addr())
	q := Query{Host: "pbx.test", Port: 5060, Transport: "udp", Family: IPv4}
	resolve(t, r, q)
	clk.Advance(59 * time.Second)
	resolve(t, r, q)
	if n := f.count("pbx.test.", dnsmessage.TypeA); n != 1 {
		t.Fatalf("A asked %d times within the TTL, want 1", n)
	}
	// The record changes; the new one is seen once the TTL has passed.
	f.set(func(f *fakeDNS) {
		f.answers[key("pbx.test.", dnsmessage.TypeA)] = []dnsmessage.Resource{aRR("pbx.test.", "192.0.2.10", 60)}
	})
	wantTargets(t, resolve(t, r, q), "pbx.test=192.0.2.9:5060")
	clk.Advance(time.Second)
	wantTargets(t, resolve(t, r, q), "pbx.test=192.0.2.10:5060")
	if n := f.count("pbx.test.", dnsmessage.TypeA); n != 2 {
		t.Fatalf("A asked %d times, want 2", n)
	}
}

func TestCacheNegativeAnswers(t *testing.T) {
	for _, tc := range []struct {
		name   string
		soaMin uint32
		ttl    time.Duration
	}{
		{"without SOA: NegativeTTL", 0, 30 * time.Second},
		{"SOA minimum", 10, 10 * time.Second},
		{"SOA minimum capped", 86400, maxNegativeTTL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeDNS(t)
			f.set(func(f *fakeDNS) {
				f.soaMin = tc.soaMin
				f.rcode[key("pbx.test.", typeNAPTR)] = dnsmessage.RCodeNameError
			})
			f.add(aRR("pbx.test.", "192.0.2.9", 3600))
			clk := clocktest.New(t0)
			r := newTestResolver(t, clk, f.addr())
			q := Query{Host: "pbx.test", Transport: "udp", Family: IPv4}
			for range 2 {
				wantTargets(t, resolve(t, r, q), "pbx.test=192.0.2.9:5060")
			}
			clk.Advance(tc.ttl - time.Second)
			resolve(t, r, q)
			if n := f.count("pbx.test.", typeNAPTR); n != 1 {
				t.Fatalf("NAPTR asked %d times within the negative TTL, want 1", n)
			}
			if n := f.count("_sip._udp.pbx.test.", dnsmessage.TypeSRV); n != 1 {
				t.Fatalf("SRV (no data) asked %d times within the negative TTL, want 1", n)
			}
			clk.Advance(time.Second)
			resolve(t, r, q)
			if n := f.count("pbx.test.", typeNAPTR); n != 2 {
				t.Fatalf("NAPTR asked %d times after the negative TTL, want 2", n)
			}
		})
	}
}

func TestTruncatedAnswerIsAskedOverTCP(t *testing.T) {
	f := newFakeDNS(t)
	f.add(
		srvRR("_sip._udp.pbx.test.", 10, 0, 5070, "a.pbx.test.", 300),
		aRR("a.pbx.test.", "192.0.2.1", 300),
	)
	f.set(func(f *fakeDNS) { f.truncate[key("_sip._udp.pbx.test.", dnsmessage.TypeSRV)] = true })
	r := newTestResolver(t, nil, f.addr())
	wantTargets(t, resolve(t, r, Query{Host: "pbx.test", Transport: "udp", Family: IPv4}), "a.pbx.test=192.0.2.1:5070")
	f.set(func(f *fakeDNS) {
		if f.tcpHits != 1 {
			t.Errorf("%d TCP queries, want 1", f.tcpHits)
		}
	})
}

func TestServerFailureAsksTheNextServer(t *testing.T) {
	bad, good := newFakeDNS(t), newFakeDNS(t)
	bad.set(func(f *fakeDNS) { f.rcode[key("pbx.test.", dnsmessage.TypeA)] = dnsmessage.RCodeServerFailure })
	good.add(aRR("pbx.test.", "192.0.2.9", 300))
	r := newTestResolver(t, nil, bad.addr(), good.addr())
	wantTargets(t, resolve(t, r, Query{Host: "pbx.test", Port: 5060, Transport: "udp", Family: IPv4}), "pbx.test=192.0.2.9:5060")
	if bad.count("pbx.test.", dnsmessage.TypeA) != 1 || good.count("pbx.test.", dnsmessage.TypeA) != 1 {
		t.Errorf("queries: bad %d, good %d; want 1 each", bad.count("pbx.test.", dnsmessage.TypeA), good.count("pbx.test.", dnsmessage.TypeA))
	}
}

// response builds an answer to query with one raw answer record.
func response(t *testing.T, query []byte, id uint16, typ dnsmessage.Type, rdata []byte) []byte {
	t.Helper()
	var p dnsmessage.Parser
	if _, err := p.Start(query); err != nil {
		t.Error(err)
		return nil
	}
	q, err := p.Question()
	if err != nil {
		t.Error(err)
		return nil
	}
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true})
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	if err := b.UnknownResource(hdr(q.Name.String(), typ, 60), dnsmessage.UnknownResource{Type: typ, Data: rdata}); err != nil {
		t.Error(err)
	}
	out, err := b.Finish()
	if err != nil {
		t.Error(err)
	}
	return out
}

func TestMalformedAnswersAreErrors(t *testing.T) {
	queryID := func(q []byte) uint16 { return binary.BigEndian.Uint16(q) }
	for _, tc := range []struct {
		name string
		raw  func(t *testing.T, q []byte) [][]byte
	}{
		{"SRV record too short", func(t *testing.T, q []byte) [][]byte {
			return [][]byte{response(t, q, queryID(q), dnsmessage.TypeSRV, []byte{0, 1, 0})}
		}},
		{"answer cut short", func(t *testing.T, q []byte) [][]byte {
			out := response(t, q, queryID(q), dnsmessage.TypeSRV, []byte{0, 1, 0, 1, 0x13, 0xc4, 1, 'a', 0})
			return [][]byte{out[:len(out)-4]}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeDNS(t)
			f.set(func(f *fakeDNS) {
				f.raw[key("_sip._udp.pbx.test.", dnsmessage.TypeSRV)] = func(q []byte) [][]byte { return tc.raw(t, q) }
			})
			r := newTestResolver(t, nil, f.addr())
			_, err := r.Resolve(context.Background(), Query{Host: "pbx.test", Transport: "udp"})
			if err == nil || !strings.Contains(err.Error(), "_sip._udp.pbx.test SRV") {
				t.Fatalf("err %v, want an error about the SRV answer", err)
			}
			// A failure is not cached: the next call asks again.
			_, _ = r.Resolve(context.Background(), Query{Host: "pbx.test", Transport: "udp"})
			if n := f.count("_sip._udp.pbx.test.", dnsmessage.TypeSRV); n != 2 {
				t.Errorf("SRV asked %d times, want 2", n)
			}
		})
	}
}

func TestForeignPacketsAreSkipped(t *testing.T) {
	f := newFakeDNS(t)
	srvData := []byte{0, 1, 0, 1, 0x13, 0xc4, 1, 'a', 4, 't', 'e', 's', 't', 0}
	f.set(func(f *fakeDNS) {
		f.raw[key("_sip._udp.pbx.test.", dnsmessage.TypeSRV)] = func(q []byte) [][]byte {
			id := binary.BigEndian.Uint16(q)
			return [][]byte{
				{1, 2, 3}, // garbage
				response(t, q, id+1, dnsmessage.TypeSRV, srvData), // another query's ID
				response(t, q, id, dnsmessage.TypeSRV, srvData),
			}
		}
	})
	f.add(aRR("a.test.", "192.0.2.1", 300))
	r := newTestResolver(t, nil, f.addr())
	wantTargets(t, resolve(t, r, Query{Host: "pbx.test", Transport: "udp", Family: IPv4}), "a.test=192.0.2.1:5060")
}

func TestSilentServerTimesOut(t *testing.T) {
	f := newFakeDNS(t)
	f.set(func(f *fakeDNS) {
		f.raw[key("pbx.test.", dnsmessage.TypeA)] = func([]byte) [][]byte { return nil }
	})
	r := New(Config{Servers: []netip.AddrPort{f.addr()}, Hosts: filepath.Join(t.TempDir(), "none"), Timeout: 50 * time.Millisecond, Attempts: 2})
	_, err := r.Resolve(context.Background(), Query{Host: "pbx.test", Port: 5060, Transport: "udp", Family: IPv4})
	if err == nil {
		t.Fatal("no error from a silent server")
	}
	if n := f.count("pbx.test.", dnsmessage.TypeA); n != 2 {
		t.Errorf("asked %d times, want 2 (attempts)", n)
	}
}

func TestResolveRefusesBadQueries(t *testing.T) {
	f := newFakeDNS(t)
	r := newTestResolver(t, nil, f.addr())
	for _, q := range []Query{
		{Host: "pbx.test", Transport: "sctp"},
		{Host: "pbx.test", Transport: "udp", Port: 70000},
		{Host: "pbx.test", Transport: "udp", Port: -1},
		{Host: "", Transport: "udp"},
		{Host: "a..test", Transport: "udp"},
		{Host: "pbx test", Transport: "udp"},
		{Host: strings.Repeat("a", 64) + ".test", Transport: "udp"},
		{Host: "pbx.test", Transport: "udp", Family: Family(7)},
	} {
		if _, err := r.Resolve(context.Background(), q); err == nil || !strings.HasPrefix(err.Error(), "sipdns: ") {
			t.Errorf("Resolve(%+v): err %v, want a sipdns error", q, err)
		}
	}
	if n := f.total(); n != 0 {
		t.Errorf("%d queries for bad input", n)
	}
}

func TestHostsFileComesFirst(t *testing.T) {
	f := newFakeDNS(t)
	f.add(aRR("pbx.test.", "192.0.2.9", 300))
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("# comment\n127.0.0.1 localhost\n::1 localhost ip6-localhost\n192.0.2.50 PBX.test pbx # lab\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := New(Config{Servers: []netip.AddrPort{f.addr()}, Hosts: hosts, Clock: clocktest.New(t0)})
	wantTargets(t, resolve(t, r, Query{Host: "pbx.test", Port: 5070, Transport: "udp"}), "pbx.test=192.0.2.50:5070")
	wantTargets(t, resolve(t, r, Query{Host: "localhost", Port: 5070, Transport: "udp"}), "localhost=127.0.0.1:5070", "localhost=[::1]:5070")
	wantTargets(t, resolve(t, r, Query{Host: "localhost", Port: 5070, Transport: "udp", Family: IPv6}), "localhost=[::1]:5070")
	if n := f.count("pbx.test.", dnsmessage.TypeA); n != 0 {
		t.Errorf("DNS asked %d times for a name in the hosts file", n)
	}
}

func TestParseResolvConf(t *testing.T) {
	rc := parseResolvConf([]byte(`# generated
search lan
nameserver 192.0.2.53
nameserver 2001:db8::53
; nameserver 192.0.2.99
nameserver not-an-ip
nameserver 192.0.2.54
nameserver 192.0.2.55
options ndots:2 timeout:2 attempts:3 rotate
`))
	want := []netip.AddrPort{
		netip.MustParseAddrPort("192.0.2.53:53"), netip.MustParseAddrPort("[2001:db8::53]:53"), netip.MustParseAddrPort("192.0.2.54:53"),
	}
	if !slices.Equal(rc.servers, want) || rc.timeout != 2*time.Second || rc.attempts != 3 {
		t.Errorf("got %+v, want servers %v (at most 3), timeout 2s, attempts 3", rc, want)
	}
	rc = parseResolvConf([]byte("options timeout:0 attempts:99 timeout:x\n"))
	if len(rc.servers) != 2 || rc.servers[0].Addr() != netip.MustParseAddr("127.0.0.1") || rc.timeout != defaultTimeout || rc.attempts != maxAttempts {
		t.Errorf("defaults: got %+v", rc)
	}
}

func TestResolvConfFileIsUsed(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(path, []byte("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := New(Config{ResolvConf: path, Hosts: filepath.Join(dir, "none")})
	rc, err := r.conf()
	if err != nil {
		t.Fatal(err)
	}
	if len(rc.servers) != 1 || rc.servers[0] != netip.MustParseAddrPort("127.0.0.1:53") || rc.timeout != time.Second || rc.attempts != 1 {
		t.Errorf("conf %+v, want the file's server, timeout 1s, 1 attempt", rc)
	}
}

func TestHostsFileWorksWhileDNSIsDown(t *testing.T) {
	f := newFakeDNS(t)
	f.set(func(f *fakeDNS) {
		for _, k := range []string{key("pbx.", typeNAPTR), key("_sip._udp.pbx.", dnsmessage.TypeSRV)} {
			f.rcode[k] = dnsmessage.RCodeServerFailure
		}
	})
	hosts := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(hosts, []byte("192.0.2.50 pbx\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := New(Config{Servers: []netip.AddrPort{f.addr()}, Hosts: hosts, Clock: clocktest.New(t0)})
	wantTargets(t, resolve(t, r, Query{Host: "pbx", Transport: "udp"}), "pbx=192.0.2.50:5060")

	// Without the hosts entry the SRV failure is reported.
	r = newTestResolver(t, nil, f.addr())
	_, err := r.Resolve(context.Background(), Query{Host: "pbx", Transport: "udp"})
	if err == nil || !strings.Contains(err.Error(), "_sip._udp.pbx SRV") {
		t.Fatalf("err %v, want the SRV failure", err)
	}
}
