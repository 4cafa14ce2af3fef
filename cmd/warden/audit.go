package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"warden/apitype"

	"github.com/spf13/cobra"

	"warden"
	"warden/client"
	"warden/internal/api"
	"warden/internal/audit"
	"warden/internal/seal"
	"warden/internal/store"
)

func newAuditCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Query, export and verify the tamper-evident audit log",
		Long: "The audit log records every governed call and admin change in a hash chain with signed checkpoints. See docs/audit.md."}
	cmd.AddCommand(newAuditVerifyCmd(c), newAuditQueryCmd(c), newAuditExportCmd(c), newAuditCheckpointsCmd(c), newAuditArchiveCmd(c))
	return cmd
}

// auditFilterFlags are the filters shared by query and export.
type auditFilterFlags struct {
	identity, kind, action, decision, since, until, text string
}

func (f *auditFilterFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.identity, "identity", "", "identity id or name (acted as or upon)")
	fl.StringVar(&f.kind, "kind", "", "event kind, e.g. operation.decided, admin.change")
	fl.StringVar(&f.action, "action", "", "action, or a pattern with * (e.g. github:*)")
	fl.StringVar(&f.decision, "decision", "", "allow, deny, require_approval, error, applied")
	fl.StringVar(&f.since, "since", "", "from this time (RFC 3339) or this long ago (e.g. 24h, 7d)")
	fl.StringVar(&f.until, "until", "", "before this time (RFC 3339) or this long ago")
	fl.StringVar(&f.text, "text", "", "case-insensitive text in reason, action, actor, resource, path or detail")
}

func (f *auditFilterFlags) values() url.Values {
	v := url.Values{}
	for k, val := range map[string]string{"identity": f.identity, "kind": f.kind, "action": f.action, "decision": f.decision, "since": f.since, "until": f.until, "text": f.text} {
		if val != "" {
			v.Set(k, val)
		}
	}
	return v
}

func (f *auditFilterFlags) filter() (audit.Filter, error) {
	out := audit.Filter{Identity: f.identity, Kind: f.kind, Action: f.action, Decision: f.decision, Text: f.text}
	var err error
	now := time.Now()
	if out.Since, err = audit.ParseTime(f.since, now); err != nil {
		return out, fmt.Errorf("--since: %w", err)
	}
	if out.Until, err = audit.ParseTime(f.until, now); err != nil {
		return out, fmt.Errorf("--until: %w", err)
	}
	return out, nil
}

// openAuditStore opens the database named by --data or --database for the
// offline commands. A --data dir without a database is an error, not a new
// empty database.
func (c *cli) openAuditStore(ctx context.Context, data, dsn string) (*store.Store, error) {
	switch {
	case data != "" && dsn == "":
		if _, err := os.Stat(filepath.Join(data, "warden.db")); err != nil {
			return nil, fmt.Errorf("no Warden database in %s: %w", data, err)
		}
		return store.Open(ctx, store.Options{DataDir: data})
	case dsn != "":
		return store.Open(ctx, store.Options{DSN: dsn})
	}
	return nil, errors.New("--data DIR or --database DSN is required")
}

// openKeyring opens the store's keyring with WARDEN_MASTER_KEY, for the
// offline commands that check or make signatures.
func (c *cli) openKeyring(ctx context.Context, st *store.Store) (*seal.Keyring, error) {
	mk, err := seal.ParseMasterKey(c.getenv("WARDEN_MASTER_KEY"))
	if err != nil {
		return nil, err
	}
	keys, err := seal.Open(ctx, mk, st)
	clear(mk)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return keys, nil
}

