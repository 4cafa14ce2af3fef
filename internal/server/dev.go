package server

import (
	"context"
	"fmt"
	"io"

	"warden"
	"warden/internal/config"
	"warden/internal/connector"
	"warden/internal/credential"
	"warden/internal/identity"
	"warden/internal/policy"
)

// devBootstrap makes a dev server ready to try: an example identity exists
// and the banner tells how to use it.
// devPolicy lets the example identity read, create within a limit, and ask
// a human before deleting, on any connector.
const devPolicy = `apiVersion: warden/v1
kind: Policy
name: example
description: Created by warden serve --dev for the example identity
subjects:
  - identity: example-agent
rules:
  - id: read-anything
    effect: allow
    actions: ["*:*.get", "*:*.list"]
  - id: send-inside-example-com
    description: Mail only to example.com, at most 3 a minute
    effect: allow
    actions: ["demo:messages.send"]
    when: 'has(params.to) && emailDomain(params.to) == "example.com"'
    limit: {count: 3, per: 1m}
  - id: deletes-need-a-human
    effect: require_approval
    actions: ["*:*.delete"]
`

func devBootstrap(ctx context.Context, out io.Writer, addr string, cfg config.Config, ids *identity.Service, policies *policy.Service, connectors *connector.Registry, creds *credential.Service) error {
	root := warden.Principal{Kind: warden.PrincipalAdmin, ID: "root", Subject: "root", Roles: []string{warden.RoleAdmin}}
	if _, err := ids.Lookup(ctx, "example-agent"); warden.IsCode(err, warden.CodeNotFound) {
		if _, err := ids.Create(ctx, root, identity.CreateInput{
			Name: "example-agent", Type: identity.TypeAIAgent, Owner: "dev@example.com",
			Description: "Example identity created by warden serve --dev", Environment: "dev",
			Labels: map[string]string{"team": "example"},
		}); err != nil {
			return fmt.Errorf("dev bootstrap: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("dev bootstrap: %w", err)
	}
	demoAddr, err := startDemo(ctx, connectors, creds)
	if err != nil {
		return err
	}
	if _, err := policies.Get(ctx, root, "example"); warden.IsCode(err, warden.CodeNotFound) {
		if _, _, err := policies.Put(ctx, root, "example", []byte(devPolicy), "application/yaml"); err != nil {
			return fmt.Errorf("dev bootstrap policy: %w", err)
		}
	}
	fmt.Fprintf(out, `
WARNING: dev mode. The master key is stored next to the data in %s.
Never run dev mode in production.

  Listening:   http://%s
  Data:        %s
  Root token:  %s

Try it:
  export WARDEN_ADDR=http://%s WARDEN_TOKEN=%s
  KEY=$(curl -s -X POST $WARDEN_ADDR/v1/identities/example-agent/keys -H "Authorization: Bearer $WARDEN_TOKEN" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  curl -s $WARDEN_ADDR/proxy/demo/messages -H "Authorization: Bearer $KEY"
  curl -s $WARDEN_ADDR/proxy/demo/messages -H "Authorization: Bearer $KEY" \
       -H 'Content-Type: application/json' -d '{"to":"bob@example.com","subject":"hi"}'

The demo upstream at http://%s takes a token only Warden holds (credential demo-token).

`, cfg.Data, addr, cfg.Data, cfg.RootToken.Reveal(), addr, cfg.RootToken.Reveal(), demoAddr)
	return nil
}
