package discovery

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"

	"warden"
)

func TestProviderRulesFindTheirTokens(t *testing.T) {
	s := New(Options{})
	for rule, tok := range samples() {
		contexts := []string{
			"value = %q\n",
			"  secret_thing: %s\n",
			"curl -H 'X-Key: %s' https://api.example.com\n",
			`{"k": "%s"}` + "\n",
		}
		if rule == "azure-storage-key" {
			contexts = []string{"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=%s;EndpointSuffix=core.windows.net\n"}
		}
		for _, c := range contexts {
			text := "line one\n" + fmt.Sprintf(c, tok)
			f := only(t, s.ScanBytes("src/app.txt", []byte(text)))
			if f.Rule != rule {
				t.Errorf("%s in %q: rule %s", rule, c, f.Rule)
			}
			if f.Line != 2 || !strings.Contains(strings.Split(text, "\n")[1], tok) {
				t.Errorf("%s: line %d", rule, f.Line)
			}
			col := strings.Index(strings.Split(text, "\n")[1], tok) + 1
			if f.Column != col {
				t.Errorf("%s in %q: column %d, want %d", rule, c, f.Column, col)
			}
			if f.Secret.Reveal() != tok {
				t.Errorf("%s: secret %q, want %q", rule, f.Secret.Reveal(), tok)
			}
			if strings.Contains(f.Preview, tok[min(len(tok), 12):]) || !strings.HasSuffix(f.Preview, "*****") {
				t.Errorf("%s: preview %q reveals too much", rule, f.Preview)
			}
		}
	}
}

func TestChecksumFormatsAreVerified(t *testing.T) {
	s := New(Options{})
	for _, tok := range []string{warden.NewKey(warden.KeyPrefixAgent), warden.NewKey(warden.KeyPrefixAdmin), checksummed("ghp_"), checksummed("npm_")} {
		f := only(t, s.ScanBytes("x.env", []byte("K="+tok+"\n")))
		if !f.Verified {
			t.Errorf("%s...: not verified (rule %s)", tok[:6], f.Rule)
		}
	}
	// A Warden-shaped string whose checksum fails is not a key at all.
	k := warden.NewKey(warden.KeyPrefixAgent)
	bad := k[:len(k)-1] + string("0123456789abcdefghijklmnopqrstuvwxyz"[(strings.IndexByte(alnum, k[len(k)-1])+1)%36])
	if bad != k {
		if fs := s.ScanBytes("x.env", []byte("K="+bad+"\n")); len(fs) != 0 && fs[0].Rule == "warden-api-key" {
			t.Errorf("warden key with bad checksum reported: %+v", fs)
		}
	}
	// A GitHub token with a bad checksum is reported, unverified.
	g := checksummed("ghp_")
	g = g[:39] + string(alnum[(strings.IndexByte(alnum, g[39])+1)%62])
	if f := only(t, s.ScanBytes("x.env", []byte("K="+g+"\n"))); f.Verified {
		t.Errorf("bad checksum verified")
	}
	if f := only(t, s.ScanBytes("x.env", []byte("WARDEN_KEY="+k+"\n"))); f.Rule != "warden-api-key" || f.Kind != "Warden API key" {
		t.Errorf("warden key: %+v", f)
	}
}

func TestDecoysAreNotReported(t *testing.T) {
	s := New(Options{})
	jwtIO := "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + strings.TrimRight(b64url(`{"sub":"1234567890","name":"John Doe","iat":1516239022}`), "=") + ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
	decoys := []string{
		"aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
		"aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
		"token: ${GITHUB_TOKEN}",
		"password: changeme",
		"api_key = \"<your-api-key>\"",
		"password = \"{{ .Values.password }}\"",
		"secret_key: xxxxxxxxxxxxxxxxxxxxxxxx",
		"client_secret = your_client_secret_here",
		"api_key: 123e4567-e89b-12d3-a456-426614174000",
		"password_hash: $2b$12$KIXQJfjb8T1GkPLbM0k1HOb8mBEvR1oZ5eW5mPzX5k1mYyJc8mQ9S",
		"integrity: sha512-" + randFrom(b64, 86) + "==",
		"commit_sha = " + randFrom(hexLow, 40),
		"token_url = https://auth.example.com/oauth/token",
		"password = os.Getenv(\"DB_PASSWORD\")",
		"password: process.env.DB_PASSWORD",
		"secret = config.auth.secretValue",
		"ghp_" + strings.Repeat("x", 36),
		"sk_live_" + "abcdefghijklmnopqrstuvwx",
		"github_token: ghp_" + "1234567890abcdefghijklmnopqrstuvwxyz",
		"AKIA" + "AAAAAAAAAAAAAAAA",
		jwtIO,
		"postgres://user:password@localhost:5432/db",
		"mysql://root:${MYSQL_PASSWORD}@db/app",
		"https://user:<token>@github.com/org/repo.git",
		"PUBLIC_KEY = " + randFrom(b64, 40),
		"max_tokens: 4096",
		"tokenizer = BertTokenizer.from_pretrained(\"bert\")",
		"-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
	}
	for _, d := range decoys {
		if fs := s.ScanBytes("conf/app.yaml", []byte(d+"\n")); len(fs) != 0 {
			t.Errorf("decoy %q reported as %s (%s)", d, fs[0].Rule, fs[0].Preview)
		}
	}
}

