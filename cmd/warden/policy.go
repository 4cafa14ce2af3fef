package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"warden/apitype"
	"warden/internal/policy"
)

func newPolicyCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "policy", Short: "Write, test and apply policies", Aliases: []string{"policies"},
		Long: "Policies decide, per operation, whether an identity may act. See docs/policy.md."}
	var out string

	var files []string
	apply := &cobra.Command{
		Use: "apply -f FILE|DIR...", Short: "Create or replace policies from YAML/JSON files (a directory: every policy file in it)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			return c.applyFiles(cmd.Context(), files, applier{
				kind: "policy", maxBytes: policy.MaxDocumentSize,
				skip: func(n string) bool { return strings.HasSuffix(n, "_test.yaml") || strings.HasSuffix(n, "_test.yml") },
				docName: func(data []byte, ct string) string {
					if doc, err := policy.Parse(data, ct); err == nil {
						return doc.Name
					}
					return ""
				},
				put: func(ctx context.Context, name string, data []byte, ct string) (string, error) {
					res, err := cl.PutPolicy(ctx, name, data, ct)
					if err != nil {
						return "", err
					}
					return fmt.Sprintf("policy %s version %d", res.Name, res.Version), nil
				},
			})
		},
	}
	apply.Flags().StringArrayVarP(&files, "file", "f", nil, "policy file or directory (repeatable)")

	list := &cobra.Command{
		Use: "list", Short: "List policies", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			res, err := cl.ListPolicies(cmd.Context())
			if err != nil {
				return err
			}
			return c.output(out, res, func() {
				w := c.tab()
				fmt.Fprintln(w, "NAME\tVERSION\tUPDATED\tBY")
				for _, p := range res.Policies {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", p.Name, p.Version, p.UpdatedAt.Format("2006-01-02T15:04:05Z"), p.UpdatedBy)
				}
				w.Flush()
			})
		},
	}
	addOutputFlag(list, &out)

	var format string
	get := &cobra.Command{
		Use: "get NAME", Short: "Print a policy document", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			ct := ""
			switch format {
			case "yaml":
				ct = "application/yaml"
			case "json":
				ct = "application/json"
			case "":
			default:
				return errors.New("--format must be yaml or json")
			}
			b, err := cl.GetPolicy(cmd.Context(), args[0], ct)
			if err != nil {
				return err
			}
			_, err = c.stdout.Write(b)
			return err
		},
	}
	get.Flags().StringVar(&format, "format", "", "yaml or json (default: as stored)")

	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a policy (its history stays)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			if err := cl.DeletePolicy(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "deleted %s\n", args[0])
			return nil
		},
	}

	validate := &cobra.Command{
		Use: "validate FILE|DIR...", Short: "Check policy files offline (parse and compile, as the server would)", Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			results, err := policy.ValidateFiles(args)
			if err != nil {
				return err
			}
			bad := 0
			for _, r := range results {
				if r.Err != nil {
					bad++
					fmt.Fprintf(c.stdout, "FAIL  %s: %v\n", r.Path, r.Err)
				} else {
					fmt.Fprintf(c.stdout, "ok    %s (policy %s)\n", r.Path, r.Name)
				}
			}
			if bad > 0 {
				return &exitError{code: 1, msg: fmt.Sprintf("%d of %d files invalid", bad, len(results))}
			}
			return nil
		},
	}

	test := &cobra.Command{
		Use: "test DIR", Short: "Run policy test cases (*_test.yaml) offline, like opa test", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			rep, err := policy.RunTests(args[0])
			if err != nil {
				return err
			}
			if err := rep.Write(c.stdout); err != nil {
				return err
			}
			if rep.Failed() {
				return &exitError{code: 1}
			}
			return nil
		},
	}

	var az apitype.AuthorizeRequest
	var params, ctxJSON string
	authorize := &cobra.Command{
		Use: "authorize IDENTITY ACTION", Short: "Ask what would be decided (dry run by default)", Args: cobra.ExactArgs(2),
		Example: `  warden policy authorize support-agent gmail:messages.send --params '{"to":["a@example.com"]}' --explain`,
		RunE: func(cmd *cobra.Command, args []string) error {
			az.Identity, az.Action = args[0], args[1]
			if params != "" {
				if err := json.Unmarshal([]byte(params), &az.Params); err != nil {
					return fmt.Errorf("--params: %w", err)
				}
			}
			if ctxJSON != "" {
				if err := json.Unmarshal([]byte(ctxJSON), &az.Context); err != nil {
					return fmt.Errorf("--context: %w", err)
				}
			}
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			d, err := cl.Authorize(cmd.Context(), az)
			if err != nil {
				return err
			}
			return c.output(out, d, func() {
				fmt.Fprintf(c.stdout, "%s (%s): %s\n", d.Decision, d.Code, d.Reason)
				if d.Policy != "" {
					fmt.Fprintf(c.stdout, "decided by %s/%s\n", d.Policy, d.Rule)
				}
				for _, t := range d.Trace {
					fmt.Fprintf(c.stdout, "  %s/%s %s: %s %s\n", t.Policy, t.Rule, t.Effect, t.Result, t.Detail)
				}
			})
		},
	}
	authorize.Flags().StringVar(&params, "params", "", "params as a JSON object")
	authorize.Flags().StringVar(&ctxJSON, "context", "", "context as a JSON object")
	authorize.Flags().BoolVar(&az.Explain, "explain", false, "list every rule considered and why")
	authorize.Flags().BoolVar(&az.DryRun, "dry-run", true, "do not count toward rate limits")
	addOutputFlag(authorize, &out)

	cmd.AddCommand(apply, list, get, del, validate, test, authorize)
	return cmd
}
