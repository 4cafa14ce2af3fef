package server

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// The resource string is part of every hashed event: the scalar fast path
// must render exactly what json.Marshal does.
func TestResourceValueMatchesJSON(t *testing.T) {
	for _, v := range []any{true, false, 0, 1, -1, 42, math.MaxInt, math.MinInt, int64(0), int64(-7), int64(math.MaxInt64), int64(math.MinInt64)} {
		var b strings.Builder
		writeValue(&b, v)
		want, _ := json.Marshal(v)
		if b.String() != string(want) {
			t.Errorf("%T %v: got %q, json.Marshal %q", v, v, b.String(), want)
		}
	}
	// Everything else still goes through json.Marshal, escaping included.
	got := resourceString(map[string]any{"b": []string{"<x>", "&"}, "a": "plain<>", "n": 1.5, "t": true, "i": 3})
	if want := `a=plain<>,b=["\u003cx\u003e","\u0026"],i=3,n=1.5,t=true`; got != want {
		t.Fatalf("resourceString = %s, want %s", got, want)
	}
}
