package monitor

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"warden/internal/gate"
)

// Tuning holds the detectors' thresholds. Zero fields take the defaults in
// DefaultTuning; docs/monitor.md explains each.
type Tuning struct {
	// LearningCalls and LearningPeriod: an identity alerts (except for key
	// reuse, which needs no baseline) only once it made this many calls AND
	// this much time passed since its first call.
	LearningCalls  int
	LearningPeriod time.Duration
	// RateBucket is the width of the rate buckets (default 1m).
	RateBucket time.Duration
	// SpikeFloor is the fewest calls of one operation in one bucket that
	// can be a spike; SpikeSigma and SpikeFactor how far above the usual
	// mean (in standard deviations, and as a multiple) it must be.
	SpikeFloor  int
	SpikeSigma  float64
	SpikeFactor float64
	// DenyFloor: the fewest refusals in one bucket that make a burst.
	DenyFloor int
	// ProbeDistinct operations never refused before, refused within
	// ProbeWindow, make a probing finding (low-and-slow probing).
	ProbeDistinct int
	ProbeWindow   time.Duration
	// ApprovalFloor approval requests within ApprovalBucket are a flood.
	ApprovalFloor  int
	ApprovalBucket time.Duration
	// KeyNetworks distinct networks using one key within KeyWindow: reuse.
	KeyNetworks int
	KeyWindow   time.Duration
	// HoursAfter: off-hours findings need this much history (default 7
	// days, so every weekday was seen).
	HoursAfter time.Duration
	// LargeFloor: responses smaller than this are never "large".
	LargeFloor int64
	// Cooldown suppresses a repeat of the same finding (identity, detector,
	// subject, severity) within this time (de-duplication).
	Cooldown time.Duration
}

// DefaultTuning is used for every zero field of Tuning.
var DefaultTuning = Tuning{
	LearningCalls: 100, LearningPeriod: 24 * time.Hour, RateBucket: time.Minute,
	SpikeFloor: 30, SpikeSigma: 6, SpikeFactor: 5, DenyFloor: 10, ProbeDistinct: 5, ProbeWindow: 6 * time.Hour,
	ApprovalFloor: 10, ApprovalBucket: 10 * time.Minute, KeyNetworks: 3, KeyWindow: 5 * time.Minute,
	HoursAfter: 7 * 24 * time.Hour, LargeFloor: 1 << 20, Cooldown: 15 * time.Minute,
}

func (t Tuning) withDefaults() Tuning {
	d := DefaultTuning
	if t.LearningCalls == 0 {
		t.LearningCalls = d.LearningCalls
	}
	// LearningPeriod 0 is meaningful (learn by calls only); negative means
	// "use the default".
	if t.LearningPeriod < 0 {
		t.LearningPeriod = d.LearningPeriod
	}
	if t.RateBucket == 0 {
		t.RateBucket = d.RateBucket
	}
	if t.SpikeFloor == 0 {
		t.SpikeFloor = d.SpikeFloor
	}
	if t.SpikeSigma == 0 {
		t.SpikeSigma = d.SpikeSigma
	}
	if t.SpikeFactor == 0 {
		t.SpikeFactor = d.SpikeFactor
	}
	if t.DenyFloor == 0 {
		t.DenyFloor = d.DenyFloor
	}
	if t.ProbeDistinct == 0 {
		t.ProbeDistinct = d.ProbeDistinct
	}
	if t.ProbeWindow == 0 {
		t.ProbeWindow = d.ProbeWindow
	}
	if t.ApprovalFloor == 0 {
		t.ApprovalFloor = d.ApprovalFloor
	}
	if t.ApprovalBucket == 0 {
		t.ApprovalBucket = d.ApprovalBucket
	}
	if t.KeyNetworks == 0 {
		t.KeyNetworks = d.KeyNetworks
	}
	if t.KeyWindow == 0 {
		t.KeyWindow = d.KeyWindow
	}
	if t.HoursAfter == 0 {
		t.HoursAfter = d.HoursAfter
	}
	if t.LargeFloor == 0 {
		t.LargeFloor = d.LargeFloor
	}
	if t.Cooldown == 0 {
		t.Cooldown = d.Cooldown
	}
	return t
}

