package main

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"warden/apitype"
	"warden/internal/discovery"
)

// reportFindings sends findings to the inventory: fingerprints, previews and
// locations; the secrets themselves never leave this process.
func reportFindings(ctx context.Context, c *cli, source string, paths []string, fs []discovery.Finding) error {
	cl, err := c.apiClient()
	if err != nil {
		return err
	}
	if source == "" {
		source = strings.Join(paths, ",")
	}
	in := apitype.DiscoveryReport{Source: source, Findings: make([]apitype.ReportedFinding, 0, len(fs))}
	for _, f := range fs {
		in.Findings = append(in.Findings, apitype.ReportedFinding{Rule: f.Rule, Kind: f.Kind, File: f.File, Line: f.Line, Commit: f.Commit,
			Author: f.Author, Fingerprint: f.Fingerprint, Preview: f.Preview, Verified: f.Verified})
	}
	var res apitype.DiscoveryReportResult
	for len(in.Findings) > 0 || res.Created+res.Updated == 0 {
		batch := in
		if len(batch.Findings) > 5000 {
			batch.Findings = batch.Findings[:5000]
		}
		var r apitype.DiscoveryReportResult
		if err := cl.Do(ctx, "POST", "/v1/discoveries", batch, &r); err != nil {
			return err
		}
		res.Created += r.Created
		res.Updated += r.Updated
		in.Findings = in.Findings[len(batch.Findings):]
		if len(in.Findings) == 0 {
			break
		}
	}
	fmt.Fprintf(c.stderr, "reported to the inventory: %d new, %d seen again\n", res.Created, res.Updated)
	return nil
}

func newDiscoveryCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "discovery", Short: "The inventory of discovered credentials (from warden scan --report)", Aliases: []string{"discoveries"}}
	var out string
	var f struct{ status, kind, identity string }
	list := &cobra.Command{
		Use: "list", Short: "List discovered credentials", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			for k, v := range map[string]string{"status": f.status, "kind": f.kind, "identity": f.identity} {
				if v != "" {
					q.Set(k, v)
				}
			}
			var res apitype.DiscoveryList
			if err := cl.Do(cmd.Context(), "GET", "/v1/discoveries?"+q.Encode(), nil, &res); err != nil {
				return err
			}
			return c.output(out, res, func() {
				w := c.tab()
				fmt.Fprintln(w, "ID\tSTATUS\tKIND\tPREVIEW\tWHERE\tLAST SEEN")
				for _, d := range res.Discoveries {
					where := ""
					if n := len(d.Locations); n > 0 {
						l := d.Locations[n-1]
						where = fmt.Sprintf("%s:%d", l.File, l.Line)
						if n > 1 {
							where += fmt.Sprintf(" (+%d)", n-1)
						}
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Status, d.Kind, d.Preview, where, d.LastSeen.Format(time.RFC3339))
				}
				w.Flush()
			})
		},
	}
	list.Flags().StringVar(&f.status, "status", "", "open, rotated, vaulted or ignored")
	list.Flags().StringVar(&f.kind, "kind", "", "e.g. \"GitHub token\"")
	list.Flags().StringVar(&f.identity, "identity", "", "linked identity")
	addOutputFlag(list, &out)

	var rin apitype.ResolveDiscovery
	resolve := &cobra.Command{
		Use: "resolve ID --status open|rotated|ignored", Short: "Triage a discovered credential", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			var res apitype.Discovery
			if err := cl.Do(cmd.Context(), "POST", "/v1/discoveries/"+url.PathEscape(args[0])+"/resolve", rin, &res); err != nil {
				return err
			}
			return c.output(out, res, func() { fmt.Fprintf(c.stdout, "%s is %s\n", res.ID, res.Status) })
		},
	}
	resolve.Flags().StringVar(&rin.Status, "status", "", "open, rotated or ignored (required)")
	resolve.Flags().StringVar(&rin.Identity, "identity", "", "link to an identity (id or name)")
	resolve.Flags().StringVar(&rin.Owner, "owner", "", "accountable human")
	resolve.Flags().StringVar(&rin.Note, "note", "", "why")
	addOutputFlag(resolve, &out)

	var vin apitype.VaultDiscovery
	var field, fpKey string
	var fromStdin bool
	vault := &cobra.Command{
		Use:   "vault ID --connector NAME --name CRED [--type bearer] [--stdin]",
		Short: "Move a discovered secret into the vault in one step",
		Long: `Reads the secret from where it was found (the newest location, rescanned
here) or from stdin with --stdin, checks that it is the discovered one (its
fingerprint must match), stores it as a credential and marks the discovery
vaulted. Rotate the secret at its source afterwards: it has been exposed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			var d apitype.Discovery
			if err := cl.Do(cmd.Context(), "GET", "/v1/discoveries/"+url.PathEscape(args[0]), nil, &d); err != nil {
				return err
			}
			key := fpKey
			if key == "" {
				key = c.getenv("WARDEN_SCAN_KEY")
			}
			if key == "" {
				key = discovery.DefaultFingerprintKey
			}
			secret, err := readDiscovered(cmd.Context(), c, d, []byte(key), fromStdin)
			if err != nil {
				return err
			}
			if vin.Type == "" {
				vin.Type = "bearer"
			}
			if field == "" {
				field = map[string]string{"bearer": "token", "header": "value", "query": "value", "basic": "password"}[vin.Type]
			}
			if field == "" {
				return errors.New("--field is required for this credential type")
			}
			vin.Secret = map[string]string{field: secret}
			var res apitype.Discovery
			err = cl.Do(cmd.Context(), "POST", "/v1/discoveries/"+url.PathEscape(d.ID)+"/vault", vin, &res)
			clear(vin.Secret)
			if err != nil {
				return err
			}
			return c.output(out, res, func() {
				fmt.Fprintf(c.stdout, "%s vaulted as credential %s; rotate it at its source now\n", res.ID, res.Credential)
			})
		},
	}
	vault.Flags().StringVar(&vin.Name, "name", "", "credential name (required)")
	vault.Flags().StringVar(&vin.Connector, "connector", "", "connector it serves (required)")
	vault.Flags().StringVar(&vin.Type, "type", "bearer", "credential type")
	vault.Flags().StringVar(&field, "field", "", "secret field the value goes into (default per type: token, value, password)")
	vault.Flags().StringVar(&vin.Identity, "identity", "", "bind to one identity")
	vault.Flags().BoolVar(&fromStdin, "stdin", false, "read the secret from stdin instead of its found location")
	vault.Flags().StringVar(&fpKey, "fingerprint-key", "", "the key the scan used (default: $WARDEN_SCAN_KEY, else the public default)")
	addOutputFlag(vault, &out)

	cmd.AddCommand(list, resolve, vault)
	return cmd
}

// readDiscovered returns the discovered secret: from stdin, or by rescanning
// the files it was found in; either way it must match the fingerprint.
func readDiscovered(ctx context.Context, c *cli, d apitype.Discovery, key []byte, fromStdin bool) (string, error) {
	matches := func(v string) bool {
		return hmac.Equal([]byte(discovery.Fingerprint(key, v)), []byte(d.Fingerprint))
	}
	if fromStdin {
		b, err := io.ReadAll(io.LimitReader(c.stdin, 64<<10))
		if err != nil {
			return "", err
		}
		v := strings.TrimRight(string(b), "\r\n")
		if !matches(v) {
			return "", errors.New("the value on stdin is not the discovered secret (fingerprint differs)")
		}
		return v, nil
	}
	sc := discovery.New(discovery.Options{FingerprintKey: key})
	for i := len(d.Locations) - 1; i >= 0; i-- {
		l := d.Locations[i]
		if l.Commit != "" {
			continue // history: the file may no longer hold it; use --stdin
		}
		fs, err := sc.ScanPath(ctx, l.File)
		if err != nil {
			continue
		}
		for _, f := range fs {
			if f.Fingerprint == d.Fingerprint && matches(f.Secret.Reveal()) {
				return f.Secret.Reveal(), nil
			}
		}
	}
	return "", errors.New("the secret is no longer at any location found in this checkout; pass it with --stdin")
}
