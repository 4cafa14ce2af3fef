// Command discovery-bench measures warden scan against a labelled corpus and,
// when it can be built from the Go module proxy, gitleaks' CLI on the same
// corpus: precision, recall and throughput, side by side.
//
//	go run ./bench/discovery            # 64 MB corpus, warden and gitleaks
//	go run ./bench/discovery -size 16 -gitleaks=false
//
// The corpus is generated (deterministically from -seed) into a temporary
// directory with a manifest of every planted secret and decoy; see
// docs/discovery.md for what it contains and how findings are matched.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"warden/internal/discovery"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}

// Generate writes a corpus of about sizeMB megabytes into root and returns
// its manifest (also written to root/../manifest.json by the runner).
func Generate(root string, sizeMB int, seed uint64) (*Manifest, error) {
	g := &gen{root: root, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), man: Manifest{Seed: seed}}
	for i := 0; g.man.Bytes < int64(sizeMB)<<20; i++ {
		if err := g.unit(i); err != nil {
			return nil, err
		}
	}
	g.man.Files = g.files
	return &g.man, nil
}

// hit is one finding reduced to what matching needs.
type hit struct {
	file          string
	line, endLine int
	rule          string
}

// Score compares findings with the labels: a finding on a line of a planted
// secret is a true positive (several findings of one secret count once);
// every other finding is a false positive; a secret nobody reported is a
// false negative.
type Score struct {
	Tool      string         `json:"tool"`
	TP        int            `json:"tp"`
	FP        int            `json:"fp"`
	FN        int            `json:"fn"`
	Precision float64        `json:"precision"`
	Recall    float64        `json:"recall"`
	Seconds   float64        `json:"seconds"`
	MBps      float64        `json:"mb_per_s"`
	FPBy      map[string]int `json:"fp_by_category"`
	MissedBy  map[string]int `json:"missed_by_kind"`
}

func score(tool string, man *Manifest, hits []hit, secs float64) Score {
	type key struct {
		file string
		line int
	}
	labelAt := map[key]*Label{}
	for i := range man.Labels {
		l := &man.Labels[i]
		for ln := l.Line; ln <= l.EndLine; ln++ {
			labelAt[key{l.File, ln}] = l
		}
	}
	s := Score{Tool: tool, Seconds: secs, FPBy: map[string]int{}, MissedBy: map[string]int{}}
	found := map[*Label]bool{}
	for _, h := range hits {
		// A finding matches the label on its first line; a multi-line one
		// (gitleaks reports a Kubernetes manifest from its "kind" line)
		// matches a secret label within its span, preferring one not yet
		// found, so it is neither a false positive nor double-counted.
		l := labelAt[key{h.file, h.line}]
		if l == nil || !l.Secret {
			var any *Label
			for ln := h.line + 1; ln <= h.endLine && ln < h.line+200; ln++ {
				if m := labelAt[key{h.file, ln}]; m != nil && m.Secret {
					if !found[m] {
						any = m
						break
					}
					if any == nil {
						any = m
					}
				}
			}
			if any != nil {
				l = any
			}
		}
		switch {
		case l != nil && l.Secret:
			found[l] = true
		case l != nil:
			s.FP++
			s.FPBy[l.Category]++
		default:
			s.FP++
			s.FPBy["unlabelled:"+h.rule]++
		}
	}
	secrets := 0
	for i := range man.Labels {
		l := &man.Labels[i]
		if !l.Secret {
			continue
		}
		secrets++
		if !found[l] {
			s.MissedBy[l.Kind]++
		}
	}
	s.TP = len(found)
	s.FN = secrets - s.TP
	if s.TP+s.FP > 0 {
		s.Precision = float64(s.TP) / float64(s.TP+s.FP)
	}
	if secrets > 0 {
		s.Recall = float64(s.TP) / float64(secrets)
	}
	if secs > 0 {
		s.MBps = float64(man.Bytes) / (1 << 20) / secs
	}
	return s
}