func newAuditVerifyCmd(c *cli) *cobra.Command {
	var (
		data, dsn, out          string
		cpFiles, pins, archives []string
	)
	cmd := &cobra.Command{
		Use:   "verify --data DIR | --database DSN",
		Short: "Check the whole chain and every checkpoint offline; exit 1 naming the first bad seq",
		Long: `Check every event's hash and link, gapless sequence numbers, the head, and every
checkpoint (in the database, in the checkpoint file kept in the data dir, and in any
--checkpoints FILE) for a valid signature and a matching chain.

Checkpoint keys are pinned by the keyring when WARDEN_MASTER_KEY is set, or by
--public-key. Without either, signatures are checked with the public keys recorded in
the checkpoint file, which proves the file and the database agree but not who signed
(see docs/audit.md).

After retention (warden audit archive) the chain in the database starts at the newest
retention anchor, which must match the signed checkpoint at its seq. --archive FILE
checks archive files too: their events, their checkpoints, and that they chain into
each other and into the database (see docs/audit-retention.md).`,
		Example: `  warden audit verify --data ./warden-data
  warden audit verify --database postgres://warden@db/warden --checkpoints ./audit-checkpoints.jsonl
  warden audit verify --data ./warden-data --public-key sign:audit.1=BASE64
  warden audit verify --data ./warden-data --archive /archive/audit-archive-1-20000.jsonl`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			st, err := c.openAuditStore(ctx, data, dsn)
			if err != nil {
				return err
			}
			defer st.Close()
			var o audit.VerifyOptions
			var warnings []string
			files := cpFiles
			if len(files) == 0 && data != "" {
				def := filepath.Join(data, audit.CheckpointFileName)
				if _, err := os.Stat(def); err == nil {
					files = append(files, def)
				} else {
					warnings = append(warnings, "no checkpoint file in "+data+": deletion of the newest events or a rollback cannot be detected")
				}
			}
			for _, f := range files {
				cps, torn, err := audit.ReadCheckpointFile(f)
				if err != nil {
					return fmt.Errorf("checkpoint file %s: %w", f, err)
				}
				if torn {
					warnings = append(warnings, f+": the last line is incomplete (a write interrupted by a crash) and was ignored")
				}
				o.Checkpoints = append(o.Checkpoints, cps...)
			}
			for _, f := range archives {
				a, err := audit.ReadArchiveFile(f)
				if err != nil {
					return fmt.Errorf("archive file %s: %w", f, err)
				}
				o.Archives = append(o.Archives, a)
			}
			switch {
			case c.getenv("WARDEN_MASTER_KEY") != "":
				keys, err := c.openKeyring(ctx, st)
				if err != nil {
					return err
				}
				defer keys.Close()
				o.PublicKey = keys.PublicKey
			case len(pins) > 0:
				pinned := map[string]ed25519.PublicKey{}
				for _, p := range pins {
					kid, b64, ok := strings.Cut(p, "=")
					key, err := base64.StdEncoding.DecodeString(b64)
					if !ok || err != nil || len(key) != ed25519.PublicKeySize {
						return fmt.Errorf("--public-key %q: want KEY_ID=BASE64 of a 32-byte Ed25519 public key", p)
					}
					pinned[kid] = key
				}
				o.PublicKey = func(kid string) (ed25519.PublicKey, bool) { k, ok := pinned[kid]; return k, ok }
			}
			rep, err := audit.Verify(ctx, st, o)
			if err != nil {
				return err
			}
			rep.Warnings = append(warnings, rep.Warnings...)
			res := api.AuditVerifyOut(rep)
			if err := c.output(out, res, func() { printVerify(c.stdout, res) }); err != nil {
				return err
			}
			if !rep.OK {
				return &exitError{code: 1, msg: fmt.Sprintf("the audit log does not verify: first bad seq %d (%s)", rep.Problem.Seq, rep.Problem.Kind)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "data directory of an embedded-SQLite server (its checkpoint file is used too)")
	cmd.Flags().StringVar(&dsn, "database", "", "PostgreSQL URL")
	cmd.Flags().StringArrayVar(&cpFiles, "checkpoints", nil, "checkpoint file to check against (repeatable; default: the one in --data)")
	cmd.Flags().StringArrayVar(&pins, "public-key", nil, "trusted checkpoint key KEY_ID=BASE64 (repeatable)")
	cmd.Flags().StringArrayVar(&archives, "archive", nil, "archive file written by warden audit archive, to check as part of the chain (repeatable)")
	addOutputFlag(cmd, &out)
	return cmd
}

func newAuditArchiveCmd(c *cli) *cobra.Command {
	var (
		data, dsn, before, dir, out string
		maxEvents                   int64
		ignoreSinks                 bool
	)
	cmd := &cobra.Command{
		Use:   "archive --before 90d|RFC3339|seq:N --out DIR (--data DIR | --database DSN)",
		Short: "Move old events to an archive file at a signed checkpoint and delete them from the database",
		Long: `Retention: pick the newest signed checkpoint before the given time (checkpoints signed
before it) or seq (events with a smaller seq), write the events up to it and the
checkpoints of the range to DIR/audit-archive-FIRST-LAST.jsonl (fsynced before anything
is deleted), then, in one transaction, record a retention anchor and delete those events.
The chain stays verifiable across the cut: warden audit verify starts from the anchor,
and --archive FILE checks the archived events too.

The cut's checkpoint signature is checked first, and the anchor is signed with the audit
signing key, so WARDEN_MASTER_KEY is required. Without a checkpoint after the last cut
that qualifies, nothing is archived. See docs/audit-retention.md.`,
		Example: `  warden audit archive --data ./warden-data --before 90d --out /archive/warden
  warden audit archive --database postgres://warden@db/warden --before seq:1000000 --out /archive/warden`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if dir == "" {
				return errors.New("--out DIR is required: where the archive file goes")
			}
			o := audit.ArchiveOptions{Dir: dir, MaxEvents: maxEvents, Actor: "cli"}
			if u := c.getenv("USER"); u != "" {
				o.Actor = "cli:" + u
			}
			switch {
			case before == "":
				return errors.New("--before is required: a duration back from now (90d), an RFC 3339 time, or seq:N")
			case strings.HasPrefix(before, "seq:"):
				n, err := strconv.ParseInt(strings.TrimPrefix(before, "seq:"), 10, 64)
				if err != nil || n < 1 {
					return fmt.Errorf("--before %q: want seq:N with N >= 1", before)
				}
				o.BeforeSeq = n
			default:
				t, err := audit.ParseTime(before, time.Now())
				if err != nil {
					return fmt.Errorf("--before: %w", err)
				}
				o.Before = t
			}
			st, err := c.openAuditStore(ctx, data, dsn)
			if err != nil {
				return err
			}
			defer st.Close()
			// The cut is signed with the audit signing key, so that an
			// anchor row nobody signed cannot license deleting events.
			if c.getenv("WARDEN_MASTER_KEY") == "" {
				return errors.New("warden audit archive signs the retention cut with the audit signing key: set WARDEN_MASTER_KEY")
			}
			keys, err := c.openKeyring(ctx, st)
			if err != nil {
				return err
			}
			defer keys.Close()
			o.PublicKey = keys.PublicKey
			o.Signer = audit.KeyringSigner(keys)
			// Never past what a streaming sink has delivered (any sink with
			// a cursor in the database, whichever replica runs it).
			var holder string
			var held int64
			if !ignoreSinks {
				o.Floor = func(ctx context.Context) (int64, error) {
					name, seq, ok, err := st.LowestSinkCursor(ctx)
					if err != nil || !ok {
						return 1 << 62, err
					}
					holder, held = name, seq
					return seq, nil
				}
			}
			res, err := audit.Archive(ctx, st, o)
			if err != nil {
				return err
			}
			return c.output(out, res, func() {
				if res.Skipped != "" {
					fmt.Fprintln(c.stdout, res.Skipped)
				}
				if holder != "" && (res.Skipped != "" || res.Anchor.Seq == held) {
					fmt.Fprintf(c.stdout, "the audit sink %q has delivered up to seq %d: retention does not cut past it (--ignore-sinks overrides; docs/audit-sinks.md, \"Retiring a sink\")\n", holder, held)
				}
				if res.Skipped != "" {
					return
				}
				fmt.Fprintf(c.stdout, "archived events %d to %d (%d) to %s\nsha256 %s; the database's chain now starts after seq %d, vouched for by the checkpoint signed there\n",
					res.Anchor.FirstSeq, res.Anchor.Seq, res.Events, res.Path, res.Anchor.FileSHA256, res.Anchor.Seq)
			})
		},
	}
	cmd.Flags().StringVar(&data, "data", "", "data directory of an embedded-SQLite server")
	cmd.Flags().StringVar(&dsn, "database", "", "PostgreSQL URL")
	cmd.Flags().StringVar(&before, "before", "", "archive up to the newest checkpoint before this: 90d, an RFC 3339 time, or seq:N")
	cmd.Flags().StringVar(&dir, "out", "", "directory for the archive file")
	cmd.Flags().Int64Var(&maxEvents, "max-events", 0, "archive at most about this many events in one run (0: no limit)")
	cmd.Flags().BoolVar(&ignoreSinks, "ignore-sinks", false, "cut past events a streaming audit sink has not delivered yet")
	addOutputFlag(cmd, &out)
	return cmd
}

func printVerify(w io.Writer, r apitype.AuditVerify) {
	for _, warn := range r.Warnings {
		fmt.Fprintln(w, "warning:", warn)
	}
	if r.OK {
		fmt.Fprintf(w, "ok: %d events, head seq %d (%s), %d checkpoints, signed up to seq %d\n", r.Events, r.HeadSeq, r.Head, r.Checkpoints, r.CheckpointedSeq)
		if r.ArchivedSeq > 0 {
			fmt.Fprintf(w, "archived by retention up to seq %d; %d archived events checked in archive files\n", r.ArchivedSeq, r.ArchivedEvents)
		}
		return
	}
	fmt.Fprintf(w, "FAILED: first bad seq %d: %s: %s\n", r.Problem.Seq, r.Problem.Kind, r.Problem.Message)
}

func newAuditQueryCmd(c *cli) *cobra.Command {
	var (
		f      auditFilterFlags
		limit  int
		cursor string
		out    string
	)
	cmd := &cobra.Command{
		Use: "query", Short: "Search audit events, newest first (admin token with the security, auditor or admin role)", Args: cobra.NoArgs,
		Example: `  warden audit query --identity support-agent --since 24h
  warden audit query --kind admin.change -o json`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			v := f.values()
			if limit > 0 {
				v.Set("limit", strconv.Itoa(limit))
			}
			if cursor != "" {
				v.Set("cursor", cursor)
			}
			var res apitype.AuditList
			if err := cl.Do(cmd.Context(), "GET", "/v1/audit?"+v.Encode(), nil, &res); err != nil {
				return err
			}
			return c.output(out, res, func() {
				w := c.tab()
				fmt.Fprintln(w, "SEQ\tTIME\tKIND\tACTOR\tIDENTITY\tACTION\tDECISION\tCODE\tREASON")
				for _, e := range res.Events {
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Seq, e.Time.Format(time.RFC3339), cell(e.Kind), cell(e.Actor),
						cell(e.Identity), cell(e.Action), cell(e.Decision), cell(e.Code), cell(e.Reason))
				}
				w.Flush()
				if res.NextCursor != "" {
					fmt.Fprintf(c.stdout, "more: --cursor %s\n", res.NextCursor)
				}
			})
		},
	}
	f.add(cmd)
	cmd.Flags().IntVar(&limit, "limit", 50, "events per page (1-1000)")
	cmd.Flags().StringVar(&cursor, "cursor", "", "continue after a previous page")
	addOutputFlag(cmd, &out)
	return cmd
}

