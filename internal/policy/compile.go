package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"

	"warden"
)

// Effect is what a rule does when it matches.
type Effect string

// The three effects.
const (
	Allow           Effect = "allow"
	Deny            Effect = "deny"
	RequireApproval Effect = "require_approval"
)

// Limit is a compiled rate limit: at most Count allowed calls per window of
// length Per, per (policy, rule, identity).
type Limit struct {
	Count int64
	Per   time.Duration
}

// Policy is a compiled, immutable policy: every condition type-checked and
// planned, every pattern and timestamp parsed. It is safe to share between
// goroutines and engine snapshots.
type Policy struct {
	name     string
	doc      *Document
	subjects []subject
	rules    []*rule
}

// Name returns the policy's name.
func (p *Policy) Name() string { return p.name }

// Document returns the document the policy was compiled from. Callers must not
// modify it.
func (p *Policy) Document() *Document { return p.doc }

type subject struct {
	identity string    // name or id; empty for a selector
	sel      *Selector // nil for an identity entry
}

// rule is a compiled rule. With many policies in force a candidate rule is
// rarely in the CPU cache, so what Decide reads comes first, in 128 bytes:
// what it reads of every candidate, then what it reads of the deciding rule
// (names and reasons, so that it does not read the policy too).
type rule struct {
	pol     *Policy
	prg     cel.Program // nil without a condition
	limit   *Limit
	idx     int32
	ctxEval bool   // the program loops: evaluate with cost limit and context
	timed   bool   // notBefore or expiresAt is set
	effect  Effect // one of the constants, so comparing reads no policy text
	// single is Matched for a decision where only this rule matched.
	single *[1]Match

	polName string // pol.name
	id      string
	// Reasons are built once here so that Decide allocates nothing for them:
	// reason is the allow, deny or approval-required reason, approved the
	// reason of a require_approval rule when the call carries an approval.
	reason, approved string

	notBefore time.Time // zero: none
	expiresAt time.Time // zero: none
	patterns  []pattern
	when      string
	approval  *Approval // require_approval settings; nil for defaults
	// matchReason names the rule.
	matchReason string
}

var ruleIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Compile validates a document's meaning and compiles it: name and subjects,
// rule ids (unique), effects, action patterns, limits, not_before/expires_at
// and every CEL condition (parsed, type-checked against Warden's variables,
// required to return bool, constant time zones and CIDR prefixes resolved,
// worst-case cost estimated). Errors are *warden.Error with Code invalid, the
// field (like "rules[2].when") and a message naming the rule id, the line and
// the reason. Compile never evaluates a condition.
func Compile(doc *Document) (*Policy, error) {
	if doc == nil {
		return nil, warden.FieldError("", "no policy document")
	}
	if doc.APIVersion != APIVersion {
		return nil, warden.FieldError("apiVersion", "apiVersion must be %q", APIVersion)
	}
	if doc.Kind != Kind {
		return nil, warden.FieldError("kind", "kind must be %q", Kind)
	}
	if doc.Name == "" {
		return nil, warden.FieldError("name", "the policy needs a name")
	}
	if !ValidName(doc.Name) {
		return nil, warden.FieldError("name", "policy name %q is not valid: use 1-128 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit", doc.Name)
	}
	e, err := env()
	if err != nil {
		return nil, warden.Wrap(err, warden.CodeInternal, "policy engine unavailable")
	}
	p := &Policy{name: doc.Name, doc: doc}
	if len(doc.Subjects) == 0 {
		return nil, docErr(doc, "subjects", "", "the policy applies to nobody: list at least one subject (use `- selector: {}` for every identity)")
	}
	for i, s := range doc.Subjects {
		f := fmt.Sprintf("subjects[%d]", i)
		switch {
		case s.Identity != "" && s.Selector != nil:
			return nil, docErr(doc, f, "", "give either identity or selector in one subject entry, not both")
		case s.Identity != "":
			p.subjects = append(p.subjects, subject{identity: s.Identity})
		case s.Selector != nil:
			sel := *s.Selector
			p.subjects = append(p.subjects, subject{sel: &sel})
		default:
			return nil, docErr(doc, f, "", "a subject needs identity or selector")
		}
	}
	if len(doc.Rules) == 0 {
		return nil, docErr(doc, "rules", "", "the policy has no rules")
	}
	seen := make(map[string]int, len(doc.Rules))
	for i := range doc.Rules {
		r, err := compileRule(e, doc, p, i)
		if err != nil {
			return nil, err
		}
		if j, dup := seen[r.id]; dup {
			return nil, docErr(doc, fmt.Sprintf("rules[%d].id", i), r.id, "duplicate rule id (also used by rules[%d]); rule ids must be unique in a policy", j)
		}
		seen[r.id] = i
		p.rules = append(p.rules, r)
	}
	// The policy keeps the document (for GET) but not its line table, which
	// only error messages need and which would cost memory per policy in force.
	kept := *doc
	kept.lines = nil
	p.doc = &kept
	return p, nil
}