func TestGenericSecretsInConfigFormats(t *testing.T) {
	s := New(Options{})
	v := randFrom(alnum, 24)
	pw := "Vq7!" + randFrom(alnum, 8) + "#z"
	for _, c := range []struct{ name, text, want string }{
		{"app.yaml", "db:\n  password: " + pw + "\n", pw},
		{"app.json", `{"client_secret": "` + v + `"}`, v},
		{".env", "export API_KEY=" + v + "\n", v},
		{"cfg.toml", "[auth]\nsigning_key = \"" + v + "\"\n", v},
		{"cfg.ini", "[db]\npasswd=" + pw + "\n", pw},
		{"main.tf", "resource \"x\" \"y\" {\n  access_token = \"" + v + "\"\n}\n", v},
		{"App.java", "private static final String apiKey = \"" + v + "\";\n", v},
		{"settings.py", "SECRET_KEY = '" + v + "'\n", v},
		{"app.properties", "spring.datasource.password=" + pw + "\n", pw},
		{"deploy.sh", "DB_PASS='" + pw + "' ./migrate\n", pw},
		{"compose.yml", "    environment:\n      - POSTGRES_PASSWORD=" + pw + "\n", pw},
	} {
		fs := s.ScanBytes(c.name, []byte(c.text))
		if len(fs) != 1 || fs[0].Secret.Reveal() != c.want {
			t.Errorf("%s: got %+v", c.name, fs)
		}
	}
}

func pemKey(t *testing.T) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func TestPrivateKeyBlocksAcrossLines(t *testing.T) {
	s := New(Options{})
	key := pemKey(t)
	f := only(t, s.ScanBytes("deploy/key.pem", []byte("# deploy key\n"+key)))
	lines := strings.Count(key, "\n")
	if f.Rule != "private-key" || f.Line != 2 || f.EndLine != 1+lines {
		t.Errorf("pem: %+v (want lines 2..%d)", f, 1+lines)
	}
	// The same key inside a service-account JSON file is one credential.
	sa, _ := json.Marshal(map[string]string{"type": "service_account", "project_id": "p", "private_key": key, "client_email": "a@p.iam.gserviceaccount.com"})
	g := only(t, s.ScanBytes("sa.json", sa))
	if g.Rule != "gcp-service-account" || g.Fingerprint != f.Fingerprint {
		t.Errorf("service account: rule %s, same fingerprint %v", g.Rule, g.Fingerprint == f.Fingerprint)
	}
	// OpenSSH format.
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	blk, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	body := base64.StdEncoding.EncodeToString(append(blk, blk...))
	ossh := "-----BEGIN OPENSSH PRIVATE KEY-----\n" + body[:70] + "\n" + body[70:] + "\n-----END OPENSSH PRIVATE KEY-----\n"
	if f := only(t, s.ScanBytes("id_ed25519", []byte(ossh))); f.Rule != "private-key" {
		t.Errorf("openssh: %+v", f)
	}
	// A public key or certificate is not a finding.
	if fs := s.ScanBytes("cert.pem", []byte("-----BEGIN CERTIFICATE-----\n"+body+"\n-----END CERTIFICATE-----\n")); len(fs) != 0 {
		t.Errorf("certificate reported: %+v", fs)
	}
}

