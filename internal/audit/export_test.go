package audit

// VerifyEvents runs the chain verifier core over events in memory (for
// benchmarks and fuzzing): the work Verify does per event, without I/O.
func VerifyEvents(evs []Event, cps []Checkpoint) *Problem {
	v := newChainVerifier(cps)
	for i := range evs {
		if p := v.add(&evs[i]); p != nil {
			return p
		}
	}
	return v.finish()
}

// Chain builds a valid chain of events from templates (assigning seq,
// version and hashes as the writer does).
func Chain(evs []Event) {
	var prev Hash
	var buf []byte
	for i := range evs {
		evs[i].Seq, evs[i].V, evs[i].PrevHash = int64(i+1), Version1, prev
		evs[i].Hash, buf, _ = ComputeHash(buf, &evs[i])
		prev = evs[i].Hash
	}
}
