package discovery

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// History is read by running the git binary rather than a Go library:
// git's own object reading, delta resolution and rename detection are the
// reference, and its streaming "git log -p" is several times faster than
// walking trees in a pure-Go implementation (which would also add a large
// dependency to the binary). Only added lines are scanned, so a secret is
// reported once, at the commit that introduced it, even if later commits
// moved or deleted it. Merge commits show no diff of their own (git log's
// default), so content that exists only in a merge's conflict resolution is
// not seen; everything that was committed on a branch is.
//
// The repository is untrusted input: git runs with external diff drivers and
// textconv filters off, paths are passed after --end-of-options, and a
// revision given by the user must resolve to a commit.

// gitHeader starts each commit's header line in the log output; a diff line
// always starts with one of " +-@\\d" or a letter, never with 0x1e.
const gitHeader = "\x1ecommit "

const gitFormat = "--format=" + "%x1ecommit %H%x1f%an <%ae>%x1f%aI"

// maxHistoryLine bounds one line of diff output kept in memory; the rest of
// a longer line is dropped (it still counts as one line).
const maxHistoryLine = 16 << 20

// ScanGit scans the history of the git repository that contains dir: every
// commit reachable from any ref, or with since set, only the commits
// reachable from some ref and not from since. Findings carry the commit, its
// author and date, and the file's path relative to the repository's top.
// Commits or files whose objects git cannot read are reported through
// Options.Warn and skipped; the rest of history is still scanned.
func (s *Scanner) ScanGit(ctx context.Context, dir, since string) ([]Finding, error) {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		dir = filepath.Dir(dir) // a file argument: the repository around it
	}
	top, err := gitOutput(ctx, dir, "rev-parse", "--show-toplevel")
	if err != nil {
		return nil, fmt.Errorf("scan history of %s: not a git repository: %w", dir, err)
	}
	top = strings.TrimSpace(top)
	allow := s.opts.Allow
	if ign, err := LoadIgnoreFile(filepath.Join(top, IgnoreFileName)); err == nil {
		allow = allow.Merge(ign)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	revs := []string{"--all"}
	if since != "" {
		sha, err := gitOutput(ctx, top, "rev-parse", "--verify", "--quiet", "--end-of-options", since+"^{commit}")
		if err != nil {
			return nil, fmt.Errorf("scan history: --since %q is not a commit in %s", since, dir)
		}
		revs = append(revs, "^"+strings.TrimSpace(sha))
	}

	h := &historyScan{s: s, allow: allow, col: &collector{}, jobs: make(chan historyJob), seen: map[string]bool{}}
	for range s.opts.Workers {
		h.wg.Add(1)
		go h.worker()
	}
	// Fast path: one "git log -p" over everything.
	args := append([]string{"log", "-p", "-U0", "-M", "--no-color", "--no-ext-diff", "--no-textconv", "--no-abbrev-commit", gitFormat}, revs...)
	logErr := h.run(ctx, top, args)
	if logErr != nil && ctx.Err() == nil {
		// Slow path: git stopped (a missing or corrupt object). Scan the
		// commits it did not reach one at a time, and within a failing
		// commit one file at a time, so only what is unreadable is lost.
		s.warn(top, fmt.Errorf("git log stopped: %w; scanning the remaining commits one by one", logErr))
		list, _ := gitOutput(ctx, top, append([]string{"rev-list"}, revs...)...)
		last := h.lastCommit
		for _, c := range strings.Fields(list) {
			if ctx.Err() != nil {
				break
			}
			if h.seen[c] && c != last {
				continue
			}
			h.commitFallback(ctx, top, c)
		}
	}
	close(h.jobs)
	h.wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return sortFindings(dedupe(h.col.out)), nil
}

type historyJob struct {
	loc     *location
	data    []byte
	lineMap []int // lineMap[i] is the file line of data's line i
}

type historyScan struct {
	s          *Scanner
	allow      *Allowlist
	col        *collector
	jobs       chan historyJob
	wg         sync.WaitGroup
	seen       map[string]bool
	lastCommit string
}

