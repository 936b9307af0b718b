package config

import (
	"slices"
	"testing"
	"time"
)

const scheduleDoc = `device: {timezone: Europe/Berlin}
buttons:
  - name: bell
    pin: GPIO17
    call: ["sip:night@pbx"]
    ring: sequential
    long_press: 2s
    schedule:
      - {days: [mon-fri], from: "08:00", to: "18:00", call: ["sip:reception@pbx", "sip:desk@pbx"], ring: parallel}
      - {days: [fri, sat], from: "22:00", to: "02:00", call: ["sip:party@pbx"]}
      - {days: [sun], call: ["sip:sunday@pbx"]}
`

func TestButtonRoute(t *testing.T) {
	cfg := mustParse(t, scheduleDoc)
	b := &cfg.Buttons[0]
	if b.LongPress != 2*time.Second {
		t.Errorf("long_press %v", b.LongPress)
	}
	if b.Schedule[1].Ring != "sequential" {
		t.Errorf("an entry without ring got %q, want the button's", b.Schedule[1].Ring)
	}
	berlin, err := time.LoadLocation(cfg.Device.Timezone)
	if err != nil {
		t.Fatal(err)
	}
	// 2026-01-05 is a Monday.
	at := func(day, hour, minute int) time.Time { return time.Date(2026, 1, 5+day, hour, minute, 0, 0, berlin) }
	tests := []struct {
		name string
		t    time.Time
		call string
		ring string
	}{
		{"monday morning, before the window", at(0, 7, 59), "sip:night@pbx", "sequential"},
		{"monday, from is inclusive", at(0, 8, 0), "sip:reception@pbx", "parallel"},
		{"wednesday afternoon", at(2, 17, 59), "sip:reception@pbx", "parallel"},
		{"monday, to is exclusive", at(0, 18, 0), "sip:night@pbx", "sequential"},
		{"thursday late", at(3, 23, 0), "sip:night@pbx", "sequential"},
		{"friday late: spans midnight", at(4, 22, 0), "sip:party@pbx", "sequential"},
		{"saturday early: friday's window", at(5, 1, 59), "sip:party@pbx", "sequential"},
		{"saturday 02:00: over", at(5, 2, 0), "sip:night@pbx", "sequential"},
		{"saturday late", at(5, 23, 30), "sip:party@pbx", "sequential"},
		{"sunday early: saturday's window wins over sunday's", at(6, 0, 30), "sip:party@pbx", "sequential"},
		{"sunday noon: whole day", at(6, 12, 0), "sip:sunday@pbx", "sequential"},
		{"monday early: sunday has no night window", at(7, 1, 0), "sip:night@pbx", "sequential"},
		{"friday morning: weekday window", at(4, 9, 0), "sip:reception@pbx", "parallel"},
		// 08:30 in Berlin is 07:30 in UTC: Route reads the clock of t's location.
		{"location matters", at(0, 8, 30).UTC(), "sip:night@pbx", "sequential"},
	}
	for _, tt := range tests {
		call, ring := b.Route(tt.t)
		if len(call) == 0 || call[0] != tt.call || ring != tt.ring {
			t.Errorf("%s (%s): got %q %s, want %s %s", tt.name, tt.t.Format("Mon 15:04"), call, ring, tt.call, tt.ring)
		}
	}
}