// cell makes a field safe for one table cell: control characters would
// break the table (or forge a line on a terminal), so they are escaped.
func cell(s string) string {
	q := strconv.Quote(s)
	q = q[1 : len(q)-1]
	if q == "" {
		return "-"
	}
	if len(q) > 80 {
		q = q[:77] + "..."
	}
	return q
}

func newAuditExportCmd(c *cli) *cobra.Command {
	var (
		f         auditFilterFlags
		format    string
		data, dsn string
	)
	cmd := &cobra.Command{
		Use:   "export --format jsonl|ocsf",
		Short: "Write matching events, oldest first, one JSON object per line (for SIEMs)",
		Long: `Write matching events, oldest first, one JSON object per line: Warden's own form
(jsonl, with hashes) or OCSF 1.1 (ocsf). Through the API (WARDEN_ADDR, WARDEN_TOKEN), or
offline from --data DIR / --database DSN.`,
		Example: `  warden audit export --format ocsf --since 24h > warden-ocsf.jsonl
  warden audit export --format jsonl --data ./warden-data --kind admin.change`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != audit.FormatJSONL && format != audit.FormatOCSF {
				return errors.New("--format must be jsonl or ocsf")
			}
			ctx := cmd.Context()
			if data != "" || dsn != "" {
				flt, err := f.filter()
				if err != nil {
					return err
				}
				st, err := c.openAuditStore(ctx, data, dsn)
				if err != nil {
					return err
				}
				defer st.Close()
				// Events carry identity ids; accept a name as the API does.
				if flt.Identity != "" && !warden.HasPrefix(flt.Identity, warden.PrefixIdentity) {
					if id, err := st.GetIdentity(ctx, flt.Identity); err == nil {
						flt.Identity = id.ID
					}
				}
				_, err = audit.Export(ctx, st, c.stdout, format, flt)
				return err
			}
			v := f.values()
			v.Set("format", format)
			return c.streamGET(ctx, "/v1/audit/export?"+v.Encode())
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&format, "format", audit.FormatJSONL, "jsonl or ocsf")
	cmd.Flags().StringVar(&data, "data", "", "export offline from this data directory")
	cmd.Flags().StringVar(&dsn, "database", "", "export offline from this PostgreSQL database")
	return cmd
}