// docErr builds a compile error naming the field, the rule id (if any) and the
// line in the source document (if known).
func docErr(doc *Document, field, ruleID, format string, args ...any) *warden.Error {
	msg := fmt.Sprintf(format, args...)
	if ruleID != "" {
		msg = fmt.Sprintf("rule %q: %s", ruleID, msg)
	}
	line := doc.Line(field)
	if line == 0 {
		if i := strings.IndexByte(field, '.'); i > 0 {
			line = doc.Line(field[:i])
		}
	}
	if line > 0 {
		msg = fmt.Sprintf("line %d: %s", line, msg)
	}
	return &warden.Error{Code: warden.CodeInvalid, Field: field, Message: msg}
}

func compileRule(e *cel.Env, doc *Document, p *Policy, i int) (*rule, error) {
	src := doc.Rules[i]
	f := fmt.Sprintf("rules[%d]", i)
	r := &rule{pol: p, idx: int32(i), polName: p.name, id: src.ID, when: src.When}
	if src.ID == "" {
		return nil, docErr(doc, f+".id", "", "every rule needs an id")
	}
	if !ruleIDRE.MatchString(src.ID) {
		return nil, docErr(doc, f+".id", src.ID, "rule id may use 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	switch Effect(src.Effect) {
	case Allow:
		r.effect = Allow
	case Deny:
		r.effect = Deny
	case RequireApproval:
		r.effect = RequireApproval
	case "":
		return nil, docErr(doc, f+".effect", src.ID, "effect is required: allow, deny or require_approval")
	default:
		return nil, docErr(doc, f+".effect", src.ID, "unknown effect %q: use allow, deny or require_approval", src.Effect)
	}
	if len(src.Actions) == 0 {
		return nil, docErr(doc, f+".actions", src.ID, "actions must list at least one action pattern")
	}
	for j, a := range src.Actions {
		pat, msg := compilePattern(a)
		if msg != "" {
			return nil, docErr(doc, fmt.Sprintf("%s.actions[%d]", f, j), src.ID, "invalid action pattern %q: %s", a, msg)
		}
		r.patterns = append(r.patterns, pat)
	}
	if src.Limit != nil {
		if r.effect != Allow {
			return nil, docErr(doc, f+".limit", src.ID, "limit applies only to allow rules (it counts the calls a rule allowed)")
		}
		if src.Limit.Count < 1 {
			return nil, docErr(doc, f+".limit.count", src.ID, "limit count must be at least 1")
		}
		per, err := ParsePeriod(src.Limit.Per)
		if err != nil {
			return nil, docErr(doc, f+".limit.per", src.ID, "%s", err.Error())
		}
		r.limit = &Limit{Count: src.Limit.Count, Per: per}
	}
	var err error
	if src.NotBefore != "" {
		if r.notBefore, err = time.Parse(time.RFC3339, src.NotBefore); err != nil {
			return nil, docErr(doc, f+".not_before", src.ID, "not_before %q is not an RFC 3339 time like 2026-01-02T15:04:05Z", src.NotBefore)
		}
	}
	if src.ExpiresAt != "" {
		if r.expiresAt, err = time.Parse(time.RFC3339, src.ExpiresAt); err != nil {
			return nil, docErr(doc, f+".expires_at", src.ID, "expires_at %q is not an RFC 3339 time like 2026-01-02T15:04:05Z", src.ExpiresAt)
		}
	}
	if src.Approval != nil {
		if r.effect != RequireApproval {
			return nil, docErr(doc, f+".approval", src.ID, "approval settings apply only to require_approval rules")
		}
		a, msg, field := compileApproval(src.Approval)
		if msg != "" {
			return nil, docErr(doc, f+".approval."+field, src.ID, "%s", msg)
		}
		r.approval = a
	}
	r.timed = !r.notBefore.IsZero() || !r.expiresAt.IsZero()
	if !r.notBefore.IsZero() && !r.expiresAt.IsZero() && !r.expiresAt.After(r.notBefore) {
		return nil, docErr(doc, f+".expires_at", src.ID, "expires_at must be after not_before (the rule could never apply)")
	}
	if strings.TrimSpace(src.When) != "" {
		if err := compileWhen(e, doc, r, f+".when"); err != nil {
			return nil, err
		}
	}
	r.matchReason = fmt.Sprintf("rule %q of policy %q", r.id, p.name)
	r.single = &[1]Match{{Policy: p.name, Rule: r.id, Effect: r.effect}}
	switch r.effect {
	case Allow:
		r.reason = "allowed by " + r.matchReason
	case Deny:
		r.reason = "denied by " + r.matchReason
	case RequireApproval:
		r.reason = "approval required by " + r.matchReason
		r.approved = "allowed with an approval required by " + r.matchReason
	}
	return r, nil
}

// programCache shares planned programs between rules with the same
// condition text. Policy sets repeat conditions (business hours, amount
// thresholds) across many policies; sharing saves compile time and memory,
// and keeps the programs a decision runs hot in the CPU cache. Programs are
// immutable and safe for concurrent use. Only conditions that passed every
// check are cached, and the cache stops growing at maxCachedPrograms.
const maxCachedPrograms = 8192

type cachedProgram struct {
	prg     cel.Program
	ctxEval bool
}

var (
	programMu    sync.Mutex
	programCache = map[string]cachedProgram{}
)

// compileWhen parses, checks and plans a condition. Positions in messages are
// line:column within the condition.
func compileWhen(e *cel.Env, doc *Document, r *rule, field string) error {
	programMu.Lock()
	cp, ok := programCache[r.when]
	programMu.Unlock()
	if ok {
		r.prg, r.ctxEval = cp.prg, cp.ctxEval
		return nil
	}
	ast, iss := e.CompileSource(common.NewTextSource(r.when))
	if iss.Err() != nil {
		var parts []string
		for _, ce := range iss.Errors() {
			loc := ce.Location
			parts = append(parts, fmt.Sprintf("at %d:%d: %s", loc.Line(), loc.Column()+1, ce.Message))
		}
		return docErr(doc, field, r.id, "condition does not compile: %s", strings.Join(parts, "; "))
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		return docErr(doc, field, r.id, "condition must return bool, not %s (compare explicitly, e.g. params.flag == true)", ast.OutputType())
	}
	if msg := checkConstants(ast); msg != "" {
		return docErr(doc, field, r.id, "%s", msg)
	}
	est, err := e.EstimateCost(ast, sizeHints{})
	if err != nil {
		return docErr(doc, field, r.id, "cannot estimate the condition's cost: %v", err)
	}
	if est.Max > CostLimit {
		return docErr(doc, field, r.id, "condition is too expensive: its worst case (with lists and strings of %d items) costs %d, the budget is %d", costSizeHint, est.Max, CostLimit)
	}
	r.ctxEval = len(celast.MatchDescendants(celast.NavigateAST(ast.NativeRep()), celast.KindMatcher(celast.ComprehensionKind))) > 0
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	if r.ctxEval {
		opts = append(opts, cel.CostLimit(CostLimit), cel.InterruptCheckFrequency(64))
	}
	prg, err := e.Program(ast, opts...)
	if err != nil {
		return docErr(doc, field, r.id, "condition cannot be planned: %v", err)
	}
	r.prg = prg
	programMu.Lock()
	if len(programCache) < maxCachedPrograms {
		programCache[r.when] = cachedProgram{prg, r.ctxEval}
	}
	programMu.Unlock()
	return nil
}

var tzFuncs = func() map[string]bool {
	m := map[string]bool{}
	for _, tf := range timeFuncs {
		m[tf.fn] = true
	}
	return m
}()

// checkConstants rejects constant arguments that can never work: time zones
// that do not exist, malformed CIDR prefixes and IP addresses.
func checkConstants(ast *cel.Ast) string {
	calls := celast.MatchDescendants(celast.NavigateAST(ast.NativeRep()), celast.KindMatcher(celast.CallKind))
	for _, c := range calls {
		call := c.AsCall()
		args := call.Args()
		constStr := func(i int) (string, bool) {
			if i >= len(args) || args[i].Kind() != celast.LiteralKind {
				return "", false
			}
			s, ok := args[i].AsLiteral().(types.String)
			return string(s), ok
		}
		switch fn := call.FunctionName(); {
		case tzFuncs[fn] && call.IsMemberFunction() && len(args) == 1:
			if tz, ok := constStr(0); ok {
				if _, err := location(tz); err != nil {
					return fmt.Sprintf("%s(%q): %v", fn, tz, err)
				}
			}
		case fn == "inCidr" && len(args) == 2:
			if ip, ok := constStr(0); ok {
				if _, err := netip.ParseAddr(ip); err != nil {
					return fmt.Sprintf("inCidr: %q is not an IP address", ip)
				}
			}
			if cidr, ok := constStr(1); ok {
				if _, err := netip.ParsePrefix(cidr); err != nil {
					return fmt.Sprintf("inCidr: %q is not a CIDR prefix like 10.0.0.0/8", cidr)
				}
			}
		}
	}
	return ""
}

// sizeHints bounds every input-derived list, map and string to costSizeHint
// items for the save-time cost estimate.
type sizeHints struct{}

func (sizeHints) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if len(n.Path()) > 0 {
		return &cost.SizeEstimate{Min: 0, Max: costSizeHint}
	}
	return nil
}

func (sizeHints) EstimateCallCost(function, overloadID string, target *cost.AstNode, args []cost.AstNode) *cost.CallEstimate {
	return nil
}

// ParsePeriod parses a limit window: a Go duration ("1h", "90s", "1h30m") or a
// whole number of days ("7d"). It must be at least one second and at most 366
// days.
func ParsePeriod(s string) (time.Duration, error) {
	var d time.Duration
	if n, ok := strings.CutSuffix(s, "d"); ok && n != "" && !strings.ContainsAny(n, "hmsuµn.") {
		days, err := strconv.ParseInt(n, 10, 64)
		if err != nil || days < 1 || days > 366 {
			return 0, fmt.Errorf("per %q: days must be a whole number from 1 to 366", s)
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("per %q is not a duration like \"1h\", \"30m\" or \"7d\"", s)
		}
	}
	if d < time.Second || d > 366*24*time.Hour {
		return 0, fmt.Errorf("per %q must be between 1s and 366d", s)
	}
	return d, nil
}
