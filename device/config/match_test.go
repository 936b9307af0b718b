package config

import "testing"

func TestMatchURI(t *testing.T) {
	tests := []struct {
		pattern, uri string
		want         bool
	}{
		{"sip:*@pbx.example.com", "sip:201@pbx.example.com", true},
		{"sip:*@pbx.example.com", "sip:201@PBX.Example.COM", true},
		{"SIP:*@pbx.example.com", "sip:201@pbx.example.com", true},
		{"sip:*@pbx.example.com", "Sip:201@pbx.example.com", true},
		{"sip:*@pbx.example.com", "sip:201@pbx.example.com:5060", true},
		{"sip:*@pbx.example.com", "sip:201@pbx.example.com;transport=tcp", true},
		{"sip:*@pbx.example.com", `"Flat 1" <sip:201@pbx.example.com>;tag=abc`, true},
		{"sip:*@pbx.example.com", "<sip:201@pbx.example.com?subject=x>", true},
		{"sip:*@pbx.example.com", "sip:pbx.example.com", true}, // '*' matches an empty user
		{"sip:*@pbx.example.com", "sip:201@evil.example.com", false},
		{"sip:*@pbx.example.com", "sip:201@pbx.example.com.evil.net", false},
		{"sip:*@pbx.example.com", "sip:201@x.pbx.example.com", false},
		{"sip:*@pbx.example.com", "sips:201@pbx.example.com", false},
		{"sip:*@pbx.example.com", "tel:+4930123", false},
		{"sip:*@pbx.example.com", "sip:evil@x.com@pbx.example.com", false},
		{"sip:*@pbx.example.com", "", false},
		{"sip:*@*.example.com", "sip:201@pbx.example.com", true},
		{"sip:*@*.example.com", "sip:201@example.com", false},
		{"sip:*@*.example.com", "sip:201@example.com.evil.net", false},
		{"sip:2*@pbx", "sip:201@pbx", true},
		{"sip:2*@pbx", "sip:301@pbx", false},
		{"sip:*1@pbx", "sip:201@pbx", true},
		{"sip:2*1@pbx", "sip:21@pbx", true},
		{"sip:2*1@pbx", "sip:2@pbx", false},
		{"sip:alice@pbx", "sip:Alice@pbx", false}, // user part is case-sensitive
		{"sip:alice@pbx", "sip:alice@pbx", true},
		{"sip:*@127.0.0.1", "sip:flat@127.0.0.1:5070", true},
		{"sip:*@127.0.0.1", "sip:flat@127.0.0.10", false},
		{"sip:*@127.0.0.1:5070", "sip:flat@127.0.0.1:5070", true},
		{"sip:*@127.0.0.1:5070", "sip:flat@127.0.0.1:5071", false},
		{"sip:*@127.0.0.1:5060", "sip:flat@127.0.0.1", true},   // default port
		{"sips:*@127.0.0.1:5061", "sips:flat@127.0.0.1", true}, // default port for sips
		{"sip:*@[::1]", "sip:flat@[::1]:5070", true},
		{"sip:*@[::1]", "sip:flat@[::2]", false},
		{"sip:*@[::1]:5070", "sip:flat@[::1]:5070", true},
		{"sip:*", "sip:201@pbx", false}, // '*' does not cross into the host
		{"sip:*@*", "sip:201@pbx:5070", true},
		{"not a pattern", "sip:201@pbx", false},
	}
	for _, tt := range tests {
		if got := MatchURI(tt.pattern, tt.uri); got != tt.want {
			t.Errorf("MatchURI(%q, %q) = %v, want %v", tt.pattern, tt.uri, got, tt.want)
		}
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pattern, s string
		want       bool
	}{
		{"", "", true},
		{"", "a", false},
		{"*", "", true},
		{"*", "abc", true},
		{"a*", "a", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"*b*", "abc", true},
		{"**", "x", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "acb", false},
		{"abc", "abd", false},
	}
	for _, tt := range tests {
		if got := glob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func BenchmarkMatchURI(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		MatchURI("sip:*@*.example.com", `"Flat 1" <sip:201@pbx.example.com:5060>;tag=abc`)
	}
}