func (h *historyScan) worker() {
	defer h.wg.Done()
	for j := range h.jobs {
		cs := scanContent(j.loc.rel, j.data, true, 0)
		if len(cs) == 0 {
			continue
		}
		li := newLineIndex(j.data)
		for _, c := range cs {
			h.s.emit(j.loc, c, li, func(l int) int {
				if l < len(j.lineMap) {
					return j.lineMap[l]
				}
				return 0
			}, 0, h.col)
		}
	}
}

// commitFallback scans one commit's diff; if git fails on it, each changed
// file separately.
func (h *historyScan) commitFallback(ctx context.Context, top, commit string) {
	base := []string{"diff-tree", "-p", "-U0", "-M", "--root", "--no-color", "--no-ext-diff", "--no-textconv", "--no-abbrev-commit", gitFormat}
	if err := h.run(ctx, top, append(base, commit)); err == nil || ctx.Err() != nil {
		return
	}
	names, err := gitOutput(ctx, top, "diff-tree", "-r", "-z", "--root", "--no-commit-id", "--name-only", "-M", commit)
	if err != nil {
		h.s.warn(commit, fmt.Errorf("unreadable commit skipped: %w", err))
		return
	}
	for _, name := range strings.Split(names, "\x00") {
		if name == "" {
			continue
		}
		if err := h.run(ctx, top, append(base, commit, "--", name)); err != nil && ctx.Err() == nil {
			h.s.warn(commit+":"+name, fmt.Errorf("unreadable object skipped: %w", err))
		}
	}
}

// run streams one git command's patch output through the parser and the
// workers. It returns git's failure, if any, after everything git printed
// before failing has been scanned.
func (h *historyScan) run(ctx context.Context, top string, args []string) error {
	cmd := gitCommand(ctx, top, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 4096}
	if err := cmd.Start(); err != nil {
		return err
	}
	parseErr := h.parse(ctx, out)
	if parseErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	if parseErr != nil {
		return parseErr
	}
	if waitErr != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			return waitErr
		}
		return fmt.Errorf("%w: %s", waitErr, firstLine(msg))
	}
	return nil
}

