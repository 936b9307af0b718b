package sipdns

import (
	"errors"
	"fmt"
	"strings"
)

// typeNAPTR is the NAPTR resource record type (RFC 3403 section 4), which
// dnsmessage does not know.
const typeNAPTR = 35

// naptr is one NAPTR record (RFC 3403 section 4.1).
type naptr struct {
	order, preference uint16
	flags, services   string
	regexp            string
	replacement       string // absolute, with the trailing dot
}

// parseNAPTR decodes the RDATA of a NAPTR record: ORDER, PREFERENCE, the
// character-strings FLAGS, SERVICES and REGEXP, and the domain-name
// REPLACEMENT, which RFC 3403 section 4.1 says is never compressed.
func parseNAPTR(rdata []byte) (naptr, error) {
	var n naptr
	if len(rdata) < 4 {
		return n, errors.New("sipdns: naptr: short record")
	}
	n.order = uint16(rdata[0])<<8 | uint16(rdata[1])
	n.preference = uint16(rdata[2])<<8 | uint16(rdata[3])
	off := 4
	for _, field := range []*string{&n.flags, &n.services, &n.regexp} {
		if off >= len(rdata) {
			return n, errors.New("sipdns: naptr: short record")
		}
		l := int(rdata[off])
		off++
		if off+l > len(rdata) {
			return n, errors.New("sipdns: naptr: character-string past the end")
		}
		*field = string(rdata[off : off+l])
		off += l
	}
	name, end, err := parseName(rdata, off)
	if err != nil {
		return n, fmt.Errorf("sipdns: naptr: replacement: %w", err)
	}
	if end != len(rdata) {
		return n, errors.New("sipdns: naptr: trailing bytes")
	}
	n.replacement = name
	return n, nil
}

// parseName reads an uncompressed domain name (RFC 1035 section 3.1) at
// off and returns it in presentation form with a trailing dot, and the
// offset after it.
func parseName(b []byte, off int) (string, int, error) {
	var sb strings.Builder
	for {
		if off >= len(b) {
			return "", 0, errors.New("name past the end")
		}
		l := int(b[off])
		off++
		switch {
		case l == 0:
			if sb.Len() == 0 {
				return ".", off, nil
			}
			return sb.String(), off, nil
		case l&0xC0 != 0:
			return "", 0, errors.New("compressed or extended label")
		case off+l > len(b):
			return "", 0, errors.New("label past the end")
		}
		// RFC 1035 section 2.3.4: names are at most 255 octets on the wire.
		if sb.Len()+l+1 > 254 {
			return "", 0, errors.New("name too long")
		}
		for _, c := range b[off : off+l] {
			if c == '.' || c == '\\' || c <= ' ' || c >= 0x7f {
				// Such names cannot be SIP hosts; refuse them rather than
				// escape them.
				return "", 0, fmt.Errorf("unusable byte %#x in label", c)
			}
		}
		sb.Write(b[off : off+l])
		sb.WriteByte('.')
		off += l
	}
}
