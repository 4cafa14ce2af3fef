package discovery

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

var (
	pemBegin       = []byte("-----BEGIN ")
	serviceAcctRe  = regexp.MustCompile(`"type"\s*:\s*"service_account"`)
	pemBodyCharsRe = regexp.MustCompile(`^[A-Za-z0-9+/=]+$`)
)

// privateKeyAt recognises a private-key block that starts at buf[pos]
// ("-----BEGIN ... PRIVATE KEY-----", body, matching END line). The block may
// span lines, or sit on one line with escaped newlines (JSON key files,
// environment variables). The secret is the key's base64 body with line
// breaks and headers removed, so the same key in a .pem file and inside a
// JSON document has one fingerprint.
func privateKeyAt(buf []byte, pos int) (candidate, bool) {
	rest := buf[pos:]
	if !bytes.HasPrefix(rest, pemBegin) {
		return candidate{}, false
	}
	head := rest[len(pemBegin):min(len(rest), len(pemBegin)+64)]
	i := bytes.Index(head, []byte("-----"))
	if i < 0 {
		return candidate{}, false
	}
	label := string(head[:i])
	if !strings.HasSuffix(label, "PRIVATE KEY") && !strings.HasSuffix(label, "PRIVATE KEY BLOCK") {
		return candidate{}, false
	}
	bodyStart := len(pemBegin) + i + 5
	limit := min(len(rest), maxPEMBlock)
	endMarker := []byte("-----END " + label + "-----")
	j := bytes.Index(rest[bodyStart:limit], endMarker)
	if j < 0 {
		return candidate{}, false
	}
	raw := string(rest[bodyStart : bodyStart+j])
	escaped := strings.Contains(raw, `\n`)
	raw = strings.ReplaceAll(raw, `\r`, "")
	raw = strings.ReplaceAll(raw, `\n`, "\n")
	var body strings.Builder
	for _, ln := range strings.Split(raw, "\n") {
		ln = strings.TrimSpace(ln)
		if strings.Contains(ln, ":") { // RFC 1421 / PGP headers: Proc-Type, DEK-Info, Version
			continue
		}
		body.WriteString(ln)
	}
	b := body.String()
	if len(b) < 64 || !pemBodyCharsRe.MatchString(b) || entropy(b) < 4.0 {
		return candidate{}, false // "...", "<your key here>", truncated docs
	}
	r := ruleByID["private-key"]
	if escaped && serviceAcctRe.Match(buf) {
		r = ruleByID["gcp-service-account"]
	}
	return candidate{rule: r, start: pos, end: pos + bodyStart + j + len(endMarker), secret: b}, true
}

// maxManifestSize bounds the files parsed as YAML/JSON for Kubernetes
// Secrets; larger files are still scanned line by line.
const maxManifestSize = 4 << 20

// k8sNonSecretKeys are Secret data keys that hold public material.
var k8sNonSecretKeys = []string{"ca.crt", "tls.crt", ".crt", ".pem.pub", ".pub", "username", "user", "host", "hostname", "port", "namespace", "url", "endpoint", "database", "db", "email"}

// kubernetesSecrets finds the values in Kubernetes Secret manifests (YAML or
// JSON, several documents per file). data values are base64-decoded and then
// scanned with every rule; a value no rule recognises is still reported when
// it looks random, because a Secret's values are secrets by declaration.
// Failure to parse is not an error: the line rules have already run.
func kubernetesSecrets(p string, buf []byte, depth int) (out []candidate) {
	if len(buf) > maxManifestSize || !bytes.Contains(buf, []byte("Secret")) || !bytes.Contains(buf, []byte("kind")) {
		return nil
	}
	defer func() {
		// The YAML parser takes outside input; a panic in it must cost this
		// file's manifest findings, not the scan.
		if recover() != nil {
			out = nil
		}
	}()
	li := newLineIndex(buf)
	dec := yaml.NewDecoder(bytes.NewReader(buf))
	for docs := 0; docs < 1000; docs++ {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			if !errors.Is(err, io.EOF) {
				return out
			}
			break
		}
		if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			continue
		}
		m := doc.Content[0]
		if field(m, "kind") == nil || field(m, "kind").Value != "Secret" {
			continue
		}
		for _, section := range []string{"data", "stringData"} {
			d := field(m, section)
			if d == nil || d.Kind != yaml.MappingNode {
				continue
			}
			for i := 0; i+1 < len(d.Content); i += 2 {
				k, v := d.Content[i], d.Content[i+1]
				if v.Kind != yaml.ScalarNode || v.Line < 1 || v.Line > len(li.starts) {
					continue
				}
				value := v.Value
				if section == "data" {
					b, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(value), ""))
					if err != nil || bytes.IndexByte(b, 0) >= 0 {
						continue
					}
					value = string(b)
				}
				start := offsetOf(li, v.Line-1, v.Column)
				end := min(len(buf), start+len(v.Value))
				out = append(out, secretValue(k.Value, value, start, end, depth)...)
			}
		}
	}
	return out
}

// secretValue reports the credentials in one Secret value, located at the
// value's span in the manifest.
func secretValue(key, value string, start, end, depth int) []candidate {
	var out []candidate
	for _, c := range scanContent("", []byte(value), false, depth+1) {
		c.start, c.end = start, end
		out = append(out, c)
	}
	if len(out) > 0 {
		return resolveOverlaps(out)
	}
	lk := strings.ToLower(key)
	for _, s := range k8sNonSecretKeys {
		if lk == s || strings.HasSuffix(lk, s) {
			return nil
		}
	}
	v := strings.TrimSpace(value)
	if strings.ContainsAny(v, "\n\r") || !plausibleValue(v) {
		return nil
	}
	return []candidate{{rule: ruleByID["kubernetes-secret"], start: start, end: end, secret: v}}
}

func field(m *yaml.Node, name string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == name {
			return m.Content[i+1]
		}
	}
	return nil
}

// offsetOf converts a 0-based line and 1-based column in code points to a
// byte offset.
func offsetOf(li *lineIndex, line, col int) int {
	text := li.lineText(line)
	off := li.starts[line]
	for i := range string(text) {
		if col <= 1 {
			return off + i
		}
		col--
	}
	return off + len(text)
}
