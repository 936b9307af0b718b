package config

import (
	"fmt"
	"strings"
	"time"
)

// Route returns the targets and ring mode (parallel or sequential) of b at
// t, read in t's location: those of the first schedule entry that contains
// t, otherwise b.Call and b.Ring.
func (b *Button) Route(t time.Time) (call []string, ring string) {
	for i := range b.Schedule {
		if e := &b.Schedule[i]; e.contains(t) {
			ring = e.Ring
			if ring == "" {
				ring = b.Ring
			}
			return e.Call, ring
		}
	}
	return b.Call, b.Ring
}

// contains reports whether t falls in the entry's window. An entry that
// does not parse contains nothing; Parse never lets one through.
func (e *Schedule) contains(t time.Time) bool {
	days, err := parseDays(e.Days)
	if err != nil {
		return false
	}
	from, to, err := parseWindow(e.From, e.To)
	if err != nil {
		return false
	}
	today := t.Weekday()
	yesterday := (today + 6) % 7
	m := t.Hour()*60 + t.Minute()
	switch {
	case from == to: // the whole day
		return days[today]
	case from < to:
		return days[today] && m >= from && m < to
	default: // spans midnight: the evening of a listed day, or the morning after it
		return days[today] && m >= from || days[yesterday] && m < to
	}
}

var weekdays = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// parseDays turns names such as mon or ranges such as mon-fri (fri-mon
// wraps over the weekend) into a set; an empty list means every day.
func parseDays(names []string) ([7]bool, error) {
	var set [7]bool
	if len(names) == 0 {
		for i := range set {
			set[i] = true
		}
		return set, nil
	}
	for _, n := range names {
		first, last, isRange := strings.Cut(strings.ToLower(n), "-")
		if !isRange {
			last = first
		}
		a, okFirst := weekdays[first]
		b, okLast := weekdays[last]
		if !okFirst || !okLast {
			return set, fmt.Errorf("%q is not a day (mon, tue, wed, thu, fri, sat, sun) or a range such as mon-fri", n)
		}
		for d := a; ; d = (d + 1) % 7 {
			set[d] = true
			if d == b {
				break
			}
		}
	}
	return set, nil
}

// parseWindow returns the minutes of the day of from and to, both 0 when
// both are empty (the whole day).
func parseWindow(from, to string) (int, int, error) {
	switch {
	case from == "" && to == "":
		return 0, 0, nil
	case from == "" || to == "":
		return 0, 0, fmt.Errorf("from and to go together; leave both out for the whole day")
	}
	f, err := parseClock(from)
	if err != nil {
		return 0, 0, err
	}
	t, err := parseClock(to)
	if err != nil {
		return 0, 0, err
	}
	if f == t {
		return 0, 0, fmt.Errorf("from and to are both %s; leave both out for the whole day", from)
	}
	return f, t, nil
}

// parseClock reads HH:MM, 00:00 to 23:59, as minutes after midnight.
func parseClock(s string) (int, error) {
	t, err := time.Parse("15:04", s)
	if err != nil || len(s) != 5 {
		return 0, fmt.Errorf("%q is not a time of day such as 08:00 or 18:30", s)
	}
	return t.Hour()*60 + t.Minute(), nil
}
