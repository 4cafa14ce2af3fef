package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"warden"
)

// Label is one planted item in the corpus: a secret that a scanner should
// report, or a decoy that it should not.
type Label struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	EndLine int    `json:"end_line"`
	Kind    string `json:"kind"`
	Secret  bool   `json:"secret"` // false: a decoy
	// Category groups decoys (doc-example, placeholder, hash, uuid,
	// fixture, reference) for the false-positive breakdown.
	Category string `json:"category,omitempty"`
}

// Manifest lists every label of a corpus.
type Manifest struct {
	Seed   uint64  `json:"seed"`
	Bytes  int64   `json:"bytes"`
	Files  int     `json:"files"`
	Labels []Label `json:"labels"`
}

const (
	alnum  = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b32    = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	hexLow = "0123456789abcdef"
	b64    = alnum + "+/"
	urlB64 = alnum + "-_"
	lower  = "abcdefghijklmnopqrstuvwxyz"
)

// gen writes a corpus. Every file is built line by line through a fileBuf,
// which records the line of each planted item as it is written, so labels
// cannot drift from content.
type gen struct {
	root  string
	rng   *rand.Rand
	man   Manifest
	files int
}

type fileBuf struct {
	g      *gen
	name   string
	lines  []string
	labels []Label
}

func (g *gen) file(name string) *fileBuf { return &fileBuf{g: g, name: name} }

func (f *fileBuf) add(lines ...string) {
	for _, l := range lines {
		f.lines = append(f.lines, strings.Split(l, "\n")...)
	}
}

// plant adds text (possibly several lines) and labels it.
func (f *fileBuf) plant(text, kind string, secret bool, category string) {
	n := strings.Count(text, "\n") + 1
	start := len(f.lines) + 1
	f.lines = append(f.lines, strings.Split(text, "\n")...)
	f.labels = append(f.labels, Label{File: f.name, Line: start, EndLine: start + n - 1, Kind: kind, Secret: secret, Category: category})
}

func (f *fileBuf) write() error {
	p := filepath.Join(f.g.root, filepath.FromSlash(f.name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	data := strings.Join(f.lines, "\n") + "\n"
	f.g.man.Bytes += int64(len(data))
	f.g.man.Labels = append(f.g.man.Labels, f.labels...)
	f.g.files++
	return os.WriteFile(p, []byte(data), 0o644)
}

func (g *gen) s(alpha string, n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(alpha[g.rng.IntN(len(alpha))])
	}
	return b.String()
}

func (g *gen) pick(xs ...string) string { return xs[g.rng.IntN(len(xs))] }

func (g *gen) checksummed(prefix string) string {
	r := g.s(alnum, 30)
	n := crc32.ChecksumIEEE([]byte(r))
	sum := make([]byte, 6)
	for i := 5; i >= 0; i-- {
		sum[i] = alnum[n%62]
		n /= 62
	}
	return prefix + r + string(sum)
}

func (g *gen) jwt() string {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	return enc(`{"alg":"RS256","typ":"JWT","kid":"`+g.s(hexLow, 8)+`"}`) + "." +
		enc(fmt.Sprintf(`{"iss":"https://auth.internal","sub":"svc-%s","aud":"api","exp":%d}`, g.s(lower, 6), 1900000000+g.rng.IntN(1e6))) + "." + g.s(urlB64, 86)
}

func (g *gen) password() string {
	return g.s(alnum, 6) + g.pick("!", "#", "%", "^", "*", "@") + g.s(alnum, 8+g.rng.IntN(8))
}

func (g *gen) privateKey() string {
	var der []byte
	var err error
	if g.rng.IntN(2) == 0 {
		var k *ecdsa.PrivateKey
		k, err = ecdsa.GenerateKey(elliptic.P256(), cryptoRand{g})
		if err == nil {
			der, err = x509.MarshalPKCS8PrivateKey(k)
		}
	} else {
		seed := make([]byte, ed25519.SeedSize)
		for i := range seed {
			seed[i] = byte(g.rng.IntN(256))
		}
		der, err = x509.MarshalPKCS8PrivateKey(ed25519.NewKeyFromSeed(seed))
	}
	if err != nil {
		panic(err)
	}
	return strings.TrimRight(string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "\n")
}

// cryptoRand feeds crypto key generation from the seeded generator so the
// corpus is reproducible.
type cryptoRand struct{ g *gen }

func (c cryptoRand) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c.g.rng.IntN(256))
	}
	return len(p), nil
}

