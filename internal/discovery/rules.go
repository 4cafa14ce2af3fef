package discovery

import (
	"bytes"
	"path"
	"regexp"
	"strings"
)

// detector is one rule. A rule either matches a regular expression near one
// of its anchors (the common case: a token with a fixed prefix, or a key name
// followed by a value) or is one of the structural detectors (private-key
// blocks, Kubernetes Secret manifests) that have no Regexp.
type detector struct {
	// ID is stable: allowlists, SARIF and the inventory refer to it.
	ID string
	// Kind names the credential for people.
	Kind string
	// Description says what the rule finds, for SARIF and docs.
	Description string

	// Anchors are lowercase strings of which at least one occurs in every
	// match (compared case-insensitively); CaseAnchors are compared exactly.
	// The regular expression runs only on the line around an anchor, which is
	// what makes scanning fast: most text contains no anchor at all.
	Anchors     []string
	CaseAnchors []string
	// Regexp has a group named "secret" (the credential), may have groups
	// named "body..." (the random part, used for decoy checks; the whole
	// secret when none matched) and "key" (the assigned name).
	Regexp *regexp.Regexp
	// Prefix is a non-secret prefix the preview may show in full.
	Prefix string
	// Paths limits the rule to files whose slash path it accepts; nil means
	// every file.
	Paths func(slashPath string) bool
	// Pre is a cheap test at an anchor position that must pass before the
	// regular expression runs there (nil: always run). It keeps the common
	// anchors ("token", "://") from costing a regexp run each.
	Pre func(buf []byte, pos int) bool
	// Tail is how far past its anchor a match may end, in bytes (default
	// maxValueTail); rules for long tokens raise it.
	Tail int
	// Priority decides between overlapping matches: the higher one wins
	// (provider-specific rules beat generic ones).
	Priority int
	// Verify checks a format's checksum offline; MustVerify drops matches
	// that fail it (a checksummed format that fails cannot be a live key).
	Verify     func(secret string) bool
	MustVerify bool
	// Keep is an extra decoy filter: false drops the match. keyName is the
	// assigned name for key/value rules, empty otherwise.
	Keep func(secret, keyName string) bool
	// Generic marks key/value rules whose value has no format of its own: it
	// must look random (see plausibleValue).
	Generic bool
	// NoFakeCheck turns off the fake-looking check on the body (for formats
	// whose random part is structured, like JWTs and PEM bodies).
	NoFakeCheck bool

	secretGroup, keyGroup, quoteGroup int
	bodyGroups                        []int
}

// compile resolves the rule's capture groups.
func (r *detector) compile() {
	if r.Regexp == nil {
		return
	}
	r.secretGroup, r.keyGroup, r.quoteGroup = -1, -1, -1
	for i, n := range r.Regexp.SubexpNames() {
		switch {
		case n == "secret":
			r.secretGroup = i
		case strings.HasPrefix(n, "body"):
			r.bodyGroups = append(r.bodyGroups, i)
		case n == "key":
			r.keyGroup = i
		case n == "q":
			r.quoteGroup = i
		}
	}
	if r.secretGroup < 0 {
		panic("discovery: rule " + r.ID + " has no secret group")
	}
}

func baseIs(names ...string) func(string) bool {
	return func(p string) bool {
		b := path.Base(p)
		for _, n := range names {
			if b == n {
				return true
			}
		}
		return false
	}
}

func pathContains(parts ...string) func(string) bool {
	return func(p string) bool {
		p = "/" + p
		for _, s := range parts {
			if strings.Contains(p, s) {
				return true
			}
		}
		return false
	}
}

// Priorities: checksummed > provider format > file-specific > generic.
const (
	prioGeneric  = 10
	prioFile     = 20
	prioURL      = 30
	prioProvider = 40
	prioVerified = 50
)

// valueChars is what an unquoted or quoted credential value may contain in
// the key/value rules: no spaces, quotes, brackets or separators, so that code
// (calls, expressions, templates) does not look like a value.
const valueChars = `[A-Za-z0-9+/=_\-.~!@#$%^&*?|:]`

