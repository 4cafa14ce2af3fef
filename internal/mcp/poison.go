package mcp

import (
	"encoding/json"
	"regexp"
	"strings"
	"unicode"
)

// poisonPatterns are signs of hidden instructions in a tool definition
// (tool poisoning): text addressed to the model rather than describing the
// tool. They flag a definition for an admin to look at; they do not decide
// anything (policy does), so false positives cost a look, not an outage.
var poisonPatterns = []struct {
	name string
	re   *regexp.Regexp
}{
	{"override of earlier instructions", regexp.MustCompile(`(?i)\b(ignore|disregard|forget|override)\b[^.\n]{0,40}\b(previous|prior|above|earlier|all|other|system)\b[^.\n]{0,20}\b(instructions?|prompts?|rules?|guidelines?)`)},
	{"instruction markup tag", regexp.MustCompile(`(?i)<\s*/?\s*(important|system|instructions?|secret|hidden|admin|sudo|override)\b[^>]*>`)},
	{"concealment from the user", regexp.MustCompile(`(?i)\b(do not|don't|never|without)\b[^.\n]{0,30}\b(tell|telling|mention|mentioning|inform|informing|reveal|revealing|show|showing|notify|notifying|alert|alerting)\b[^.\n]{0,20}\b(the )?(user|human|operator)`)},
	{"sensitive file access", regexp.MustCompile(`(?i)(~/\.ssh|id_rsa|id_ed25519|\.aws/credentials|/etc/passwd|/etc/shadow|\.env\b|\.netrc|\.git-credentials|kubeconfig|\.docker/config\.json|mcp\.json|claude_desktop_config)`)},
	{"instruction to read local files", regexp.MustCompile(`(?i)\b(read|cat|open|load|include|attach)\b[^.\n]{0,40}\b(file|files|contents? of|directory|home folder)\b[^.\n]{0,40}\b(and|then)\b[^.\n]{0,40}\b(pass|send|include|add|put)\b`)},
	{"instruction to send secrets", regexp.MustCompile(`(?i)\b(send|pass|include|forward|post|upload|exfiltrate|leak|append|put)\b[^.\n]{0,60}\b(secrets?|api[ _-]?keys?|passwords?|tokens?|credentials?|private keys?|env(ironment)? var(iable)?s?)\b`)},
	{"instruction to call before other tools", regexp.MustCompile(`(?i)\b(before|prior to)\b[^.\n]{0,20}\b(using|calling|running|invoking)\b[^.\n]{0,30}\b(any|this|other|every)\b[^.\n]{0,10}\btools?\b`)},
	{"redirect to another recipient", regexp.MustCompile(`(?i)\b(always|instead)\b[^.\n]{0,40}\b(send|bcc|cc|forward|redirect)\b[^.\n]{0,40}\b(to)\b[^.\n]{0,10}(@|https?://)`)},
}

// PoisonWarnings returns the hidden-instruction findings for a tool
// definition: patterns in its description and anywhere in its input schema
// (property descriptions, titles, defaults), and invisible characters
// (zero-width, bidirectional overrides, Unicode tag characters) that hide
// text from a human reviewer but not from a model.
func PoisonWarnings(description string, inputSchema any) []string {
	texts := []string{description}
	if inputSchema != nil {
		// The schema's strings as written, so patterns in property
		// descriptions, titles and defaults are seen too.
		texts = append(texts, schemaStrings(inputSchema))
	}
	var out []string
	seen := map[string]bool{}
	add := func(w string) {
		if !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	for _, t := range texts {
		for _, p := range poisonPatterns {
			if p.re.MatchString(t) {
				add("hidden instructions: " + p.name)
			}
		}
		if strings.ContainsFunc(t, invisible) {
			add("hidden instructions: invisible or direction-changing characters")
		}
	}
	return out
}

// schemaStrings concatenates every key and string in a JSON value.
func schemaStrings(schema any) string {
	var v any
	if b, err := json.Marshal(schema); err != nil || json.Unmarshal(b, &v) != nil {
		return ""
	}
	var sb strings.Builder
	var walk func(any)
	walk = func(v any) {
		switch t := v.(type) {
		case string:
			sb.WriteString(t)
			sb.WriteByte('\n')
		case []any:
			for _, x := range t {
				walk(x)
			}
		case map[string]any:
			for k, x := range t {
				sb.WriteString(k)
				sb.WriteByte('\n')
				walk(x)
			}
		}
	}
	walk(v)
	return sb.String()
}

func invisible(r rune) bool {
	switch {
	case r >= 0x200B && r <= 0x200F, r >= 0x202A && r <= 0x202E, r >= 0x2060 && r <= 0x2064, r >= 0x2066 && r <= 0x2069, r == 0xFEFF:
		return true
	case r >= 0xE0000 && r <= 0xE007F: // tag characters
		return true
	}
	return unicode.Is(unicode.Co, r) // private use
}