// secretKinds are the planted secrets: each returns a line (or block) of
// text holding one secret in a realistic context, and its kind.
func (g *gen) secretLine(ext string) (string, string) {
	q := func(name, v string) string {
		switch ext {
		case ".go":
			return fmt.Sprintf("\t%s := %q", name, v)
		case ".py":
			return fmt.Sprintf("    %s = %q", strings.ToUpper(name), v)
		case ".js", ".ts":
			return fmt.Sprintf("  const %s = '%s';", name, v)
		case ".java":
			return fmt.Sprintf("    private static final String %s = \"%s\";", name, v)
		case ".yaml", ".yml":
			return fmt.Sprintf("  %s: %s", strings.ToLower(name), v)
		case ".json":
			return fmt.Sprintf("  \"%s\": \"%s\",", name, v)
		case ".tf":
			return fmt.Sprintf("  %s = \"%s\"", strings.ToLower(name), v)
		default:
			return fmt.Sprintf("%s=%s", strings.ToUpper(name), v)
		}
	}
	switch g.rng.IntN(24) {
	case 0:
		return q("awsAccessKeyId", "AKIA"+g.s(b32, 16)), "aws-access-key"
	case 1:
		return q("aws_secret_access_key", g.s(b64, 40)), "aws-secret-key"
	case 2:
		return q("githubToken", g.checksummed(g.pick("ghp_", "gho_", "ghs_"))), "github"
	case 3:
		return q("ghToken", "github_pat_"+g.s(alnum, 22)+"_"+g.s(alnum, 59)), "github-fine-grained"
	case 4:
		return q("gitlabToken", "glpat-"+g.s(urlB64, 20)), "gitlab"
	case 5:
		return q("slackBotToken", "xoxb-"+g.s("0123456789", 12)+"-"+g.s("0123456789", 13)+"-"+g.s(alnum, 24)), "slack"
	case 6:
		return q("slackWebhook", "https://hooks.slack.com/services/T"+g.s(b32[:26], 8)+"/B"+g.s(b32[:26], 10)+"/"+g.s(alnum, 24)), "slack-webhook"
	case 7:
		return q("stripeKey", "sk_live_"+g.s(alnum, 24+g.rng.IntN(75))), "stripe"
	case 8:
		return q("twilioApiKey", "SK"+g.s(hexLow, 32)), "twilio"
	case 9:
		return q("sendgridKey", "SG."+g.s(urlB64, 22)+"."+g.s(urlB64, 43)), "sendgrid"
	case 10:
		return q("openaiKey", "sk-proj-"+g.s(urlB64, 74)+"T3BlbkFJ"+g.s(urlB64, 74)), "openai"
	case 11:
		return q("anthropicKey", "sk-ant-api03-"+g.s(urlB64, 93)+"AA"), "anthropic"
	case 12:
		return q("googleApiKey", "AIza"+g.s(urlB64, 35)), "google-api-key"
	case 13:
		return q("storageConnection", "DefaultEndpointsProtocol=https;AccountName="+g.s(lower, 10)+";AccountKey="+g.s(b64, 86)+"==;EndpointSuffix=core.windows.net"), "azure-storage"
	case 14:
		return q("npmToken", g.checksummed("npm_")), "npm"
	case 15:
		return q("serviceJwt", g.jwt()), "jwt"
	case 16:
		scheme := g.pick("postgres", "postgresql", "mysql", "mongodb+srv", "redis", "amqps")
		return q("databaseUrl", fmt.Sprintf("%s://%s:%s@%s.internal:%d/%s", scheme, g.s(lower, 6), g.s(alnum, 20), g.s(lower, 5), 5000+g.rng.IntN(999), g.s(lower, 4))), "connection-string"
	case 17:
		return q("wardenApiKey", warden.NewKey(g.pick(warden.KeyPrefixAgent, warden.KeyPrefixAdmin))), "warden"
	case 18, 19:
		return q(g.pick("dbPassword", "adminPassword", "smtp_password", "redisPassword"), g.password()), "password"
	case 20, 21:
		return q(g.pick("apiSecret", "clientSecret", "signingKey", "webhookSecret", "encryptionKey", "accessToken"), g.s(alnum, 32+g.rng.IntN(16))), "generic-secret"
	case 22:
		return q("hfToken", "hf_"+g.s(alnum[10:], 34)), "huggingface"
	default:
		return q("vaultToken", "hvs."+g.s(urlB64, 24)+g.s(alnum, 66)), "vault"
	}
}

