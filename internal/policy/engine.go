package policy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
)

// Identity is what policy knows about the caller: a copy of the identity
// record made by the caller (the gate), which also checked its status.
type Identity struct {
	ID          string
	Name        string
	Type        string
	Owner       string
	Environment string
	Labels      map[string]string
}

// Request is one question to Decide. Maps are read, never modified, and must
// not be modified by the caller while Decide runs.
type Request struct {
	Identity Identity
	// Action is "connector:operation".
	Action string
	// Class is the operation's class (read, write, ...), empty when the
	// connector or operation is unknown.
	Class    string
	Resource map[string]any
	Params   map[string]any
	Context  map[string]any
	// Time is the request's time for conditions and not_before/expires_at;
	// zero means the engine's clock. Rate limits always use the engine's
	// clock.
	Time   time.Time
	IP     string
	Method string
	Path   string
	// Approved says the caller validated an approval for exactly this call:
	// a matching require_approval rule then allows it.
	Approved bool
	// DryRun asks without counting toward rate limits.
	DryRun bool
	// Explain fills Decision.Trace.
	Explain bool
	// SkipMatched says the caller does not read Decision.Matched when
	// several rules matched (the gateway's hot path): Decide then allocates
	// nothing for it. The deciding rule is always reported.
	SkipMatched bool
}

// Code is the decision code clients see.
type Code string

// Decision codes (a contract: clients match on them).
const (
	CodeAllowed          Code = "allowed"
	CodeDenied           Code = "denied"
	CodeApprovalRequired Code = "approval_required"
	CodeRateLimited      Code = "rate_limited"
	CodePolicyError      Code = "policy_error"
	CodeNoMatchingPolicy Code = "no_matching_policy"
)

// Match names one rule that matched the request.
type Match struct {
	Policy string `json:"policy"`
	Rule   string `json:"rule"`
	Effect Effect `json:"effect"`
	// Error is set when the rule matched because its condition failed to
	// evaluate (deny and require_approval fail closed).
	Error string `json:"error,omitempty"`
}

// Trace results: why a considered rule did or did not match.
const (
	TraceMatched        = "matched"
	TraceActionMismatch = "action_mismatch"
	TraceNotYetValid    = "not_yet_valid"
	TraceExpired        = "expired"
	TraceConditionFalse = "condition_false"
	TraceConditionError = "condition_error"
	TraceOverLimit      = "over_limit"
)

// TraceEntry explains one rule considered by Decide.
type TraceEntry struct {
	Policy string `json:"policy"`
	Rule   string `json:"rule"`
	Effect Effect `json:"effect"`
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// Decision is Decide's answer. Policy and Rule name the deciding rule and are
// empty when no rule decided (no_matching_policy).
type Decision struct {
	Effect     Effect        `json:"decision"`
	Code       Code          `json:"code"`
	Reason     string        `json:"reason"`
	Policy     string        `json:"policy"`
	Rule       string        `json:"rule"`
	RetryAfter time.Duration `json:"-"`
	// Matched lists every matching rule in deciding order. It may be shared
	// with other decisions: read it, do not modify its elements.
	Matched []Match `json:"matched,omitempty"`
	// Trace lists, with Request.Explain, every rule of every policy whose
	// subjects match the identity, in deciding order.
	Trace []TraceEntry `json:"trace,omitempty"`
}

// RetryAfterSeconds returns RetryAfter rounded up to whole seconds (at least 1
// for a rate-limited decision), as HTTP's Retry-After wants it.
func (d *Decision) RetryAfterSeconds() int64 {
	if d.RetryAfter <= 0 {
		if d.Code == CodeRateLimited {
			return 1
		}
		return 0
	}
	return int64((d.RetryAfter + time.Second - 1) / time.Second)
}

// Options configure an Engine.
type Options struct {
	// Now is the server clock (rate-limit windows, and the request time when
	// a Request has none). Default time.Now.
	Now func() time.Time
	// Limiter keeps rate-limit counters. Default: a new MemoryLimiter.
	Limiter Limiter
}

// Engine holds the compiled policies in force and answers Decide. Writers
// (Put, Delete, Replace) build a new immutable snapshot with its index and
// swap it in atomically; a decision sees either the old or the new snapshot,
// never a half-applied change. Decide takes no lock.
type Engine struct {
	mu   sync.Mutex // serialises writers
	snap atomic.Pointer[snapshot]
	now  func() time.Time
	lim  Limiter
}

// NewEngine returns an engine with no policies: every decision is deny
// (no_matching_policy) until policies are put.
func NewEngine(opts Options) *Engine {
	e := &Engine{now: opts.Now, lim: opts.Limiter}
	if e.now == nil {
		e.now = time.Now
	}
	if e.lim == nil {
		e.lim = NewMemoryLimiter(0)
	}
	e.snap.Store(buildSnapshot(map[string]*Policy{}))
	return e
}

// Put adds p or replaces the policy of the same name. Rate-limit counters are
// keyed by policy name and rule id, so they carry over. Only the index
// entries of the subjects p (and the version it replaces) name are rebuilt;
// the rest of the snapshot is shared with the previous one.
func (e *Engine) Put(p *Policy) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.snap.Store(e.snap.Load().with(p.name, p))
}

