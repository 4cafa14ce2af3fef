package discovery

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
)

// Archives are never extracted to disk: entries are streamed through the
// scanner, so entry names ("../../etc/passwd") only ever appear in output.
// What one top-level archive may cost is bounded by Limits: bytes unpacked
// (nested archives included, which is what defeats zip bombs, whatever their
// headers claim), entries read, and nesting depth (a gzip quine nests
// forever). Over a limit, the archive's remaining entries are skipped and
// the scan goes on.

// ErrArchiveLimit reports that an archive exceeded one of its Limits.
var ErrArchiveLimit = errors.New("archive exceeds the scan limits (bytes, entries or depth); rest skipped")

type archiveBudget struct {
	bytes   int64
	entries int
}

// limitedReader charges every byte read to the budget.
type limitedReader struct {
	r io.Reader
	b *archiveBudget
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.b.bytes <= 0 {
		return 0, ErrArchiveLimit
	}
	if int64(len(p)) > l.b.bytes {
		p = p[:l.b.bytes]
	}
	n, err := l.r.Read(p)
	l.b.bytes -= int64(n)
	return n, err
}

// archiveKind names the archive format that head starts with, or "".
func archiveKind(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("PK\x03\x04")), bytes.HasPrefix(head, []byte("PK\x05\x06")):
		return "zip"
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return "gzip"
	case len(head) >= 262 && string(head[257:262]) == "ustar":
		return "tar"
	}
	return ""
}

func (s *Scanner) scanArchive(ctx context.Context, kind string, r io.Reader, loc *location, col *collector, depth int, budget *archiveBudget) error {
	if budget == nil {
		budget = &archiveBudget{bytes: s.limits.MaxArchiveBytes, entries: s.limits.MaxArchiveEntries}
	}
	entry := func(name string) *location {
		name = strings.TrimPrefix(path.Clean("/"+name), "/")
		return &location{file: loc.file + "!" + name, rel: name, commit: loc.commit, author: loc.author, date: loc.date, allow: loc.allow}
	}
	next := func(name string, er io.Reader) error {
		if budget.entries <= 0 {
			return ErrArchiveLimit
		}
		budget.entries--
		el := entry(name)
		if loc.allow.MatchPath(el.rel) {
			return nil
		}
		err := s.scanReader(ctx, &limitedReader{r: er, b: budget}, el, col, depth+1, budget)
		switch {
		case err == nil:
		case errors.Is(err, ErrArchiveLimit) || ctx.Err() != nil:
			return err
		default:
			s.warn(el.file, err) // a corrupt entry: skip it, keep going
		}
		return nil
	}
	switch kind {
	case "zip":
		// zip needs random access: the archive is read into memory, which
		// its budget bounds.
		data, err := io.ReadAll(&limitedReader{r: r, b: budget})
		if err != nil {
			return err
		}
		z, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
			return fmt.Errorf("zip: %w", err)
		}
		for _, f := range z.File {
			if f.FileInfo().IsDir() || !f.Mode().IsRegular() {
				continue
			}
			rc, err := f.Open()
			if err != nil {
				s.warn(entry(f.Name).file, err)
				continue
			}
			err = next(f.Name, rc)
			rc.Close()
			if err != nil {
				return err
			}
		}
	case "gzip":
		gz, err := gzip.NewReader(r)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer gz.Close()
		name := gz.Name
		if name == "" {
			name = strings.TrimSuffix(strings.TrimSuffix(path.Base(loc.rel), ".gz"), ".tgz")
		}
		return next(name, gz)
	case "tar":
		tr := tar.NewReader(r)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				return fmt.Errorf("tar: %w", err)
			}
			if h.Typeflag != tar.TypeReg {
				continue // links are names, not content: never followed
			}
			if err := next(h.Name, tr); err != nil {
				return err
			}
		}
	}
	return nil
}
