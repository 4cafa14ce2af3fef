package seal_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"warden/internal/seal"
)

// TestNothingPrintsKeyMaterial plants known key material and checks every
// printable form of the keyring, its records and its errors.
func TestNothingPrintsKeyMaterial(t *testing.T) {
	master := seal.GenerateMasterKey()
	dek := bytes.Repeat([]byte{0xc4, 0x11, 0x7e, 0x5a}, 8)
	seed := bytes.Repeat([]byte{0x9d, 0x23, 0xb0, 0x68}, 8)
	s := newMemStore()
	for _, r := range []struct {
		purpose  string
		material []byte
	}{{"dek", dek}, {"sign:token", seed}} {
		rec, err := seal.WrapRecord(master, r.purpose, 1, r.material, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		s.put(rec)
	}
	k := mustOpen(t, master, s)
	_, priv, err := k.Signer(ctx, "token")
	if err != nil || !bytes.Equal(priv.Seed(), seed) {
		t.Fatal("keyring did not load the planted signing key")
	}
	recs := s.snapshot()
	var records []seal.KeyRecord
	for _, r := range recs {
		records = append(records, r)
	}

	var secrets [][]byte
	secrets = append(secrets, master, dek, seed, priv)
	for _, r := range records {
		secrets = append(secrets, r.Wrapped)
	}
	forms := func(b []byte) []string {
		return []string{
			string(b), hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
			base64.StdEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
			fmt.Sprint(b[:6]), fmt.Sprintf("%#v", b[:6]), fmt.Sprintf("% x", b[:6]),
		}
	}

	var out bytes.Buffer
	for _, v := range []any{k, records, records[0], &records[0], seal.Rewrap{ID: "dek.1", Old: dek, New: seed}} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		js, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("json.Marshal(%T): %v", v, err)
		}
		out.Write(js)
	}
	h := slog.New(slog.NewJSONHandler(&out, nil))
	h.Info("keyring", "keyring", k, "record", records[0], "records", records, "rewrap", seal.Rewrap{ID: "dek.1", Old: dek, New: seed})
	slog.New(slog.NewTextHandler(&out, nil)).Info("keyring", "keyring", k, "record", records[0])

	// Errors on every failing path.
	c := mustSeal(t, k, "canary-plaintext-value", "credential:a:v1")
	_, err = k.Open(c, []byte("credential:b:v1"))
	fmt.Fprintln(&out, err)
	c[len(c)-1] ^= 1
	_, err = k.Open(c, []byte("credential:a:v1"))
	fmt.Fprintf(&out, "%v %+v\n", err, err)
	_, err = seal.Open(ctx, seal.GenerateMasterKey(), s)
	fmt.Fprintln(&out, err)
	_, err = seal.RotateMaster(ctx, s, seal.GenerateMasterKey(), seal.GenerateMasterKey())
	fmt.Fprintln(&out, err)
	if err == nil {
		t.Fatal("RotateMaster with a wrong old key succeeded")
	}

	text := out.String()
	if strings.Contains(text, "canary-plaintext-value") {
		t.Fatal("an error contains the plaintext")
	}
	for i, secret := range secrets {
		for _, f := range forms(secret) {
			if strings.Contains(text, f) {
				t.Fatalf("secret %d appears in output as %q:\n%s", i, f, text)
			}
		}
	}
	if !strings.Contains(text, "dek.1") || !strings.Contains(text, "[redacted") {
		t.Fatalf("output lost its useful metadata:\n%s", text)
	}
}