func (t Tuning) validate() error {
	switch {
	case t.LearningCalls < 1:
		return fmt.Errorf("learning_calls must be at least 1")
	case t.LearningPeriod > 90*24*time.Hour:
		return fmt.Errorf("learning_period must be at most 90 days")
	case t.RateBucket < time.Second || t.RateBucket > time.Hour:
		return fmt.Errorf("rate bucket must be between 1s and 1h")
	case t.SpikeFloor < 1:
		return fmt.Errorf("spike_floor must be at least 1")
	case t.SpikeSigma < 0 || t.SpikeFactor < 0:
		return fmt.Errorf("spike sigma and factor must not be negative")
	case t.DenyFloor < 1 || t.ProbeDistinct < 1 || t.ApprovalFloor < 1 || t.KeyNetworks < 2:
		return fmt.Errorf("deny, probe and approval floors must be at least 1 and key networks at least 2")
	case t.ProbeWindow <= 0 || t.ApprovalBucket <= 0 || t.KeyWindow <= 0 || t.Cooldown <= 0:
		return fmt.Errorf("windows and cooldown must be positive")
	}
	return nil
}

// who is what the engine knows about an identity beyond its traffic.
type who struct {
	Name  string
	Owner string
}

// keyUse is one network a key was used from, and when last.
type keyUse struct {
	net  string
	last time.Time
}

// engine holds every baseline and runs the detectors. It is not safe for
// concurrent use: the monitor's single detection goroutine owns it, so the
// hot path never takes its locks.
type engine struct {
	t         Tuning
	ids       map[string]*baseline
	keys      map[string][]keyUse
	cooldown  map[string]time.Time
	maxIDs    int
	untracked int64 // observations of identities beyond maxIDs
}

func newEngine(t Tuning, maxIDs int) *engine {
	return &engine{t: t, ids: map[string]*baseline{}, keys: map[string][]keyUse{}, cooldown: map[string]time.Time{}, maxIDs: maxIDs}
}

