package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// cli carries what every command needs from the outside world, so tests can
// drive the whole program through run without touching process globals.
type cli struct {
	getenv func(string) string
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
}

// exitError asks run's caller to exit with a specific code without printing
// an error (e.g. `warden scan` found secrets, `warden policy test` failed).
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// run is the whole program: main only supplies the process's context,
// arguments, environment and standard streams.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := &cli{getenv: getenv, stdin: stdin, stdout: stdout, stderr: stderr}
	root := newRootCmd(c)
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err != nil {
		var ee *exitError
		if !errors.As(err, &ee) || ee.msg != "" {
			fmt.Fprintln(stderr, "error:", err)
		}
	}
	return err
}

func newRootCmd(c *cli) *cobra.Command {
	root := &cobra.Command{
		Use:   "warden",
		Short: "Warden governs what AI agents and other non-human identities may do",
		Long: `Warden is a gateway and control plane for non-human identities (AI agents,
service accounts, bots, CI pipelines, API clients). Agents send their operations
through Warden, which authenticates them, decides per operation by policy,
injects the real credential, and writes a tamper-evident audit trail.

Server:  warden serve --dev
Client:  set WARDEN_ADDR and WARDEN_TOKEN, then e.g. warden identity list`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(commands(c)...)
	return root
}
