// Package latency is the benchmark commands' shared arithmetic: percentiles
// of measured latencies and how they are printed.
package latency

import (
	"fmt"
	"slices"
	"time"
)

// Pct returns the q-th quantile (0..1) of l, nearest rank; l is not
// modified. Zero for no samples.
func Pct(l []time.Duration, q float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := slices.Clone(l)
	slices.Sort(s)
	return s[int(float64(len(s)-1)*q)]
}

// US prints d in whole microseconds ("123 µs").
func US(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}
