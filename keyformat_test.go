package warden

import (
	"strings"
	"testing"
)

func TestKeyRoundTrip(t *testing.T) {
	for _, p := range []string{KeyPrefixAgent, KeyPrefixAdmin} {
		k := NewKey(p)
		got, ok := ParseKey(k)
		if !ok || got != p {
			t.Fatalf("ParseKey(%q) = %q, %v", k, got, ok)
		}
		// A single changed character is caught by the checksum.
		i := len(p) + 3
		c := byte('a')
		if k[i] == 'a' {
			c = 'b'
		}
		typo := k[:i] + string(c) + k[i+1:]
		if _, ok := ParseKey(typo); ok {
			t.Fatalf("typo %q accepted", typo)
		}
	}
	for _, bad := range []string{"", "wdn_ak_", "wdn_ak_" + strings.Repeat("a", 38), "ghp_x", "wdn_ak_" + strings.Repeat("!", 38)} {
		if _, ok := ParseKey(bad); ok {
			t.Errorf("ParseKey(%q) accepted", bad)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	f.Add(NewKey(KeyPrefixAgent))
	f.Add("wdn_at_")
	f.Fuzz(func(t *testing.T, s string) {
		p, ok := ParseKey(s)
		if ok && !strings.HasPrefix(s, p) {
			t.Fatal("prefix mismatch")
		}
	})
}

func TestSecretRedacts(t *testing.T) {
	s := NewSecret("canary-123")
	for _, out := range []string{s.String(), s.GoString()} {
		if strings.Contains(out, "canary") {
			t.Fatal("leak")
		}
	}
	b, _ := s.MarshalJSON()
	if strings.Contains(string(b), "canary") || s.Reveal() != "canary-123" {
		t.Fatal("bad")
	}
}

func TestSecretFormatVerbs(t *testing.T) {
	s := NewSecret("canary-456")
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
		if out := sprintf(f, s); strings.Contains(out, "canary") || strings.Contains(out, "63616e617279") {
			t.Errorf("%s leaked: %s", f, out)
		}
	}
}
