package policy

// Possible reports whether the identity could ever be allowed the action,
// directly or after a human's approval, under the policies in force. It
// answers "should this tool be shown at all", not "is this call allowed":
//
//   - true when some allow or require_approval rule of a policy whose
//     subjects match the identity names the action, ignoring the rule's
//     condition, rate limit and not_before/expires_at (they depend on the
//     call's arguments and time, which may change);
//   - false when no such rule exists, or when a deny rule without a
//     condition and without time bounds names the action: such a rule
//     matches every call of that action, and a matching deny always wins.
//
// A conditional or time-bounded deny does not hide the action: some call
// may escape it. Possible takes no lock and evaluates no condition; it is
// never a substitute for Decide, which every call still goes through.
func (e *Engine) Possible(id Identity, action string) bool {
	conn, op, err := ParseAction(action)
	if err != nil {
		return false
	}
	refs := e.snap.Load().candidates(nil, &id, action, conn, op, false)
	possible := false
	for _, ref := range refs {
		r := ref.r
		switch r.effect {
		case Deny:
			if r.prg == nil && r.when == "" && r.notBefore.IsZero() && r.expiresAt.IsZero() {
				return false
			}
		case Allow, RequireApproval:
			possible = true
		}
	}
	return possible
}