// observe learns from o and returns the findings it raises (already
// de-duplicated). w names the identity for explanations.
func (e *engine) observe(o *gate.Observation, w who) []*Finding {
	if o.IdentityID == "" {
		return nil
	}
	// Refusals of a stopped identity say nothing about its behaviour.
	if o.Code == "identity_suspended" || o.Code == "identity_decommissioned" || o.Code == "unknown_identity" {
		return nil
	}
	t := o.Time.UTC()
	b := e.ids[o.IdentityID]
	if b == nil {
		if len(e.ids) >= e.maxIDs {
			e.untracked++
			return nil
		}
		b = newBaseline(o.IdentityID, t)
		e.ids[o.IdentityID] = b
	}
	b.dirty = true
	name := w.Name
	if name == "" {
		name = o.IdentityID
	}
	var out []*Finding
	emit := func(f *Finding) {
		f.IdentityID, f.IdentityName, f.Owner, f.KeyID = o.IdentityID, w.Name, w.Owner, safeText(o.KeyID)
		// Outside input (addresses, user agents, keys) reaches explanations:
		// keep them valid UTF-8 without control characters, which both
		// engines store and an identity's status reason accepts.
		f.Explanation, f.Action = safeText(f.Explanation), safeText(f.Action)
		if f.FirstEventAt.IsZero() {
			f.FirstEventAt = t
		}
		if e.fresh(f, t) {
			out = append(out, f)
		}
	}
	if o.Completed {
		e.completed(b, o, t, name, emit)
		return out
	}
	learned := b.learned()

	// Key reuse needs no baseline: one key from many networks at once is
	// suspicious on the first day too.
	nw := b.network(o.ClientIP)
	if nw != "" && o.KeyID != "" {
		e.keyReuse(o, nw, t, name, emit)
	}

	// Every decided call counts toward the rate of its operation, refused
	// ones included: a runaway loop that is throttled keeps escalating.
	op := b.Ops[o.Action]
	if op == nil && o.Action != "" {
		if len(b.Ops) < maxOps {
			op = &opStat{First: t, Class: o.Class}
			op.Rate.roll(t, e.t.RateBucket)
			b.Ops[o.Action] = op
			if learned {
				e.newOperation(b, o, t, name, emit)
			}
		} else {
			b.OpsFull = true
		}
	}
	if op != nil {
		op.Count++
		op.Last = t
		op.Rate.roll(t, e.t.RateBucket)
		op.Rate.Count++
		if float64(op.Rate.Count) > op.Rate.usual() && op.Rate.Excess.IsZero() {
			op.Rate.Excess = t
		}
		if learned {
			e.rateSpike(b, op, o, t, name, emit)
		}
	}
	if c := connectorOf(o.Action); c != "" {
		b.Conns[c]++
	}

	how := hourOfWeek(t)
	if learned && t.Sub(b.First) >= e.t.HoursAfter && b.hourOfDayCount(how%24) == 0 {
		emit(&Finding{Detector: DetOffHours, Severity: Medium, Action: o.Action,
			subject: fmt.Sprintf("h%02d", how%24),
			Explanation: fmt.Sprintf("%s acted at %s UTC (%s), an hour of the day at which it has never acted in %s of history (%d calls)",
				name, t.Format("15:04"), t.Weekday(), days(t.Sub(b.First)), b.Calls),
			Evidence: map[string]any{"hour_utc": how % 24, "weekday": t.Weekday().String(), "history_days": t.Sub(b.First).Hours() / 24}})
	}
	b.Hours[how]++

	if nw != "" {
		if remember(b.Networks, nw, t, maxNetworks) && learned && len(b.Networks) > 1 {
			emit(&Finding{Detector: DetNewNetwork, Severity: Medium, Action: o.Action, subject: nw,
				Explanation: fmt.Sprintf("%s called from %s (address %s), a network it has never used; it used %s before",
					name, nw, o.ClientIP, listKnown(b.Networks, nw, 5)),
				Evidence: map[string]any{"network": nw, "ip": o.ClientIP, "known_networks": keysExcept(b.Networks, nw, 20)}})
		}
	}
	fam := b.family(o.UserAgent)
	newFam := remember(b.Agents, fam, t, maxAgents)
	switch {
	case fam == "browser" && !learned:
		b.Browser = true
	case fam == "browser" && !b.Browser:
		emit(&Finding{Detector: DetInteractive, Severity: High, Action: o.Action, subject: "browser",
			Explanation: fmt.Sprintf("%s's credential was used from a web browser (%q): a person may be using an agent's key interactively",
				name, clip(o.UserAgent, 120)),
			Evidence: map[string]any{"user_agent": clip(o.UserAgent, 256), "ip": o.ClientIP}})
	case newFam && learned && len(b.Agents) > 1:
		emit(&Finding{Detector: DetNewClient, Severity: Low, Action: o.Action, subject: fam,
			Explanation: fmt.Sprintf("%s called with a client it has never used (%q); it used %s before",
				name, clip(o.UserAgent, 120), listKnown(b.Agents, fam, 5)),
			Evidence: map[string]any{"user_agent": clip(o.UserAgent, 256), "client": fam, "known_clients": keysExcept(b.Agents, fam, 20)}})
	}

	if o.Decision == "deny" || o.Decision == "error" {
		e.denied(b, o, t, learned, name, emit)
	} else {
		b.Denies.roll(t, e.t.RateBucket)
	}
	if o.Decision == "require_approval" {
		e.approval(b, t, learned, name, emit)
	}

	if !b.Last.IsZero() && t.After(b.Last) {
		b.Gap.add(math.Log2(max(t.Sub(b.Last).Seconds(), 0.001)), 0.05)
	}
	if t.After(b.Last) {
		b.Last = t
	}
	b.Calls++
	if !learned && b.Calls >= int64(e.t.LearningCalls) && t.Sub(b.First) >= e.t.LearningPeriod {
		b.LearnedAt = t
	}
	return out
}

