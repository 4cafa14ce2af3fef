package audit_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"warden/internal/audit"
)

// FuzzVerify: any change to a valid chain's stored fields is caught, and
// the verifier never panics on hostile rows.
func FuzzVerify(f *testing.F) {
	f.Add(3, uint8(0), "deny", int64(0))
	f.Add(7, uint8(5), "", int64(1))
	f.Add(1, uint8(19), "x\x00y", int64(-1))
	f.Fuzz(func(t *testing.T, at int, field uint8, val string, delta int64) {
		evs := make([]audit.Event, 8)
		for i := range evs {
			evs[i] = decided(i)
			evs[i].Time = time.Unix(1700000000+int64(i), 0).UTC()
			evs[i].Detail = json.RawMessage(`{"i":1}`)
		}
		audit.Chain(evs)
		if p := audit.VerifyEvents(evs, nil); p != nil {
			t.Fatalf("valid chain rejected: %v", p)
		}
		if at < 0 {
			at = -at
		}
		e := &evs[at%len(evs)]
		before := *e
		before.Detail = append(json.RawMessage(nil), e.Detail...)
		switch field % 10 {
		case 0:
			e.Reason = val
		case 1:
			e.Decision = val
		case 2:
			e.Identity = val
		case 3:
			e.Seq += delta
		case 4:
			e.Time = e.Time.Add(time.Duration(delta) * time.Microsecond)
		case 5:
			e.Detail = json.RawMessage(val)
		case 6:
			e.Outcome.Status += int(delta)
		case 7:
			e.PrevHash[delta&31] ^= byte(len(val) | 1)
		case 8:
			e.ActorRoles = []string{val}
		case 9:
			e.V += int(delta)
		}
		changed := e.Reason != before.Reason || e.Decision != before.Decision || e.Identity != before.Identity ||
			e.Seq != before.Seq || !e.Time.Equal(before.Time) || !bytes.Equal(e.Detail, before.Detail) ||
			e.Outcome.Status != before.Outcome.Status || e.PrevHash != before.PrevHash || e.V != before.V ||
			audit.JoinRoles(e.ActorRoles) != audit.JoinRoles(before.ActorRoles)
		p := audit.VerifyEvents(evs, nil)
		if changed && p == nil {
			t.Fatalf("change to event %d (field %d) not detected", e.Seq, field%10)
		}
		if !changed && p != nil {
			t.Fatalf("unchanged chain rejected: %v", p)
		}
	})
}

// FuzzReadCheckpoints: the parser never panics, and what it accepts
// round-trips.
func FuzzReadCheckpoints(f *testing.F) {
	f.Add([]byte(`{"v":1,"seq":3,"hash":"` + string(bytes.Repeat([]byte("ab"), 32)) + `","time":"2026-01-01T00:00:00Z","key_id":"sign:audit.1","public_key":"AAAA","sig":"AAAA"}` + "\n"))
	f.Add([]byte("{\"v\":1,\"seq\":1}\n{\"v\":1"))
	f.Add([]byte("\n\n not json \n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cps, _, err := audit.ReadCheckpoints(bytes.NewReader(data))
		if err != nil {
			return
		}
		var buf bytes.Buffer
		for _, c := range cps {
			if c.Seq < 1 {
				t.Fatalf("accepted seq %d", c.Seq)
			}
			b, err := audit.MarshalCheckpoint(c)
			if err != nil {
				t.Fatal(err)
			}
			buf.Write(append(b, '\n'))
		}
		again, torn, err := audit.ReadCheckpoints(&buf)
		if err != nil || torn || len(again) != len(cps) {
			t.Fatalf("round trip: %v %v %d/%d", err, torn, len(again), len(cps))
		}
	})
}
