package sipdns

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseNAPTR(t *testing.T) {
	in := naptr{order: 10, preference: 20, flags: "S", services: "SIP+D2U", replacement: "_sip._udp.pbx.test."}
	got, err := parseNAPTR(packNAPTR(in))
	if err != nil {
		t.Fatal(err)
	}
	if got != in {
		t.Errorf("got %+v, want %+v", got, in)
	}
}

func TestParseNAPTRRejectsMalformed(t *testing.T) {
	good := packNAPTR(naptr{order: 1, preference: 2, flags: "s", services: "SIP+D2T", replacement: "a.test."})
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "short record"},
		{"no strings", good[:4], "short record"},
		{"string past the end", append(good[:4:4], 1, 's', 9, 'S'), "past the end"},
		{"no replacement", good[:4+2+8+1], "replacement"},
		{"cut in a label", good[:len(good)-3], "label past the end"},
		{"compression pointer", append(bytes.Clone(good[:len(good)-8]), 0xc0, 0x0c), "compressed"},
		{"trailing bytes", append(bytes.Clone(good), 0), "trailing bytes"},
		{"dot in a label", append(bytes.Clone(good[:4+2+8+1]), 3, 'a', '.', 'b', 0), "unusable byte"},
		{"name too long", append(append(bytes.Clone(good[:4+2+8+1]), bytes.Repeat(append([]byte{63}, bytes.Repeat([]byte{'a'}, 63)...), 4)...), 0), "too long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseNAPTR(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "sipdns: naptr: ") {
				t.Errorf("err %v, want one saying %q", err, tc.want)
			}
		})
	}
}

// FuzzParseNAPTR: any RDATA gives a record or an error, never a panic, and
// a record packs back to the same bytes.
func FuzzParseNAPTR(f *testing.F) {
	f.Add(packNAPTR(naptr{order: 10, preference: 20, flags: "S", services: "SIP+D2U", replacement: "_sip._udp.pbx.test."}))
	f.Add(packNAPTR(naptr{order: 1, preference: 1, flags: "u", services: "E2U+sip", regexp: "!^.*$!sip:x@y!", replacement: "."}))
	f.Add([]byte{0, 1, 0, 2, 0, 0, 0, 0xc0, 0x0c})
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := parseNAPTR(data)
		if err != nil {
			return
		}
		if again := packNAPTR(n); !bytes.Equal(again, data) {
			t.Errorf("%x parsed as %+v packs to %x", data, n, again)
		}
	})
}
