package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"warden"
	"warden/internal/connector"
	"warden/internal/credential"
)

// demoUpstream is a small mail-like API that dev mode starts on loopback so
// a first governed call works with curl: it wants a bearer token that only
// Warden holds (the agent never sees it).
type demoUpstream struct {
	token string
	mu    sync.Mutex
	next  int
	msgs  []map[string]any
}

func (d *demoUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Header.Get("Authorization") != "Bearer "+d.token {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"missing or wrong upstream credential"}`))
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	id := strings.TrimPrefix(r.URL.Path, "/messages/")
	switch {
	case r.Method == "GET" && r.URL.Path == "/messages":
		msgs := d.msgs
		if msgs == nil {
			msgs = []map[string]any{}
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"messages": msgs})
	case r.Method == "POST" && r.URL.Path == "/messages":
		var m map[string]any
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10)).Decode(&m); err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"body must be a JSON object"}`))
			return
		}
		d.next++
		m["id"] = strconv.Itoa(d.next)
		d.msgs = append(d.msgs, m)
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(m)
	case r.Method == "GET" && id != r.URL.Path:
		for _, m := range d.msgs {
			if m["id"] == id {
				_ = json.NewEncoder(w).Encode(m)
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"no such message"}`))
	case r.Method == "DELETE" && id != r.URL.Path:
		for i, m := range d.msgs {
			if m["id"] == id {
				d.msgs = append(d.msgs[:i], d.msgs[i+1:]...)
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
	default:
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"not found"}`))
	}
}

const demoConnector = `apiVersion: warden/v1
kind: Connector
name: demo
description: Demo mail service started by warden serve --dev (loopback)
base_url: http://%s
allow_private_network: true
auth: {type: bearer}
operations:
  - {id: messages.list, method: GET, path: /messages, class: read, description: List messages}
  - {id: messages.get, method: GET, path: "/messages/{id}", class: read, description: Get a message}
  - {id: messages.send, method: POST, path: /messages, class: write, description: "Send a message: {to, subject, body}"}
  - {id: messages.delete, method: DELETE, path: "/messages/{id}", class: delete, description: Delete a message}
`

// startDemo starts the demo upstream, points the demo connector at it and
// stores its token in the vault (rotating it on every start). The listener
// closes when ctx ends.
func startDemo(ctx context.Context, connectors *connector.Registry, creds *credential.Service) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	up := &demoUpstream{token: warden.RandomString(32)}
	srv := &http.Server{Handler: up, ReadHeaderTimeout: 5 * 1e9}
	go func() { _ = srv.Serve(ln) }()
	go func() { <-ctx.Done(); _ = srv.Close() }()
	root := warden.Principal{Kind: warden.PrincipalAdmin, ID: "root", Subject: "root", Roles: []string{warden.RoleAdmin}}
	addr := ln.Addr().String()
	if _, _, err := connectors.Put(ctx, root, "demo", []byte(fmt.Sprintf(demoConnector, addr)), "application/yaml"); err != nil {
		return "", fmt.Errorf("demo connector: %w", err)
	}
	secret := map[string]string{"token": up.token}
	if _, err := creds.Get(ctx, root, "demo-token"); warden.IsCode(err, warden.CodeNotFound) {
		_, err = creds.Create(ctx, root, credential.CreateInput{Name: "demo-token", Type: credential.TypeBearer, Connector: "demo", Description: "Token of the dev-mode demo upstream", Secret: secret})
		if err != nil {
			return "", fmt.Errorf("demo credential: %w", err)
		}
	} else if err != nil {
		return "", err
	} else if _, err := creds.Rotate(ctx, root, "demo-token", secret); err != nil {
		return "", fmt.Errorf("demo credential: %w", err)
	}
	return addr, nil
}
