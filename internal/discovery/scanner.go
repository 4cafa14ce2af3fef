package discovery

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"warden"
)

// Options configure a Scanner. The zero value is usable.
type Options struct {
	// FingerprintKey keys the HMAC that fingerprints secrets; empty means
	// DefaultFingerprintKey.
	FingerprintKey []byte
	// Allow suppresses findings by path, rule or fingerprint, in addition to
	// the .wardenignore file found at the top of each scanned directory.
	Allow *Allowlist
	// Archives makes the scanner unpack zip, tar and gzip files (within
	// Limits) instead of skipping them as binary.
	Archives bool
	// Limits bound archive unpacking; zero fields take the defaults.
	Limits Limits
	// Workers is the number of files scanned at once; 0 means GOMAXPROCS.
	Workers int
	// Warn receives every input that was skipped because it could not be
	// read (unreadable files, broken git objects, archives over their
	// limits). Calls are serialised. Nil discards them.
	Warn func(location string, err error)

	// open is a test hook for injecting read faults; nil means os.Open
	// without following symlinks.
	open func(name string) (*os.File, error)
}

// Limits bound what one archive may cost, so that a zip bomb or a deeply
// nested archive costs a bounded amount of work and memory.
type Limits struct {
	// MaxArchiveBytes bounds the bytes unpacked from one top-level archive,
	// nested archives included (default 256 MiB).
	MaxArchiveBytes int64
	// MaxArchiveEntries bounds the entries read from one top-level archive
	// (default 10000).
	MaxArchiveEntries int
	// MaxArchiveDepth bounds archives within archives; a .tar.gz is two
	// levels (default 4).
	MaxArchiveDepth int
}

func (l Limits) withDefaults() Limits {
	if l.MaxArchiveBytes <= 0 {
		l.MaxArchiveBytes = 256 << 20
	}
	if l.MaxArchiveEntries <= 0 {
		l.MaxArchiveEntries = 10000
	}
	if l.MaxArchiveDepth <= 0 {
		l.MaxArchiveDepth = 4
	}
	return l
}

// Progress is a snapshot of a running scan's counters.
type Progress struct {
	Files    int64 // files (and archive entries, history file diffs) scanned
	Bytes    int64 // bytes scanned
	Skipped  int64 // binary files, symlinks, special files, unreadable inputs
	Commits  int64 // commits read from git history
	Findings int64 // findings so far (before de-duplication across locations)
}

// Scanner scans files, directories, archives and git history. It is safe for
// one scan at a time; counters accumulate across scans.
type Scanner struct {
	opts   Options
	key    []byte
	limits Limits

	files, bytes, skipped, commits, found atomic.Int64

	warnMu sync.Mutex
}