// kv builds a key/value regular expression: a key name matching keyRe, an
// assignment (=, :, :=, =>, or JSON's ":"), and a value.
func kv(keyRe, value string) *regexp.Regexp {
	return regexp.MustCompile(`(?i)(?:^|[^A-Za-z0-9_.\-])(?P<key>` + keyRe + `)["'\x60]?\]?\s*(?::=|=>|=|:)\s*(?P<q>["'\x60])?(?P<secret>` + value + `)(?:["'\x60]|[\s,;)}\]]|$)`)
}

// rules is the built-in rule set. The comment on each says where its format
// comes from; decoy handling shared by all rules lives in decoy.go.
var rules = []*detector{
	// Warden's own keys: prefix + 32 base62 + 6-digit CRC-32, checked with
	// warden.ParseKey. A string of that shape whose checksum fails is not a
	// key (the server refuses it before any lookup), so it is dropped.
	{
		ID: "warden-api-key", Kind: "Warden API key", Description: "Warden agent API key or admin token (checksum verified offline)",
		Anchors: []string{"wdn_a"}, Prefix: "wdn_a",
		Regexp:   regexp.MustCompile(`\b(?P<secret>wdn_a[kt]_(?P<body>[0-9A-Za-z]{38}))\b`),
		Priority: prioVerified, Verify: verifyWarden, MustVerify: true,
	},
	// AWS access key ids: 4-letter type prefix + 16 base32 characters.
	{
		ID: "aws-access-key-id", Kind: "AWS access key", Description: "AWS access key id (long-term AKIA or temporary ASIA)",
		CaseAnchors: []string{"AKIA", "ASIA", "ABIA", "ACCA", "A3T"},
		Regexp:      regexp.MustCompile(`\b(?P<secret>(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])(?P<body>[A-Z2-7]{16}))\b`),
		Prefix:      "AKIA", Priority: prioProvider,
	},
	// AWS secret access keys have no prefix: they are found by the names the
	// SDKs, CLI credential files and environment use for them.
	{
		ID: "aws-secret-access-key", Kind: "AWS secret access key", Description: "AWS secret access key assigned to an AWS-specific name",
		Anchors:  []string{"secret_access_key", "secretaccesskey", "secret-access-key", "aws_secret", "awssecret"},
		Regexp:   kv(`[A-Za-z0-9_.\-]*(?:secret_?access_?key|secret-access-key|aws_?secret(?:_?key)?)`, `[A-Za-z0-9/+]{40}`),
		Priority: prioProvider, Pre: assignmentFollows,
	},
	// GitHub: classic tokens end in a CRC-32 checksum; fine-grained tokens do not.
	{
		ID: "github-pat", Kind: "GitHub token", Description: "GitHub personal access, OAuth, user-to-server, server-to-server or refresh token",
		Anchors: []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"},
		Regexp:  regexp.MustCompile(`\b(?P<secret>gh[pousr]_(?P<body>[A-Za-z0-9]{36}))\b`),
		Prefix:  "gh", Priority: prioProvider, Verify: verifyGitHubStyle,
	},
	{
		ID: "github-fine-grained-pat", Kind: "GitHub token", Description: "GitHub fine-grained personal access token",
		Anchors: []string{"github_pat_"}, Prefix: "github_pat_",
		Regexp:   regexp.MustCompile(`\b(?P<secret>github_pat_(?P<body>[A-Za-z0-9]{22}_[A-Za-z0-9]{59}))\b`),
		Priority: prioProvider,
	},
	{
		ID: "gitlab-token", Kind: "GitLab token", Description: "GitLab personal, project, deploy, runner, pipeline-trigger or OAuth token",
		Anchors: []string{"glpat-", "gldt-", "glrt-", "glptt-", "glsoat-", "gloas-", "glcbt-", "glft-", "glimt-", "glagent-"},
		Regexp:  regexp.MustCompile(`\b(?P<secret>(?:glpat|gldt|glrt|glptt|glsoat|gloas|glcbt|glft|glimt|glagent)-(?P<body>[0-9A-Za-z_\-]{20,}))(?:[^0-9A-Za-z_\-.]|$)`),
		Prefix:  "gl", Priority: prioProvider,
	},
	// Slack: bot (xoxb), user (xoxp), workspace/legacy (xoxa, xoxs, xoxr), app-level (xapp).
	{
		ID: "slack-token", Kind: "Slack token", Description: "Slack bot, user, app-level or configuration token",
		Anchors: []string{"xoxb-", "xoxp-", "xoxa-", "xoxs-", "xoxr-", "xoxe", "xapp-"},
		Regexp:  regexp.MustCompile(`\b(?P<secret>(?:xox[bpasr]|xoxe\.xox[bp]|xoxe)-(?:[0-9]{1,16}-){0,3}(?P<body>[0-9A-Za-z][0-9A-Za-z\-]{9,})|xapp-\d-[A-Z0-9]{9,12}-\d{10,14}-(?P<body2>[a-z0-9]{40,}))\b`),
		Prefix:  "xox", Priority: prioProvider,
	},
	{
		ID: "slack-webhook", Kind: "Slack webhook", Description: "Slack incoming webhook or workflow URL",
		Anchors: []string{"hooks.slack.com"},
		Regexp:  regexp.MustCompile(`(?P<secret>https?://hooks\.slack\.com/(?:services|workflows|triggers)/(?P<body>[A-Za-z0-9+/_\-]{40,}))`),
		Prefix:  "https://hooks.slack.com/", Priority: prioProvider,
	},
	{
		ID: "stripe-key", Kind: "Stripe API key", Description: "Stripe secret or restricted key (live or test mode)",
		Anchors: []string{"sk_live_", "sk_test_", "rk_live_", "rk_test_"},
		Regexp:  regexp.MustCompile(`\b(?P<secret>[rs]k_(?:live|test)_(?P<body>[0-9A-Za-z]{24,}))\b`),
		Prefix:  "sk_live_", Priority: prioProvider,
	},
	{
		ID: "twilio-api-key", Kind: "Twilio API key", Description: "Twilio API key SID (SK + 32 hex)",
		CaseAnchors: []string{"SK"},
		Regexp:      regexp.MustCompile(`\b(?P<secret>SK(?P<body>[0-9a-f]{32}))\b`),
		Prefix:      "SK", Priority: prioProvider,
	},
	{
		ID: "twilio-auth-token", Kind: "Twilio auth token", Description: "Twilio account auth token assigned to a Twilio name",
		Anchors:  []string{"twilio"},
		Regexp:   kv(`[A-Za-z0-9_.\-]*twilio[A-Za-z0-9_.\-]*(?:token|secret)`, `[0-9a-f]{32}`),
		Priority: prioProvider, Pre: assignmentFollows,
	},
	{
		ID: "sendgrid-api-key", Kind: "SendGrid API key", Description: "SendGrid API key",
		CaseAnchors: []string{"SG."}, Prefix: "SG.",
		Regexp:   regexp.MustCompile(`\b(?P<secret>SG\.(?P<body>[0-9A-Za-z_\-]{22}\.[0-9A-Za-z_\-]{43}))(?:[^0-9A-Za-z_\-]|$)`),
		Priority: prioProvider,
	},
	// OpenAI keys carry "T3BlbkFJ" (base64 of "OpenAI") in the middle; the
	// project/service-account/admin forms are long and prefixed.
	{
		ID: "openai-api-key", Kind: "OpenAI API key", Description: "OpenAI API key (user, project, service account or admin)",
		Anchors: []string{"t3blbkfj", "sk-proj-", "sk-svcacct-", "sk-admin-"},
		Regexp:  regexp.MustCompile(`\b(?P<secret>sk-(?:(?:proj|svcacct|admin|None)-)?(?P<body>[A-Za-z0-9_\-]{20,}T3BlbkFJ[A-Za-z0-9_\-]{20,}|[A-Za-z0-9_\-]{100,}))(?:[^A-Za-z0-9_\-]|$)`),
		Prefix:  "sk-", Priority: prioProvider,
		Keep: func(s, _ string) bool {
			// The long form without the marker must be one of the prefixed kinds.
			return strings.Contains(s, "T3BlbkFJ") || strings.HasPrefix(s, "sk-proj-") || strings.HasPrefix(s, "sk-svcacct-") || strings.HasPrefix(s, "sk-admin-")
		},
	},
	{
		ID: "anthropic-api-key", Kind: "Anthropic API key", Description: "Anthropic API or admin key",
		Anchors: []string{"sk-ant-"}, Prefix: "sk-ant-",
		Regexp:   regexp.MustCompile(`\b(?P<secret>sk-ant-(?:api|admin|sid)\d\d-(?P<body>[A-Za-z0-9_\-]{80,}))(?:[^A-Za-z0-9_\-]|$)`),
		Priority: prioProvider,
	},
	{
		ID: "google-api-key", Kind: "Google API key", Description: "Google Cloud / Firebase API key",
		CaseAnchors: []string{"AIza"}, Prefix: "AIza",
		Regexp:   regexp.MustCompile(`\b(?P<secret>AIza(?P<body>[0-9A-Za-z_\-]{35}))(?:[^0-9A-Za-z_\-]|$)`),
		Priority: prioProvider,
	},
	{
		ID: "google-oauth-secret", Kind: "Google OAuth client secret", Description: "Google OAuth client secret",
		CaseAnchors: []string{"GOCSPX-"}, Prefix: "GOCSPX-",
		Regexp:   regexp.MustCompile(`\b(?P<secret>GOCSPX-(?P<body>[0-9A-Za-z_\-]{28}))(?:[^0-9A-Za-z_\-]|$)`),
		Priority: prioProvider,
	},
	{
		ID: "azure-storage-key", Kind: "Azure storage key", Description: "Azure storage account key or shared access key in a connection string",
		Anchors:  []string{"accountkey=", "sharedaccesskey="},
		Regexp:   regexp.MustCompile(`(?i)(?:AccountKey|SharedAccessKey)=(?P<secret>[A-Za-z0-9+/]{40,}={0,2})`),
		Priority: prioProvider,
	},
	{
		ID: "azure-ad-client-secret", Kind: "Azure AD client secret", Description: "Microsoft Entra ID (Azure AD) application client secret",
		CaseAnchors: []string{"Q~"},
		Regexp:      regexp.MustCompile(`(?:^|[^A-Za-z0-9_~.\-])(?P<secret>(?P<body>[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}))(?:[^A-Za-z0-9_~.\-]|$)`),
		Priority:    prioProvider,
	},
	{
		ID: "npm-access-token", Kind: "npm token", Description: "npm access token",
		Anchors: []string{"npm_"}, Prefix: "npm_",
		Regexp:   regexp.MustCompile(`\b(?P<secret>npm_(?P<body>[A-Za-z0-9]{36}))\b`),
		Priority: prioProvider, Verify: verifyGitHubStyle,
	},
	{
		ID: "pypi-token", Kind: "PyPI token", Description: "PyPI upload token",
		Anchors: []string{"pypi-ageichlwas5vcmc"}, Prefix: "pypi-",
		Regexp:   regexp.MustCompile(`\b(?P<secret>pypi-AgEIcHlwaS5vcmc(?P<body>[A-Za-z0-9_\-]{50,}))`),
		Priority: prioProvider,
	},
	{
		ID: "dockerhub-token", Kind: "Docker Hub token", Description: "Docker Hub personal access token",
		Anchors: []string{"dckr_pat_"}, Prefix: "dckr_pat_",
		Regexp:   regexp.MustCompile(`\b(?P<secret>dckr_pat_(?P<body>[A-Za-z0-9_\-]{27}))(?:[^A-Za-z0-9_\-]|$)`),
		Priority: prioProvider,
	},
	{
		ID: "vault-token", Kind: "HashiCorp Vault token", Description: "HashiCorp Vault service or batch token",
		Anchors: []string{"hvs.", "hvb."}, Prefix: "hvs.",
		Regexp:   regexp.MustCompile(`\b(?P<secret>hv[sb]\.(?P<body>[A-Za-z0-9_\-]{24,}))(?:[^A-Za-z0-9_\-.]|$)`),
		Priority: prioProvider,
	},
	{
		ID: "digitalocean-token", Kind: "DigitalOcean token", Description: "DigitalOcean personal access, OAuth or refresh token",
		Anchors: []string{"dop_v1_", "doo_v1_", "dor_v1_"}, Prefix: "do",
		Regexp:   regexp.MustCompile(`\b(?P<secret>do[opr]_v1_(?P<body>[a-f0-9]{64}))\b`),
		Priority: prioProvider,
	},
	{
		ID: "shopify-token", Kind: "Shopify token", Description: "Shopify access, custom-app, private-app or shared secret",
		Anchors: []string{"shpat_", "shpca_", "shppa_", "shpss_"}, Prefix: "shp",
		Regexp:   regexp.MustCompile(`\b(?P<secret>shp(?:at|ca|pa|ss)_(?P<body>[a-fA-F0-9]{32}))\b`),
		Priority: prioProvider,
	},
	{
		ID: "huggingface-token", Kind: "Hugging Face token", Description: "Hugging Face access token",
		Anchors: []string{"hf_"}, Prefix: "hf_",
		Regexp:   regexp.MustCompile(`\b(?P<secret>hf_(?P<body>[A-Za-z]{34}))\b`),
		Priority: prioProvider,
	},
	{
		ID: "databricks-token", Kind: "Databricks token", Description: "Databricks personal access token",
		Anchors: []string{"dapi"}, Prefix: "dapi",
		Regexp:   regexp.MustCompile(`\b(?P<secret>dapi(?P<body>[a-f0-9]{32}))(?:-\d)?\b`),
		Priority: prioProvider,
	},
	{
		ID: "grafana-token", Kind: "Grafana token", Description: "Grafana service account or cloud token",
		Anchors: []string{"glsa_", "glc_ey"}, Prefix: "gl",
		Regexp:   regexp.MustCompile(`\b(?P<secret>glsa_(?P<body>[A-Za-z0-9]{32}_[A-Fa-f0-9]{8})|glc_(?P<body2>eyJ[A-Za-z0-9+/=_\-]{60,}))`),
		Priority: prioProvider,
	},
	{
		ID: "telegram-bot-token", Kind: "Telegram bot token", Description: "Telegram bot API token",
		CaseAnchors: []string{":AA"},
		Regexp:      regexp.MustCompile(`\b(?P<secret>\d{8,10}:AA(?P<body>[0-9A-Za-z_\-]{33}))(?:[^0-9A-Za-z_\-]|$)`),
		Priority:    prioProvider,
	},
	{
		ID: "postman-api-key", Kind: "Postman API key", Description: "Postman API key",
		CaseAnchors: []string{"PMAK-"}, Prefix: "PMAK-",
		Regexp:   regexp.MustCompile(`\b(?P<secret>PMAK-(?P<body>[a-f0-9]{24}-[a-f0-9]{34}))\b`),
		Priority: prioProvider,
	},
	{
		ID: "mailgun-key", Kind: "Mailgun API key", Description: "Mailgun private API key",
		Anchors: []string{"key-"}, Prefix: "key-",
		Regexp:   regexp.MustCompile(`\b(?P<secret>key-(?P<body>[0-9a-f]{32}))\b`),
		Priority: prioProvider,
	},
	// JWTs: header and payload are base64url JSON, so "eyJ" starts both.
	{
		ID: "jwt", Kind: "JSON Web Token", Description: "Signed JSON Web Token (may be a long-lived bearer credential)",
		CaseAnchors: []string{"eyJ"}, Prefix: "eyJ",
		Regexp:   regexp.MustCompile(`(?:^|[^A-Za-z0-9_\-.])(?P<secret>eyJ[A-Za-z0-9_\-]{10,}\.eyJ[A-Za-z0-9_\-]{10,}\.[A-Za-z0-9_\-]{16,})(?:[^A-Za-z0-9_\-.=]|$)`),
		Priority: prioProvider - 5, Keep: keepJWT, NoFakeCheck: true, Tail: 8192,
	},
	// Bearer tokens in HTTP headers, curl commands and client code.
	{
		ID: "bearer-token", Kind: "bearer token", Description: "Random-looking bearer token in an Authorization header or call",
		Anchors:  []string{"bearer"},
		Regexp:   regexp.MustCompile(`(?i)\bbearer\s+(?P<secret>[A-Za-z0-9_\-.~+/]{20,}=*)(?:[^A-Za-z0-9_\-.~+/=]|$)`),
		Priority: prioGeneric + 5, Generic: true, Tail: 1100,
	},
	// Connection strings: the password of a database or broker URL.
	{
		ID: "connection-string", Kind: "connection string password", Description: "Password in a database or message-broker connection URL",
		Anchors:  []string{"postgres", "mysql", "mariadb", "mongodb", "redis", "amqp", "mssql", "sqlserver", "clickhouse", "cockroach"},
		Regexp:   regexp.MustCompile(`(?i)\b(?P<key>(?:jdbc:)?(?:postgres(?:ql)?|mysql|mariadb|mongodb(?:\+srv)?|rediss?|amqps?|mssql|sqlserver|clickhouse|cockroachdb))://[^:@/\s"'<>]{0,}:(?P<secret>[^@/\s"'<>]{1,})@[^\s"'<>/]{1,}`),
		Priority: prioURL, Keep: keepPassword, Tail: 800, Pre: schemeWithUserinfo,
	},
	{
		ID: "url-credentials", Kind: "password in URL", Description: "User name and password embedded in an HTTP or FTP URL (e.g. .git-credentials)",
		Anchors:  []string{"://"},
		Regexp:   regexp.MustCompile(`(?i)\b(?:https?|ftps?|git|ssh)://[^:@/\s"'<>]{1,}:(?P<secret>[^@/\s"'<>]{3,})@[A-Za-z0-9][A-Za-z0-9.\-]{0,}`),
		Priority: prioURL - 1, Keep: keepPassword, Tail: 700, Pre: userinfoFollows,
	},
	// Credential files by name.
	{
		ID: "npmrc-auth", Kind: "npm registry credential", Description: "Token or password in an .npmrc file",
		Anchors: []string{"_auth", "_password"}, Paths: baseIs(".npmrc", "npmrc"),
		Regexp:   regexp.MustCompile(`(?i)(?P<key>_authToken|_auth|_password)\s*=\s*["']?(?P<secret>[^\s"'#;]{6,})`),
		Priority: prioFile, Keep: keepPassword,
	},
	{
		ID: "netrc-password", Kind: "netrc password", Description: "Password in a .netrc file",
		Anchors: []string{"password"}, Paths: baseIs(".netrc", "_netrc"),
		Regexp:   regexp.MustCompile(`(?:^|\s)password\s+(?P<secret>\S{3,})`),
		Priority: prioFile, Keep: keepPassword,
	},
	{
		ID: "pgpass-password", Kind: "PostgreSQL password", Description: "Password in a .pgpass file",
		Anchors: []string{":"}, Paths: baseIs(".pgpass", "pgpass.conf"),
		Regexp:   regexp.MustCompile(`(?m)^[^#:\n]*:[^:\n]*:[^:\n]*:[^:\n]*:(?P<secret>[^\n\r]{3,})$`),
		Priority: prioFile, Keep: keepPassword,
	},
	{
		ID: "docker-config-auth", Kind: "container registry credential", Description: "Registry credential in a Docker config.json (auth is base64 user:password)",
		Anchors:  []string{`"auth"`, `"identitytoken"`},
		Regexp:   regexp.MustCompile(`"(?P<key>auth|identitytoken)"\s*:\s*"(?P<secret>[A-Za-z0-9+/=._\-]{8,})"`),
		Priority: prioFile + 5, Keep: keepDockerAuth, Tail: 1100,
	},
	{
		ID: "cloud-cli-credential", Kind: "cloud CLI credential", Description: "Token or secret in a gcloud or Azure CLI credential file",
		Anchors:  []string{"token", "secret"},
		Paths:    pathContains("/.config/gcloud/", "/application_default_credentials.json", "/.azure/", "/msal_token_cache.json", "/accessTokens.json", "/service_principal_entries.json"),
		Regexp:   kv(`refresh_token|access_token|client_secret|secret|accessToken|refreshToken|clientSecret`, `[A-Za-z0-9+/=_\-.~]{16,}`),
		Priority: prioFile,
	},
	// Generic: a value that looks random under a name that says it is secret,
	// in any configuration or source language that writes name = value or
	// name: value (YAML, JSON, ENV, TOML, INI, HCL, properties, code).
	{
		ID: "generic-secret", Kind: "secret in configuration", Description: "High-entropy value assigned to a secret-looking key (password, token, api_key, ...)",
		Anchors: []string{"secret", "token", "pass", "pwd", "api_key", "apikey", "api-key", "access_key", "accesskey", "private_key", "privatekey", "credential", "auth", "_key", "-key", ".key", "signingkey", "masterkey", "encryptionkey"},
		Regexp: kv(`[A-Za-z0-9_.\-]*?(?:secret|token|passw(?:or)?d|passwd|pwd|pass|api[_.\-]?key|access[_.\-]?key|private[_.\-]?key|auth[_.\-]?key|credentials?|[_.\-]key|signing[_.\-]?key|master[_.\-]?key|encryption[_.\-]?key|auth)[A-Za-z0-9_.\-]*`,
			valueChars+`{8,}`),
		Priority: prioGeneric, Generic: true, Pre: assignmentFollows,
	},
	// Structural detectors (no Regexp): see structure.go.
	{
		ID: "private-key", Kind: "private key", Description: "PEM or OpenSSH private key block (RSA, EC, DSA, Ed25519, PKCS#8, PGP)",
		CaseAnchors: []string{"-----BEGIN"}, Priority: prioProvider + 1, NoFakeCheck: true,
	},
	{
		ID: "gcp-service-account", Kind: "Google Cloud service account key", Description: "Private key in a Google Cloud service-account JSON key file",
		Priority: prioProvider + 2, NoFakeCheck: true,
	},
	{
		ID: "kubernetes-secret", Kind: "Kubernetes Secret value", Description: "Value in a Kubernetes Secret manifest (data is base64-decoded, then scanned)",
		Priority: prioFile, Generic: true,
	},
}

