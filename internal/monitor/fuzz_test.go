package monitor

import (
	"testing"
	"time"
	"unicode/utf8"

	"warden/internal/gate"
)

// FuzzObserve feeds outside input (client address, user agent, key id,
// codes, sizes, times) to a learned engine: it must not panic, the sets
// stay within their caps, and every explanation can become an identity's
// suspension reason (valid UTF-8, printable once control characters are
// replaced).
func FuzzObserve(f *testing.F) {
	f.Add("198.51.100.7", "python-requests/2.31", "key_a", "crm:contacts.get", "allow", int64(100), int64(0))
	f.Add("2001:db8::1", "Mozilla/5.0 (X11) Gecko/20100101 Firefox/120.0", "", "x:y", "deny", int64(80<<20), int64(3600))
	f.Add("not an ip", "\x00\xff\xfe", "key_\n", "", "require_approval", int64(-5), int64(-7200))
	f.Add("::ffff:10.0.0.1", "curl/8 (\u202e)", "key_b", "s3:objects.delete", "error", int64(1<<40), int64(1<<40))
	f.Fuzz(func(t *testing.T, ip, ua, key, action, decision string, size, offset int64) {
		tu := testTuning()
		tu.LearningCalls, tu.LearningPeriod, tu.HoursAfter = 3, 0, time.Hour
		e := newEngine(tu, 10)
		base := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
		for i := range 5 {
			o := gate.Observation{Time: base.Add(time.Duration(i) * time.Minute), IdentityID: "nhi_f", KeyID: "key_a", Action: "crm:contacts.get",
				Decision: "allow", ClientIP: "198.51.100.7", UserAgent: "python-requests/2.31"}
			e.observe(&o, who{Name: "fuzz"})
		}
		at := base.Add(time.Duration(offset % int64(400*24*time.Hour)))
		for i := range 40 {
			o := gate.Observation{Time: at.Add(time.Duration(i) * time.Second), IdentityID: "nhi_f", KeyID: key, Action: action, Class: "write",
				Decision: decision, Code: "denied", ClientIP: ip, UserAgent: ua, BytesOut: size, Completed: i%4 == 3}
			for _, fnd := range e.observe(&o, who{Name: "fuzz"}) {
				r := clip(printableOnly(fnd.Explanation), 1024)
				if !utf8.ValidString(fnd.Explanation) || !utf8.ValidString(r) || fnd.Severity.Rank() == 0 {
					t.Fatalf("finding %q", fnd.Explanation)
				}
				for _, c := range r {
					if c < 0x20 || c == 0x7f {
						t.Fatalf("control character in reason %q", r)
					}
				}
			}
		}
		b := e.ids["nhi_f"]
		if len(b.Ops) > maxOps || len(b.Networks) > maxNetworks || len(b.Agents) > maxAgents || len(e.keys[key]) > maxKeyNets {
			t.Fatal("caps exceeded")
		}
	})
}