// Delete removes the named policy and reports whether it was there.
func (e *Engine) Delete(name string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.snap.Load()
	if _, ok := s.byName[name]; !ok {
		return false
	}
	e.snap.Store(s.with(name, nil))
	return true
}

// Replace swaps in exactly the given policies (for loading from storage or a
// change notification). When names repeat, the last one wins.
func (e *Engine) Replace(ps []*Policy) {
	m := make(map[string]*Policy, len(ps))
	for _, p := range ps {
		m[p.name] = p
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.snap.Store(buildSnapshot(m))
}

// Get returns the policy in force with the given name.
func (e *Engine) Get(name string) (*Policy, bool) {
	p, ok := e.snap.Load().byName[name]
	return p, ok
}

// Policies returns the policies in force, sorted by name.
func (e *Engine) Policies() []*Policy {
	return slices.Clone(e.snap.Load().sorted)
}

// ---- index ----

// ruleRef is a rule in a bucket. Deciding order is policy name, then rule
// order; before reports it. The ref carries the first eight bytes of the
// policy name, so ordering the candidates of different policies rarely reads
// the policies themselves (with many policies in force, rarely in cache).
type ruleRef struct {
	r   *rule
	key uint64 // the policy name's first 8 bytes, big-endian, zero-padded
}

func newRuleRef(r *rule) ruleRef {
	var k uint64
	for i := 0; i < 8; i++ {
		k <<= 8
		if i < len(r.polName) {
			k |= uint64(r.polName[i])
		}
	}
	return ruleRef{r: r, key: k}
}

// before reports whether a decides before b. Names hold no NUL byte, so the
// zero-padded prefixes order like the names whenever they differ.
func before(a, b ruleRef) bool {
	if a.r.pol == b.r.pol {
		return a.r.idx < b.r.idx
	}
	if a.key != b.key {
		return a.key < b.key
	}
	return a.r.polName < b.r.polName
}

type labelKV struct{ k, v string }

type selEntry struct {
	sel    Selector
	labels []labelKV // sorted by key
	b      *bucket
}

func (s *selEntry) matches(id *Identity) bool {
	if (s.sel.Type != "" && s.sel.Type != id.Type) ||
		(s.sel.Environment != "" && s.sel.Environment != id.Environment) ||
		(s.sel.Owner != "" && s.sel.Owner != id.Owner) {
		return false
	}
	for _, kv := range s.labels {
		if v, ok := id.Labels[kv.k]; !ok || v != kv.v {
			return false
		}
	}
	return true
}

type snapshot struct {
	byName map[string]*Policy
	sorted []*Policy
	syms   *symbols
	idents identIndex           // identity name or id -> bucket
	sels   map[string]*selEntry // selector key -> entry
	// Selectors are indexed by one field each, the most selective given:
	// the first label, else type, else environment, else owner, else open.
	byLabel map[labelKV][]*selEntry
	byType  map[string][]*selEntry
	byEnv   map[string][]*selEntry
	byOwner map[string][]*selEntry
	open    []*selEntry
}

// selectorKey is a selector's identity in the index: policies whose
// selectors are equal share one entry. Every part is length-prefixed, so
// two different selectors never get the same key (with separators alone,
// {team: "x=y"} and {"team=x": "y"} did, and one entry then held both
// policies' rules under one of the two selectors).
func selectorKey(s *Selector) string {
	var b []byte
	part := func(v string) {
		b = strconv.AppendInt(b, int64(len(v)), 10)
		b = append(b, ':')
		b = append(b, v...)
	}
	part(s.Type)
	part(s.Environment)
	part(s.Owner)
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		part(k)
		part(s.Labels[k])
	}
	return string(b)
}

