package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCorpusLabelsPointAtTheirItems(t *testing.T) {
	root := t.TempDir()
	man, err := Generate(root, 2, 7)
	if err != nil {
		t.Fatal(err)
	}
	if man.Bytes < 2<<20 || man.Files == 0 {
		t.Fatalf("corpus too small: %+v", man.Bytes)
	}
	kinds := map[string]bool{}
	lines := map[string][]string{}
	for _, l := range man.Labels {
		if _, ok := lines[l.File]; !ok {
			data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(l.File)))
			if err != nil {
				t.Fatal(err)
			}
			lines[l.File] = strings.Split(string(data), "\n")
		}
		ls := lines[l.File]
		if l.Line < 1 || l.EndLine < l.Line || l.EndLine > len(ls) || strings.TrimSpace(ls[l.Line-1]) == "" {
			t.Fatalf("label %+v points at nothing", l)
		}
		if l.Secret {
			kinds[l.Kind] = true
		}
	}
	if len(kinds) < 20 {
		t.Errorf("only %d kinds of secrets planted", len(kinds))
	}
}

func TestScoring(t *testing.T) {
	man := &Manifest{Bytes: 1 << 20, Labels: []Label{
		{File: "a", Line: 1, EndLine: 1, Kind: "x", Secret: true},
		{File: "a", Line: 3, EndLine: 5, Kind: "key", Secret: true},
		{File: "b", Line: 2, EndLine: 2, Kind: "d", Category: "uuid"},
		{File: "c", Line: 9, EndLine: 9, Kind: "y", Secret: true},
	}}
	hits := []hit{
		{file: "a", line: 1, rule: "r"}, {file: "a", line: 1, rule: "r2"}, // one secret found twice
		{file: "a", line: 2, endLine: 6, rule: "multi"}, // a span covering the key
		{file: "b", line: 2, rule: "r"},                 // a decoy
		{file: "z", line: 1, rule: "r"},                 // unlabelled
	}
	s := score("t", man, hits, 1)
	if s.TP != 2 || s.FP != 2 || s.FN != 1 || s.FPBy["uuid"] != 1 || s.FPBy["unlabelled:r"] != 1 || s.MissedBy["y"] != 1 {
		t.Errorf("score: %+v", s)
	}
	if s.Recall != 2.0/3 || s.Precision != 0.5 || s.MBps != 1 {
		t.Errorf("ratios: %+v", s)
	}
}

func TestWardenOnASmallCorpus(t *testing.T) {
	root := t.TempDir()
	man, err := Generate(root, 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	hits, _, err := runWarden(root, 2)
	if err != nil {
		t.Fatal(err)
	}
	s := score("warden", man, hits, 1)
	// The corpus holds a deliberately hard slice that Warden misses; the
	// rest must be found.
	if s.Recall < 0.8 || s.Precision < 0.8 {
		t.Errorf("warden on the corpus: %+v", s)
	}
}