func run(args []string, stdout, stderr io.Writer) error {
	fl := flag.NewFlagSet("discovery-bench", flag.ContinueOnError)
	fl.SetOutput(stderr)
	size := fl.Int("size", 64, "corpus size in MiB")
	seed := fl.Uint64("seed", 1, "corpus seed")
	dir := fl.String("dir", "", "write the corpus here (default: a temporary directory, removed afterwards)")
	gitleaks := fl.Bool("gitleaks", true, "also build and run gitleaks' CLI")
	glVersion := fl.String("gitleaks-version", "v8.30.1", "gitleaks module version to build")
	cpus := fl.Int("cpus", 2, "GOMAXPROCS for both scanners")
	jsonOut := fl.String("json", "", "also write the scores as JSON to this file")
	runs := fl.Int("runs", 3, "scan this many times and keep the fastest (the findings of every run are equal)")
	cpuProfile := fl.String("cpuprofile", "", "write a CPU profile of warden's scan to this file")
	tree := fl.String("tree", "", "instead of a generated corpus, scan this existing unlabelled tree with both tools and compare what they report")
	if err := fl.Parse(args); err != nil {
		return err
	}
	runtime.GOMAXPROCS(*cpus)
	tmp, err := os.MkdirTemp("", "discovery-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if *tree != "" {
		return compareOnTree(*tree, tmp, *glVersion, *gitleaks, *cpus, *runs, stdout, stderr)
	}
	root := *dir
	if root == "" {
		root = filepath.Join(tmp, "corpus")
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "generating a %d MiB corpus in %s ...\n", *size, root)
	man, err := Generate(root, *size, *seed)
	if err != nil {
		return err
	}
	mj, _ := json.MarshalIndent(man, "", " ")
	if err := os.WriteFile(filepath.Join(tmp, "manifest.json"), mj, 0o644); err != nil {
		return err
	}
	secrets := 0
	for _, l := range man.Labels {
		if l.Secret {
			secrets++
		}
	}

	var scores []Score
	if *cpuProfile != "" {
		pf, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(pf); err != nil {
			return err
		}
	}
	hits, secs, err := best(*runs, func() ([]hit, float64, error) { return runWarden(root, *cpus) })
	if *cpuProfile != "" {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	scores = append(scores, score("warden", man, hits, secs))
	if *gitleaks {
		bin, err := buildGitleaks(tmp, *glVersion, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "gitleaks not available (%v); reporting warden only\n", err)
		} else {
			hits, secs, err := best(*runs, func() ([]hit, float64, error) { return runGitleaks(bin, root, tmp, *cpus) })
			if err != nil {
				return err
			}
			scores = append(scores, score("gitleaks "+*glVersion, man, hits, secs))
		}
	}

	fmt.Fprintf(stdout, "corpus: %d files, %.1f MiB, %d planted secrets, %d decoys (seed %d, GOMAXPROCS %d)\n\n",
		man.Files, float64(man.Bytes)/(1<<20), secrets, len(man.Labels)-secrets, *seed, *cpus)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "tool\trecall\tprecision\tTP\tFP\tFN\tseconds\tMB/s")
	for _, s := range scores {
		fmt.Fprintf(tw, "%s\t%.3f\t%.3f\t%d\t%d\t%d\t%.2f\t%.1f\n", s.Tool, s.Recall, s.Precision, s.TP, s.FP, s.FN, s.Seconds, s.MBps)
	}
	tw.Flush()
	for _, s := range scores {
		fmt.Fprintf(stdout, "\n%s false positives by category: %s\n", s.Tool, formatCounts(s.FPBy))
		fmt.Fprintf(stdout, "%s missed secrets by kind: %s\n", s.Tool, formatCounts(s.MissedBy))
	}
	if len(scores) == 2 {
		w, g := scores[0], scores[1]
		fmt.Fprintf(stdout, "\ntargets: recall >= gitleaks: %v (%.3f vs %.3f); precision >= 1.2x gitleaks: %v (%.2fx); throughput >= gitleaks: %v (%.2fx)\n",
			w.Recall >= g.Recall, w.Recall, g.Recall, w.Precision >= 1.2*g.Precision, w.Precision/max(g.Precision, 1e-9), w.MBps >= g.MBps, w.MBps/max(g.MBps, 1e-9))
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(scores, "", "  ")
		return os.WriteFile(*jsonOut, b, 0o644)
	}
	return nil
}

// best runs scan n times and returns the findings with the fastest time, so
// that one run slowed by a noisy neighbour on a shared machine does not
// decide the throughput figure.
func best(n int, scan func() ([]hit, float64, error)) ([]hit, float64, error) {
	var hits []hit
	fastest := 0.0
	for i := 0; i < max(1, n); i++ {
		h, secs, err := scan()
		if err != nil {
			return nil, 0, err
		}
		if i == 0 || secs < fastest {
			hits, fastest = h, secs
		}
	}
	return hits, fastest, nil
}