// subjectKeys returns the distinct identity names/ids and selector keys of a
// policy's subjects.
func (p *Policy) subjectKeys() (idents []string, sels map[string]*Selector) {
	sels = map[string]*Selector{}
	for _, sub := range p.subjects {
		if sub.sel == nil {
			if !slices.Contains(idents, sub.identity) {
				idents = append(idents, sub.identity)
			}
		} else {
			sels[selectorKey(sub.sel)] = sub.sel
		}
	}
	return idents, sels
}

func newSelEntry(sel *Selector, pols []*Policy, sy *symbols) *selEntry {
	se := &selEntry{sel: *sel, b: newBucket(pols, sy)}
	for k, v := range sel.Labels {
		se.labels = append(se.labels, labelKV{k, v})
	}
	sort.Slice(se.labels, func(i, j int) bool { return se.labels[i].k < se.labels[j].k })
	return se
}

// indexSelectors rebuilds the small per-field selector indexes.
func (s *snapshot) indexSelectors() {
	s.byLabel = map[labelKV][]*selEntry{}
	s.byType = map[string][]*selEntry{}
	s.byEnv = map[string][]*selEntry{}
	s.byOwner = map[string][]*selEntry{}
	s.open = nil
	for _, se := range s.sels {
		switch {
		case len(se.labels) > 0:
			s.byLabel[se.labels[0]] = append(s.byLabel[se.labels[0]], se)
		case se.sel.Type != "":
			s.byType[se.sel.Type] = append(s.byType[se.sel.Type], se)
		case se.sel.Environment != "":
			s.byEnv[se.sel.Environment] = append(s.byEnv[se.sel.Environment], se)
		case se.sel.Owner != "":
			s.byOwner[se.sel.Owner] = append(s.byOwner[se.sel.Owner], se)
		default:
			s.open = append(s.open, se)
		}
	}
}

func buildSnapshot(m map[string]*Policy) *snapshot {
	s := &snapshot{byName: m, syms: newSymbols(), sels: map[string]*selEntry{}}
	for _, p := range m {
		s.sorted = append(s.sorted, p)
	}
	sort.Slice(s.sorted, func(i, j int) bool { return s.sorted[i].name < s.sorted[j].name })
	identPols := map[string][]*Policy{}
	selPols := map[string][]*Policy{}
	selOf := map[string]*Selector{}
	for _, p := range s.sorted { // in name order, so every list is sorted
		p.symbolNames(s.syms.add)
		ids, sels := p.subjectKeys()
		for _, id := range ids {
			identPols[id] = append(identPols[id], p)
		}
		for k, sel := range sels {
			selPols[k] = append(selPols[k], p)
			selOf[k] = sel
		}
	}
	s.syms.built = len(s.syms.pats)
	idents := make(map[string]*bucket, len(identPols))
	for id, pols := range identPols {
		idents[id] = newBucket(pols, s.syms)
	}
	s.idents = newIdentIndex(idents)
	for k, pols := range selPols {
		s.sels[k] = newSelEntry(selOf[k], pols, s.syms)
	}
	s.indexSelectors()
	return s
}

