package warden

// ValidLabelKey reports whether k may be a label key: 1-63 ASCII letters,
// digits, '.', '_', '/' or '-', the first a letter or digit. Identities'
// labels and policy selectors share the rule, so a selector can name only
// labels an identity can carry.
func ValidLabelKey(k string) bool {
	if len(k) == 0 || len(k) > 63 {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case i > 0 && (c == '.' || c == '_' || c == '/' || c == '-'):
		default:
			return false
		}
	}
	return true
}