// parse reads "git log -p -U0" output. It keeps, for each commit and file,
// the added lines and their line numbers in the new file, and sends them to
// the workers in blocks of at most chunkSize bytes.
func (h *historyScan) parse(ctx context.Context, r io.Reader) error {
	br := bufio.NewReaderSize(r, 1<<20)
	var (
		commit, author string
		date           time.Time
		file           string
		skipFile       bool
		newLine        int // next line number in the new file
		addLeft        int // added lines still expected in this hunk
		delLeft        int
		block          []byte
		lineMap        []int
	)
	flush := func() {
		if len(block) > 0 && !skipFile && file != "" {
			h.s.files.Add(1)
			loc := &location{file: file, rel: file, commit: commit, author: author, date: date, allow: h.allow}
			select {
			case h.jobs <- historyJob{loc: loc, data: block, lineMap: lineMap}:
			case <-ctx.Done():
			}
		}
		block, lineMap = nil, nil
	}
	for {
		line, err := readLine(br)
		if len(line) == 0 && err != nil {
			flush()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		h.s.bytes.Add(int64(len(line)))
		// Inside a hunk, the header's counts say which lines belong to it,
		// so an added line that starts with "++" is never taken for a header.
		if addLeft > 0 || delLeft > 0 {
			switch {
			case len(line) > 0 && line[0] == '+' && addLeft > 0:
				block = append(block, line[1:]...)
				block = append(block, '\n')
				lineMap = append(lineMap, newLine)
				newLine++
				addLeft--
				if len(block) >= chunkSize {
					flush()
				}
				continue
			case len(line) > 0 && line[0] == '-' && delLeft > 0:
				delLeft--
				continue
			case len(line) > 0 && line[0] == '\\':
				continue
			}
			addLeft, delLeft = 0, 0 // malformed: leave the hunk
		}
		switch {
		case bytes.HasPrefix(line, []byte(gitHeader)):
			flush()
			parts := strings.SplitN(string(line[len(gitHeader):]), "\x1f", 3)
			commit, author, date, file = parts[0], "", time.Time{}, ""
			if len(parts) == 3 {
				author = sanitize(parts[1])
				date, _ = time.Parse(time.RFC3339, parts[2])
			}
			h.seen[commit] = true
			h.lastCommit = commit
			h.s.commits.Add(1)
		case bytes.HasPrefix(line, []byte("diff --git ")):
			flush()
			file, skipFile = "", false
		case bytes.HasPrefix(line, []byte("+++ ")):
			flush()
			// git appends a tab to names that contain a space.
			name := strings.TrimRight(string(line[4:]), "\t")
			if name == "/dev/null" {
				file = ""
				continue
			}
			if strings.HasPrefix(name, `"`) {
				name = unquoteC(name)
			}
			file = strings.TrimPrefix(name, "b/")
			skipFile = h.allow.MatchPath(file)
		case bytes.HasPrefix(line, []byte("@@ ")):
			newLine, addLeft, delLeft = parseHunk(line)
		}
	}
}

// parseHunk reads "@@ -a[,b] +c[,d] @@".
func parseHunk(line []byte) (start, add, del int) {
	f := strings.Fields(string(line))
	if len(f) < 3 {
		return 0, 0, 0
	}
	count := func(s string) (int, int) {
		a, b, ok := strings.Cut(s[1:], ",")
		x, _ := strconv.Atoi(a)
		n := 1
		if ok {
			n, _ = strconv.Atoi(b)
		}
		return x, n
	}
	_, del = count(f[1])
	start, add = count(f[2])
	return start, add, del
}

// readLine returns the next line without its newline, keeping at most
// maxHistoryLine bytes of it.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := br.ReadSlice('\n')
		if len(line)+len(frag) <= maxHistoryLine {
			line = append(line, frag...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if n := len(line); n > 0 && line[n-1] == '\n' {
			line = line[:n-1]
		}
		return line, err
	}
}

// unquoteC undoes git's C-style quoting of unusual paths ("a\tb", octal
// escapes for bytes outside ASCII).
func unquoteC(s string) string {
	s = strings.TrimSuffix(strings.TrimPrefix(s, `"`), `"`)
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'v':
			b.WriteByte('\v')
		case '0', '1', '2', '3':
			if i+2 < len(s) {
				if v, err := strconv.ParseUint(s[i:i+3], 8, 8); err == nil {
					b.WriteByte(byte(v))
					i += 2
					continue
				}
			}
			b.WriteByte(s[i])
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

func gitCommand(ctx context.Context, dir string, args ...string) *exec.Cmd {
	full := append([]string{"-C", dir, "-c", "core.quotePath=false", "-c", "diff.noprefix=false", "-c", "diff.mnemonicPrefix=false", "-c", "log.showSignature=false"}, args...)
	cmd := exec.CommandContext(ctx, "git", full...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "GIT_OPTIONAL_LOCKS=0", "GIT_PAGER=cat", "LC_ALL=C")
	return cmd
}

func gitOutput(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := gitCommand(ctx, dir, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{buf: &stderr, max: 4096}
	out, err := cmd.Output()
	if err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return string(out), fmt.Errorf("%w: %s", err, firstLine(msg))
		}
		return string(out), err
	}
	return string(out), nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return sanitize(s)
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// dedupe drops repeated findings of one rule at one location (the slow path
// may rescan files of the commit where the fast path stopped).
func dedupe(fs []Finding) []Finding {
	type key struct {
		file, commit, rule string
		line, col          int
	}
	seen := map[key]bool{}
	out := fs[:0]
	for _, f := range fs {
		k := key{f.File, f.Commit, f.Rule, f.Line, f.Column}
		if !seen[k] {
			seen[k] = true
			out = append(out, f)
		}
	}
	return out
}