// withPolicy returns pols (sorted by name) without the policy named name and,
// if p is not nil, with p in its place.
func withPolicy(pols []*Policy, name string, p *Policy) []*Policy {
	out := make([]*Policy, 0, len(pols)+1)
	for _, q := range pols {
		if q.name != name {
			out = append(out, q)
		}
	}
	if p != nil {
		i, _ := slices.BinarySearchFunc(out, name, func(q *Policy, n string) int { return strings.Compare(q.name, n) })
		out = slices.Insert(out, i, p)
	}
	return out
}

// with returns a new snapshot in which the policy named name is p (or gone,
// for nil p). Buckets of subjects neither version names are shared.
func (s *snapshot) with(name string, p *Policy) *snapshot {
	old := s.byName[name]
	byName := maps.Clone(s.byName)
	if p == nil {
		delete(byName, name)
	} else {
		byName[name] = p
	}
	syms := s.syms
	if p != nil {
		syms = syms.with(p)
	}
	if len(syms.pats) > 2*syms.built+1024 {
		// Symbols are never taken away incrementally; rebuild once they
		// are mostly those of policies no longer in force.
		return buildSnapshot(byName)
	}
	ns := &snapshot{byName: byName, syms: syms, sels: maps.Clone(s.sels)}
	ns.sorted = withPolicy(s.sorted, name, p)

	identKeys := map[string]bool{}
	selKeys := map[string]*Selector{}
	for _, q := range []*Policy{old, p} {
		if q == nil {
			continue
		}
		ids, sels := q.subjectKeys()
		for _, id := range ids {
			identKeys[id] = true
		}
		for k, sel := range sels {
			selKeys[k] = sel
		}
	}
	var newIDs []string
	var newSels map[string]*Selector
	if p != nil {
		newIDs, newSels = p.subjectKeys()
	}
	changes := make(map[string]*bucket, len(identKeys))
	for id := range identKeys {
		var pols []*Policy
		if sl := s.idents.get(id); sl != nil {
			pols = sl.b.pols
		}
		var np *Policy
		if slices.Contains(newIDs, id) {
			np = p
		}
		changes[id] = nil
		if pols = withPolicy(pols, name, np); len(pols) > 0 {
			changes[id] = newBucket(pols, syms)
		}
	}
	ns.idents = s.idents.with(changes)
	for k, sel := range selKeys {
		var pols []*Policy
		if se := s.sels[k]; se != nil {
			pols = se.b.pols
		}
		var np *Policy
		if _, ok := newSels[k]; ok {
			np = p
		}
		if pols = withPolicy(pols, name, np); len(pols) == 0 {
			delete(ns.sels, k)
		} else {
			ns.sels[k] = newSelEntry(sel, pols, syms)
		}
	}
	ns.indexSelectors()
	return ns
}

// buckets calls fn for every bucket whose subject matches the identity, with
// the bucket's cells (b.cells, but read from where the lookup found them).
func (s *snapshot) buckets(id *Identity, own ownSlots, fn func(cells []cell, b *bucket)) {
	if own.byName != nil {
		fn(own.byName.cells, own.byName.b)
	}
	if own.byID != nil {
		fn(own.byID.cells, own.byID.b)
	}
	try := func(list []*selEntry) {
		for _, se := range list {
			if se.matches(id) {
				fn(se.b.cells, se.b)
			}
		}
	}
	if len(s.byLabel) > 0 {
		for k, v := range id.Labels {
			try(s.byLabel[labelKV{k, v}])
		}
	}
	if id.Type != "" {
		try(s.byType[id.Type])
	}
	if id.Environment != "" {
		try(s.byEnv[id.Environment])
	}
	if id.Owner != "" {
		try(s.byOwner[id.Owner])
	}
	try(s.open)
}

// ownSlots are the index slots of an identity's name and id, nil when no
// policy names it so.
type ownSlots struct{ byName, byID *identSlot }

