package credential

import (
	"net/url"
	"strings"
)

// hasURLPassword reports whether s is a URL carrying a password.
func hasURLPassword(s string) bool {
	if !strings.Contains(s, "://") || !strings.Contains(s, "@") {
		return false
	}
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return false
	}
	_, has := u.User.Password()
	return has
}
