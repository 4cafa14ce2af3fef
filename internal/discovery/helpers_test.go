package discovery

import (
	"hash/crc32"
	"math/rand/v2"
	"strings"
	"testing"
)

// Test secrets are generated at run time, never written into the repository
// as literals: a committed realistic token would itself be a leak report.

var rng = rand.New(rand.NewPCG(1, 2))

const (
	alnum  = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	upper  = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	hexLow = "0123456789abcdef"
	b64    = alnum + "+/"
	urlB64 = alnum + "-_"
)

func randFrom(alpha string, n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(alpha[rng.IntN(len(alpha))])
	}
	return b.String()
}

// checksummed builds a GitHub-style token: prefix + 30 random base62 + CRC-32
// in 6 base62 digits.
func checksummed(prefix string) string {
	r := randFrom(alnum, 30)
	n := crc32.ChecksumIEEE([]byte(r))
	sum := make([]byte, 6)
	for i := 5; i >= 0; i-- {
		sum[i] = base62Digits[n%62]
		n /= 62
	}
	return prefix + r + string(sum)
}

// samples returns one realistic value per provider rule, keyed by rule id.
func samples() map[string]string {
	return map[string]string{
		"aws-access-key-id":       "AKIA" + randFrom(upper, 16),
		"github-pat":              checksummed("ghp_"),
		"github-fine-grained-pat": "github_pat_" + randFrom(alnum, 22) + "_" + randFrom(alnum, 59),
		"gitlab-token":            "glpat-" + randFrom(alnum, 20),
		"slack-token":             "xoxb-" + randFrom("0123456789", 12) + "-" + randFrom("0123456789", 13) + "-" + randFrom(alnum, 24),
		"slack-webhook":           "https://hooks.slack.com/services/T" + randFrom(upper, 8) + "/B" + randFrom(upper, 10) + "/" + randFrom(alnum, 24),
		"stripe-key":              "sk_live_" + randFrom(alnum, 24),
		"twilio-api-key":          "SK" + randFrom(hexLow, 32),
		"sendgrid-api-key":        "SG." + randFrom(urlB64, 22) + "." + randFrom(urlB64, 43),
		"openai-api-key":          "sk-proj-" + randFrom(urlB64, 64) + "T3BlbkFJ" + randFrom(urlB64, 64),
		"anthropic-api-key":       "sk-ant-api03-" + randFrom(urlB64, 93) + "AA",
		"google-api-key":          "AIza" + randFrom(urlB64, 35),
		"npm-access-token":        checksummed("npm_"),
		"azure-storage-key":       randFrom(b64, 86) + "==",
		"jwt":                     makeJWT(),
		"google-oauth-secret":     "GOCSPX-" + randFrom(urlB64, 28),
		"azure-ad-client-secret":  randFrom(alnum, 3) + "8Q~" + randFrom(alnum+"_~.-", 34),
		"pypi-token":              "pypi-AgEIcHlwaS5vcmc" + randFrom(urlB64, 70),
		"dockerhub-token":         "dckr_pat_" + randFrom(urlB64, 27),
		"vault-token":             "hvs." + randFrom(urlB64, 90),
		"digitalocean-token":      "dop_v1_" + randFrom(hexLow, 64),
		"shopify-token":           "shpat_" + randFrom(hexLow, 32),
		"huggingface-token":       "hf_" + randFrom(alnum[10:], 34),
		"databricks-token":        "dapi" + randFrom(hexLow, 32),
		"grafana-token":           "glsa_" + randFrom(alnum, 32) + "_" + randFrom(hexLow, 8),
		"telegram-bot-token":      "123456789:AA" + randFrom(urlB64, 33),
		"postman-api-key":         "PMAK-" + randFrom(hexLow, 24) + "-" + randFrom(hexLow, 34),
		"mailgun-key":             "key-" + randFrom(hexLow, 32),
	}
}

func makeJWT() string {
	enc := func(s string) string {
		return strings.TrimRight(b64url(s), "=")
	}
	return enc(`{"alg":"HS256","typ":"JWT"}`) + "." + enc(`{"sub":"svc-`+randFrom(alnum, 8)+`","iat":1700000000}`) + "." + randFrom(urlB64, 43)
}

func b64url(s string) string {
	const a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	var b strings.Builder
	in := []byte(s)
	for i := 0; i < len(in); i += 3 {
		var n uint32
		k := min(3, len(in)-i)
		for j := 0; j < 3; j++ {
			n <<= 8
			if j < k {
				n |= uint32(in[i+j])
			}
		}
		for j := 0; j < k+1; j++ {
			b.WriteByte(a[(n>>(18-6*j))&63])
		}
	}
	return b.String()
}

// only asserts that fs holds exactly one finding and returns it.
func only(t *testing.T, fs []Finding) Finding {
	t.Helper()
	if len(fs) != 1 {
		t.Fatalf("got %d findings, want 1: %+v", len(fs), fs)
	}
	return fs[0]
}
