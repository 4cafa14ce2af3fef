package main

import (
	"fmt"
	"net/url"
	"strconv"
	"time"
	"warden/apitype"

	"github.com/spf13/cobra"
)

// newFindingCmd: behavioural findings (docs/monitor.md).
func newFindingCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "finding", Aliases: []string{"findings"}, Short: "List, acknowledge and resolve behavioural findings",
		Long: "The monitor learns what is normal for each identity and raises findings when it stops being normal. See docs/monitor.md."}
	var (
		out                                  string
		identity, severity, status, detector string
		cursor, note                         string
		limit                                int
	)
	list := &cobra.Command{
		Use: "list", Short: "List findings, newest first", Args: cobra.NoArgs,
		Example: `  warden finding list --status open --severity high,critical
  warden finding list --identity support-agent -o json`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			v := url.Values{}
			for k, val := range map[string]string{"identity": identity, "severity": severity, "status": status, "detector": detector, "cursor": cursor} {
				if val != "" {
					v.Set(k, val)
				}
			}
			if limit > 0 {
				v.Set("limit", strconv.Itoa(limit))
			}
			var res apitype.FindingList
			if err := cl.Do(cmd.Context(), "GET", "/v1/findings?"+v.Encode(), nil, &res); err != nil {
				return err
			}
			return c.output(out, res, func() {
				w := c.tab()
				fmt.Fprintln(w, "ID\tTIME\tSEVERITY\tDETECTOR\tIDENTITY\tACTION TAKEN\tSTATUS\tEXPLANATION")
				for _, f := range res.Findings {
					who := f.IdentityName
					if who == "" {
						who = f.Identity
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.ID, f.Time.Format(time.RFC3339), f.Severity, f.Detector, cell(who),
						cell(f.ActionTaken), f.Status, cell(f.Explanation))
				}
				w.Flush()
				if res.NextCursor != "" {
					fmt.Fprintf(c.stdout, "more: --cursor %s\n", res.NextCursor)
				}
			})
		},
	}
	fl := list.Flags()
	fl.StringVar(&identity, "identity", "", "identity id or name")
	fl.StringVar(&severity, "severity", "", "info, low, medium, high, critical, or a comma-separated list")
	fl.StringVar(&status, "status", "", "open, acknowledged or resolved")
	fl.StringVar(&detector, "detector", "", "detector name, e.g. rate_spike, new_operation, key_reuse")
	fl.IntVar(&limit, "limit", 50, "findings per page (1-1000)")
	fl.StringVar(&cursor, "cursor", "", "continue after a previous page")
	addOutputFlag(list, &out)

	update := func(verb, path, short string) *cobra.Command {
		u := &cobra.Command{
			Use: verb + " ID", Short: short, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				cl, err := c.apiClient()
				if err != nil {
					return err
				}
				var res apitype.Finding
				if err := cl.Do(cmd.Context(), "POST", "/v1/findings/"+url.PathEscape(args[0])+"/"+path, apitype.FindingUpdate{Note: note}, &res); err != nil {
					return err
				}
				return c.output(out, res, func() { fmt.Fprintf(c.stdout, "%s is %s\n", res.ID, res.Status) })
			},
		}
		u.Flags().StringVar(&note, "note", "", "a note kept with the finding")
		addOutputFlag(u, &out)
		return u
	}
	cmd.AddCommand(list,
		update("ack", "ack", "Acknowledge a finding (someone is on it)"),
		update("resolve", "resolve", "Resolve a finding (it stays, with who resolved it)"))
	return cmd
}

