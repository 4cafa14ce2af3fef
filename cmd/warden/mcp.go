package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"warden/internal/mcp"
)

// newMCPCmd is `warden mcp`: the admin side of the MCP gateway (upstream
// MCP servers are connectors of type mcp).
func newMCPCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "mcp", Short: "Upstream MCP servers: approved tools, drift and hidden-instruction warnings (admin token)",
		Long: "Agents reach governed tools at /mcp. Upstream MCP servers are connectors of type mcp; see docs/mcp.md."}
	cmd.AddCommand(newMCPToolsCmd(c), newConnectorAcceptChangesCmd(c))
	return cmd
}

func newMCPToolsCmd(c *cli) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use: "tools CONNECTOR", Short: "List an MCP connector's approved tools against the upstream's current definitions", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			var res mcp.ToolList
			if err := cl.Do(cmd.Context(), "GET", "/v1/connectors/"+url.PathEscape(args[0])+"/tools", nil, &res); err != nil {
				return err
			}
			return c.output(out, res, func() {
				if res.Error != "" {
					fmt.Fprintf(c.stdout, "upstream not listed: %s\n", res.Error)
				}
				w := c.tab()
				fmt.Fprintln(w, "TOOL\tUPSTREAM NAME\tCLASS\tSTATUS\tWARNINGS")
				for _, t := range res.Tools {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", dash(t.Tool), t.Name, dash(t.Class), t.Status, dash(strings.Join(t.Warnings, "; ")))
				}
				w.Flush()
			})
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}

// newConnectorAcceptChangesCmd is `accept-changes NAME`: it approves an MCP
// connector's current upstream tool definitions. It is under `warden mcp`
// and meant for `warden connector` too (one AddCommand line there).
func newConnectorAcceptChangesCmd(c *cli) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use: "accept-changes CONNECTOR", Short: "Approve an MCP connector's changed upstream tool definitions (new pins; blocked tools are callable again)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			var res mcp.AcceptResult
			if err := cl.Do(cmd.Context(), "POST", "/v1/connectors/"+url.PathEscape(args[0])+"/accept-changes", nil, &res); err != nil {
				return err
			}
			return c.output(out, res, func() {
				fmt.Fprintf(c.stdout, "connector %s version %d: %d changed, %d added, %d removed\n", res.Connector, res.Version, len(res.Changed), len(res.Added), len(res.Removed))
				for _, n := range res.Changed {
					fmt.Fprintf(c.stdout, "  changed  %s\n", n)
				}
				for _, n := range res.Added {
					fmt.Fprintf(c.stdout, "  added    %s\n", n)
				}
				for _, n := range res.Removed {
					fmt.Fprintf(c.stdout, "  removed  %s\n", n)
				}
				for _, w := range res.Warnings {
					fmt.Fprintf(c.stdout, "  WARNING  %s\n", w)
				}
			})
		},
	}
	addOutputFlag(cmd, &out)
	return cmd
}
