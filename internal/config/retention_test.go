package config

import (
	"strings"
	"testing"
	"time"
)

func TestAuditRetention(t *testing.T) {
	c := Defaults()
	if err := c.LoadFile(write(t, "audit_retention:\n  keep: 2160h\n  dir: /var/lib/warden/archive\n  every: 30m\n  max_events: 50000\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if r := c.AuditRetention; r.Keep != 2160*time.Hour || r.Dir != "/var/lib/warden/archive" || r.Every != 30*time.Minute || r.MaxEvents != 50000 {
		t.Fatalf("%+v", r)
	}
	for _, tc := range []struct {
		r    AuditRetention
		want string
	}{
		{AuditRetention{Keep: -time.Hour}, "keep: must not be negative"},
		{AuditRetention{Dir: "/x"}, "set keep"},
		{AuditRetention{Keep: time.Minute}, "keep: at least 1h"},
		{AuditRetention{Keep: time.Hour, Every: time.Second}, "every: at least 1m"},
		{AuditRetention{Keep: time.Hour, MaxEvents: -1}, "max_events"},
	} {
		c := Defaults()
		c.AuditRetention = tc.r
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want %q", tc.r, err, tc.want)
		}
	}
}