// lookup finds the slots of the identity's name and id. Decide calls it
// first: with many identities the slots (and the name and id themselves)
// are rarely in cache, and the CPU fetches both while it goes on with the
// rest of the request, rather than one after the other when the index is
// walked.
func (s *snapshot) lookup(id *Identity) ownSlots {
	var own ownSlots
	if id.Name != "" {
		own.byName = s.idents.get(id.Name)
	}
	if id.ID != "" && id.ID != id.Name {
		own.byID = s.idents.get(id.ID)
	}
	return own
}

// candidates appends the rules that apply to the identity and whose patterns
// match the action (every rule of the identity's policies with all), sorted in
// deciding order without duplicates.
func (s *snapshot) candidates(out []ruleRef, id *Identity, action, conn, op string, all bool) []ruleRef {
	return s.candidatesOf(out, id, s.lookup(id), action, conn, op, all)
}

// candidatesOf is candidates with the identity's slots already looked up.
func (s *snapshot) candidatesOf(out []ruleRef, id *Identity, own ownSlots, action, conn, op string, all bool) []ruleRef {
	k := actionKeys{conn: conn, op: op}
	if !all {
		k.action, k.connID = s.syms.ids[action], s.syms.ids[conn]
	}
	s.buckets(id, own, func(cells []cell, b *bucket) {
		if all {
			out = b.appendEvery(out)
			return
		}
		out = appendMatching(out, cells, &k, s.syms)
	})
	if len(out) > 1 {
		// Insertion sort: candidate lists are short, and this allocates nothing.
		for i := 1; i < len(out); i++ {
			for j := i; j > 0 && before(out[j], out[j-1]); j-- {
				out[j], out[j-1] = out[j-1], out[j]
			}
		}
		w := 1
		for i := 1; i < len(out); i++ {
			if out[i].r != out[w-1].r {
				out[w] = out[i]
				w++
			}
		}
		out = out[:w]
	}
	return out
}

func (r *rule) matchesAction(conn, op string) bool {
	for i := range r.patterns {
		if r.patterns[i].match(conn, op) {
			return true
		}
	}
	return false
}

// ---- evaluation ----

// evalInput is the CEL activation for one decision. It is pooled, so Decide
// does not allocate one per call.
type evalInput struct {
	req                   *Request
	identity, action, rqs object
}

var inputPool = sync.Pool{New: func() any { return new(evalInput) }}

func newEvalInput(req *Request, conn, op string, now time.Time) *evalInput {
	in := inputPool.Get().(*evalInput)
	in.req = req
	id := &req.Identity
	in.identity.strs = [5]string{fIdentityID: id.ID, fIdentityName: id.Name, fIdentityType: id.Type, fIdentityOwner: id.Owner, fIdentityEnvironment: id.Environment}
	in.identity.labels = id.Labels
	in.action.strs = [5]string{fActionName: req.Action, fActionConnector: conn, fActionOperation: op, fActionClass: req.Class}
	in.rqs.strs = [5]string{fRequestIP: req.IP, fRequestMethod: req.Method, fRequestPath: req.Path}
	in.rqs.time = now
	return in
}

