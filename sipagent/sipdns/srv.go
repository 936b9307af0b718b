package sipdns

import (
	"cmp"
	"slices"
)

// srv is one SRV record (RFC 2782).
type srv struct {
	priority, weight, port uint16
	target                 string // absolute, with the trailing dot
}

// orderSRV returns recs in the order to try them (RFC 2782, "Usage
// rules"): lowest priority first; within one priority, records are drawn
// one by one at random with chances proportional to their weight, where
// weight-0 records come first in the running sum and so are rarely drawn
// before the others. randN returns a uniform int in [0, n).
func orderSRV(recs []srv, randN func(int) int) []srv {
	sorted := slices.Clone(recs)
	slices.SortStableFunc(sorted, func(x, y srv) int {
		if c := cmp.Compare(x.priority, y.priority); c != 0 {
			return c
		}
		// Weight 0 first within a priority, as the RFC's selection asks.
		return cmp.Compare(min(x.weight, 1), min(y.weight, 1))
	})
	out := make([]srv, 0, len(sorted))
	for len(sorted) > 0 {
		n := 1
		for n < len(sorted) && sorted[n].priority == sorted[0].priority {
			n++
		}
		group := sorted[:n]
		for len(group) > 0 {
			sum := 0
			for _, r := range group {
				sum += int(r.weight)
			}
			pick := randN(sum + 1) // uniform in [0, sum], inclusive
			i, run := 0, 0
			for ; i < len(group)-1; i++ {
				run += int(group[i].weight)
				if run >= pick {
					break
				}
			}
			out = append(out, group[i])
			group = slices.Delete(group, i, i+1)
		}
		sorted = sorted[n:]
	}
	return out
}
