package policy

// ValidPattern reports whether s is an action pattern a policy accepts
// (connector:operation with '*' wildcards, or "*").
func ValidPattern(s string) bool {
	_, problem := compilePattern(s)
	return problem == ""
}
