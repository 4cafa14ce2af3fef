package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"warden/apitype"
	"warden/client"
)

// apiClient builds a client from WARDEN_ADDR and WARDEN_TOKEN.
func (c *cli) apiClient() (*client.Client, error) {
	addr := c.getenv("WARDEN_ADDR")
	if addr == "" {
		addr = "http://127.0.0.1:8700"
	}
	tok := c.getenv("WARDEN_TOKEN")
	if tok == "" {
		return nil, errors.New("WARDEN_TOKEN is not set (an admin token, or an agent key for agent commands)")
	}
	return client.New(addr, tok), nil
}

// output prints v as JSON when --output json, else calls table.
func (c *cli) output(format string, v any, table func()) error {
	if format == "json" {
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	table()
	return nil
}

func (c *cli) tab() *tabwriter.Writer { return tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0) }

func addOutputFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVarP(p, "output", "o", "table", "output format: table or json")
}

func labelsString(l map[string]string) string {
	keys := make([]string, 0, len(l))
	for k := range l {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, k+"="+l[k])
	}
	return strings.Join(parts, ",")
}

func parseLabels(in []string) (map[string]string, error) {
	out := map[string]string{}
	for _, l := range in {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("label %q: want key=value", l)
		}
		out[k] = v
	}
	return out, nil
}

func newIdentityCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "identity", Short: "Manage non-human identities (admin token)", Aliases: []string{"identities"}}
	var out string

	var in apitype.CreateIdentity
	var labels []string
	create := &cobra.Command{
		Use: "create NAME", Short: "Register an identity", Args: cobra.ExactArgs(1),
		Example: `  warden identity create support-agent --type ai_agent --owner alice@example.com --label team=support --env prod`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			in.Name = args[0]
			if in.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			id, err := cl.CreateIdentity(cmd.Context(), in)
			if err != nil {
				return err
			}
			return c.output(out, id, func() { fmt.Fprintf(c.stdout, "created %s (%s)\n", id.Name, id.ID) })
		},
	}
	create.Flags().StringVar(&in.Type, "type", "ai_agent", "ai_agent, service_account, bot, workload or api_client")
	create.Flags().StringVar(&in.Owner, "owner", "", "accountable human (required), e.g. an email address")
	create.Flags().StringVar(&in.Description, "description", "", "what it is for")
	create.Flags().StringVar(&in.Environment, "env", "", "environment, e.g. prod or staging")
	create.Flags().StringArrayVar(&labels, "label", nil, "label key=value (repeatable)")
	addOutputFlag(create, &out)

	var q struct {
		typ, owner, status, cursor string
		labels                     []string
		limit                      int
	}
	list := &cobra.Command{
		Use: "list", Short: "List identities", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			v := url.Values{}
			for k, val := range map[string]string{"type": q.typ, "owner": q.owner, "status": q.status, "cursor": q.cursor} {
				if val != "" {
					v.Set(k, val)
				}
			}
			if q.limit > 0 {
				v.Set("limit", fmt.Sprint(q.limit))
			}
			for _, l := range q.labels {
				v.Add("label", l)
			}
			res, err := cl.ListIdentities(cmd.Context(), v)
			if err != nil {
				return err
			}
			return c.output(out, res, func() {
				w := c.tab()
				fmt.Fprintln(w, "ID\tNAME\tTYPE\tOWNER\tSTATUS\tENV\tLABELS")
				for _, id := range res.Identities {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", id.ID, id.Name, id.Type, id.Owner, id.Status, id.Environment, labelsString(id.Labels))
				}
				w.Flush()
				if res.NextCursor != "" {
					fmt.Fprintf(c.stdout, "more: --cursor %s\n", res.NextCursor)
				}
			})
		},
	}
	list.Flags().StringVar(&q.typ, "type", "", "filter by type")
	list.Flags().StringVar(&q.owner, "owner", "", "filter by owner")
	list.Flags().StringVar(&q.status, "status", "", "filter by status")
	list.Flags().StringArrayVar(&q.labels, "label", nil, "filter by label key=value (repeatable; all must match)")
	list.Flags().IntVar(&q.limit, "limit", 0, "page size (1-1000, default 100)")
	list.Flags().StringVar(&q.cursor, "cursor", "", "cursor from the previous page")
	addOutputFlag(list, &out)

	get := &cobra.Command{
		Use: "get ID|NAME", Short: "Show an identity", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			id, err := cl.GetIdentity(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.output(out, id, func() { printIdentity(c, id) })
		},
	}
	addOutputFlag(get, &out)

	var reason string
	status := func(use, action, short string, needReason bool) *cobra.Command {
		s := &cobra.Command{
			Use: use + " ID|NAME", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				if needReason && reason == "" {
					return errors.New("--reason is required")
				}
				cl, err := c.apiClient()
				if err != nil {
					return err
				}
				id, err := cl.SetStatus(cmd.Context(), args[0], action, reason)
				if err != nil {
					return err
				}
				return c.output(out, id, func() { fmt.Fprintf(c.stdout, "%s is %s\n", id.Name, id.Status) })
			},
		}
		s.Flags().StringVar(&reason, "reason", "", "why (recorded with your identity)")
		addOutputFlag(s, &out)
		return s
	}
	cmd.AddCommand(create, list, get,
		status("suspend", "suspend", "Suspend an identity: it cannot authenticate or act until resumed", true),
		status("resume", "resume", "Resume a suspended identity", false),
		status("delete", "delete", "Decommission an identity (final: keys and tokens die, record and history stay)", false),
	)
	return cmd
}

