package sipdns

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// fakeDNS is an authoritative-looking DNS server on loopback, UDP and TCP
// on one port, answering from a table the test fills.
type fakeDNS struct {
	udp *net.UDPConn
	tcp *net.TCPListener
	wg  sync.WaitGroup

	mu sync.Mutex
	// answers by "name type", name absolute and lower case.
	answers map[string][]dnsmessage.Resource
	// rcode answers a query with this code and no records.
	rcode map[string]dnsmessage.RCode
	// soaMin, when set, puts a SOA with this minimum into negative answers.
	soaMin uint32
	// truncate answers over UDP with TC set and no records.
	truncate map[string]bool
	// raw replaces the answer over UDP with what it returns (packets sent
	// in turn).
	raw     map[string]func(query []byte) [][]byte
	queries map[string]int
	tcpHits int
}

func newFakeDNS(t *testing.T) *fakeDNS {
	t.Helper()
	f := &fakeDNS{
		answers:  map[string][]dnsmessage.Resource{},
		rcode:    map[string]dnsmessage.RCode{},
		truncate: map[string]bool{},
		raw:      map[string]func([]byte) [][]byte{},
		queries:  map[string]int{},
	}
	for range 20 {
		u, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: u.LocalAddr().(*net.UDPAddr).Port})
		if err != nil {
			u.Close()
			continue
		}
		f.udp, f.tcp = u, l
		break
	}
	if f.udp == nil {
		t.Fatal("fake dns: no port free for UDP and TCP")
	}
	f.wg.Add(2)
	go f.serveUDP()
	go f.serveTCP()
	t.Cleanup(func() {
		f.udp.Close()
		f.tcp.Close()
		f.wg.Wait()
	})
	return f
}

func (f *fakeDNS) addr() netip.AddrPort { return f.udp.LocalAddr().(*net.UDPAddr).AddrPort() }

func key(name string, typ dnsmessage.Type) string {
	return strings.ToLower(name) + " " + typeName(typ)
}

func (f *fakeDNS) add(rrs ...dnsmessage.Resource) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, rr := range rrs {
		k := key(rr.Header.Name.String(), rr.Header.Type)
		f.answers[k] = append(f.answers[k], rr)
	}
}

// alias adds a CNAME for owner whose records are served for A queries.
func (f *fakeDNS) alias(owner, target string, ttl uint32, rrs ...dnsmessage.Resource) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := key(owner, dnsmessage.TypeA)
	f.answers[k] = append(f.answers[k], dnsmessage.Resource{
		Header: dnsmessage.ResourceHeader{Name: name(owner), Type: dnsmessage.TypeCNAME, Class: dnsmessage.ClassINET, TTL: ttl},
		Body:   &dnsmessage.CNAMEResource{CNAME: name(target)},
	})
	f.answers[k] = append(f.answers[k], rrs...)
}

func (f *fakeDNS) set(fn func(f *fakeDNS)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeDNS) count(name string, typ dnsmessage.Type) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queries[key(name, typ)]
}

func (f *fakeDNS) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.queries {
		n += c
	}
	return n
}

func (f *fakeDNS) serveUDP() {
	defer f.wg.Done()
	buf := make([]byte, 4096)
	for {
		n, from, err := f.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		for _, out := range f.answer(buf[:n], false) {
			_, _ = f.udp.WriteToUDPAddrPort(out, from)
		}
	}
}

func (f *fakeDNS) serveTCP() {
	defer f.wg.Done()
	for {
		c, err := f.tcp.Accept()
		if err != nil {
			return
		}
		func() {
			defer c.Close()
			var l [2]byte
			if _, err := io.ReadFull(c, l[:]); err != nil {
				return
			}
			q := make([]byte, binary.BigEndian.Uint16(l[:]))
			if _, err := io.ReadFull(c, q); err != nil {
				return
			}
			for _, out := range f.answer(q, true) {
				_, _ = c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(out))), out...))
			}
		}()
	}
}

func (f *fakeDNS) answer(query []byte, tcp bool) [][]byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil
	}
	q, err := p.Question()
	if err != nil {
		return nil
	}
	k := key(q.Name.String(), q.Type)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.queries[k]++
	if tcp {
		f.tcpHits++
	}
	if raw := f.raw[k]; raw != nil && !tcp {
		return raw(query)
	}
	res := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired},
		Questions: []dnsmessage.Question{q},
	}
	switch rc, ok := f.rcode[k]; {
	case ok:
		res.Header.RCode = rc
	case f.truncate[k] && !tcp:
		res.Header.Truncated = true
	default:
		res.Answers = f.answers[k]
	}
	negative := res.Header.RCode == dnsmessage.RCodeSuccess || res.Header.RCode == dnsmessage.RCodeNameError
	if negative && len(res.Answers) == 0 && !res.Header.Truncated && f.soaMin > 0 {
		res.Authorities = []dnsmessage.Resource{{
			Header: dnsmessage.ResourceHeader{Name: name("test."), Type: dnsmessage.TypeSOA, Class: dnsmessage.ClassINET, TTL: 3600},
			Body: &dnsmessage.SOAResource{NS: name("ns.test."), MBox: name("hostmaster.test."),
				Serial: 1, Refresh: 3600, Retry: 600, Expire: 86400, MinTTL: f.soaMin},
		}}
	}
	out, err := res.Pack()
	if err != nil {
		panic(errors.Join(errors.New("fake dns: pack"), err))
	}
	return [][]byte{out}
}

func name(s string) dnsmessage.Name { return dnsmessage.MustNewName(s) }

func hdr(owner string, typ dnsmessage.Type, ttl uint32) dnsmessage.ResourceHeader {
	return dnsmessage.ResourceHeader{Name: name(owner), Type: typ, Class: dnsmessage.ClassINET, TTL: ttl}
}

func aRR(owner, ip string, ttl uint32) dnsmessage.Resource {
	return dnsmessage.Resource{Header: hdr(owner, dnsmessage.TypeA, ttl), Body: &dnsmessage.AResource{A: netip.MustParseAddr(ip).As4()}}
}

func aaaaRR(owner, ip string, ttl uint32) dnsmessage.Resource {
	return dnsmessage.Resource{Header: hdr(owner, dnsmessage.TypeAAAA, ttl), Body: &dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(ip).As16()}}
}

func srvRR(owner string, priority, weight, port uint16, target string, ttl uint32) dnsmessage.Resource {
	return dnsmessage.Resource{Header: hdr(owner, dnsmessage.TypeSRV, ttl), Body: &dnsmessage.SRVResource{
		Priority: priority, Weight: weight, Port: port, Target: name(target)}}
}

func naptrRR(owner string, n naptr, ttl uint32) dnsmessage.Resource {
	return dnsmessage.Resource{Header: hdr(owner, typeNAPTR, ttl), Body: &dnsmessage.UnknownResource{Type: typeNAPTR, Data: packNAPTR(n)}}
}

// packNAPTR encodes n as RFC 3403 section 4.1 RDATA.
func packNAPTR(n naptr) []byte {
	b := binary.BigEndian.AppendUint16(nil, n.order)
	b = binary.BigEndian.AppendUint16(b, n.preference)
	for _, s := range []string{n.flags, n.services, n.regexp} {
		b = append(b, byte(len(s)))
		b = append(b, s...)
	}
	if n.replacement != "." {
		for label := range strings.SplitSeq(strings.TrimSuffix(n.replacement, "."), ".") {
			b = append(b, byte(len(label)))
			b = append(b, label...)
		}
	}
	return append(b, 0)
}