func newAuditCheckpointsCmd(c *cli) *cobra.Command {
	return &cobra.Command{
		Use: "checkpoints", Short: "Print every signed checkpoint (checkpoint file format) to keep a copy elsewhere", Args: cobra.NoArgs,
		Example: `  warden audit checkpoints >> /secure/elsewhere/warden-checkpoints.jsonl
  warden audit verify --data ./warden-data --checkpoints /secure/elsewhere/warden-checkpoints.jsonl`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.streamGET(cmd.Context(), "/v1/audit/checkpoints")
		},
	}
}

// streamGET copies an NDJSON answer to stdout as it arrives.
func (c *cli) streamGET(ctx context.Context, path string) error {
	addr := c.getenv("WARDEN_ADDR")
	if addr == "" {
		addr = "http://127.0.0.1:8700"
	}
	tok := c.getenv("WARDEN_TOKEN")
	if tok == "" {
		return errors.New("WARDEN_TOKEN is not set (an admin token with the security, auditor or admin role)")
	}
	req, err := http.NewRequestWithContext(ctx, "GET", strings.TrimRight(addr, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e := &client.Error{Status: resp.StatusCode}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = json.Unmarshal(b, &e.Problem)
		return e
	}
	_, err = io.Copy(c.stdout, resp.Body)
	return err
}
