package policy

import (
	"maps"
	"slices"
	"strings"
)

// symbols numbers the literal actions, literal connectors and wildcard
// patterns that the policies of a snapshot name, from 1, so that buckets
// hold and compare small ids instead of strings. A decision looks its action
// and connector up once, here: every decision reads this table, so it is
// usually in the CPU cache, while with many policies in force the bucket of
// the asking identity rarely is, and a bucket without text is read in fewer
// cache lines and without a second, dependent miss to compare a key. The
// three kinds of name cannot collide: only patterns contain '*', and
// connectors never contain ':'.
//
// A snapshot's symbols are immutable. Put gives the symbols a new policy
// brings to a copy, and never takes any away, so that the ids in buckets
// shared with earlier snapshots stay valid; when the table has grown to well
// over what the policies in force name, the engine rebuilds the index from
// scratch (see snapshot.with).
type symbols struct {
	ids  map[string]uint32
	pats []pattern // by id: the pattern of a wildcard pattern's id, zero otherwise
	// built is the number of symbols at the last full build.
	built int
}

func newSymbols() *symbols {
	return &symbols{ids: map[string]uint32{}, pats: []pattern{{}}} // id 0: unknown
}

// names calls fn with every symbol a policy's patterns need, and the pattern
// when the symbol is a wildcard pattern.
func (p *Policy) symbolNames(fn func(name string, pat *pattern)) {
	for _, r := range p.rules {
		for j := range r.patterns {
			pat := &r.patterns[j]
			switch {
			case pat.all:
			case pat.connLit && pat.opLit:
				fn(pat.raw, nil)
			default:
				if pat.connLit {
					fn(pat.conn, nil)
				}
				fn(pat.raw, pat)
			}
		}
	}
}

// add gives name the next id unless it has one. The pattern's strings are
// copied, so that the patterns every decision matches lie together in memory
// and keep no policy's source alive.
func (sy *symbols) add(name string, pat *pattern) {
	if _, ok := sy.ids[name]; ok {
		return
	}
	sy.ids[strings.Clone(name)] = uint32(len(sy.pats))
	var cp pattern
	if pat != nil {
		raw := strings.Clone(pat.raw)
		i := strings.IndexByte(raw, ':')
		cp = pattern{raw: raw, conn: raw[:i], op: raw[i+1:], connLit: pat.connLit, opLit: pat.opLit}
	}
	sy.pats = append(sy.pats, cp)
}

// with returns sy if it already numbers every symbol of p, else a copy that
// does.
func (sy *symbols) with(p *Policy) *symbols {
	missing := false
	p.symbolNames(func(name string, _ *pattern) {
		if _, ok := sy.ids[name]; !ok {
			missing = true
		}
	})
	if !missing {
		return sy
	}
	ns := &symbols{ids: maps.Clone(sy.ids), pats: slices.Clip(sy.pats), built: sy.built}
	p.symbolNames(ns.add)
	return ns
}

// bucket indexes, by action, the rules of the policies that name one
// subject. Buckets are immutable once built and shared between snapshots.
//
// A decision reads one identity's bucket (plus those of the selectors that
// match it), and with many policies in force that bucket is rarely in the
// CPU cache. So everything a lookup reads is one slice of small cells, in one
// allocation, without text (symbol ids stand for actions, connectors and
// patterns): the bucket of a policy or two is a few hundred contiguous bytes
// on one page. The cells are, in order:
//
//	cells[0]          key: the lengths of the exact (low half) and connector tables; lo, hi: the wildcard-connector groups
//	cells[1]          key: the exact table's filter; lo, hi: the refs of "*"
//	cells[2]          key: the connector table's filter; lo: where the exact table starts
//	wildcard-connector groups, their refs, the refs of "*"
//	exact table       key: a literal action's id; lo, hi: its refs
//	connector table   key: a literal connector's id; lo, hi: its groups
//	connector groups
//	the refs of the exact table and the connector groups
//
// A ref's r is a rule and its key the rule's policy name's first 8 bytes
// (see ruleRef). A group's key is a wildcard pattern's id, lo and hi its
// refs; it holds the rules that share the pattern, so a pattern written in
// many policies is matched once per bucket. A table of up to linearMax
// entries is that many cells, searched in order; a larger one is
// open-addressed, a power of two at most half full, where an empty cell has
// key 0. A filter has bit id%64 set for every id in its table, so most
// lookups of an action or connector the bucket does not name end in the
// header. What every lookup reads (header, wildcard-connector groups and
// their rules, rules of "*") comes first: in a bucket of a policy or two, the
// first few cache lines, adjacent.
type bucket struct {
	cells []cell
	pols  []*Policy // sorted by name
}

