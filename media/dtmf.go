package media

import "fmt"

// TelephoneEvent is the payload of an RFC 4733 telephone-event packet
// (RFC 4733 §2.3).
type TelephoneEvent struct {
	Event    uint8
	End      bool
	Volume   uint8  // power level in -dBm0, 0..63
	Duration uint16 // in RTP timestamp units, from the event's timestamp
}

// ParseTelephoneEvent decodes the first event of a telephone-event payload
// (RFC 4733 §2.3).
func ParseTelephoneEvent(payload []byte) (TelephoneEvent, error) {
	if len(payload) < 4 {
		return TelephoneEvent{}, fmt.Errorf("media: telephone-event payload of %d bytes, want 4", len(payload))
	}
	return TelephoneEvent{
		Event:    payload[0],
		End:      payload[1]&0x80 != 0,
		Volume:   payload[1] & 0x3f,
		Duration: uint16(payload[2])<<8 | uint16(payload[3]),
	}, nil
}

// EventDigit maps a DTMF event code to its key (RFC 4733 §3.2, table 3):
// 0-9, then *, #, A-D. Other events are not keys.
func EventDigit(event uint8) (rune, bool) {
	switch {
	case event <= 9:
		return rune('0' + event), true
	case event == 10:
		return '*', true
	case event == 11:
		return '#', true
	case event <= 15:
		return rune('A' + event - 12), true
	}
	return 0, false
}

// dtmfReceiver turns a stream of telephone-event packets into one report
// per key press. Every packet of one event carries the event's start
// timestamp, and its end packet is sent three times (RFC 4733 §2.5.1.4),
// so an event is reported the first time its timestamp is seen, whichever
// of its packets arrives first.
type dtmfReceiver struct {
	have  bool
	ssrc  uint32
	ts    uint32 // timestamp of the last reported event
	event uint8
	ended bool
}

// packet handles one telephone-event packet. It reports a key when the
// packet belongs to an event not reported before.
func (d *dtmfReceiver) packet(ssrc, ts uint32, marker bool, payload []byte) (rune, bool, error) {
	ev, err := ParseTelephoneEvent(payload)
	if err != nil {
		return 0, false, err
	}
	if d.have && ssrc == d.ssrc {
		delta := int32(ts - d.ts)
		if delta < 0 {
			return 0, false, nil // a straggler from an event already reported
		}
		if delta == 0 {
			d.ended = d.ended || ev.End
			return 0, false, nil
		}
		// A long event continues in a new segment with a new timestamp
		// and no marker (RFC 4733 §2.5.1.5): the same key, not a new press.
		if !marker && !d.ended && ev.Event == d.event {
			d.ts = ts
			d.ended = ev.End
			return 0, false, nil
		}
	}
	d.have, d.ssrc, d.ts, d.event, d.ended = true, ssrc, ts, ev.Event, ev.End
	r, ok := EventDigit(ev.Event)
	return r, ok, nil
}
