package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// applier describes how `apply -f` sends one kind of document (policies,
// connectors) to the server.
type applier struct {
	kind     string // for messages: "policy", "connector"
	maxBytes int64
	// skip reports file names in a directory that are not documents of
	// this kind (e.g. *_test.yaml next to policies).
	skip func(name string) bool
	// docName returns the name the document gives itself, "" if none.
	docName func(data []byte, contentType string) string
	// put sends one document and returns a one-line summary.
	put func(ctx context.Context, name string, data []byte, contentType string) (string, error)
}

// applyFiles sends every document named by paths (directories expand to
// their .yaml, .yml and .json files, not recursively, sorted). The name a
// document gives itself wins; the file name serves one that has none. A
// failed file is reported and the rest still go; the exit code says so.
func (c *cli) applyFiles(ctx context.Context, paths []string, a applier) error {
	if len(paths) == 0 {
		return errors.New("-f FILE|DIR is required")
	}
	files, err := documentFiles(paths, a.skip)
	if err != nil {
		return err
	}
	if len(files) == 0 {
		return errors.New("no .yaml, .yml or .json files found")
	}
	failed := 0
	for _, p := range files {
		data, err := readBounded(p, a.maxBytes)
		if err != nil {
			return err
		}
		ct := "application/yaml"
		if strings.EqualFold(filepath.Ext(p), ".json") {
			ct = "application/json"
		}
		name := a.docName(data, ct)
		if name == "" {
			name = strings.TrimSuffix(filepath.Base(p), filepath.Ext(p))
		}
		summary, err := a.put(ctx, name, data, ct)
		if err != nil {
			fmt.Fprintf(c.stderr, "%s: %v\n", p, err)
			failed++
			continue
		}
		fmt.Fprintf(c.stdout, "%s: %s\n", p, summary)
	}
	if failed > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("%d of %d %s documents not applied", failed, len(files), a.kind)}
	}
	return nil
}

// documentFiles expands directories into their .yaml, .yml and .json files
// (not recursively), sorted, leaving out names skip refuses.
func documentFiles(in []string, skip func(string) bool) ([]string, error) {
	var out []string
	for _, p := range in {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			out = append(out, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			switch strings.ToLower(filepath.Ext(e.Name())) {
			case ".yaml", ".yml", ".json":
				if !e.IsDir() && (skip == nil || !skip(e.Name())) {
					out = append(out, filepath.Join(p, e.Name()))
				}
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// readBounded reads a file of at most max bytes.
func readBounded(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, max)
	}
	return b, nil
}
