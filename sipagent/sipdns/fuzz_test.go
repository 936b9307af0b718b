package sipdns

import (
	"encoding/binary"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// fuzzTypes are the record types the resolver asks for.
var fuzzTypes = []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeSRV, typeNAPTR}

// fuzzAnswer builds a response to a question for pbx.test. of typ with
// the given answer records.
func fuzzAnswer(f testing.TB, typ dnsmessage.Type, soa bool, rrs ...dnsmessage.Resource) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: 0x1234, Response: true})
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(dnsmessage.Question{Name: name("pbx.test."), Type: typ, Class: dnsmessage.ClassINET})
	_ = b.StartAnswers()
	for _, rr := range rrs {
		var err error
		switch body := rr.Body.(type) {
		case *dnsmessage.AResource:
			err = b.AResource(rr.Header, *body)
		case *dnsmessage.AAAAResource:
			err = b.AAAAResource(rr.Header, *body)
		case *dnsmessage.SRVResource:
			err = b.SRVResource(rr.Header, *body)
		case *dnsmessage.CNAMEResource:
			err = b.CNAMEResource(rr.Header, *body)
		case *dnsmessage.UnknownResource:
			err = b.UnknownResource(rr.Header, *body)
		}
		if err != nil {
			f.Fatal(err)
		}
	}
	if soa {
		_ = b.StartAuthorities()
		if err := b.SOAResource(hdr("test.", dnsmessage.TypeSOA, 600), dnsmessage.SOAResource{
			NS: name("ns.test."), MBox: name("hostmaster.test."), Serial: 1, Refresh: 1, Retry: 1, Expire: 1, MinTTL: 30}); err != nil {
			f.Fatal(err)
		}
	}
	out, err := b.Finish()
	if err != nil {
		f.Fatal(err)
	}
	return out
}

// FuzzParseAnswer feeds a DNS message to the resolver's answer checks as
// the reply to a question for pbx.test. of one of the types it asks
// (typ selects; the message's own ID is taken as the query's, so that
// the fuzzer need not guess it). Invariants: no panic; an accepted answer
// holds only records of the type asked, IPv4 addresses for A, and a TTL
// between 0 and 2^31-1 seconds, a negative one no longer than the cap.
func FuzzParseAnswer(f *testing.F) {
	f.Add(uint8(0), fuzzAnswer(f, dnsmessage.TypeA, false, aRR("pbx.test.", "192.0.2.1", 60), aRR("pbx.test.", "192.0.2.2", 30)))
	f.Add(uint8(1), fuzzAnswer(f, dnsmessage.TypeAAAA, false, dnsmessage.Resource{Header: hdr("pbx.test.", dnsmessage.TypeCNAME, 60),
		Body: &dnsmessage.CNAMEResource{CNAME: name("sip.test.")}}, aaaaRR("sip.test.", "2001:db8::1", 60)))
	f.Add(uint8(2), fuzzAnswer(f, dnsmessage.TypeSRV, false, srvRR("pbx.test.", 10, 60, 5060, "sip1.test.", 60)))
	f.Add(uint8(3), fuzzAnswer(f, typeNAPTR, false, naptrRR("pbx.test.", naptr{order: 10, preference: 10, flags: "S", services: "SIP+D2U", replacement: "_sip._udp.pbx.test."}, 60)))
	f.Add(uint8(0), fuzzAnswer(f, dnsmessage.TypeA, true))
	r := New(Config{Servers: nil})
	f.Fuzz(func(t *testing.T, typ uint8, msg []byte) {
		if len(msg) < 2 {
			return
		}
		q := dnsmessage.Question{Name: name("pbx.test."), Type: fuzzTypes[int(typ)%len(fuzzTypes)], Class: dnsmessage.ClassINET}
		p, _, err := checkAnswer(msg, binary.BigEndian.Uint16(msg), q)
		if err != nil {
			return
		}
		ans, ttl, err := r.parseAnswer(&p, "pbx.test.", q.Type)
		if err != nil {
			return
		}
		if ttl < 0 || ttl > (1<<31-1)*time.Second {
			t.Fatalf("TTL %v", ttl)
		}
		n := len(ans.addrs) + len(ans.srvs) + len(ans.naptrs)
		if n == 0 && ttl > max(maxNegativeTTL, r.cfg.NegativeTTL) {
			t.Fatalf("negative answer kept for %v", ttl)
		}
		switch q.Type {
		case dnsmessage.TypeA:
			for _, a := range ans.addrs {
				if !a.Is4() {
					t.Fatalf("A record %v", a)
				}
			}
			if n != len(ans.addrs) {
				t.Fatalf("A answer %+v", ans)
			}
		case dnsmessage.TypeAAAA:
			if n != len(ans.addrs) {
				t.Fatalf("AAAA answer %+v", ans)
			}
		case dnsmessage.TypeSRV:
			if n != len(ans.srvs) {
				t.Fatalf("SRV answer %+v", ans)
			}
		case typeNAPTR:
			if n != len(ans.naptrs) {
				t.Fatalf("NAPTR answer %+v", ans)
			}
		}
	})
}

// FuzzParseResolvConf: any resolv.conf gives at most three servers on
// port 53 and a timeout and attempts within glibc's limits.
func FuzzParseResolvConf(f *testing.F) {
	f.Add([]byte("nameserver 192.0.2.53\nnameserver 2001:db8::53\noptions timeout:2 attempts:3 rotate\n"))
	f.Add([]byte("# comment\n;nameserver 1.1.1.1\nsearch test\noptions timeout:0 attempts:99\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rc := parseResolvConf(data)
		if len(rc.servers) > maxServers {
			t.Fatalf("%d servers", len(rc.servers))
		}
		for _, s := range rc.servers {
			if s.Port() != 53 || !s.Addr().IsValid() || s.Addr().Is4In6() {
				t.Fatalf("server %v", s)
			}
		}
		if rc.timeout <= 0 || rc.timeout > maxTimeout || rc.attempts < 1 || rc.attempts > maxAttempts {
			t.Fatalf("timeout %v, attempts %d", rc.timeout, rc.attempts)
		}
	})
}