// decoyLine returns a line that looks like a secret to a naive scanner but
// is not one, and its category.
func (g *gen) decoyLine(ext string) (string, string, string) {
	q := func(name, v string) string {
		switch ext {
		case ".go":
			return fmt.Sprintf("\t%s := %q", name, v)
		case ".py":
			return fmt.Sprintf("    %s = %q", strings.ToUpper(name), v)
		case ".js", ".ts":
			return fmt.Sprintf("  const %s = '%s';", name, v)
		case ".yaml", ".yml":
			return fmt.Sprintf("  %s: %s", strings.ToLower(name), v)
		case ".json":
			return fmt.Sprintf("  \"%s\": \"%s\",", name, v)
		default:
			return fmt.Sprintf("%s=%s", strings.ToUpper(name), v)
		}
	}
	switch g.rng.IntN(22) {
	case 0:
		return q("awsAccessKeyId", "AKIAIOSFODNN7EXAMPLE"), "aws-access-key", "doc-example"
	case 1:
		return q("aws_secret_access_key", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), "aws-secret-key", "doc-example"
	case 2:
		return q("stripeKey", "sk_test_4eC39HqLyjWDarjtT1zdp7dc"), "stripe", "doc-example"
	case 3:
		return q("exampleJwt", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"), "jwt", "doc-example"
	case 4:
		return q("apiKey", g.pick("<YOUR_API_KEY>", "${API_KEY}", "{{ .Values.apiKey }}", "your-api-key-here", "%(api_key)s")), "generic-secret", "placeholder"
	case 5:
		return q("dbPassword", g.pick("changeme", "password", "xxxxxxxxxxxx", "********", "<password>", "TODO", "${DB_PASSWORD}")), "password", "placeholder"
	case 6:
		return q("githubToken", "ghp_"+strings.Repeat(g.pick("x", "X", "0"), 36)), "github", "placeholder"
	case 7:
		return q("databaseUrl", g.pick("postgres://user:password@localhost:5432/app", "mysql://root:${MYSQL_ROOT_PASSWORD}@db:3306/app", "mongodb://<user>:<password>@cluster0.example.net/test")), "connection-string", "placeholder"
	case 8:
		return q("checksum", "sha256:"+g.s(hexLow, 64)), "hash", "hash"
	case 9:
		return q("commitSha", g.s(hexLow, 40)), "hash", "hash"
	case 10:
		return q("passwordHash", "$2b$12$"+g.s(alnum+"./", 53)), "hash", "hash"
	case 11:
		return q("integrity", "sha512-"+g.s(b64, 86)+"=="), "hash", "hash"
	case 12:
		return q(g.pick("requestId", "tokenId", "apiKeyId", "correlationToken"), fmt.Sprintf("%s-%s-4%s-a%s-%s", g.s(hexLow, 8), g.s(hexLow, 4), g.s(hexLow, 3), g.s(hexLow, 3), g.s(hexLow, 12))), "uuid", "uuid"
	case 13:
		return q("testToken", "ghp_"+"1234567890abcdefghijklmnopqrstuvwxyz"[:36]), "github", "fixture"
	case 14:
		return q("fakeStripeKey", "sk_live_"+"fakefakefakefakefakefake"), "stripe", "fixture"
	case 15:
		return q("awsAccessKeyId", "AKIA"+strings.Repeat("A", 12)+"TEST"), "aws-access-key", "fixture"
	case 16:
		return q("slackToken", "xoxb-1234567890-1234567890123-"+"abcdefghijklmnopqrstuvwx"), "slack", "fixture"
	case 17:
		return q("password", g.pick("test123", "secret", "admin", "hunter2", "password1")), "password", "fixture"
	case 18:
		return q("secret", g.pick("process.env.SECRET", "os.environ['SECRET']", "config.secret", "settings.SECRET_KEY")), "generic-secret", "reference"
	case 19:
		return q("tokenEndpoint", "https://auth.example.com/oauth2/token"), "generic-secret", "reference"
	case 20:
		return q("publicKey", g.s(b64, 44)), "generic-secret", "public"
	default:
		return q("maxTokens", fmt.Sprint(1000+g.rng.IntN(9000))), "generic-secret", "number"
	}
}

// hardLine returns items chosen to be hard for pattern scanners, Warden
// included: secrets in forms with no key=value shape or prefix (XML
// elements, command-line flags, HTTP basic auth, tuples in code), and decoys
// that sit under secret-sounding names but are not secrets. They keep the
// corpus from only testing what the rules were written for.
func (g *gen) hardLine() (text, kind string, secret bool, category string) {
	switch g.rng.IntN(12) {
	case 0:
		return "    <password>" + g.password() + "</password>", "hard-xml", true, ""
	case 1:
		return `  <add key="StorageAccountKey" value="` + g.s(b64, 40) + `" />`, "hard-xml", true, ""
	case 2:
		return "mysql -h db.internal -u admin -p" + g.s(alnum, 16) + " app < dump.sql", "hard-cli", true, ""
	case 3:
		return "curl -H 'Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("svc:"+g.s(alnum, 20))) + "' https://api.internal/v1", "hard-basic-auth", true, ""
	case 4:
		return `    resp = requests.get(url, auth=("deploy", "` + g.password() + `"))`, "hard-code", true, ""
	case 5:
		return fmt.Sprintf("  webhook_secret_checksum: %s", g.s(hexLow, 64)), "hash", false, "hard"
	case 6:
		return fmt.Sprintf("  session_token_lifetime: %dh", 1+g.rng.IntN(48)), "config", false, "hard"
	case 7:
		return fmt.Sprintf(`  "password_reset_template": "reset-%s-v%d",`, g.s(lower, 6), g.rng.IntN(9)), "config", false, "hard"
	case 8:
		return fmt.Sprintf("  secret_store_ref: projects/%s/secrets/db-password/versions/%d", g.s(lower, 8), g.rng.IntN(9)), "reference", false, "hard"
	case 9:
		return fmt.Sprintf("    test_password = \"Fixture%d!\"", g.rng.IntN(999)), "fixture", false, "hard"
	case 10:
		return fmt.Sprintf("  auth_key_rotation: %s", g.pick("weekly", "monthly", "P30D", "0 3 * * 1")), "config", false, "hard"
	default:
		return fmt.Sprintf("  token_audience: api://%s-%s", g.s(lower, 6), g.s(hexLow, 8)), "config", false, "hard"
	}
}

var words = strings.Fields(`user account order invoice payment request response handler client server config
value result error item list map index count total price amount status state event message queue
session cache store record entry field name title label description created updated deleted`)

// title upper-cases the first letter of an ASCII word.
func title(w string) string {
	if w == "" {
		return w
	}
	return strings.ToUpper(w[:1]) + w[1:]
}

func (g *gen) ident() string {
	w := words[g.rng.IntN(len(words))]
	return w + title(words[g.rng.IntN(len(words))])
}

// codeLine is filler: plausible code with identifiers, strings and numbers.
func (g *gen) codeLine(ext string) string {
	id, id2 := g.ident(), g.ident()
	switch ext {
	case ".go":
		return g.pick(
			fmt.Sprintf("\t%s, err := s.%s(ctx, %s)", id, id2, g.ident()),
			"\tif err != nil {\n\t\treturn fmt.Errorf(\"load "+id+": %w\", err)\n\t}",
			fmt.Sprintf("\t%s.%s = append(%s.%s, %q)", id, id2, id, id2, g.s(lower, 8)),
			fmt.Sprintf("\t// %s keeps the %s of each %s.", id, id2, g.ident()),
			fmt.Sprintf("\tlog.Info(\"%s updated\", \"key\", %s.Key, \"count\", len(%s))", id, id, id2))
	case ".py":
		return g.pick(
			fmt.Sprintf("    %s = self.%s(%s, timeout=%d)", id, id2, g.ident(), g.rng.IntN(60)),
			fmt.Sprintf("    if not %s:\n        raise ValueError(\"missing %s\")", id, id2),
			fmt.Sprintf("    logger.debug(\"%s: %%s\", %s)", id, id2),
			fmt.Sprintf("    token = request.headers.get(\"Authorization\", \"\")"))
	default:
		return g.pick(
			fmt.Sprintf("  const %s = await api.%s({ id: %s.id, limit: %d });", id, id2, g.ident(), g.rng.IntN(100)),
			fmt.Sprintf("  if (!%s) { throw new Error('no %s'); }", id, id2),
			fmt.Sprintf("  %s.set('%s', %s);", id, g.s(lower, 6), id2),
			fmt.Sprintf("  // TODO(%s): handle %s", g.s(lower, 5), id2))
	}
}
