package api_test

import (
	"bufio"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"warden/apitype"
	"warden/internal/audit"
	"warden/internal/wardentest"
)

// waitAudit polls GET /v1/audit until it returns at least one event (admin
// changes reach the chain through the outbox within about a second).
func waitAudit(t *testing.T, s *wardentest.Server, query string) apitype.AuditList {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var res apitype.AuditList
		if err := s.Root.Do(ctx, "GET", "/v1/audit?"+query, nil, &res); err != nil {
			t.Fatal(err)
		}
		if len(res.Events) > 0 || time.Now().After(deadline) {
			return res
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAuditAPI(t *testing.T) {
	wardentest.EngineServers(t, func(t *testing.T, s *wardentest.Server) {
		id, err := s.Root.CreateIdentity(ctx, apitype.CreateIdentity{Name: "audited-agent", Type: "ai_agent", Owner: "alice@example.com"})
		if err != nil {
			t.Fatal(err)
		}
		res := waitAudit(t, s, "kind=admin.change&identity=audited-agent")
		if len(res.Events) != 1 {
			t.Fatalf("want the identity.create change in the audit log, got %+v", res)
		}
		ev := res.Events[0]
		if ev.Identity != id.ID || ev.Action != "identity.create" || !strings.HasPrefix(ev.Actor, "admin:root") || len(ev.Hash) != 64 || len(ev.PrevHash) != 64 || ev.Seq < 1 {
			t.Fatalf("event %+v", ev)
		}

		// Roles: auditors and security read the trail; owners and agents do not.
		for role, want := range map[string]int{"auditor": 200, "security": 200, "owner": 403, "approver": 403} {
			tok, err := s.Root.CreateAdminToken(ctx, apitype.CreateAdminToken{Name: "t-" + role, Subject: role + "@example.com", Roles: []string{role}})
			if err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{"/v1/audit", "/v1/audit/verify", "/v1/audit/export", "/v1/audit/checkpoints"} {
				if st, _, _, _ := call(t, s, "GET", path, tok.Token, "", ""); st != want {
					t.Fatalf("%s with role %s: %d, want %d", path, role, st, want)
				}
			}
		}
		key, err := s.Root.CreateKey(ctx, id.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if st, _, p, _ := call(t, s, "GET", "/v1/audit", key.Key, "", ""); st != 403 || p.Code != "forbidden" {
			t.Fatalf("agent reading the audit log: %d %s", st, p.Code)
		}

		// Bad filters are 400s naming the field.
		for q, field := range map[string]string{"limit=0": "limit", "limit=abc": "limit", "since=yesterday": "since", "cursor=zzz": "cursor", "until=2020-01-01T00:00:00Z&since=2021-01-01T00:00:00Z": "until", "text=" + url.QueryEscape(strings.Repeat("x", 300)): "text"} {
			if st, _, p, _ := call(t, s, "GET", "/v1/audit?"+q, s.RootToken, "", ""); st != 400 || p.Field != field {
				t.Fatalf("%s: %d field %q", q, st, p.Field)
			}
		}
		if st, _, p, _ := call(t, s, "GET", "/v1/audit/export?format=csv", s.RootToken, "", ""); st != 400 || p.Field != "format" {
			t.Fatalf("bad export format: %d %+v", st, p)
		}

		// Pagination walks every event exactly once, newest first.
		for i := 0; i < 4; i++ {
			if _, err := s.Root.SetStatus(ctx, id.ID, "suspend", "test"); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Root.SetStatus(ctx, id.ID, "resume", "test"); err != nil {
				t.Fatal(err)
			}
		}
		deadline := time.Now().Add(15 * time.Second)
		for len(waitAudit(t, s, "identity="+id.ID+"&limit=1000").Events) < 9 && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		var seqs []int64
		cursor := ""
		for {
			var page apitype.AuditList
			if err := s.Root.Do(ctx, "GET", "/v1/audit?limit=3&identity="+id.ID+"&cursor="+cursor, nil, &page); err != nil {
				t.Fatal(err)
			}
			for _, e := range page.Events {
				seqs = append(seqs, e.Seq)
			}
			if page.NextCursor == "" {
				break
			}
			cursor = page.NextCursor
		}
		if len(seqs) != 9 {
			t.Fatalf("pages held %d events, want 9", len(seqs))
		}
		for i := 1; i < len(seqs); i++ {
			if seqs[i] >= seqs[i-1] {
				t.Fatalf("not newest first or repeated: %v", seqs)
			}
		}

		var v apitype.AuditVerify
		if err := s.Root.Do(ctx, "GET", "/v1/audit/verify", nil, &v); err != nil {
			t.Fatal(err)
		}
		if !v.OK || v.Events < 9 || len(v.Head) != 64 || v.HeadSeq != v.Events || v.Error != "" {
			t.Fatalf("verify %+v", v)
		}

		for _, format := range []string{"jsonl", "ocsf"} {
			st, h, _, body := call(t, s, "GET", "/v1/audit/export?format="+format+"&identity="+id.ID, s.RootToken, "", "")
			if st != 200 || h.Get("Content-Type") != "application/x-ndjson" {
				t.Fatalf("export %s: %d %s", format, st, h.Get("Content-Type"))
			}
			lines := 0
			sc := bufio.NewScanner(strings.NewReader(string(body)))
			for sc.Scan() {
				var m map[string]any
				if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
					t.Fatalf("%s line is not JSON: %q", format, sc.Text())
				}
				if format == "ocsf" && m["class_uid"] == nil {
					t.Fatalf("ocsf line without class_uid: %v", m)
				}
				lines++
			}
			if lines != 9 {
				t.Fatalf("%s export: %d lines, want 9", format, lines)
			}
		}

		// A clean shutdown writes a final checkpoint covering everything, in
		// the database and in the data dir's checkpoint file.
		s.Stop()
		cps, torn, err := audit.ReadCheckpointFile(filepath.Join(s.DataDir, audit.CheckpointFileName))
		if err != nil || torn || len(cps) == 0 || cps[len(cps)-1].Seq < v.HeadSeq {
			t.Fatalf("no final checkpoint at shutdown: %v %v %+v", err, torn, cps)
		}
		if _, err := os.Stat(filepath.Join(s.DataDir, audit.CheckpointFileName)); err != nil {
			t.Fatal(err)
		}
	})
}
