package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"warden/apitype"
	"warden/internal/connector"
)

func newConnectorCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "connector", Short: "Manage connectors: the services agents call through Warden", Aliases: []string{"connectors"},
		Long: "A connector names an upstream service, how Warden authenticates to it, and its operations. See docs/connectors.md."}
	var out string

	var files []string
	apply := &cobra.Command{
		Use: "apply -f FILE|DIR...", Short: "Create or replace connectors from YAML/JSON files (a directory: every .yaml, .yml and .json file in it)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			return c.applyFiles(cmd.Context(), files, applier{
				kind: "connector", maxBytes: connector.MaxDocumentSize,
				docName: func(data []byte, ct string) string {
					if doc, err := connector.Parse(data, ct); err == nil {
						return doc.Name
					}
					return ""
				},
				put: func(ctx context.Context, name string, data []byte, ct string) (string, error) {
					res, err := cl.PutConnector(ctx, name, data, ct)
					if err != nil {
						return "", err
					}
					return fmt.Sprintf("connector %s version %d (%d operations)", res.Name, res.Version, len(res.Operations)), nil
				},
			})
		},
	}
	apply.Flags().StringArrayVarP(&files, "file", "f", nil, "connector file or directory (repeatable)")

	list := &cobra.Command{
		Use: "list", Short: "List the connectors in force", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			res, err := cl.ListConnectors(cmd.Context())
			if err != nil {
				return err
			}
			return c.output(out, res, func() { printConnectors(c, res.Connectors) })
		},
	}
	addOutputFlag(list, &out)

	var getOut string
	get := &cobra.Command{
		Use: "get NAME", Short: "Print a connector's document as stored (-o table or json: the compiled summary)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			switch getOut {
			case "document":
				b, _, err := cl.GetConnectorDocument(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				_, err = c.stdout.Write(b)
				return err
			case "table", "json":
				res, err := cl.GetConnector(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return c.output(getOut, res, func() { printOperations(c, res) })
			default:
				return errors.New("-o must be document, table or json")
			}
		},
	}
	get.Flags().StringVarP(&getOut, "output", "o", "document", "document (as stored), table or json")

	del := &cobra.Command{
		Use: "delete NAME", Short: "Delete a connector (calls through it fail from the next request)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			if err := cl.DeleteConnector(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "deleted %s\n", args[0])
			return nil
		},
	}

	catalog := &cobra.Command{
		Use: "catalog [NAME]", Short: "List the built-in connector catalog, or one entry's operations", Args: cobra.MaximumNArgs(1),
		Example: `  warden connector catalog
  warden connector catalog github
  # use an entry:  {apiVersion: warden/v1, kind: Connector, name: github, from_catalog: github}`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			res, err := cl.Catalog(cmd.Context())
			if err != nil {
				return err
			}
			if len(args) == 0 {
				return c.output(out, res, func() { printConnectors(c, res.Connectors) })
			}
			for i := range res.Connectors {
				if e := &res.Connectors[i]; e.Name == args[0] {
					return c.output(out, e, func() { printOperations(c, e) })
				}
			}
			return fmt.Errorf("no catalog connector named %q", args[0])
		},
	}
	addOutputFlag(catalog, &out)

	var imp struct {
		name, baseURL, format string
		private, apply        bool
	}
	importCmd := &cobra.Command{
		Use:   "import OPENAPI_FILE --name NAME",
		Short: "Turn an OpenAPI 3 document (YAML or JSON; - for stdin) into a connector; print it, or apply it with --apply",
		Long: `Import builds a connector from an OpenAPI 3.0 or 3.1 document: the base URL from
servers[0], one operation per path and method (id from operationId, class from the
method or an x-warden-class extension), query parameters, the JSON body schema, and
the auth scheme from securitySchemes. Operations Warden cannot govern exactly (a
parameter that is only part of a path segment, a trailing slash) are skipped; every
such choice is printed as a warning on stderr. Review the document, adjust classes,
then apply it.`,
		Example: `  warden connector import billing-openapi.yaml --name billing > billing.yaml
  warden connector import openapi.json --name crm --base-url https://crm.internal.example.com/api --apply`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if imp.name == "" {
				return errors.New("--name is required")
			}
			if imp.format != "yaml" && imp.format != "json" {
				return errors.New("-o must be yaml or json")
			}
			var data []byte
			var err error
			if args[0] == "-" {
				data, err = io.ReadAll(io.LimitReader(c.stdin, connector.MaxOpenAPISize+1))
			} else {
				data, err = readBounded(args[0], connector.MaxOpenAPISize)
			}
			if err != nil {
				return err
			}
			doc, warns, err := connector.ImportOpenAPI(data, imp.name, connector.ImportOptions{BaseURL: imp.baseURL, AllowPrivateNetwork: imp.private})
			for _, w := range warns {
				fmt.Fprintln(c.stderr, "warning:", w)
			}
			if err != nil {
				return err
			}
			var body []byte
			ct := "application/yaml"
			if imp.format == "json" {
				ct = "application/json"
				if body, err = json.MarshalIndent(doc, "", "  "); err != nil {
					return err
				}
				body = append(body, '\n')
			} else if body, err = yaml.Marshal(doc); err != nil {
				return err
			}
			if !imp.apply {
				_, err = c.stdout.Write(body)
				return err
			}
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			res, err := cl.PutConnector(cmd.Context(), doc.Name, body, ct)
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "connector %s version %d (%d operations)\n", res.Name, res.Version, len(res.Operations))
			return nil
		},
	}
	importCmd.Flags().StringVar(&imp.name, "name", "", "connector name (required)")
	importCmd.Flags().StringVar(&imp.baseURL, "base-url", "", "base URL (default: the document's servers[0].url)")
	importCmd.Flags().BoolVar(&imp.private, "allow-private-network", false, "let Warden dial private addresses and plain http for this connector (internal services)")
	importCmd.Flags().StringVarP(&imp.format, "output", "o", "yaml", "document format: yaml or json")
	importCmd.Flags().BoolVar(&imp.apply, "apply", false, "create or replace the connector on the server instead of printing it")

	cmd.AddCommand(apply, list, get, del, catalog, importCmd, newConnectorAcceptChangesCmd(c))
	return cmd
}

func printConnectors(c *cli, list []apitype.Connector) {
	w := c.tab()
	fmt.Fprintln(w, "NAME\tAUTH\tOPERATIONS\tBASE_URL")
	for _, k := range list {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\n", k.Name, k.Auth, len(k.Operations), k.BaseURL)
	}
	w.Flush()
}

func printOperations(c *cli, k *apitype.Connector) {
	fmt.Fprintf(c.stdout, "%s  %s  auth %s\n", k.Name, k.BaseURL, k.Auth)
	if k.Description != "" {
		fmt.Fprintln(c.stdout, k.Description)
	}
	w := c.tab()
	fmt.Fprintln(w, "ACTION\tCLASS\tMETHOD\tPATH")
	for _, op := range k.Operations {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", op.Action, op.Class, op.Method, op.Path)
	}
	w.Flush()
}

// readBounded reads a file, refusing one larger than max bytes before
// reading it whole.
