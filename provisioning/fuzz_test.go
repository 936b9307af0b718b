package provisioning

import (
	"testing"
)

func FuzzLoadBundle(f *testing.F) {
	for _, b := range []Bundle{bundle("sip: {user: a}\n", "calls: {}\n"), bundle("", ""), bundle("\xff\x00", "")} {
		data, err := encodeBundle(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(`{"format":1,"station":{"url":"u","body":"x","sha256":"00"}}`))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := decodeBundle(data)
		if err != nil {
			return
		}
		// What the decoder accepts the encoder writes back the same.
		again, err := encodeBundle(b)
		if err != nil {
			t.Fatalf("accepted bundle does not encode: %v", err)
		}
		b2, err := decodeBundle(again)
		if err != nil || !equalBundle(b, b2) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
