package main

import "github.com/spf13/cobra"

// commands lists every top-level subcommand; one line each, so a reader
// sees the whole CLI here.
func commands(c *cli) []*cobra.Command {
	return []*cobra.Command{
		newServeCmd(c),
		newScanCmd(c),
		newDiscoveryCmd(c),
		newIdentityCmd(c),
		newKeyCmd(c),
		newTokenCmd(c),
		newWhoamiCmd(c),
		newAdminTokenCmd(c),
		newPolicyCmd(c),
		newConnectorCmd(c),
		newMCPCmd(c),
		newCredentialCmd(c),
		newApprovalCmd(c),
		newAuditCmd(c),
		newFindingCmd(c),
		newBreakerCmd(c),
		newKeyringCmd(c),
	}
}
