package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"warden/internal/discovery"
)

// newScanCmd is `warden scan`: credential discovery in files, directories,
// archives and git history. It runs offline; findings go to stdout in the
// chosen format, warnings and progress to stderr. It exits 1 when it found
// something (for CI) unless --exit-zero.
func newScanCmd(c *cli) *cobra.Command {
	var (
		useGit, showSecrets, exitZero, archives bool
		since, format, config, fpKey, progress  string
		report                                  bool
		source                                  string
		workers                                 int
	)
	cmd := &cobra.Command{
		Use:   "scan [PATH...]",
		Short: "Find credentials in files, directories, archives and git history",
		Long: `Scan files and directories (default: the current directory) for credentials:
cloud and API keys, tokens, private keys, passwords in connection strings and
configuration, Kubernetes Secrets, credential files (.npmrc, .netrc,
.git-credentials, .docker/config.json, cloud CLI files) and Warden's own keys.

With --git, also scan the history of the git repository at each PATH: every
commit reachable from any ref, or with --since REV only commits not reachable
from REV. Secrets are never printed: findings show a redacted preview and a
keyed fingerprint (HMAC-SHA256, key from --fingerprint-key, WARDEN_SCAN_KEY or
a fixed public default). --show-secrets prints them.

Allowlists: .wardenignore at the top of a scanned directory (path globs,
"rule:ID", "fingerprint:HEX"), --config FILE (same syntax, or YAML with
allow: {paths, rules, fingerprints}), and "warden:allow" on the line.

Exit status: 0 no findings, 1 findings (0 with --exit-zero), 2+ errors.`,
		Example: `  warden scan .
  warden scan --git --format sarif . > warden.sarif
  warden scan --git --since origin/main --exit-zero --format json repo/`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				args = []string{"."}
			}
			switch format {
			case "table", "json", "sarif":
			default:
				return fmt.Errorf("--format must be table, json or sarif, not %q", format)
			}
			if since != "" {
				useGit = true
			}
			var allow *discovery.Allowlist
			if config != "" {
				a, err := discovery.LoadConfig(config)
				if err != nil {
					return fmt.Errorf("--config: %w", err)
				}
				allow = a
			}
			key := fpKey
			if key == "" {
				key = c.getenv("WARDEN_SCAN_KEY")
			}
			if key == "" {
				key = discovery.DefaultFingerprintKey
			}
			var showProgress bool
			switch progress {
			case "auto":
				showProgress = format == "table" && isTerminal(c.stderr)
			case "always":
				showProgress = true
			case "never":
			default:
				return fmt.Errorf("--progress must be auto, always or never, not %q", progress)
			}

			st := &statusLine{w: c.stderr}
			sc := discovery.New(discovery.Options{
				FingerprintKey: []byte(key),
				Allow:          allow,
				Archives:       archives,
				Workers:        workers,
				Warn: func(loc string, err error) {
					st.printf("warning: skipped %s: %v\n", loc, err)
				},
			})
			stopProgress := func() {}
			if showProgress {
				stopProgress = st.run(cmd.Context(), sc)
				defer stopProgress()
			}
			var all []discovery.Finding
			for _, p := range args {
				fs, err := sc.ScanPath(cmd.Context(), p)
				if err != nil {
					return err
				}
				all = append(all, fs...)
				if useGit {
					hs, err := sc.ScanGit(cmd.Context(), p, since)
					if err != nil {
						return err
					}
					all = append(all, hs...)
				}
			}
			if showProgress {
				// Stop redrawing before anything reaches stdout, which is
				// often the same terminal.
				stopProgress()
				st.finish(sc)
			}
			sum := discovery.Summarize(all, sc.Progress())
			var err error
			switch format {
			case "json":
				err = discovery.WriteJSON(c.stdout, all, sum, showSecrets)
			case "sarif":
				err = discovery.WriteSARIF(c.stdout, all, "", showSecrets)
			default:
				err = discovery.WriteTable(c.stdout, all, sum, showSecrets)
			}
			if err != nil {
				return err
			}
			if report {
				if err := reportFindings(cmd.Context(), c, source, args, all); err != nil {
					return fmt.Errorf("--report: %w", err)
				}
			}
			if len(all) > 0 && !exitZero {
				return &exitError{code: 1}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.BoolVar(&useGit, "git", false, "also scan git history (every commit reachable from any ref)")
	f.StringVar(&since, "since", "", "scan only history not reachable from `REV` (implies --git)")
	f.StringVar(&format, "format", "table", "output format: table, json or sarif")
	f.BoolVar(&showSecrets, "show-secrets", false, "print the secrets themselves (never use in CI logs)")
	f.BoolVar(&exitZero, "exit-zero", false, "exit 0 even when findings exist")
	f.StringVar(&config, "config", "", "allowlist `FILE` (.wardenignore syntax, or YAML allow: {paths, rules, fingerprints})")
	f.BoolVar(&archives, "archives", false, "unpack zip, tar and gzip archives (bounded in size, entries and depth)")
	f.StringVar(&fpKey, "fingerprint-key", "", "HMAC key for fingerprints (default: $WARDEN_SCAN_KEY, else a fixed public key)")
	f.StringVar(&progress, "progress", "auto", "progress on stderr: auto (table output to a terminal), always or never")
	f.IntVar(&workers, "workers", 0, "files scanned in parallel (default: number of CPUs)")
	f.BoolVar(&report, "report", false, "send the findings (fingerprints and previews, never secrets) to the server's inventory (WARDEN_ADDR, WARDEN_TOKEN)")
	f.StringVar(&source, "source", "", "name of what was scanned, for the inventory (default: the paths)")
	return cmd
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// statusLine shares stderr between the progress line, which it redraws in
// place, and warnings, which it prints on lines of their own.
type statusLine struct {
	mu    sync.Mutex
	w     io.Writer
	drawn bool
}

func (s *statusLine) printf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clear()
	fmt.Fprintf(s.w, format, args...)
}

func (s *statusLine) clear() {
	if s.drawn {
		fmt.Fprint(s.w, "\r\x1b[K")
		s.drawn = false
	}
}

func progressText(p discovery.Progress) string {
	t := fmt.Sprintf("scanned %d files, %.1f MiB", p.Files, float64(p.Bytes)/(1<<20))
	if p.Commits > 0 {
		t += fmt.Sprintf(", %d commits", p.Commits)
	}
	return t + fmt.Sprintf(", %d findings", p.Findings)
}

// run redraws the progress line every quarter second until stop is called;
// stop may be called more than once.
func (s *statusLine) run(ctx context.Context, sc *discovery.Scanner) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.mu.Lock()
				s.clear()
				fmt.Fprint(s.w, progressText(sc.Progress()))
				s.drawn = true
				s.mu.Unlock()
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			cancel()
			<-done
			s.mu.Lock()
			s.clear()
			s.mu.Unlock()
		})
	}
}

// finish prints the final counts on a line of their own.
func (s *statusLine) finish(sc *discovery.Scanner) {
	s.printf("%s\n", progressText(sc.Progress()))
}