// ResolveName implements interpreter.Activation.
func (in *evalInput) ResolveName(name string) (any, bool) {
	switch name {
	case "identity":
		return &in.identity, true
	case "action":
		return &in.action, true
	case "request":
		return &in.rqs, true
	case "params":
		return orEmpty(in.req.Params), true
	case "resource":
		return orEmpty(in.req.Resource), true
	case "context":
		return orEmpty(in.req.Context), true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (in *evalInput) Parent() interpreter.Activation { return nil }

func orEmpty(m map[string]any) map[string]any {
	if m == nil {
		return emptyMap
	}
	return m
}

// eval runs the rule's condition. Loops run under the cost limit and the
// context's deadline; straight-line conditions are bounded by their size and
// the context is checked once per decision instead.
func (r *rule) eval(ctx context.Context, in *evalInput) (bool, error) {
	var out ref.Val
	var err error
	if r.ctxEval {
		out, _, err = r.prg.ContextEval(ctx, in)
	} else {
		out, _, err = r.prg.Eval(in)
	}
	if err != nil {
		return false, err
	}
	b, ok := out.(types.Bool)
	if !ok {
		return false, fmt.Errorf("condition returned %s, not bool", out.Type().TypeName())
	}
	return bool(b), nil
}

// matchRef is a matched rule while deciding; Decision.Matched is built from
// these once, at the end.
type matchRef struct {
	r   *rule
	err string
}

const reasonNoMatch = "no policy rule allows this action for this identity"

// Decide answers one request. It never fails: every problem (malformed action,
// condition errors, an unavailable limiter, a cancelled context) is a deny
// with a code and a reason. With req.DryRun, rate limits are checked but not
// counted.
func (e *Engine) Decide(ctx context.Context, req *Request) Decision {
	s := e.snap.Load()
	own := s.lookup(&req.Identity)
	conn, op, err := ParseAction(req.Action)
	if err != nil {
		return Decision{Effect: Deny, Code: CodePolicyError, Reason: "malformed action: " + err.Error()}
	}
	now := req.Time
	if now.IsZero() {
		now = e.now()
	}
	var cbuf [32]ruleRef
	cands := s.candidatesOf(cbuf[:0], &req.Identity, own, req.Action, conn, op, req.Explain)
	if len(cands) == 0 {
		return Decision{Effect: Deny, Code: CodeNoMatchingPolicy, Reason: reasonNoMatch}
	}
	ctxErr := ctx.Err()

	// The activation is set up on the first condition: decisions by rules
	// without conditions never touch it.
	var in *evalInput
	defer func() {
		if in != nil {
			*in = evalInput{}
			inputPool.Put(in)
		}
	}()

	var (
		mbuf     [16]matchRef
		matched  = mbuf[:0]
		abuf     [8]*rule
		allows   = abuf[:0]
		deny     *rule
		denyErr  string
		appr     *rule
		apprErr  string
		allowErr *rule
		allowMsg string
		trace    []TraceEntry
	)
	note := func(r *rule, result, detail string) {
		if req.Explain {
			trace = append(trace, TraceEntry{Policy: r.polName, Rule: r.id, Effect: r.effect, Result: result, Detail: detail})
		}
	}
	for _, c := range cands {
		r := c.r
		if req.Explain && !r.matchesAction(conn, op) {
			note(r, TraceActionMismatch, "no pattern of the rule matches "+req.Action)
			continue
		}
		if r.timed {
			if !r.notBefore.IsZero() && now.Before(r.notBefore) {
				note(r, TraceNotYetValid, "applies from "+r.notBefore.Format(time.RFC3339))
				continue
			}
			if !r.expiresAt.IsZero() && !now.Before(r.expiresAt) {
				note(r, TraceExpired, "expired at "+r.expiresAt.Format(time.RFC3339))
				continue
			}
		}
		var evalMsg string
		if r.prg != nil {
			ok, err := false, ctxErr
			if err == nil {
				if in == nil {
					in = newEvalInput(req, conn, op, now)
				}
				ok, err = r.eval(ctx, in)
			}
			if err != nil {
				evalMsg = err.Error()
				if r.effect == Allow {
					// An erroring allow never grants.
					if allowErr == nil {
						allowErr, allowMsg = r, evalMsg
					}
					note(r, TraceConditionError, evalMsg+" (an allow rule whose condition fails does not match)")
					continue
				}
				note(r, TraceConditionError, evalMsg+" (a "+string(r.effect)+" rule whose condition fails matches: fail closed)")
			} else if !ok {
				note(r, TraceConditionFalse, "condition is false")
				continue
			}
		}
		if evalMsg == "" {
			note(r, TraceMatched, "")
		}
		matched = append(matched, matchRef{r, evalMsg})
		switch r.effect {
		case Deny:
			if deny == nil {
				deny, denyErr = r, evalMsg
			}
		case RequireApproval:
			if appr == nil {
				appr, apprErr = r, evalMsg
			}
		case Allow:
			allows = append(allows, r)
		}
	}

	var d Decision
	switch {
	case deny != nil:
		d = Decision{Effect: Deny, Code: CodeDenied, Policy: deny.polName, Rule: deny.id, Reason: deny.reason}
		if denyErr != "" {
			d.Reason += " (its condition failed to evaluate, so it applies: " + denyErr + ")"
		}
	case appr != nil && req.Approved:
		d = Decision{Effect: Allow, Code: CodeAllowed, Policy: appr.polName, Rule: appr.id, Reason: appr.approved}
	case appr != nil:
		d = Decision{Effect: RequireApproval, Code: CodeApprovalRequired, Policy: appr.polName, Rule: appr.id, Reason: appr.reason}
		if apprErr != "" {
			d.Reason += " (its condition failed to evaluate, so it applies: " + apprErr + ")"
		}
	case len(allows) > 0:
		d = e.allowWithinLimits(ctx, req, allows, &trace)
	case allowErr != nil:
		d = Decision{Effect: Deny, Code: CodePolicyError, Policy: allowErr.polName, Rule: allowErr.id,
			Reason: "the condition of " + allowErr.matchReason + " failed to evaluate, so it does not allow: " + allowMsg}
	default:
		d = Decision{Effect: Deny, Code: CodeNoMatchingPolicy, Reason: reasonNoMatch}
	}
	switch {
	case len(matched) == 1 && matched[0].err == "":
		// The common case shares the rule's prebuilt, capacity-1 slice.
		d.Matched = matched[0].r.single[:]
	case len(matched) > 0 && !req.SkipMatched:
		d.Matched = make([]Match, len(matched))
		for i, m := range matched {
			d.Matched[i] = Match{Policy: m.r.polName, Rule: m.r.id, Effect: m.r.effect, Error: m.err}
		}
	}
	d.Trace = trace
	return d
}

// allowWithinLimits picks the first matching allow rule within its limit and
// counts the call against it (unless dry run). When every one is over its
// limit the call is rate_limited with the soonest reset.
func (e *Engine) allowWithinLimits(ctx context.Context, req *Request, allows []*rule, trace *[]TraceEntry) Decision {
	var over *rule
	var retry time.Duration
	idKey := req.Identity.ID
	if idKey == "" {
		idKey = req.Identity.Name
	}
	for _, r := range allows {
		if r.limit == nil {
			return Decision{Effect: Allow, Code: CodeAllowed, Policy: r.polName, Rule: r.id, Reason: r.reason}
		}
		res, err := e.lim.Take(ctx, LimitKey{Policy: r.polName, Rule: r.id, Identity: idKey}, *r.limit, e.now(), !req.DryRun)
		if err != nil {
			return Decision{Effect: Deny, Code: CodePolicyError, Policy: r.polName, Rule: r.id,
				Reason: "the rate limit of " + r.matchReason + " could not be checked, so it does not allow: " + err.Error()}
		}
		if res.Allowed {
			return Decision{Effect: Allow, Code: CodeAllowed, Policy: r.polName, Rule: r.id, Reason: r.reason}
		}
		if req.Explain {
			for i := range *trace {
				t := &(*trace)[i]
				if t.Policy == r.polName && t.Rule == r.id {
					t.Result = TraceOverLimit
					t.Detail = fmt.Sprintf("matched, but the limit of %d per %s is used up; resets in %s", r.limit.Count, r.limit.Per, res.RetryAfter.Round(time.Second))
				}
			}
		}
		if over == nil || res.RetryAfter < retry {
			if over == nil {
				over = r
			}
			retry = res.RetryAfter
		}
	}
	return Decision{Effect: Deny, Code: CodeRateLimited, Policy: over.polName, Rule: over.id, RetryAfter: retry,
		Reason: fmt.Sprintf("rate limit of %s reached (%d per %s)", over.matchReason, over.limit.Count, over.limit.Per)}
}
