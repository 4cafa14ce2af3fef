package monitor

import (
	"math"
	"net/netip"
	"strings"
	"time"
)

// Baselines are learned online from each identity's own traffic, with no
// training step and bounded memory: a handful of fixed-size statistics plus
// capped sets (operations, networks, clients). They are exported only so
// encoding/json can persist them; the format version is snapshotVersion.

// snapshotVersion is the persisted baseline format. A snapshot of another
// version is ignored at load (the identity re-learns) rather than misread.
const snapshotVersion = 1

// Caps on the per-identity sets. An identity that exceeds one stops
// learning new members of that set (and the detector that depends on it
// goes quiet for it, which docs/monitor.md states).
const (
	maxOps       = 256
	maxNetworks  = 64
	maxAgents    = 32
	maxDenied    = 256
	maxKeyNets   = 16
	maxRecentDen = 64
)

// ewma is an exponentially weighted mean and variance.
type ewma struct {
	Mean float64 `json:"m"`
	Var  float64 `json:"v"`
	N    int64   `json:"n"`
}

func (e *ewma) add(x, alpha float64) {
	if e.N == 0 {
		e.Mean, e.Var, e.N = x, 0, 1
		return
	}
	d := x - e.Mean
	incr := alpha * d
	e.Mean += incr
	e.Var = (1 - alpha) * (e.Var + d*incr)
	e.N++
}

func (e *ewma) sd() float64 { return math.Sqrt(max(e.Var, 0)) }

// rate counts events in fixed buckets (the width is the caller's) and keeps
// an EWMA with variance of the count per bucket, plus a slowly decaying
// peak: a bucket is a spike only when it exceeds both what is usual and
// what this identity has done before (batch jobs peak on schedule).
type rate struct {
	Start   time.Time `json:"s"`           // current bucket start
	Count   int       `json:"c"`           // events in the current bucket
	Alerted int       `json:"a,omitempty"` // the threshold the current bucket was alerted at (0: not alerted)
	Excess  time.Time `json:"x,omitzero"`  // first event above the usual level in the current bucket
	Stat    ewma      `json:"e"`
	Peak    float64   `json:"p"`
	Buckets int64     `json:"b"` // closed buckets, zeros included
}

const (
	rateAlpha = 0.02               // about 50 buckets of memory for the mean
	peakHalf  = 7 * 24 * time.Hour // the peak halves in a week of buckets
	maxZeroes = 20000              // zero buckets applied one by one; beyond, the mean is negligible
)

// roll moves the bucket to the one holding t. A t before the current
// bucket (a clock that stepped back) counts in the current bucket. An
// alerted bucket is learned only up to its threshold, so an incident does
// not become the new normal.
func (r *rate) roll(t time.Time, width time.Duration) {
	b := t.Truncate(width)
	if r.Start.IsZero() {
		r.Start = b
		return
	}
	if !b.After(r.Start) {
		return
	}
	c := float64(r.Count)
	if r.Alerted > 0 {
		c = min(c, float64(r.Alerted))
	}
	decay := math.Pow(0.5, float64(width)/float64(peakHalf))
	r.Stat.add(c, rateAlpha)
	r.Peak = max(r.Peak*decay, c)
	r.Buckets++
	zeros := int64(b.Sub(r.Start)/width) - 1
	if zeros > 0 {
		r.Buckets += zeros
		r.Peak *= math.Pow(decay, float64(zeros))
		n := min(zeros, maxZeroes)
		for range n {
			r.Stat.add(0, rateAlpha)
		}
		if zeros > maxZeroes {
			r.Stat.Mean, r.Stat.Var = 0, 0
		}
	}
	r.Start, r.Count, r.Alerted, r.Excess = b, 0, 0, time.Time{}
}

// usual is the level above which calls count as excess (time to detect is
// measured from the first of them).
func (r *rate) usual() float64 { return r.Stat.Mean + r.Stat.sd() }

// threshold is the count above which the current bucket is a spike.
func (r *rate) threshold(floor int, sigma, factor float64) int {
	t := max(float64(floor), r.Stat.Mean+sigma*r.Stat.sd(), factor*r.Stat.Mean, 1.5*r.Peak)
	return int(math.Ceil(t))
}

// opStat is what is learned about one operation.
type opStat struct {
	Count int64     `json:"n"`
	First time.Time `json:"f"`
	Last  time.Time `json:"l"`
	Class string    `json:"k,omitempty"`
	Rate  rate      `json:"r"`
}

// seen is a member of a capped set with its use count and last use.
type seen struct {
	Count int64     `json:"n"`
	Last  time.Time `json:"l"`
}