// assignmentFollows reports whether the key name containing pos is followed
// by an assignment (=, :, :=, =>), possibly after a closing quote or bracket.
func assignmentFollows(buf []byte, pos int) bool {
	i, end := pos, min(len(buf), pos+64)
	for i < end && (isAlnum(buf[i]) || buf[i] == '_' || buf[i] == '.' || buf[i] == '-') {
		i++
	}
	for k := 0; k < 2 && i < len(buf) && (buf[i] == '"' || buf[i] == '\'' || buf[i] == '`' || buf[i] == ']'); k++ {
		i++
	}
	for k := 0; k < 8 && i < len(buf) && (buf[i] == ' ' || buf[i] == '\t'); k++ {
		i++
	}
	return i < len(buf) && (buf[i] == '=' || buf[i] == ':')
}

// userinfoFollows reports whether the URL whose "://" is at pos has a
// user-info part (an "@" before the first "/", space or quote).
func userinfoFollows(buf []byte, pos int) bool {
	for i, end := pos+3, min(len(buf), pos+400); i < end; i++ {
		switch buf[i] {
		case '@':
			return true
		case '/', ' ', '\t', '\n', '\r', '"', '\'', '<', '>', '`':
			return false
		}
	}
	return false
}

// schemeWithUserinfo is userinfoFollows for an anchor on the scheme name.
func schemeWithUserinfo(buf []byte, pos int) bool {
	end := min(len(buf), pos+20)
	i := bytes.Index(buf[pos:end], []byte("://"))
	return i >= 0 && userinfoFollows(buf, pos+i)
}