// fresh applies the cooldown: the same finding (identity, detector,
// subject, severity) is raised at most once per Cooldown.
func (e *engine) fresh(f *Finding, t time.Time) bool {
	k := f.IdentityID + "\x00" + f.Detector + "\x00" + f.subject + "\x00" + string(f.Severity)
	if last, ok := e.cooldown[k]; ok && t.Sub(last) < e.t.Cooldown && !t.Before(last) {
		return false
	}
	e.cooldown[k] = t
	return true
}

func (e *engine) keyReuse(o *gate.Observation, nw string, t time.Time, name string, emit func(*Finding)) {
	uses := e.keys[o.KeyID]
	kept := uses[:0]
	found := false
	for _, u := range uses {
		if u.net == nw {
			u.last, found = t, true
		}
		if t.Sub(u.last) <= e.t.KeyWindow {
			kept = append(kept, u)
		}
	}
	if !found {
		if len(kept) >= maxKeyNets {
			kept = kept[1:]
		}
		kept = append(kept, keyUse{net: nw, last: t})
	}
	e.keys[o.KeyID] = kept
	if len(kept) >= e.t.KeyNetworks && !found {
		nets := make([]string, len(kept))
		for i, u := range kept {
			nets[i] = u.net
		}
		sev := High
		if len(kept) >= 2*e.t.KeyNetworks {
			sev = Critical
		}
		emit(&Finding{Detector: DetKeyReuse, Severity: sev, Action: o.Action, subject: o.KeyID,
			Explanation: fmt.Sprintf("key %s of %s was used from %d different networks within %s (%s): the key may have been copied or stolen",
				o.KeyID, name, len(kept), e.t.KeyWindow, strings.Join(nets, ", ")),
			Evidence: map[string]any{"key_id": o.KeyID, "networks": nets, "window_seconds": e.t.KeyWindow.Seconds()}})
	}
}

func (e *engine) newOperation(b *baseline, o *gate.Observation, t time.Time, name string, emit func(*Finding)) {
	if b.OpsFull {
		return
	}
	sev := Low
	switch o.Class {
	case "write":
		sev = Medium
	case "delete", "admin":
		sev = High
	}
	conn := connectorOf(o.Action)
	what := "operation"
	if b.Conns[conn] == 0 {
		what = "connector"
		sev = max2(sev, Medium)
	}
	known := make([]string, 0, len(b.Ops))
	for k := range b.Ops {
		if k != o.Action {
			known = append(known, k)
		}
	}
	sort.Strings(known)
	cls := o.Class
	if cls == "" {
		cls = "unknown"
	}
	emit(&Finding{Detector: DetNewOperation, Severity: sev, Action: o.Action, subject: o.Action,
		Explanation: fmt.Sprintf("%s used %s (%s, class %s) for the first time, after %d calls over %s; it had used %d other operations (%s)",
			name, o.Action, "a new "+what, cls, b.Calls, days(t.Sub(b.First)), len(known), strings.Join(first(known, 5), ", ")),
		Evidence: map[string]any{"action": o.Action, "class": o.Class, "new_connector": what == "connector", "known_operations": first(known, 50), "decision": o.Decision}})
}

