package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"warden/apitype"
)

func newCredentialCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "credential", Short: "Manage credentials in the vault (secrets are write-only)", Aliases: []string{"credentials"}}
	var out string
	var in apitype.CreateCredential
	var secretFields []string
	var secretStdin bool
	var rotation string
	readSecret := func() (map[string]string, error) {
		m := map[string]string{}
		for _, f := range secretFields {
			k, v, ok := strings.Cut(f, "=")
			if !ok || k == "" {
				return nil, fmt.Errorf("--secret %q: want field=value", k)
			}
			m[k] = v
		}
		if secretStdin {
			// A JSON object on stdin keeps the secret out of shell history
			// and the process list.
			dec := json.NewDecoder(bufio.NewReader(c.stdin))
			var fromStdin map[string]string
			if err := dec.Decode(&fromStdin); err != nil {
				return nil, errors.New("--secret-stdin: stdin must hold a JSON object of secret fields")
			}
			for k, v := range fromStdin {
				m[k] = v
			}
		}
		if len(m) == 0 {
			return nil, errors.New("give the secret with --secret field=value (repeatable) or --secret-stdin")
		}
		return m, nil
	}
	create := &cobra.Command{
		Use: "create NAME --type TYPE --connector NAME (--secret field=value... | --secret-stdin)", Short: "Store a credential", Args: cobra.ExactArgs(1),
		Example: `  echo '{"token":"ghp_..."}' | warden credential create github-bot --type bearer --connector github --secret-stdin
  warden credential create crm-basic --type basic --connector crm --identity support-agent --secret username=svc --secret password=...`,
		RunE: func(cmd *cobra.Command, args []string) error {
			in.Name = args[0]
			s, err := readSecret()
			if err != nil {
				return err
			}
			in.Secret = s
			if rotation != "" {
				d, err := apitype.ParseDuration(rotation)
				if err != nil {
					return fmt.Errorf("--rotate-every: %w", err)
				}
				in.Rotation = &apitype.Rotation{Every: apitype.Duration(d)}
			}
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			var res apitype.Credential
			if err := cl.Do(cmd.Context(), "POST", "/v1/credentials", in, &res); err != nil {
				return err
			}
			return c.output(out, res, func() {
				fmt.Fprintf(c.stdout, "stored %s (%s, %s, version %d)\n", res.Name, res.Type, res.Connector, res.Version)
			})
		},
	}
	create.Flags().StringVar(&in.Type, "type", "", "bearer, header, basic, query, ... (required)")
	create.Flags().StringVar(&in.Connector, "connector", "", "connector it serves (required)")
	create.Flags().StringVar(&in.Identity, "identity", "", "bind to one identity (id or name); default: every identity")
	create.Flags().StringVar(&in.Owner, "owner", "", "accountable human")
	create.Flags().StringVar(&in.Description, "description", "", "what it is")
	create.Flags().StringArrayVar(&secretFields, "secret", nil, "secret field=value (repeatable)")
	create.Flags().BoolVar(&secretStdin, "secret-stdin", false, "read the secret fields as a JSON object from stdin")
	create.Flags().StringVar(&rotation, "rotate-every", "", "rotation policy, e.g. 30d")
	addOutputFlag(create, &out)

	var connector string
	var overdue bool
	list := &cobra.Command{
		Use: "list", Short: "List credentials (metadata only)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			q := url.Values{}
			if connector != "" {
				q.Set("connector", connector)
			}
			if overdue {
				q.Set("rotation", "overdue")
			}
			var res apitype.CredentialList
			if err := cl.Do(cmd.Context(), "GET", "/v1/credentials?"+q.Encode(), nil, &res); err != nil {
				return err
			}
			return c.output(out, res, func() {
				w := c.tab()
				fmt.Fprintln(w, "NAME\tTYPE\tCONNECTOR\tIDENTITY\tVERSION\tROTATED\tDUE\tLAST USED")
				for _, x := range res.Credentials {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\t%v\t%s\n", x.Name, x.Type, x.Connector, dash(x.Identity), x.Version, x.RotatedAt.Format(time.RFC3339), x.RotationDue, tstr(x.LastUsedAt))
				}
				w.Flush()
			})
		},
	}
	list.Flags().StringVar(&connector, "connector", "", "only this connector's credentials")
	list.Flags().BoolVar(&overdue, "overdue", false, "only credentials past their rotation policy")
	addOutputFlag(list, &out)

	rotate := &cobra.Command{
		Use: "rotate NAME (--secret field=value... | --secret-stdin)", Short: "Store a new secret version", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := readSecret()
			if err != nil {
				return err
			}
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			var res apitype.Credential
			if err := cl.Do(cmd.Context(), "POST", "/v1/credentials/"+url.PathEscape(args[0])+"/rotate", apitype.RotateCredential{Secret: s}, &res); err != nil {
				return err
			}
			return c.output(out, res, func() { fmt.Fprintf(c.stdout, "rotated %s to version %d\n", res.Name, res.Version) })
		},
	}
	rotate.Flags().StringArrayVar(&secretFields, "secret", nil, "secret field=value (repeatable)")
	rotate.Flags().BoolVar(&secretStdin, "secret-stdin", false, "read the secret fields as a JSON object from stdin")
	addOutputFlag(rotate, &out)

	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a credential", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			if err := cl.Do(cmd.Context(), "DELETE", "/v1/credentials/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "deleted %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(create, list, rotate, del)
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newApprovalCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "approval", Short: "See and decide approval requests", Aliases: []string{"approvals"}}
	var out, status, comment string
	list := &cobra.Command{
		Use: "list", Short: "List approval requests", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			var res apitype.ApprovalList
			if err := cl.Do(cmd.Context(), "GET", "/v1/approvals?status="+url.QueryEscape(status), nil, &res); err != nil {
				return err
			}
			return c.output(out, res, func() {
				w := c.tab()
				fmt.Fprintln(w, "ID\tSTATUS\tIDENTITY\tACTION\tREQUEST\tPOLICY/RULE\tEXPIRES")
				for _, a := range res.Approvals {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s %s\t%s/%s\t%s\n", a.ID, a.Status, a.IdentityName, a.Action, a.Method, a.Path, a.Policy, a.Rule, a.ExpiresAt.Format(time.RFC3339))
				}
				w.Flush()
			})
		},
	}
	list.Flags().StringVar(&status, "status", "pending", "pending, approved, denied, expired, used or empty for all")
	addOutputFlag(list, &out)
	decide := func(verb string) *cobra.Command {
		d := &cobra.Command{
			Use: verb + " ID", Short: strings.ToUpper(verb[:1]) + verb[1:] + " a pending request", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				cl, err := c.apiClient()
				if err != nil {
					return err
				}
				var res apitype.Approval
				if err := cl.Do(cmd.Context(), "POST", "/v1/approvals/"+url.PathEscape(args[0])+"/"+verb, apitype.ApprovalDecision{Comment: comment}, &res); err != nil {
					return err
				}
				return c.output(out, res, func() { fmt.Fprintf(c.stdout, "%s is %s\n", res.ID, res.Status) })
			},
		}
		d.Flags().StringVar(&comment, "comment", "", "why (recorded)")
		addOutputFlag(d, &out)
		return d
	}
	cmd.AddCommand(list, decide("approve"), decide("deny"))
	return cmd
}
