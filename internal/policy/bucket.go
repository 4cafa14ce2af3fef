package policy

import (
	"hash/maphash"
	"math/bits"
)

// bucket indexes the rules of the policies that name one subject, by action.
// Buckets are immutable once built and shared between snapshots.
//
// A decision reads one identity's bucket (plus those of the selectors that
// match it), and with many policies in force that bucket is rarely in the
// CPU cache. So the bucket keeps everything a lookup reads in a few flat
// arrays instead of maps of slices of pointers: hash tables of fixed-size
// slots, pattern groups, and one string holding every key and pattern the
// slots and groups refer to by offset. A lookup touches a handful of cache
// lines whatever the bucket's size, and the slot and group arrays hold no
// pointers, so the garbage collector never scans them.
type bucket struct {
	pols   []*Policy // sorted by name
	text   string    // the keys and pattern parts spans refer to
	exact  []slot    // full action -> refs; open addressing, nil when empty
	conn   []slot    // literal connector -> groups; open addressing
	groups []group   // pattern groups: per literal connector, then wild
	wild   span      // the groups whose connector part has a wildcard
	all    span      // refs of the pattern "*"
	refs   []ruleRef // the rules the spans of slots, groups and all name
	every  []ruleRef // every rule, for Explain
}

// span is the range [lo, hi) of text, refs or groups.
type span struct{ lo, hi uint32 }

// slot is one entry of an open-addressed table; an empty slot has an empty
// val (every stored key names at least one rule or group).
type slot struct {
	h   uint64
	key span // in text
	val span // in refs (exact) or groups (conn)
}

// group holds the rules of a bucket that share a pattern with a wildcard, so
// a pattern written in many policies (say "*:admin.*") is matched once per
// decision.
type group struct {
	conn, op       span // the pattern's parts, in text
	connLit, opLit bool
	refs           span
}

var keySeed = maphash.MakeSeed()

func hashKey(s string) uint64 { return maphash.String(keySeed, s) }

// actionKeys is the action of a decision with its hashes, computed once and
// used for every bucket.
type actionKeys struct {
	action, conn, op string
	hAction, hConn   uint64
}

func (b *bucket) str(sp span) string { return b.text[sp.lo:sp.hi] }

// lookup returns the val of key in table t, or an empty span.
func (b *bucket) lookup(t []slot, h uint64, key string) span {
	if len(t) == 0 {
		return span{}
	}
	mask := uint64(len(t) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		sl := &t[i]
		if sl.val.hi == 0 {
			return span{}
		}
		if sl.h == h && b.str(sl.key) == key {
			return sl.val
		}
	}
}

func (b *bucket) groupMatches(g *group, conn, op string) bool {
	if c := b.str(g.conn); g.connLit {
		if c != conn {
			return false
		}
	} else if !glob(c, conn) {
		return false
	}
	o := b.str(g.op)
	if g.opLit {
		return o == op
	}
	return glob(o, op)
}

// appendMatching appends the bucket's rules with a pattern that matches the
// action, unsorted and possibly repeated (a rule with several matching
// patterns).
func (b *bucket) appendMatching(out []ruleRef, k *actionKeys) []ruleRef {
	if sp := b.lookup(b.exact, k.hAction, k.action); sp.hi > 0 {
		out = append(out, b.refs[sp.lo:sp.hi]...)
	}
	if gs := b.lookup(b.conn, k.hConn, k.conn); gs.hi > 0 {
		for i := gs.lo; i < gs.hi; i++ {
			if g := &b.groups[i]; b.groupMatches(g, k.conn, k.op) {
				out = append(out, b.refs[g.refs.lo:g.refs.hi]...)
			}
		}
	}
	for i := b.wild.lo; i < b.wild.hi; i++ {
		if g := &b.groups[i]; b.groupMatches(g, k.conn, k.op) {
			out = append(out, b.refs[g.refs.lo:g.refs.hi]...)
		}
	}
	return append(out, b.refs[b.all.lo:b.all.hi]...)
}