func (e *engine) rateSpike(b *baseline, op *opStat, o *gate.Observation, t time.Time, name string, emit func(*Finding)) {
	r := &op.Rate
	th := r.threshold(e.t.SpikeFloor, e.t.SpikeSigma, e.t.SpikeFactor)
	if r.Count < th {
		return
	}
	if r.Alerted == 0 {
		r.Alerted = th
	}
	sev := High
	if r.Count >= 4*th {
		sev = Critical
	} else if r.Count != th {
		return // raised once at the threshold; again only when it turns critical
	}
	usual := fmt.Sprintf("its usual rate is %.1f ± %.1f per %s", r.Stat.Mean, r.Stat.sd(), e.t.RateBucket)
	if b.Gap.N > 10 {
		usual += fmt.Sprintf(" (typically one call every %s)", roundDur(time.Duration(math.Exp2(b.Gap.Mean)*float64(time.Second))))
	}
	emit(&Finding{Detector: DetRateSpike, Severity: sev, Action: o.Action, subject: o.Action, FirstEventAt: r.Excess,
		Explanation: fmt.Sprintf("%s called %s %d times in the current %s; %s, and its busiest %s so far had %.0f calls",
			name, o.Action, r.Count, e.t.RateBucket, usual, e.t.RateBucket, r.Peak),
		Evidence: map[string]any{"action": o.Action, "count": r.Count, "bucket_seconds": e.t.RateBucket.Seconds(), "threshold": th,
			"mean": r.Stat.Mean, "sd": r.Stat.sd(), "peak": r.Peak, "bucket_start": r.Start}})
}

func (e *engine) denied(b *baseline, o *gate.Observation, t time.Time, learned bool, name string, emit func(*Finding)) {
	b.Decided++
	r := &b.Denies
	r.roll(t, e.t.RateBucket)
	r.Count++
	if float64(r.Count) > r.usual() && r.Excess.IsZero() {
		r.Excess = t
	}
	if learned {
		th := r.threshold(e.t.DenyFloor, e.t.SpikeSigma, e.t.SpikeFactor)
		if r.Count == th {
			r.Alerted = th
			emit(&Finding{Detector: DetDenialBurst, Severity: High, Action: o.Action, subject: "burst", FirstEventAt: r.Excess,
				Explanation: fmt.Sprintf("%s was refused %d times in the current %s (latest: %s, %s); it is usually refused %.1f times per %s: it may be probing for access or stuck in a loop",
					name, r.Count, e.t.RateBucket, o.Action, o.Code, r.Stat.Mean, e.t.RateBucket),
				Evidence: map[string]any{"count": r.Count, "threshold": th, "mean": r.Stat.Mean, "last_action": o.Action, "last_code": o.Code}})
		}
	}
	if o.Action == "" {
		return
	}
	// Low and slow: refusals of operations never refused before, spread
	// over hours, stay under any rate threshold but not under this one.
	for k, at := range b.Recent {
		if t.Sub(at) > e.t.ProbeWindow {
			delete(b.Recent, k)
		}
	}
	if _, before := b.DeniedOps[o.Action]; !before {
		if len(b.DeniedOps) < maxDenied {
			b.DeniedOps[o.Action] = 0
		}
		if learned && len(b.Recent) < maxRecentDen {
			b.Recent[o.Action] = t
			if len(b.Recent) == e.t.ProbeDistinct {
				acts := make([]string, 0, len(b.Recent))
				firstAt := t
				for k, at := range b.Recent {
					acts = append(acts, k)
					if at.Before(firstAt) {
						firstAt = at
					}
				}
				sort.Strings(acts)
				emit(&Finding{Detector: DetProbing, Severity: High, Action: o.Action, subject: "probing", FirstEventAt: firstAt,
					Explanation: fmt.Sprintf("%s was refused on %d operations it had never been refused on before, within %s (%s): it may be probing what it is allowed to do",
						name, len(acts), roundDur(t.Sub(firstAt)), strings.Join(first(acts, 8), ", ")),
					Evidence: map[string]any{"actions": acts, "window_seconds": e.t.ProbeWindow.Seconds()}})
			}
		}
	}
	b.DeniedOps[o.Action]++
}