func TestKubernetesSecretValuesAreDecoded(t *testing.T) {
	s := New(Options{})
	gh := checksummed("ghp_")
	pw := "Zr8#" + randFrom(alnum, 16)
	enc := func(v string) string { return base64.StdEncoding.EncodeToString([]byte(v)) }
	manifest := "apiVersion: v1\nkind: ConfigMap\ndata:\n  x: y\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: app\ntype: Opaque\ndata:\n  username: " + enc("admin") +
		"\n  github-token: " + enc(gh) + "\n  db-password: " + enc(pw) + "\n  ca.crt: " + enc(randFrom(alnum, 40)) + "\nstringData:\n  api: " + randFrom(alnum, 30) + "\n"
	fs := s.ScanBytes("k8s/secret.yaml", []byte(manifest))
	got := map[string]Finding{}
	for _, f := range fs {
		got[f.Secret.Reveal()] = f
	}
	if f, ok := got[gh]; !ok || f.Rule != "github-pat" || f.Line != 13 {
		t.Errorf("decoded github token: %+v", fs)
	}
	if f, ok := got[pw]; !ok || f.Rule != "kubernetes-secret" || f.Line != 14 {
		t.Errorf("decoded password: %+v", fs)
	}
	if len(fs) != 3 {
		t.Errorf("want github token, password and stringData api value; got %d: %+v", len(fs), fs)
	}
}

func TestCredentialFiles(t *testing.T) {
	s := New(Options{})
	tok := randFrom(alnum, 36)
	pw := "p4" + randFrom(alnum, 14)
	auth := base64.StdEncoding.EncodeToString([]byte("robot:" + pw))
	for _, c := range []struct{ name, text, rule, secret string }{
		{".npmrc", "//registry.example.org/:_authToken=" + tok + "\n", "npmrc-auth", tok},
		{"home/.netrc", "machine api.example.org login bot password " + pw + "\n", "netrc-password", pw},
		{".git-credentials", "https://bot:" + pw + "@git.example.org\n", "url-credentials", pw},
		{".docker/config.json", `{"auths": {"registry.example.org": {"auth": "` + auth + `"}}}`, "docker-config-auth", auth},
		{".pgpass", "db.internal:5432:app:app:" + pw + "\n", "pgpass-password", pw},
		{".config/gcloud/application_default_credentials.json", `{"client_id": "x.apps.googleusercontent.com", "refresh_token": "1//` + tok + `", "type": "authorized_user"}`, "cloud-cli-credential", "1//" + tok},
		{".aws/credentials", "[default]\naws_access_key_id = AKIA" + randFrom(upper, 16) + "\naws_secret_access_key = " + randFrom(b64, 40) + "\n", "", ""},
	} {
		fs := s.ScanBytes(c.name, []byte(c.text))
		if c.rule == "" {
			if len(fs) != 2 {
				t.Errorf("%s: %+v", c.name, fs)
			}
			continue
		}
		f := only(t, fs)
		if f.Rule != c.rule || f.Secret.Reveal() != c.secret {
			t.Errorf("%s: rule %s secret ok %v", c.name, f.Rule, f.Secret.Reveal() == c.secret)
		}
	}
}

func TestInlineAllowAndFingerprintKey(t *testing.T) {
	tok := checksummed("ghp_")
	a := New(Options{}).ScanBytes("a", []byte("t="+tok+" # warden:allow\nu="+tok+"\n"))
	f := only(t, a)
	if f.Line != 2 {
		t.Errorf("inline allow: %+v", f)
	}
	if f.Fingerprint != Fingerprint([]byte(DefaultFingerprintKey), tok) {
		t.Error("default key not used")
	}
	b := only(t, New(Options{FingerprintKey: []byte("other")}).ScanBytes("a", []byte("u="+tok+"\n")))
	if b.Fingerprint == f.Fingerprint {
		t.Error("fingerprint does not depend on the key")
	}
}

func TestKeyedProviderSecrets(t *testing.T) {
	s := New(Options{})
	tw, aws, bearer := randFrom(hexLow, 32), randFrom(b64, 40), randFrom(urlB64, 40)
	for _, c := range []struct{ text, rule, secret string }{
		{"TWILIO_AUTH_TOKEN=" + tw + "\n", "twilio-auth-token", tw},
		{"aws_secret_access_key = " + aws + "\n", "aws-secret-access-key", aws},
		{"curl -H \"Authorization: Bearer " + bearer + "\" https://api.internal\n", "bearer-token", bearer},
	} {
		f := only(t, s.ScanBytes("x.sh", []byte(c.text)))
		if f.Rule != c.rule || f.Secret.Reveal() != c.secret {
			t.Errorf("%s: got %s", c.rule, f.Rule)
		}
	}
}

func TestOverlappingRulesReportOnce(t *testing.T) {
	tok := checksummed("ghp_")
	f := only(t, New(Options{}).ScanBytes(".env", []byte("GITHUB_TOKEN="+tok+"\n")))
	if f.Rule != "github-pat" {
		t.Errorf("rule %s, want github-pat", f.Rule)
	}
}
