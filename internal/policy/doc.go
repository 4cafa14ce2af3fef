// Package policy is Warden's policy engine: it parses and validates policy
// documents, compiles their CEL conditions once at save time, indexes the
// compiled rules by subject and action, and answers Decide in microseconds.
//
// The semantics follow the "Policy semantics" section of the design exactly:
// a matching deny wins; else a matching require_approval (unless the call
// carries an approval for exactly this call); else the first matching allow
// within its rate limit; else deny. A condition that cannot be evaluated never
// grants: an erroring allow rule does not match, an erroring deny or
// require_approval rule does (fail closed).
//
// The flow for a saved policy is Parse -> (*Document).CheckName -> Compile ->
// (*Engine).Put. Decide never compiles, never touches storage and never blocks
// on writers: it reads one immutable snapshot through an atomic pointer.
//
// Checks that happen before policy (identity status, unknown identities,
// approval validity) are the caller's job; Request.Approved carries the
// outcome of the approval check.
package policy