func (e *engine) approval(b *baseline, t time.Time, learned bool, name string, emit func(*Finding)) {
	r := &b.Approvals
	r.roll(t, e.t.ApprovalBucket)
	r.Count++
	if float64(r.Count) > r.usual() && r.Excess.IsZero() {
		r.Excess = t
	}
	if !learned {
		return
	}
	th := r.threshold(e.t.ApprovalFloor, e.t.SpikeSigma, e.t.SpikeFactor)
	if r.Count == th {
		r.Alerted = th
		emit(&Finding{Detector: DetApprovalFlood, Severity: Medium, subject: "approvals", FirstEventAt: r.Excess,
			Explanation: fmt.Sprintf("%s requested %d human approvals in the current %s; it usually requests %.1f: a flood of requests wears approvers down (approval fatigue)",
				name, r.Count, e.t.ApprovalBucket, r.Stat.Mean),
			Evidence: map[string]any{"count": r.Count, "threshold": th, "mean": r.Stat.Mean, "bucket_seconds": e.t.ApprovalBucket.Seconds()}})
	}
}

func (e *engine) completed(b *baseline, o *gate.Observation, t time.Time, name string, emit func(*Finding)) {
	x := math.Log2(1 + float64(max(o.BytesOut, 0)))
	if b.learned() && b.Size.N >= 20 && o.BytesOut >= e.t.LargeFloor {
		typical := math.Exp2(b.Size.Mean) - 1
		if x > b.Size.Mean+4*b.Size.sd() && float64(o.BytesOut) >= 16*max(typical, 1) {
			emit(&Finding{Detector: DetLargeResponse, Severity: Medium, Action: o.Action, subject: o.Action,
				Explanation: fmt.Sprintf("%s received %s from %s; its responses are usually around %s: data may be leaving in bulk",
					name, bytesText(o.BytesOut), o.Action, bytesText(int64(typical))),
				Evidence: map[string]any{"bytes": o.BytesOut, "typical_bytes": int64(typical), "action": o.Action}})
			x = min(x, b.Size.Mean+4*b.Size.sd()) // do not learn the incident
		}
	}
	b.Size.add(x, 0.02)
	b.Completed++
}

// sweep forgets per-key windows and cooldowns that have expired.
func (e *engine) sweep(now time.Time) {
	for k, uses := range e.keys {
		if len(uses) == 0 || now.Sub(uses[len(uses)-1].last) > e.t.KeyWindow {
			alive := slices.ContainsFunc(uses, func(u keyUse) bool { return now.Sub(u.last) <= e.t.KeyWindow })
			if !alive {
				delete(e.keys, k)
			}
		}
	}
	for k, at := range e.cooldown {
		if now.Sub(at) > e.t.Cooldown {
			delete(e.cooldown, k)
		}
	}
}

func safeText(s string) string {
	return strings.ToValidUTF8(printableOnly(s), "\uFFFD")
}

func max2(a, b Severity) Severity {
	if a.Rank() >= b.Rank() {
		return a
	}
	return b
}

func first(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func keysExcept(set map[string]*seen, except string, n int) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		if k != except {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return first(out, n)
}

func listKnown(set map[string]*seen, except string, n int) string {
	ks := keysExcept(set, except, n)
	if len(ks) == 0 {
		return "nothing else"
	}
	s := strings.Join(ks, ", ")
	if len(set)-1 > n {
		s += fmt.Sprintf(" and %d more", len(set)-1-n)
	}
	return s
}

func days(d time.Duration) string {
	if d < 48*time.Hour {
		return roundDur(d)
	}
	return fmt.Sprintf("%.0f days", d.Hours()/24)
}

func roundDur(d time.Duration) string {
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

func bytesText(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