func TestParseDays(t *testing.T) {
	tests := []struct {
		in   []string
		want []time.Weekday
	}{
		{nil, []time.Weekday{0, 1, 2, 3, 4, 5, 6}},
		{[]string{"MON", "wed"}, []time.Weekday{time.Monday, time.Wednesday}},
		{[]string{"mon-fri"}, []time.Weekday{1, 2, 3, 4, 5}},
		{[]string{"fri-mon"}, []time.Weekday{0, 1, 5, 6}},
		{[]string{"sat-sat"}, []time.Weekday{6}},
	}
	for _, tt := range tests {
		set, err := parseDays(tt.in)
		if err != nil {
			t.Fatalf("%q: %v", tt.in, err)
		}
		var got []time.Weekday
		for d, on := range set {
			if on {
				got = append(got, time.Weekday(d))
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%q: got %v, want %v", tt.in, got, tt.want)
		}
	}
	for _, bad := range []string{"", "monday", "mon-", "-fri", "mon-fri-sat", "lun"} {
		if _, err := parseDays([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestScheduleValidationErrors(t *testing.T) {
	head := "buttons:\n  - name: bell\n    pin: GPIO17\n    call: [\"sip:201@pbx\"]\n"
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{"timezone", "device:\n  timezone: Mars/Olympus\n", `t.yaml:2: device.timezone: "Mars/Olympus" is not a time zone name`},
		{"warning negative", "calls:\n  max_duration_warning: -1s\n", `t.yaml:2: calls.max_duration_warning: must not be negative`},
		{"warning too long", "calls:\n  max_duration: 1m\n  max_duration_warning: 1m\n", `t.yaml:3: calls.max_duration_warning: 1m0s must be shorter than calls.max_duration 1m0s`},
		{"long_press negative", head + "    long_press: -2s\n", `t.yaml:5: buttons[0].long_press: must not be negative`},
		{"long_press within debounce", head + "    debounce: 50ms\n    long_press: 50ms\n", `t.yaml:6: buttons[0].long_press: 50ms must be longer than debounce 50ms`},
		{"schedule not a list", head + "    schedule: {days: [mon]}\n", `t.yaml:5: buttons[0].schedule: expected a list`},
		{"unknown key", head + "    schedule:\n      - {day: [mon], call: [\"sip:x@pbx\"]}\n", `t.yaml:6: buttons[0].schedule[0].day: unknown key`},
		{"bad day", head + "    schedule:\n      - days: [mon, funday]\n        call: [\"sip:x@pbx\"]\n", `t.yaml:6: buttons[0].schedule[0].days[1]: "funday" is not a day`},
		{"bad from", head + "    schedule:\n      - from: \"8am\"\n        to: \"18:00\"\n        call: [\"sip:x@pbx\"]\n", `t.yaml:6: buttons[0].schedule[0].from: "8am" is not a time of day`},
		{"bad to", head + "    schedule:\n      - from: \"08:00\"\n        to: \"24:00\"\n        call: [\"sip:x@pbx\"]\n", `t.yaml:7: buttons[0].schedule[0].to: "24:00" is not a time of day`},
		{"single-digit hour", head + "    schedule:\n      - {from: \"8:00\", to: \"18:00\", call: [\"sip:x@pbx\"]}\n", `t.yaml:6: buttons[0].schedule[0].from: "8:00" is not a time of day`},
		{"from without to", head + "    schedule:\n      - from: \"08:00\"\n        call: [\"sip:x@pbx\"]\n", `t.yaml:6: buttons[0].schedule[0].to: required with from`},
		{"to without from", head + "    schedule:\n      - to: \"08:00\"\n        call: [\"sip:x@pbx\"]\n", `t.yaml:6: buttons[0].schedule[0].from: required with to`},
		{"empty window", head + "    schedule:\n      - from: \"08:00\"\n        to: \"08:00\"\n        call: [\"sip:x@pbx\"]\n", `t.yaml:7: buttons[0].schedule[0].to: same as from`},
		{"no call", head + "    schedule:\n      - days: [sun]\n", `t.yaml:6: buttons[0].schedule[0].call: at least one sip: or sips: URI is required`},
		{"bad call", head + "    schedule:\n      - call: [\"sip:x@pbx\", \"201\"]\n", `t.yaml:6: buttons[0].schedule[0].call[1]: "201" is not a sip: or sips: URI`},
		{"bad ring", head + "    schedule:\n      - call: [\"sip:x@pbx\"]\n        ring: hunt\n", `t.yaml:7: buttons[0].schedule[0].ring: "hunt" is not one of parallel, sequential`},
		{"led role", "leds:\n  - {name: status, pin: GPIO22, role: doorbell}\n", `t.yaml:2: leds[0].role: "doorbell" is not one of status, illumination`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := parseErr(t, tt.doc)
			if !containsLine(got, tt.want) {
				t.Errorf("error\n%s\nhas no line starting with\n%s", got, tt.want)
			}
		})
	}
}

func TestScheduleRoundTripAndMask(t *testing.T) {
	cfg := mustParse(t, scheduleDoc+"leds:\n  - {name: ring, pin: GPIO23, role: illumination}\n")
	assertRoundTrip(t, cfg)
	m := cfg.Masked()
	m.Buttons[0].Schedule[0].Call[0] = "x"
	m.Buttons[0].Schedule[0].Days[0] = "x"
	if cfg.Buttons[0].Schedule[0].Call[0] != "sip:reception@pbx" || cfg.Buttons[0].Schedule[0].Days[0] != "mon-fri" {
		t.Error("Masked shares the schedule with the original")
	}
}