// compareOnTree scans an existing tree (say, a module cache full of
// third-party code, tests and docs) with both tools. Without labels it can
// only count: in such a tree nearly every finding is noise, so the counts
// say how loud each tool is on real code.
func compareOnTree(root, tmp, version string, withGitleaks bool, cpus, runs int, stdout, stderr io.Writer) error {
	var size int64
	filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				size += fi.Size()
			}
		}
		return nil
	})
	report := func(tool string, hits []hit, secs float64) {
		by := map[string]int{}
		for _, h := range hits {
			by[h.rule]++
		}
		fmt.Fprintf(stdout, "%s: %d findings in %.1f MiB, %.2f s, %.1f MB/s\n  by rule: %s\n", tool, len(hits), float64(size)/(1<<20), secs, float64(size)/(1<<20)/secs, formatCounts(by))
	}
	hits, secs, err := best(runs, func() ([]hit, float64, error) { return runWarden(root, cpus) })
	if err != nil {
		return err
	}
	report("warden", hits, secs)
	if withGitleaks {
		bin, err := buildGitleaks(tmp, version, stderr)
		if err != nil {
			return err
		}
		hits, secs, err := best(runs, func() ([]hit, float64, error) { return runGitleaks(bin, root, tmp, cpus) })
		if err != nil {
			return err
		}
		report("gitleaks "+version, hits, secs)
	}
	return nil
}

func formatCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	var parts []string
	for _, k := range ks {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// runWarden scans root in process with as many workers as CPUs given.
func runWarden(root string, cpus int) ([]hit, float64, error) {
	sc := discovery.New(discovery.Options{Workers: cpus})
	start := time.Now()
	fs, err := sc.ScanPath(context.Background(), root)
	secs := time.Since(start).Seconds()
	if err != nil {
		return nil, 0, err
	}
	prefix := filepath.ToSlash(filepath.Clean(root)) + "/"
	var hits []hit
	for _, f := range fs {
		hits = append(hits, hit{file: strings.TrimPrefix(f.File, prefix), line: f.Line, rule: f.Rule})
	}
	return hits, secs, nil
}

// buildGitleaks installs gitleaks' CLI from the module proxy into a GOBIN
// in the user's cache directory (never into the repository), reusing an
// earlier build of the same version.
func buildGitleaks(tmp, version string, stderr io.Writer) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = tmp
	}
	bin := filepath.Join(cache, "warden-bench", "gitleaks-"+version)
	if _, err := os.Stat(filepath.Join(bin, "gitleaks")); err == nil {
		return filepath.Join(bin, "gitleaks"), nil
	}
	fmt.Fprintf(stderr, "building gitleaks %s (once; kept in %s) ...\n", version, bin)
	cmd := exec.Command("go", "install", "github.com/zricethezav/gitleaks/v8@"+version)
	cmd.Env = append(os.Environ(), "GOBIN="+bin, "GOFLAGS=-mod=mod", "GOWORK=off")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install: %v: %s", err, strings.TrimSpace(string(out)))
	}
	return filepath.Join(bin, "gitleaks"), nil
}

type gitleaksFinding struct {
	RuleID    string
	File      string
	StartLine int
	EndLine   int
}

func runGitleaks(bin, root, tmp string, cpus int) ([]hit, float64, error) {
	report := filepath.Join(tmp, "gitleaks.json")
	cmd := exec.Command(bin, "dir", root, "--report-format", "json", "--report-path", report, "--exit-code", "0", "--no-banner", "--log-level", "error")
	cmd.Env = append(os.Environ(), fmt.Sprintf("GOMAXPROCS=%d", cpus))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	secs := time.Since(start).Seconds()
	if err != nil {
		return nil, 0, fmt.Errorf("gitleaks: %v: %s", err, out)
	}
	data, err := os.ReadFile(report)
	if err != nil {
		return nil, 0, err
	}
	var fs []gitleaksFinding
	if err := json.Unmarshal(data, &fs); err != nil {
		return nil, 0, err
	}
	prefix := filepath.ToSlash(filepath.Clean(root)) + "/"
	var hits []hit
	for _, f := range fs {
		hits = append(hits, hit{file: strings.TrimPrefix(filepath.ToSlash(f.File), prefix), line: f.StartLine, endLine: f.EndLine, rule: f.RuleID})
	}
	return hits, secs, nil
}