// baseline is everything learned about one identity.
type baseline struct {
	V         int                  `json:"v"`
	ID        string               `json:"id"`
	Calls     int64                `json:"calls"`
	Completed int64                `json:"completed"`
	First     time.Time            `json:"first"`
	Last      time.Time            `json:"last"`
	LearnedAt time.Time            `json:"learned_at,omitzero"`
	Ops       map[string]*opStat   `json:"ops"`
	OpsFull   bool                 `json:"ops_full,omitempty"`
	Conns     map[string]int64     `json:"connectors"`
	Hours     [168]uint32          `json:"hours"` // hour of week (UTC, Sunday 00:00 first)
	Networks  map[string]*seen     `json:"networks"`
	Agents    map[string]*seen     `json:"agents"`
	Browser   bool                 `json:"browser,omitempty"` // a browser was seen while learning
	Gap       ewma                 `json:"gap"`               // log2 seconds between calls
	Size      ewma                 `json:"size"`              // log2(1 + response bytes)
	Denies    rate                 `json:"denies"`
	Decided   int64                `json:"decided_denied"` // denied calls, all time
	DeniedOps map[string]int64     `json:"denied_ops"`     // actions ever denied (while learning or later)
	Recent    map[string]time.Time `json:"recent_denied"`  // newly denied actions in the probing window
	Approvals rate                 `json:"approvals"`
	dirty     bool
	// The last address and user agent and what they reduced to: agents
	// repeat them, so parsing is skipped on the hot detector loop.
	lastIP, lastNet, lastUA, lastFam string
}

func (b *baseline) network(ip string) string {
	if ip != b.lastIP || b.lastIP == "" {
		b.lastIP, b.lastNet = ip, network(ip)
	}
	return b.lastNet
}

func (b *baseline) family(ua string) string {
	if ua != b.lastUA || b.lastFam == "" {
		b.lastUA, b.lastFam = ua, clientFamily(ua)
	}
	return b.lastFam
}

func newBaseline(id string, t time.Time) *baseline {
	return &baseline{V: snapshotVersion, ID: id, First: t, Ops: map[string]*opStat{}, Conns: map[string]int64{},
		Networks: map[string]*seen{}, Agents: map[string]*seen{}, DeniedOps: map[string]int64{}, Recent: map[string]time.Time{}}
}

// fix fills maps a decoded snapshot may lack.
func (b *baseline) fix() {
	if b.Ops == nil {
		b.Ops = map[string]*opStat{}
	}
	if b.Conns == nil {
		b.Conns = map[string]int64{}
	}
	if b.Networks == nil {
		b.Networks = map[string]*seen{}
	}
	if b.Agents == nil {
		b.Agents = map[string]*seen{}
	}
	if b.DeniedOps == nil {
		b.DeniedOps = map[string]int64{}
	}
	if b.Recent == nil {
		b.Recent = map[string]time.Time{}
	}
	for k, v := range b.Ops {
		if v == nil {
			delete(b.Ops, k)
		}
	}
}

// learned reports whether the learning period is over: both enough calls
// and enough time, so a busy agent does not stop learning in its first
// minute and a quiet one does not after three calls.
func (b *baseline) learned() bool { return !b.LearnedAt.IsZero() }

func hourOfWeek(t time.Time) int {
	t = t.UTC()
	return int(t.Weekday())*24 + t.Hour()
}

// hourOfDayCount sums the seven hour-of-week counters for t's hour of day.
func (b *baseline) hourOfDayCount(h int) uint32 {
	var n uint32
	for d := range 7 {
		n += b.Hours[d*24+h%24]
	}
	return n
}

// remember adds key to a capped set, evicting the least recently used
// member when full. It reports whether key was new.
func remember(set map[string]*seen, key string, t time.Time, capacity int) bool {
	if s, ok := set[key]; ok {
		s.Count++
		if t.After(s.Last) {
			s.Last = t
		}
		return false
	}
	if len(set) >= capacity {
		var oldest string
		var ot time.Time
		for k, s := range set {
			if oldest == "" || s.Last.Before(ot) {
				oldest, ot = k, s.Last
			}
		}
		delete(set, oldest)
	}
	set[key] = &seen{Count: 1, Last: t}
	return true
}

// network returns the /24 (IPv4) or /64 (IPv6) holding ip, or "" when ip
// does not parse.
func network(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ""
	}
	a = a.Unmap()
	bits := 64
	if a.Is4() {
		bits = 24
	}
	p, err := a.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}

// clientFamily reduces a User-Agent to the client family it names: the
// first product token, lower-cased ("python-requests/2.31" ->
// "python-requests"), or "browser" for web browsers. Versions change on
// every upgrade; the family is what should be stable.
func clientFamily(ua string) string {
	if ua == "" {
		return "(none)"
	}
	if isBrowser(ua) {
		return "browser"
	}
	end := len(ua)
	if i := strings.IndexAny(ua, "/ ("); i >= 0 {
		end = i
	}
	f := strings.ToLower(clip(ua[:end], 40))
	if f == "" {
		return "(none)"
	}
	return f
}

// isBrowser reports whether ua is a web browser's: they all start with
// Mozilla/5.0 and name an engine.
func isBrowser(ua string) bool {
	if !strings.HasPrefix(ua, "Mozilla/") {
		return false
	}
	for _, s := range []string{"Gecko", "AppleWebKit", "Chrome/", "Safari/", "Firefox/", "Edg/", "Trident/"} {
		if strings.Contains(ua, s) {
			return true
		}
	}
	return false
}

// connectorOf returns the connector part of an action.
func connectorOf(action string) string {
	c, _, _ := strings.Cut(action, ":")
	return c
}
