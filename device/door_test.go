package device

import (
	"testing"
	"time"
)

func TestCodeLock(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	type step struct {
		keys string
		at   time.Duration
		want verdict
	}
	tests := []struct {
		name  string
		codes []doorCode
		steps []step
	}{
		{"right code", []doorCode{{"1234", "door"}}, []step{{"123", 0, pending}, {"4", 0, opened}}},
		{"trailing hash in config", []doorCode{{"1234#", "door"}}, []step{{"1234", 0, opened}}},
		{"hash ends short attempt", []doorCode{{"1234", "door"}}, []step{{"12#", 0, rejected}, {"1234", 0, opened}}},
		{"lone hash ignored", []doorCode{{"1234", "door"}}, []step{{"#", 0, pending}, {"1234", 0, opened}}},
		{"wrong code", []doorCode{{"1234", "door"}}, []step{{"9999", 0, rejected}}},
		{"short code among long", []doorCode{{"12", "gate"}, {"5555", "door"}}, []step{{"12", 0, opened}, {"5555", 0, opened}}},
		{"lockout after three", []doorCode{{"1234", "door"}}, []step{
			{"9999", 0, rejected}, {"9999", 0, rejected}, {"9999", 0, lockedOut},
			{"1234", time.Minute, whileLocked}, {"1234", 5*time.Minute + time.Second, opened},
		}},
		{"success clears count", []doorCode{{"1234", "door"}}, []step{
			{"9999", 0, rejected}, {"9999", 0, rejected}, {"1234", 0, opened}, {"9999", 0, rejected},
		}},
		{"pause discards partial", []doorCode{{"1234", "door"}}, []step{{"12", 0, pending}, {"34", 6 * time.Second, pending}, {"1234", 12 * time.Second, opened}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newCodeLock(tt.codes, 3, 5*time.Minute)
			for i, s := range tt.steps {
				var got verdict
				var relay string
				for _, k := range s.keys {
					got, relay = l.digit(k, t0.Add(s.at))
				}
				if got != s.want {
					t.Fatalf("step %d (%q): verdict %d, want %d", i, s.keys, got, s.want)
				}
				if got == opened && relay == "" {
					t.Fatalf("step %d: opened without a relay", i)
				}
			}
		})
	}
}

func TestCodeLockWithoutCodesNeverOpens(t *testing.T) {
	l := newCodeLock(nil, 3, time.Minute)
	for _, k := range "1234#" {
		if v, _ := l.digit(k, time.Time{}); v != pending {
			t.Fatalf("digit %c: verdict %d", k, v)
		}
	}
}