// cell is one entry of a bucket: a table entry, a group, a header or a rule
// reference, as bucket describes.
type cell struct {
	r      *rule
	key    uint64
	lo, hi uint32
}

const linearMax = 8

func tableLen(n int) int {
	if n <= linearMax {
		return n
	}
	size := 2 * linearMax
	for size < 2*n {
		size *= 2
	}
	return size
}

func idHash(id uint64) uint64 {
	h := id * 0x9e3779b97f4a7c15
	return h ^ h>>32
}

// lookup returns the entry of table t with the given id, or nil.
func lookup(t []cell, id uint32) *cell {
	if id == 0 {
		return nil
	}
	key := uint64(id)
	if len(t) <= linearMax {
		for i := range t {
			if t[i].key == key {
				return &t[i]
			}
		}
		return nil
	}
	mask := uint64(len(t) - 1)
	for i := idHash(key) & mask; ; i = (i + 1) & mask {
		switch t[i].key {
		case key:
			return &t[i]
		case 0:
			return nil
		}
	}
}

// insert puts e in the first free cell of a linear table (which has one
// cell per entry), or where lookup finds it in an open-addressed one.
func insert(t []cell, e cell) {
	if len(t) <= linearMax {
		i := 0
		for t[i].key != 0 {
			i++
		}
		t[i] = e
		return
	}
	mask := uint64(len(t) - 1)
	i := idHash(e.key) & mask
	for t[i].key != 0 {
		i = (i + 1) & mask
	}
	t[i] = e
}

// actionKeys is the action of a decision with its symbol ids, looked up once
// and used for every bucket.
type actionKeys struct {
	conn, op       string
	action, connID uint32
}

func appendRefs(out []ruleRef, refs []cell) []ruleRef {
	for i := range refs {
		out = append(out, ruleRef{r: refs[i].r, key: refs[i].key})
	}
	return out
}

// appendMatching appends the rules of the bucket with the given cells that
// have a pattern matching the action, unsorted and possibly repeated (a rule
// with several matching patterns).
func appendMatching(out []ruleRef, c []cell, k *actionKeys, sy *symbols) []ruleRef {
	hdr := &c[0]
	for _, g := range c[hdr.lo:hdr.hi] {
		if sy.pats[g.key].match(k.conn, k.op) {
			out = appendRefs(out, c[g.lo:g.hi])
		}
	}
	exact := int(c[2].lo)
	conn := exact + int(uint32(hdr.key))
	if c[1].key&filterBit(k.action) != 0 {
		if e := lookup(c[exact:conn], k.action); e != nil {
			out = appendRefs(out, c[e.lo:e.hi])
		}
	}
	if c[2].key&filterBit(k.connID) != 0 {
		if e := lookup(c[conn:conn+int(hdr.key>>32)], k.connID); e != nil {
			for _, g := range c[e.lo:e.hi] {
				// The connector matched by id; its groups' patterns have
				// a wildcard in the operation.
				if glob(sy.pats[g.key].op, k.op) {
					out = appendRefs(out, c[g.lo:g.hi])
				}
			}
		}
	}
	return appendRefs(out, c[c[1].lo:c[1].hi])
}

func filterBit(id uint32) uint64 { return 1 << (id & 63) }

