package api

import (
	"net/http"
	"reflect"

	"warden/apitype"
	"warden/internal/mcp"
)

// Who may call a route. Fine-grained permissions (roles, ownership) are
// decided by the domain services; this is the outer gate.
const (
	authNone  = "none"  // public: health, metrics, token endpoint
	authAdmin = "admin" // admin tokens only; an agent's credential gets 403
	authAgent = "agent" // an identity's API key or access token
	authAny   = "any"   // either
)

// route is one API operation. The table below is the whole API: it is
// served, and the OpenAPI document is generated from it.
type route struct {
	Method   string
	Pattern  string
	Auth     string
	Summary  string
	Request  reflect.Type // JSON body, if any
	Response reflect.Type // 2xx JSON body, if any
	Status   int          // success status (default 200)
	Query    []string     // documented query parameters
	Handler  func(http.ResponseWriter, *http.Request) error
}

func typeOf[T any]() reflect.Type { return reflect.TypeFor[T]() }

func (a *API) routes() []route {
	return []route{
		{Method: "GET", Pattern: "/healthz", Auth: authNone, Summary: "Liveness", Response: typeOf[apitype.Health](), Handler: a.healthz},
		{Method: "GET", Pattern: "/readyz", Auth: authNone, Summary: "Readiness (database reachable, start-up finished)", Response: typeOf[apitype.Health](), Handler: a.readyz},
		{Method: "GET", Pattern: "/metrics", Auth: authNone, Summary: "Prometheus metrics", Handler: a.metricsHandler},
		{Method: "GET", Pattern: "/openapi.json", Auth: authNone, Summary: "This API's OpenAPI 3.1 document", Handler: a.openapi},

		{Method: "POST", Pattern: "/v1/identities", Auth: authAdmin, Summary: "Create an identity", Request: typeOf[apitype.CreateIdentity](), Response: typeOf[apitype.Identity](), Status: 201, Handler: a.createIdentity},
		{Method: "GET", Pattern: "/v1/identities", Auth: authAdmin, Summary: "List identities", Response: typeOf[apitype.IdentityList](), Query: []string{"type", "owner", "status", "label", "limit", "cursor"}, Handler: a.listIdentities},
		{Method: "GET", Pattern: "/v1/identities/{id}", Auth: authAdmin, Summary: "Get an identity by id or name", Response: typeOf[apitype.Identity](), Handler: a.getIdentity},
		{Method: "PATCH", Pattern: "/v1/identities/{id}", Auth: authAdmin, Summary: "Update an identity", Request: typeOf[apitype.UpdateIdentity](), Response: typeOf[apitype.Identity](), Handler: a.updateIdentity},
		{Method: "DELETE", Pattern: "/v1/identities/{id}", Auth: authAdmin, Summary: "Decommission an identity (final; record and history stay)", Response: typeOf[apitype.Identity](), Handler: a.decommissionIdentity},
		{Method: "POST", Pattern: "/v1/identities/{id}/suspend", Auth: authAdmin, Summary: "Suspend an identity", Request: typeOf[apitype.StatusRequest](), Response: typeOf[apitype.Identity](), Handler: a.suspendIdentity},
		{Method: "POST", Pattern: "/v1/identities/{id}/resume", Auth: authAdmin, Summary: "Resume a suspended identity", Request: typeOf[apitype.StatusRequest](), Response: typeOf[apitype.Identity](), Handler: a.resumeIdentity},
		{Method: "GET", Pattern: "/v1/identities/{id}/history", Auth: authAdmin, Summary: "Status history of an identity", Response: typeOf[apitype.StatusHistory](), Handler: a.identityHistory},
		{Method: "POST", Pattern: "/v1/identities/{id}/keys", Auth: authAdmin, Summary: "Create an API key (shown once)", Request: typeOf[apitype.CreateKey](), Response: typeOf[apitype.KeyCreated](), Status: 201, Handler: a.createKey},
		{Method: "GET", Pattern: "/v1/identities/{id}/keys", Auth: authAdmin, Summary: "List an identity's API keys", Response: typeOf[apitype.KeyList](), Handler: a.listKeys},
		{Method: "DELETE", Pattern: "/v1/identities/{id}/keys/{key_id}", Auth: authAdmin, Summary: "Revoke an API key", Status: 204, Handler: a.revokeKey},

		{Method: "POST", Pattern: "/v1/admin-tokens", Auth: authAdmin, Summary: "Create an admin token (shown once)", Request: typeOf[apitype.CreateAdminToken](), Response: typeOf[apitype.AdminToken](), Status: 201, Handler: a.createAdminToken},
		{Method: "GET", Pattern: "/v1/admin-tokens", Auth: authAdmin, Summary: "List admin tokens", Response: typeOf[apitype.AdminTokenList](), Handler: a.listAdminTokens},
		{Method: "DELETE", Pattern: "/v1/admin-tokens/{id}", Auth: authAdmin, Summary: "Revoke an admin token", Status: 204, Handler: a.revokeAdminToken},
		{Method: "GET", Pattern: "/v1/audit", Auth: authAdmin, Summary: "Search audit events, newest first (security, auditor or admin role)", Response: typeOf[apitype.AuditList](), Query: []string{"identity", "kind", "action", "decision", "since", "until", "text", "limit", "cursor"}, Handler: a.listAudit},
		{Method: "GET", Pattern: "/v1/audit/verify", Auth: authAdmin, Summary: "Verify the whole audit chain and every checkpoint (security, auditor or admin role)", Response: typeOf[apitype.AuditVerify](), Handler: a.verifyAudit},
		{Method: "GET", Pattern: "/v1/audit/export", Auth: authAdmin, Summary: "Export matching audit events, oldest first, as JSON Lines or OCSF (application/x-ndjson)", Query: []string{"format", "identity", "kind", "action", "decision", "since", "until", "text"}, Handler: a.exportAudit},
		{Method: "GET", Pattern: "/v1/audit/checkpoints", Auth: authAdmin, Summary: "Signed audit checkpoints with their public keys (application/x-ndjson, checkpoint file format)", Handler: a.auditCheckpoints},
		{Method: "GET", Pattern: "/v1/audit/sinks", Auth: authAdmin, Summary: "Streaming audit sinks: cursor, lag, last delivery and last error (security, auditor or admin role)", Response: typeOf[apitype.AuditSinkList](), Handler: a.listAuditSinks},
		{Method: "GET", Pattern: "/v1/changes", Auth: authAdmin, Summary: "Recorded admin changes, newest first", Response: typeOf[apitype.ChangeList](), Query: []string{"target", "limit"}, Handler: a.listChanges},

		{Method: "PUT", Pattern: "/v1/policies/{name}", Auth: authAdmin, Summary: "Create or replace a policy (YAML or JSON body; compiled before it is saved)", Response: typeOf[apitype.Policy](), Handler: a.putPolicy},
		{Method: "GET", Pattern: "/v1/policies", Auth: authAdmin, Summary: "List policies", Response: typeOf[apitype.PolicyList](), Handler: a.listPolicies},
		{Method: "GET", Pattern: "/v1/policies/{name}", Auth: authAdmin, Summary: "Get a policy document (as stored, or converted per Accept)", Handler: a.getPolicy},
		{Method: "GET", Pattern: "/v1/policies/{name}/versions", Auth: authAdmin, Summary: "A policy's versions, with who changed it", Response: typeOf[apitype.PolicyVersions](), Handler: a.policyVersions},
		{Method: "DELETE", Pattern: "/v1/policies/{name}", Auth: authAdmin, Summary: "Delete a policy (its history stays)", Status: 204, Handler: a.deletePolicy},
		{Method: "POST", Pattern: "/v1/authorize", Auth: authAny, Summary: "Decide a question (admin: any identity; an identity: itself)", Request: typeOf[apitype.AuthorizeRequest](), Response: typeOf[apitype.Decision](), Handler: a.authorize},

		{Method: "POST", Pattern: "/v1/credentials", Auth: authAdmin, Summary: "Store a credential (the secret is write-only)", Request: typeOf[apitype.CreateCredential](), Response: typeOf[apitype.Credential](), Status: 201, Handler: a.createCredential},
		{Method: "GET", Pattern: "/v1/credentials", Auth: authAdmin, Summary: "List credentials (metadata only)", Response: typeOf[apitype.CredentialList](), Query: []string{"connector", "rotation"}, Handler: a.listCredentials},
		{Method: "GET", Pattern: "/v1/credentials/{name}", Auth: authAdmin, Summary: "Get a credential's metadata", Response: typeOf[apitype.Credential](), Handler: a.getCredential},
		{Method: "PATCH", Pattern: "/v1/credentials/{name}", Auth: authAdmin, Summary: "Update a credential's metadata", Request: typeOf[apitype.UpdateCredential](), Response: typeOf[apitype.Credential](), Handler: a.updateCredential},
		{Method: "POST", Pattern: "/v1/credentials/{name}/rotate", Auth: authAdmin, Summary: "Store a new secret version", Request: typeOf[apitype.RotateCredential](), Response: typeOf[apitype.Credential](), Handler: a.rotateCredential},
		{Method: "DELETE", Pattern: "/v1/credentials/{name}", Auth: authAdmin, Summary: "Delete a credential", Status: 204, Handler: a.deleteCredential},
		{Method: "GET", Pattern: "/v1/credentials/{name}/versions", Auth: authAdmin, Summary: "A credential's secret versions (current, previous until retired) without secrets", Response: typeOf[apitype.CredentialVersions](), Handler: a.credentialVersions},
		{Method: "GET", Pattern: "/v1/leases", Auth: authAdmin, Summary: "List dynamic database credential leases (no passwords)", Response: typeOf[apitype.LeaseList](), Query: []string{"identity", "credential", "active", "limit"}, Handler: a.listLeases},
		{Method: "DELETE", Pattern: "/v1/leases/{id}", Auth: authAdmin, Summary: "Revoke a lease now and drop its database role", Response: typeOf[apitype.Lease](), Handler: a.revokeLease},

		{Method: "PUT", Pattern: "/v1/connectors/{name}", Auth: authAdmin, Summary: "Create or replace a connector (YAML or JSON; type mcp: the upstream's tools are listed and approved)", Response: typeOf[apitype.Connector](), Handler: a.putConnectorMCP},
		{Method: "POST", Pattern: "/v1/connectors/{name}/accept-changes", Auth: authAdmin, Summary: "Approve an MCP connector's current upstream tool definitions (new pins)", Response: typeOf[mcp.AcceptResult](), Handler: a.acceptMCPChanges},
		{Method: "GET", Pattern: "/v1/connectors/{name}/tools", Auth: authAdmin, Summary: "An MCP connector's approved tools against the upstream's current definitions, with warnings", Response: typeOf[mcp.ToolList](), Handler: a.mcpTools},
		{Method: "GET", Pattern: "/v1/connectors", Auth: authAdmin, Summary: "List connectors in force", Response: typeOf[apitype.ConnectorList](), Handler: a.listConnectors},
		{Method: "GET", Pattern: "/v1/connectors/{name}", Auth: authAdmin, Summary: "Get a connector (its document, or a JSON summary with Accept: application/json)", Handler: a.getConnector},
		{Method: "DELETE", Pattern: "/v1/connectors/{name}", Auth: authAdmin, Summary: "Delete a connector", Status: 204, Handler: a.deleteConnector},
		{Method: "GET", Pattern: "/v1/catalog", Auth: authAny, Summary: "The built-in connector catalog", Response: typeOf[apitype.CatalogList](), Handler: a.catalog},

		{Method: "ANY", Pattern: "/proxy/{connector}/{path...}", Auth: authAgent, Summary: "Governed call: forwarded to the connector's upstream with the credential injected, if policy allows", Handler: a.proxyCall},
		{Method: "POST", Pattern: "/mcp", Auth: authAgent, Summary: "MCP endpoint (streamable HTTP): governed tools for the calling identity", Handler: a.serveMCP},
		{Method: "GET", Pattern: "/mcp", Auth: authAgent, Summary: "MCP endpoint: the session's server-to-client stream", Handler: a.serveMCP},
		{Method: "DELETE", Pattern: "/mcp", Auth: authAgent, Summary: "MCP endpoint: end the session", Handler: a.serveMCP},
		{Method: "POST", Pattern: "/v1/execute", Auth: authAgent, Summary: "Call a connector operation by name (governed)", Request: typeOf[apitype.ExecuteRequest](), Response: typeOf[apitype.ExecuteResponse](), Handler: a.execute},

		{Method: "GET", Pattern: "/v1/approvals", Auth: authAny, Summary: "List approval requests (an identity sees its own)", Response: typeOf[apitype.ApprovalList](), Query: []string{"status", "limit"}, Handler: a.listApprovals},
		{Method: "GET", Pattern: "/v1/approvals/{id}", Auth: authAny, Summary: "Get an approval request (the requesting identity may poll it)", Response: typeOf[apitype.Approval](), Handler: a.getApproval},
		{Method: "POST", Pattern: "/v1/approvals/{id}/approve", Auth: authAdmin, Summary: "Approve a pending request (approver role; not for identities you own)", Request: typeOf[apitype.ApprovalDecision](), Response: typeOf[apitype.Approval](), Handler: a.decideApproval(true)},
		{Method: "POST", Pattern: "/v1/approvals/{id}/deny", Auth: authAdmin, Summary: "Deny a pending request", Request: typeOf[apitype.ApprovalDecision](), Response: typeOf[apitype.Approval](), Handler: a.decideApproval(false)},

		{Method: "POST", Pattern: "/v1/elevations", Auth: authAny, Summary: "Ask for a just-in-time grant (the identity itself, its owner or an admin)", Request: typeOf[apitype.CreateElevation](), Response: typeOf[apitype.Elevation](), Status: 201, Handler: a.requestElevation},
		{Method: "GET", Pattern: "/v1/elevations", Auth: authAny, Summary: "List elevations (an identity sees its own)", Response: typeOf[apitype.ElevationList](), Query: []string{"status"}, Handler: a.listElevations},
		{Method: "GET", Pattern: "/v1/elevations/{id}", Auth: authAny, Summary: "Get an elevation", Response: typeOf[apitype.Elevation](), Handler: a.getElevation},
		{Method: "POST", Pattern: "/v1/elevations/{id}/approve", Auth: authAdmin, Summary: "Approve an elevation: the grant is in force until it expires", Request: typeOf[apitype.ApprovalDecision](), Response: typeOf[apitype.Elevation](), Handler: a.decideElevation(true)},
		{Method: "POST", Pattern: "/v1/elevations/{id}/deny", Auth: authAdmin, Summary: "Deny an elevation", Request: typeOf[apitype.ApprovalDecision](), Response: typeOf[apitype.Elevation](), Handler: a.decideElevation(false)},
		{Method: "POST", Pattern: "/v1/elevations/{id}/revoke", Auth: authAny, Summary: "End a grant early, or withdraw a request", Request: typeOf[apitype.StatusRequest](), Response: typeOf[apitype.Elevation](), Handler: a.revokeElevation},

		{Method: "GET", Pattern: "/v1/findings", Auth: authAdmin, Summary: "Behavioural findings, newest first (owners see their identities')", Response: typeOf[apitype.FindingList](), Query: []string{"identity", "severity", "status", "detector", "limit", "cursor"}, Handler: a.listFindings},
		{Method: "GET", Pattern: "/v1/findings/{id}", Auth: authAdmin, Summary: "Get a finding", Response: typeOf[apitype.Finding](), Handler: a.getFinding},
		{Method: "POST", Pattern: "/v1/findings/{id}/ack", Auth: authAdmin, Summary: "Acknowledge a finding (security role or the identity's owner)", Request: typeOf[apitype.FindingUpdate](), Response: typeOf[apitype.Finding](), Handler: a.updateFinding(false)},
		{Method: "POST", Pattern: "/v1/findings/{id}/resolve", Auth: authAdmin, Summary: "Resolve a finding (it stays, with who resolved it)", Request: typeOf[apitype.FindingUpdate](), Response: typeOf[apitype.Finding](), Handler: a.updateFinding(true)},
		{Method: "POST", Pattern: "/v1/breaker/{id}/trip", Auth: authAdmin, Summary: "Kill switch: suspend an identity now and record a manual_trip finding", Request: typeOf[apitype.BreakerTrip](), Response: typeOf[apitype.BreakerTripped](), Handler: a.tripBreaker},
		{Method: "POST", Pattern: "/v1/breaker/{id}/reset", Auth: authAdmin, Summary: "Lift the breaker's throttle on an identity (a suspension is lifted by resume)", Request: typeOf[apitype.BreakerTrip](), Response: typeOf[apitype.BreakerReset](), Handler: a.resetBreaker},
		{Method: "GET", Pattern: "/v1/breaker/throttles", Auth: authAdmin, Summary: "Identities the breaker is throttling now", Response: typeOf[apitype.ThrottleList](), Handler: a.listThrottles},
		{Method: "POST", Pattern: "/v1/breaker/pause", Auth: authAdmin, Summary: "Suspend every active identity of an owner or with labels (security role)", Request: typeOf[apitype.BreakerPause](), Response: typeOf[apitype.BreakerPaused](), Handler: a.pauseBreaker(false)},
		{Method: "POST", Pattern: "/v1/breaker/resume", Auth: authAdmin, Summary: "Resume the identities a pause suspended (never other suspensions)", Request: typeOf[apitype.BreakerPause](), Response: typeOf[apitype.BreakerPaused](), Handler: a.pauseBreaker(true)},

		{Method: "POST", Pattern: "/v1/discoveries", Auth: authAdmin, Summary: "Report scanner findings to the inventory (fingerprints and previews, never secrets)", Request: typeOf[apitype.DiscoveryReport](), Response: typeOf[apitype.DiscoveryReportResult](), Handler: a.reportDiscoveries},
		{Method: "GET", Pattern: "/v1/discoveries", Auth: authAdmin, Summary: "List discovered credentials", Response: typeOf[apitype.DiscoveryList](), Query: []string{"status", "kind", "rule", "identity", "limit"}, Handler: a.listDiscoveries},
		{Method: "GET", Pattern: "/v1/discoveries/{id}", Auth: authAdmin, Summary: "Get a discovered credential", Response: typeOf[apitype.Discovery](), Handler: a.getDiscovery},
		{Method: "POST", Pattern: "/v1/discoveries/{id}/resolve", Auth: authAdmin, Summary: "Triage a discovered credential (open, rotated, ignored; link to identity and owner)", Request: typeOf[apitype.ResolveDiscovery](), Response: typeOf[apitype.Discovery](), Handler: a.resolveDiscovery},
		{Method: "POST", Pattern: "/v1/discoveries/{id}/vault", Auth: authAdmin, Summary: "Move a discovered secret into the vault in one step", Request: typeOf[apitype.VaultDiscovery](), Response: typeOf[apitype.Discovery](), Handler: a.vaultDiscovery},

		{Method: "POST", Pattern: "/v1/token", Auth: authNone, Summary: "OAuth2 token endpoint (client_credentials; the API key is the client secret)", Response: typeOf[apitype.TokenResponse](), Handler: a.token},
		{Method: "POST", Pattern: "/v1/token/revoke", Auth: authAgent, Summary: "Revoke an access token (RFC 7009)", Status: 200, Handler: a.revokeToken},
		{Method: "GET", Pattern: "/v1/whoami", Auth: authAgent, Summary: "The calling identity", Response: typeOf[apitype.Identity](), Handler: a.whoami},
	}
}
