package server

import (
	"runtime/debug"
	"testing"
)

// TuneGC sets GCPercent, unless the operator chose with GOGC.
func TestTuneGC(t *testing.T) {
	orig := debug.SetGCPercent(100)
	defer debug.SetGCPercent(orig)
	if got := TuneGC(func(string) string { return "" }); got != "400" {
		t.Fatalf("TuneGC = %q, want 400", got)
	}
	if p := debug.SetGCPercent(100); p != GCPercent {
		t.Fatalf("GC percent %d, want %d", p, GCPercent)
	}
	if got := TuneGC(func(k string) string {
		if k == "GOGC" {
			return "150"
		}
		return ""
	}); got != "150" {
		t.Fatalf("TuneGC with GOGC=150 = %q", got)
	}
	if p := debug.SetGCPercent(100); p != 100 {
		t.Fatalf("GOGC set: TuneGC changed the percent to %d", p)
	}
}