// New returns a Scanner.
func New(opts Options) *Scanner {
	key := opts.FingerprintKey
	if len(key) == 0 {
		key = []byte(DefaultFingerprintKey)
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	if opts.open == nil {
		opts.open = openNoFollow
	}
	return &Scanner{opts: opts, key: key, limits: opts.Limits.withDefaults()}
}

// Progress returns the scanner's counters; it may be called while a scan runs.
func (s *Scanner) Progress() Progress {
	return Progress{Files: s.files.Load(), Bytes: s.bytes.Load(), Skipped: s.skipped.Load(), Commits: s.commits.Load(), Findings: s.found.Load()}
}

func (s *Scanner) warn(loc string, err error) {
	s.skipped.Add(1)
	if s.opts.Warn == nil {
		return
	}
	s.warnMu.Lock()
	defer s.warnMu.Unlock()
	s.opts.Warn(loc, err)
}

// location says where scanned content came from.
type location struct {
	file   string // display path
	rel    string // path relative to the scanned root (for path rules)
	commit string
	author string
	date   time.Time
	allow  *Allowlist
}

// collector gathers findings from concurrent workers.
type collector struct {
	mu  sync.Mutex
	out []Finding
}

func (c *collector) add(f Finding) {
	c.mu.Lock()
	c.out = append(c.out, f)
	c.mu.Unlock()
}

// ScanPath scans a file or a directory tree. Directories are walked without
// following symbolic links (a link is never followed, inside the root or out
// of it, so loops cannot occur); the root itself is followed when it is a
// link, because the caller named it. ".git" directories are skipped: history
// is scanned by ScanGit. Unreadable entries are reported through
// Options.Warn and skipped. The findings come back sorted by file, line and
// column.
func (s *Scanner) ScanPath(ctx context.Context, root string) ([]Finding, error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("scan %s: %w", root, err)
	}
	allow := s.opts.Allow
	col := &collector{}
	display := filepath.ToSlash(filepath.Clean(root))
	if !info.IsDir() {
		loc := &location{file: display, rel: path.Base(display), allow: allow}
		if allow.MatchPath(loc.rel) {
			return nil, nil
		}
		if err := s.scanFile(ctx, root, loc, col); err != nil {
			return nil, err
		}
		return sortFindings(col.out), nil
	}
	if ign, err := LoadIgnoreFile(filepath.Join(root, IgnoreFileName)); err == nil {
		allow = allow.Merge(ign)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}

	type job struct {
		name string
		loc  *location
	}
	jobs := make(chan job)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var firstErr error
	var errOnce sync.Once
	for range s.opts.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				if err := s.scanFile(ctx, j.name, j.loc, col); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
				}
			}
		}()
	}
	walkErr := filepath.WalkDir(root, func(name string, d fs.DirEntry, err error) error {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		rel, _ := filepath.Rel(root, name)
		rel = filepath.ToSlash(rel)
		if err != nil {
			if name == root {
				return err
			}
			s.warn(path.Join(display, rel), err)
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			if name != root && (d.Name() == ".git" || allow.MatchPath(rel+"/")) {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() { // symlinks, sockets, FIFOs, devices: never opened
			s.skipped.Add(1)
			return nil
		}
		if rel == IgnoreFileName || allow.MatchPath(rel) {
			return nil
		}
		select {
		case jobs <- job{name: name, loc: &location{file: path.Join(display, rel), rel: rel, allow: allow}}:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	})
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if walkErr != nil {
		return nil, fmt.Errorf("scan %s: %w", root, walkErr)
	}
	return sortFindings(col.out), nil
}

// scanFile scans one regular file. Read errors are warnings; only a
// cancelled context is returned as an error.
func (s *Scanner) scanFile(ctx context.Context, name string, loc *location, col *collector) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := s.opts.open(name)
	if err != nil {
		s.warn(loc.file, err)
		return nil
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		if err == nil {
			err = errors.New("not a regular file")
		}
		s.warn(loc.file, err)
		return nil
	}
	if err := s.scanReader(ctx, f, loc, col, 0, nil); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.warn(loc.file, err)
	}
	return nil
}

// sniffLen is how much of a file decides whether it is text, as git does.
const sniffLen = 8000

// scanReader scans one stream: it sniffs the start to skip binary content
// (or to unpack an archive when asked) and scans text in bounded chunks.
// depth counts the archives this stream is nested in; budget is the
// enclosing top-level archive's (nil outside archives).
func (s *Scanner) scanReader(ctx context.Context, r io.Reader, loc *location, col *collector, depth int, budget *archiveBudget) error {
	head := make([]byte, sniffLen)
	n, err := io.ReadFull(r, head)
	head = head[:n]
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return err
	}
	if kind := archiveKind(head); kind != "" {
		if !s.opts.Archives {
			s.skipped.Add(1) // archives are binary unless unpacking was asked for
			return nil
		}
		if depth >= s.limits.MaxArchiveDepth {
			s.warn(loc.file, ErrArchiveLimit)
			return nil
		}
		return s.scanArchive(ctx, kind, io.MultiReader(bytes.NewReader(head), r), loc, col, depth, budget)
	}
	if bytes.IndexByte(head, 0) >= 0 {
		s.skipped.Add(1) // binary
		return nil
	}
	s.files.Add(1)
	return s.scanStream(ctx, io.MultiReader(bytes.NewReader(head), r), loc, col)
}

// Chunking: a file is scanned in chunks of chunkSize bytes; each chunk after
// the first starts with the last overlap..2*overlap bytes of the previous one
// (cut at a line start when there is one), and a chunk reports only matches
// that start before that carried tail. Every match shorter than overlap
// (all of them: the longest, a private-key block, is bounded by maxPEMBlock)
// is therefore seen whole exactly once, and memory stays bounded whatever the
// file's size or line length.
const (
	chunkSize = 8 << 20
	overlap   = 64 << 10
)

