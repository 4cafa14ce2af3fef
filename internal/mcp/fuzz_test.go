package mcp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"testing"
)

// FuzzParseToolName: whatever an agent sends as a tool name, parsing never
// panics, and a parsed name is exactly the name ToolName gives back.
func FuzzParseToolName(f *testing.F) {
	for _, s := range []string{"crm__contacts.get", "a__b__c", "__", "x__", "", "crm:contacts.get", "gh-mcp__create_issue"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		conn, op, ok := ParseToolName(name)
		if !ok {
			return
		}
		if back, ok2 := ToolName(conn, op); ok2 && back != name {
			t.Fatalf("ParseToolName(%q) = %q, %q; ToolName gives %q", name, conn, op, back)
		}
	})
}

// FuzzArgs: arguments and reserved options from an agent never panic, and
// the reserved names never survive into what is validated and forwarded.
func FuzzArgs(f *testing.F) {
	for _, s := range []string{`{"a":1}`, `{"_warden_approval":"apr_x","_warden_wait":5,"x":[1,2.5,{"y":null}]}`, `[1]`, `null`, `"s"`, `{"_warden_wait":"soon"}`, `{"n":12345678901234567890}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		args, err := decodeArgs(raw)
		if err != nil {
			return
		}
		if _, err := takeOptions(args, nil); err != nil {
			return
		}
		if _, ok := args[ArgApproval]; ok {
			t.Fatal("reserved argument survived")
		}
		if _, ok := args[ArgWait]; ok {
			t.Fatal("reserved argument survived")
		}
		if _, err := json.Marshal(args); err != nil {
			t.Fatalf("decoded arguments do not encode: %v", err)
		}
	})
}

// FuzzJSONLines: whatever a stdio server writes, only lines that are valid
// JSON objects or arrays come out, each on its own line.
func FuzzJSONLines(f *testing.F) {
	for _, s := range []string{"{\"a\":1}\nnoise\n[1]\n", "{broken\n", "\n\n", "{\"a\":\n1}\n", "x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		j := &jsonLines{r: bufio.NewReaderSize(bytes.NewReader(in), 64), log: slog.New(slog.DiscardHandler), closer: io.NopCloser(nil)}
		out, err := io.ReadAll(j)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n")) {
			if len(out) == 0 {
				break
			}
			if !json.Valid(line) || (line[0] != '{' && line[0] != '[') {
				t.Fatalf("passed on %q", line)
			}
		}
	})
}
