package device

import (
	"testing"

	"intercom/media"
	"intercom/sipagent"
)

// TestMediaSRTPMapping: the call's SDES keys reach the media session as
// they were negotiated, each suite to its own; an unknown suite is an
// error, not plain RTP.
func TestMediaSRTPMapping(t *testing.T) {
	keys := sipagent.SRTPKeys{Local: [30]byte{1}, Remote: [30]byte{2}}
	for suite, want := range map[string]media.SRTPSuite{
		sipagent.SuiteAES128SHA1_80: media.AESCM128HMACSHA1_80,
		sipagent.SuiteAES128SHA1_32: media.AESCM128HMACSHA1_32,
	} {
		keys.Suite = suite
		u, err := mediaUpdate(sipagent.MediaAnswer{Codec: sipagent.Codec{Name: "PCMU"}, SRTP: keys})
		if err != nil || u.SRTP != (media.SRTP{Suite: want, Local: keys.Local, Remote: keys.Remote}) {
			t.Errorf("%s: update %v, %v", suite, u.SRTP, err)
		}
	}
	if k, err := mediaSRTP(sipagent.SRTPKeys{}); err != nil || k != (media.SRTP{}) {
		t.Errorf("no suite: %v, %v", k, err)
	}
	if _, err := mediaUpdate(sipagent.MediaAnswer{Codec: sipagent.Codec{Name: "PCMU"}, SRTP: sipagent.SRTPKeys{Suite: "F8_128_HMAC_SHA1_80"}}); err == nil {
		t.Error("an unknown suite was taken")
	}
}