// chunkPool recycles chunk buffers: allocating (and zeroing) 8 MiB per file
// would cost more than scanning a typical small file.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, chunkSize+2*overlap); return &b }}

func (s *Scanner) scanStream(ctx context.Context, r io.Reader, loc *location, col *collector) error {
	bp := chunkPool.Get().(*[]byte)
	defer chunkPool.Put(bp)
	buf := (*bp)[:0]
	lineBase, colBase := 0, 0
	first := true
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		eof := false
		for len(buf) < cap(buf) {
			n, err := r.Read(buf[len(buf):cap(buf)])
			buf = buf[:len(buf)+n]
			s.bytes.Add(int64(n))
			if errors.Is(err, io.EOF) {
				eof = true
				break
			}
			if err != nil {
				return err
			}
		}
		cut := len(buf)
		if !eof {
			tail := len(buf) - overlap
			cut = tail
			if i := bytes.LastIndexByte(buf[tail-overlap:tail], '\n'); i >= 0 {
				cut = tail - overlap + i + 1
			}
		}
		cs := scanContent(loc.rel, buf, first && eof, 0)
		if len(cs) > 0 {
			li := newLineIndex(buf)
			for _, c := range cs {
				if c.start >= cut {
					continue
				}
				s.emit(loc, c, li, func(l int) int { return lineBase + l + 1 }, colBase, col)
			}
		}
		if eof {
			return nil
		}
		nl := bytes.Count(buf[:cut], []byte{'\n'})
		lineBase += nl
		if buf[cut-1] == '\n' {
			colBase = 0
		} else if i := bytes.LastIndexByte(buf[:cut], '\n'); i >= 0 {
			colBase = runeCount(buf[i+1 : cut])
		} else {
			colBase += runeCount(buf[:cut])
		}
		n := copy(buf, buf[cut:])
		buf = buf[:n]
		first = false
	}
}

// emit turns a candidate into a Finding unless an allowlist or an inline
// warden:allow comment suppresses it. lineOf maps the candidate's 0-based
// line in buf to the line reported; colBase is the column offset of buf's
// first line (non-zero only when a chunk starts mid-line).
func (s *Scanner) emit(loc *location, c candidate, li *lineIndex, lineOf func(int) int, colBase int, col *collector) {
	line, column := li.locate(c.start)
	endLine, _ := li.locate(max(c.start, c.end-1))
	if bytes.Contains(li.lineText(line), []byte(inlineAllow)) {
		return
	}
	if line == 0 {
		column += colBase
	}
	fp := Fingerprint(s.key, c.secret)
	if loc.allow.MatchRule(c.rule.ID) || loc.allow.MatchFingerprint(fp) {
		return
	}
	s.found.Add(1)
	col.add(Finding{
		Rule: c.rule.ID, Kind: c.rule.Kind,
		File: loc.file, Line: lineOf(line), Column: column, EndLine: lineOf(endLine),
		Commit: loc.commit, Author: loc.author, Date: loc.date,
		Fingerprint: fp, Preview: Preview(c.secret, c.rule.Prefix), Verified: c.verified,
		Secret: warden.NewSecret(c.secret),
	})
}

func runeCount(b []byte) int { return len([]rune(string(b))) }

// sortFindings orders findings by file, commit, line, column and rule, so
// output is stable whatever order the workers finished in.
func sortFindings(fs []Finding) []Finding {
	slices.SortFunc(fs, func(a, b Finding) int {
		if c := strings.Compare(a.File, b.File); c != 0 {
			return c
		}
		if c := a.Date.Compare(b.Date); c != 0 {
			return c
		}
		if c := strings.Compare(a.Commit, b.Commit); c != 0 {
			return c
		}
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		if a.Column != b.Column {
			return a.Column - b.Column
		}
		return strings.Compare(a.Rule, b.Rule)
	})
	return fs
}

// ScanBytes scans one in-memory text as if it were the file at name (a slash
// path, which path-scoped rules and allowlists look at). It is what the fuzz
// test drives and what a caller with content in hand (an upload, a diff) uses.
func (s *Scanner) ScanBytes(name string, data []byte) []Finding {
	col := &collector{}
	loc := &location{file: name, rel: name, allow: s.opts.Allow}
	_ = s.scanStream(context.Background(), bytes.NewReader(data), loc, col)
	return sortFindings(col.out)
}