// bucketBuilder lays out a bucket. Keys are kept in first-seen order, so a
// bucket's layout does not depend on map iteration.
type bucketBuilder struct {
	text      []byte
	texts     map[string]span
	exactKeys []string             // full actions
	exactRefs map[string][]ruleRef // full action -> rules
	connKeys  []string             // literal connectors
	connPats  map[string][]string  // literal connector -> pattern raws
	wild      []string             // pattern raws with a wildcard connector
	pats      map[string]*pattern  // pattern raw -> pattern
	patRefs   map[string][]ruleRef // pattern raw -> rules
	all       []ruleRef
	refs      []ruleRef
	groups    []group
}

func (bb *bucketBuilder) intern(s string) span {
	if sp, ok := bb.texts[s]; ok {
		return sp
	}
	sp := span{uint32(len(bb.text)), uint32(len(bb.text) + len(s))}
	bb.text = append(bb.text, s...)
	bb.texts[s] = sp
	return sp
}

func (bb *bucketBuilder) addRefs(rs []ruleRef) span {
	sp := span{lo: uint32(len(bb.refs))}
	bb.refs = append(bb.refs, rs...)
	sp.hi = uint32(len(bb.refs))
	return sp
}

func (bb *bucketBuilder) addGroup(raw string) {
	p := bb.pats[raw]
	bb.groups = append(bb.groups, group{
		conn: bb.intern(p.conn), op: bb.intern(p.op),
		connLit: p.connLit, opLit: p.opLit,
		refs: bb.addRefs(bb.patRefs[raw]),
	})
}

// table lays out keys and their vals in an open-addressed table at most half
// full.
func (bb *bucketBuilder) table(keys []string, vals []span) []slot {
	if len(keys) == 0 {
		return nil
	}
	t := make([]slot, 1<<bits.Len(uint(2*len(keys)-1)))
	mask := uint64(len(t) - 1)
	for j, key := range keys {
		h := hashKey(key)
		i := h & mask
		for t[i].val.hi != 0 {
			i = (i + 1) & mask
		}
		t[i] = slot{h: h, key: bb.intern(key), val: vals[j]}
	}
	return t
}

func newBucket(pols []*Policy) *bucket {
	b := &bucket{pols: pols}
	bb := &bucketBuilder{
		texts:     map[string]span{},
		exactRefs: map[string][]ruleRef{},
		connPats:  map[string][]string{},
		pats:      map[string]*pattern{},
		patRefs:   map[string][]ruleRef{},
	}
	for _, p := range pols {
		for _, r := range p.rules {
			ref := newRuleRef(r)
			b.every = append(b.every, ref)
			for j := range r.patterns {
				pat := &r.patterns[j]
				switch {
				case pat.all:
					bb.all = append(bb.all, ref)
				case pat.connLit && pat.opLit:
					if _, ok := bb.exactRefs[pat.raw]; !ok {
						bb.exactKeys = append(bb.exactKeys, pat.raw)
					}
					bb.exactRefs[pat.raw] = append(bb.exactRefs[pat.raw], ref)
				default:
					if _, ok := bb.pats[pat.raw]; !ok {
						bb.pats[pat.raw] = pat
						if !pat.connLit {
							bb.wild = append(bb.wild, pat.raw)
						} else {
							if _, ok := bb.connPats[pat.conn]; !ok {
								bb.connKeys = append(bb.connKeys, pat.conn)
							}
							bb.connPats[pat.conn] = append(bb.connPats[pat.conn], pat.raw)
						}
					}
					bb.patRefs[pat.raw] = append(bb.patRefs[pat.raw], ref)
				}
			}
		}
	}
	exactVals := make([]span, len(bb.exactKeys))
	for i, key := range bb.exactKeys {
		exactVals[i] = bb.addRefs(bb.exactRefs[key])
	}
	connVals := make([]span, len(bb.connKeys))
	for i, conn := range bb.connKeys {
		connVals[i].lo = uint32(len(bb.groups))
		for _, raw := range bb.connPats[conn] {
			bb.addGroup(raw)
		}
		connVals[i].hi = uint32(len(bb.groups))
	}
	b.wild.lo = uint32(len(bb.groups))
	for _, raw := range bb.wild {
		bb.addGroup(raw)
	}
	b.wild.hi = uint32(len(bb.groups))
	b.all = bb.addRefs(bb.all)
	b.exact = bb.table(bb.exactKeys, exactVals)
	b.conn = bb.table(bb.connKeys, connVals)
	b.text = string(bb.text)
	b.groups = bb.groups
	b.refs = bb.refs
	return b
}
