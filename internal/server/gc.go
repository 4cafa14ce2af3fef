package server

import (
	"runtime/debug"
	"strconv"
)

// GCPercent is the garbage collector's target that `warden serve` sets
// unless the environment sets GOGC: the heap may grow to five times what is
// live (Go's default is twice). A server's live heap is small (tens of MB),
// so at the default the collector runs many times a second under load, and
// each cycle's assists and background marking delay whichever goroutine is
// running, the audit writer included: in `go run ./bench/gateway` the
// collections were the largest part of a governed call's p99. Set GOGC (or
// GOMEMLIMIT) to choose otherwise.
const GCPercent = 400

// TuneGC applies GCPercent unless GOGC is set, and returns the setting in
// force (for the log).
func TuneGC(getenv func(string) string) string {
	if v := getenv("GOGC"); v != "" {
		return v
	}
	debug.SetGCPercent(GCPercent)
	return strconv.Itoa(GCPercent)
}