// newBreakerCmd: the human side of the circuit breaker.
func newBreakerCmd(c *cli) *cobra.Command {
	cmd := &cobra.Command{Use: "breaker", Short: "Kill switch: trip an identity, pause or resume many, lift a throttle",
		Long: "Tripping suspends at once (tokens stop working on the next request, pending approvals expire); nothing is deleted. Resume a tripped identity with `warden identity resume`. See docs/monitor.md."}
	var (
		out, reason, owner string
		labels             []string
	)
	trip := &cobra.Command{
		Use: "trip ID --reason TEXT", Short: "Suspend an identity now and record a manual_trip finding", Args: cobra.ExactArgs(1),
		Example: `  warden breaker trip support-agent --reason "sending mail in a loop"`,
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			var res apitype.BreakerTripped
			if err := cl.Do(cmd.Context(), "POST", "/v1/breaker/"+url.PathEscape(args[0])+"/trip", apitype.BreakerTrip{Reason: reason}, &res); err != nil {
				return err
			}
			return c.output(out, res, func() {
				fmt.Fprintf(c.stdout, "%s (%s) is %s; finding %s\n", res.Identity.Name, res.Identity.ID, res.Identity.Status, res.Finding.ID)
			})
		},
	}
	trip.Flags().StringVar(&reason, "reason", "", "why (required; kept in the status history and the audit log)")
	addOutputFlag(trip, &out)

	reset := &cobra.Command{
		Use: "reset ID", Short: "Lift the breaker's throttle on an identity", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := c.apiClient()
			if err != nil {
				return err
			}
			var res apitype.BreakerReset
			if err := cl.Do(cmd.Context(), "POST", "/v1/breaker/"+url.PathEscape(args[0])+"/reset", apitype.BreakerTrip{Reason: reason}, &res); err != nil {
				return err
			}
			return c.output(out, res, func() {
				if res.Throttled {
					fmt.Fprintf(c.stdout, "throttle on %s lifted\n", res.Identity.Name)
				} else {
					fmt.Fprintf(c.stdout, "%s was not throttled\n", res.Identity.Name)
				}
			})
		},
	}
	reset.Flags().StringVar(&reason, "reason", "", "why")
	addOutputFlag(reset, &out)

	many := func(verb, short string) *cobra.Command {
		m := &cobra.Command{
			Use: verb + " --owner EMAIL | --label k=v ... --reason TEXT", Short: short, Args: cobra.NoArgs,
			Example: "  warden breaker " + verb + ` --owner alice@example.com --reason "incident 42"
  warden breaker ` + verb + ` --label team=support --reason "prompt injection campaign"`,
			RunE: func(cmd *cobra.Command, _ []string) error {
				in := apitype.BreakerPause{Owner: owner, Reason: reason}
				if len(labels) > 0 {
					var err error
					if in.Labels, err = parseLabels(labels); err != nil {
						return err
					}
				}
				cl, err := c.apiClient()
				if err != nil {
					return err
				}
				var res apitype.BreakerPaused
				if err := cl.Do(cmd.Context(), "POST", "/v1/breaker/"+verb, in, &res); err != nil {
					return err
				}
				return c.output(out, res, func() {
					w := c.tab()
					fmt.Fprintln(w, "IDENTITY\tNAME\tSTATUS\tNOTE")
					for _, id := range res.Identities {
						fmt.Fprintf(w, "%s\t%s\t%s\t\n", id.ID, id.Name, id.Status)
					}
					for _, s := range res.Skipped {
						fmt.Fprintf(w, "%s\t-\tunchanged\t%s\n", s.Identity, cell(s.Reason))
					}
					w.Flush()
					past := map[string]string{"pause": "paused", "resume": "resumed"}[verb]
					fmt.Fprintf(c.stdout, "%d %s, %d unchanged\n", len(res.Identities), past, len(res.Skipped))
				})
			},
		}
		m.Flags().StringVar(&owner, "owner", "", "every identity of this owner")
		m.Flags().StringSliceVar(&labels, "label", nil, "identities with this label (k=v; repeat: all must match)")
		m.Flags().StringVar(&reason, "reason", "", "why"+map[string]string{"pause": " (required)", "resume": ""}[verb])
		addOutputFlag(m, &out)
		return m
	}
	cmd.AddCommand(trip, reset,
		many("pause", "Suspend every active identity of an owner or with labels"),
		many("resume", "Resume the identities a pause suspended (never other suspensions)"))
	return cmd
}