// sourceExts are programming languages, where a value that is not a string
// literal is an identifier or an expression, never a secret.
var sourceExts = map[string]bool{
	".go": true, ".py": true, ".js": true, ".jsx": true, ".ts": true, ".tsx": true, ".mjs": true, ".cjs": true,
	".java": true, ".kt": true, ".kts": true, ".scala": true, ".groovy": true, ".rb": true, ".php": true, ".cs": true,
	".vb": true, ".fs": true, ".c": true, ".h": true, ".cc": true, ".cpp": true, ".hpp": true, ".cxx": true, ".m": true,
	".mm": true, ".swift": true, ".rs": true, ".dart": true, ".lua": true, ".pl": true, ".r": true, ".ex": true,
	".exs": true, ".erl": true, ".hs": true, ".clj": true, ".nim": true, ".zig": true, ".jl": true,
}

func isSource(p string) bool { return sourceExts[strings.ToLower(path.Ext(p))] }

// ruleByID indexes rules; it is read-only after init.
var ruleByID = map[string]*detector{}

func init() {
	for _, r := range rules {
		r.compile()
		if _, dup := ruleByID[r.ID]; dup {
			panic("discovery: duplicate rule " + r.ID)
		}
		ruleByID[r.ID] = r
	}
}

// Rule describes a built-in rule for people and for tools (docs, SARIF,
// the inventory).
type Rule struct {
	ID          string `json:"id"`
	Kind        string `json:"kind"`
	Description string `json:"description"`
}

// Rules returns the built-in rules in a stable order.
func Rules() []Rule {
	out := make([]Rule, 0, len(rules))
	for _, r := range rules {
		out = append(out, Rule{ID: r.ID, Kind: r.Kind, Description: r.Description})
	}
	return out
}