// appendEvery appends every rule of the bucket's policies, for Explain.
func (b *bucket) appendEvery(out []ruleRef) []ruleRef {
	for _, p := range b.pols {
		for _, r := range p.rules {
			out = append(out, newRuleRef(r))
		}
	}
	return out
}

// newBucket lays out the bucket of pols (sorted by name), whose symbols sy
// numbers. Entries are laid out in first-seen order, so a bucket's layout
// does not depend on map iteration.
func newBucket(pols []*Policy, sy *symbols) *bucket {
	var (
		exactIDs, connIDs, wildIDs []uint32
		exactRefs                  = map[uint32][]ruleRef{}
		connPats                   = map[uint32][]uint32{}
		patRefs                    = map[uint32][]ruleRef{}
		all                        []ruleRef
		nRefs                      int
	)
	for _, p := range pols {
		for _, r := range p.rules {
			ref := newRuleRef(r)
			for j := range r.patterns {
				pat := &r.patterns[j]
				nRefs++
				switch {
				case pat.all:
					all = append(all, ref)
				case pat.connLit && pat.opLit:
					id := sy.ids[pat.raw]
					if _, ok := exactRefs[id]; !ok {
						exactIDs = append(exactIDs, id)
					}
					exactRefs[id] = append(exactRefs[id], ref)
				default:
					id := sy.ids[pat.raw]
					if _, ok := patRefs[id]; !ok {
						if pat.connLit {
							cid := sy.ids[pat.conn]
							if _, ok := connPats[cid]; !ok {
								connIDs = append(connIDs, cid)
							}
							connPats[cid] = append(connPats[cid], id)
						} else {
							wildIDs = append(wildIDs, id)
						}
					}
					patRefs[id] = append(patRefs[id], ref)
				}
			}
		}
	}
	const nHeader = 3
	nExact, nConn := tableLen(len(exactIDs)), tableLen(len(connIDs))
	nGroups := 0
	for _, ids := range connPats {
		nGroups += len(ids)
	}
	n := nHeader + len(wildIDs) + nExact + nConn + nGroups + nRefs
	cells := make([]cell, nHeader, n) // appends below never reallocate
	// reserve appends k cells to be filled in later and returns their
	// position.
	reserve := func(k int) uint32 {
		lo := len(cells)
		cells = cells[:lo+k]
		return uint32(lo)
	}
	addRefs := func(refs []ruleRef) (lo, hi uint32) {
		lo = uint32(len(cells))
		for _, ref := range refs {
			cells = append(cells, cell{r: ref.r, key: ref.key})
		}
		return lo, uint32(len(cells))
	}
	// What every lookup reads comes first: the wildcard-connector groups,
	// their refs and those of "*".
	wild := reserve(len(wildIDs))
	cells[0] = cell{key: uint64(nExact) | uint64(nConn)<<32, lo: wild, hi: wild + uint32(len(wildIDs))}
	for i, id := range wildIDs {
		lo, hi := addRefs(patRefs[id])
		cells[wild+uint32(i)] = cell{key: uint64(id), lo: lo, hi: hi}
	}
	cells[1].lo, cells[1].hi = addRefs(all)
	exact := reserve(nExact)
	conn := reserve(nConn)
	g := reserve(nGroups) // the next connector group
	cells[2].lo = exact
	for _, id := range exactIDs {
		lo, hi := addRefs(exactRefs[id])
		insert(cells[exact:exact+uint32(nExact)], cell{key: uint64(id), lo: lo, hi: hi})
		cells[1].key |= filterBit(id)
	}
	for _, cid := range connIDs {
		first := g
		for _, id := range connPats[cid] {
			lo, hi := addRefs(patRefs[id])
			cells[g] = cell{key: uint64(id), lo: lo, hi: hi}
			g++
		}
		insert(cells[conn:conn+uint32(nConn)], cell{key: uint64(cid), lo: first, hi: g})
		cells[2].key |= filterBit(cid)
	}
	return &bucket{cells: cells, pols: pols}
}