func printIdentity(c *cli, id *apitype.Identity) {
	w := c.tab()
	fmt.Fprintf(w, "ID:\t%s\nName:\t%s\nType:\t%s\nOwner:\t%s\nStatus:\t%s", id.ID, id.Name, id.Type, id.Owner, id.Status)
	if id.StatusReason != "" {
		fmt.Fprintf(w, " (%s, by %s)", id.StatusReason, id.StatusActor)
	}
	fmt.Fprintf(w, "\nEnvironment:\t%s\nLabels:\t%s\nDescription:\t%s\nCreated:\t%s\n", id.Environment, labelsString(id.Labels), id.Description, id.CreatedAt.Format(time.RFC3339))
	if id.LastUsedAt != nil {
		fmt.Fprintf(w, "Last used:\t%s\n", id.LastUsedAt.Format(time.RFC3339))
	}
	w.Flush()
}

func newKeyCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "Manage an identity's API keys (admin token)", Aliases: []string{"keys"}}
	var out, expires string
	create := &cobra.Command{
		Use: "create ID|NAME", Short: "Issue an API key (printed once; only its hash is kept)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ttl time.Duration
			if expires != "" {
				d, err := apitype.ParseDuration(expires)
				if err != nil {
					return fmt.Errorf("--expires-in: %w", err)
				}
				ttl = d
			}
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			k, err := cl.CreateKey(cmd.Context(), args[0], ttl)
			if err != nil {
				return err
			}
			return c.output(out, k, func() {
				fmt.Fprintf(c.stdout, "key id: %s\n%s\n", k.KeyID, k.Key)
				fmt.Fprintln(c.stderr, "store this key now: it is not shown again")
			})
		},
	}
	create.Flags().StringVar(&expires, "expires-in", "", "lifetime, e.g. 720h or 30d (default: no expiry)")
	addOutputFlag(create, &out)
	list := &cobra.Command{
		Use: "list ID|NAME", Short: "List an identity's keys", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			res, err := cl.ListKeys(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return c.output(out, res, func() {
				w := c.tab()
				fmt.Fprintln(w, "KEY ID\tHINT\tCREATED\tEXPIRES\tREVOKED\tLAST USED")
				for _, k := range res.Keys {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", k.KeyID, k.Hint, k.CreatedAt.Format(time.RFC3339), tstr(k.ExpiresAt), tstr(k.RevokedAt), tstr(k.LastUsedAt))
				}
				w.Flush()
			})
		},
	}
	addOutputFlag(list, &out)
	revoke := &cobra.Command{
		Use: "revoke ID|NAME KEY_ID", Short: "Revoke a key (its access tokens die too)", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			if err := cl.RevokeKey(cmd.Context(), args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "revoked %s\n", args[1])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}

func tstr(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func newTokenCmd(c *cli) *cobra.Command {
	var clientID string
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Exchange the API key in WARDEN_TOKEN for a short-lived access token",
		Long:  "Calls the OAuth2 token endpoint (client credentials) with the API key in WARDEN_TOKEN and prints the access token.",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			t, err := cl.Token(cmd.Context(), clientID, c.getenv("WARDEN_TOKEN"))
			if err != nil {
				return err
			}
			fmt.Fprintln(c.stdout, t.AccessToken)
			return nil
		},
	}
	cmd.Flags().StringVar(&clientID, "client-id", "", "identity id or name (optional; must match the key)")
	return cmd
}

func newWhoamiCmd(c *cli) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use: "whoami", Short: "Show the identity WARDEN_TOKEN (an agent key or access token) belongs to", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			id, err := cl.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			return c.output(out, id, func() { printIdentity(c, id) })
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}

func newAdminTokenCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "admin-token", Short: "Manage admin tokens (admin role)"}
	var out, expires string
	var in apitype.CreateAdminToken
	create := &cobra.Command{
		Use: "create NAME", Short: "Create an admin token (printed once)", Args: cobra.ExactArgs(1),
		Example: `  warden admin-token create alice-ops --subject alice@example.com --role security --role approver`,
		RunE: func(cmd *cobra.Command, args []string) error {
			in.Name = args[0]
			if expires != "" {
				d, err := apitype.ParseDuration(expires)
				if err != nil {
					return fmt.Errorf("--expires-in: %w", err)
				}
				in.ExpiresIn = apitype.Duration(d)
			}
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			t, err := cl.CreateAdminToken(cmd.Context(), in)
			if err != nil {
				return err
			}
			return c.output(out, t, func() { fmt.Fprintf(c.stdout, "id: %s\n%s\n", t.ID, t.Token) })
		},
	}
	create.Flags().StringVar(&in.Subject, "subject", "", "the human this token acts for (required)")
	create.Flags().StringArrayVar(&in.Roles, "role", nil, "admin, security, approver, auditor or owner (repeatable)")
	create.Flags().StringVar(&expires, "expires-in", "", "lifetime, e.g. 720h or 90d")
	addOutputFlag(create, &out)
	list := &cobra.Command{
		Use: "list", Short: "List admin tokens", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			res, err := cl.ListAdminTokens(cmd.Context())
			if err != nil {
				return err
			}
			return c.output(out, res, func() {
				w := c.tab()
				fmt.Fprintln(w, "ID\tNAME\tSUBJECT\tROLES\tEXPIRES\tREVOKED")
				for _, t := range res.AdminTokens {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Subject, strings.Join(t.Roles, ","), tstr(t.ExpiresAt), tstr(t.RevokedAt))
				}
				w.Flush()
			})
		},
	}
	addOutputFlag(list, &out)
	revoke := &cobra.Command{
		Use: "revoke ID", Short: "Revoke an admin token", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			if err := cl.RevokeAdminToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "revoked %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
