package policy

import (
	"path/filepath"
	"strings"
	"testing"

	"warden"
)

func TestRunTestsSuite(t *testing.T) {
	rep, err := RunTests(filepath.Join("testdata", "suite"))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	if err := rep.Write(&out); err != nil {
		t.Fatal(err)
	}
	if rep.Failed() || rep.PassCount != 13 {
		t.Fatalf("suite failed:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "PASS: 13/13") {
		t.Fatalf("summary missing:\n%s", out.String())
	}
}

func TestRunTestsReportsDiff(t *testing.T) {
	rep, err := RunTests(filepath.Join("testdata", "failing"))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Failed() || rep.PassCount != 1 || rep.FailCount != 1 {
		t.Fatalf("counts: pass %d fail %d", rep.PassCount, rep.FailCount)
	}
	var out strings.Builder
	_ = rep.Write(&out)
	for _, want := range []string{
		"PASS  passes",
		"FAIL  wrong expectation",
		`decision: want "allow", got "deny"`,
		`rule: want "read", got ""`,
		"no_matching_policy",
		"FAIL: 1/2",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunTestsBadPolicyFailsFile(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "p.yaml"), "apiVersion: warden/v1\nkind: Policy\nname: p\nsubjects: [{identity: a}]\nrules: [{id: r, effect: maybe, actions: [a:b]}]\n")
	writeFile(t, filepath.Join(dir, "p_test.yaml"), "cases: [{identity: {name: a}, action: 'a:b', expect: {decision: allow}}]\n")
	rep, err := RunTests(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Failed() || rep.Files[0].Err == nil || !strings.Contains(rep.Files[0].Err.Error(), "unknown effect") {
		t.Fatalf("%+v", rep.Files)
	}
	// Unknown keys in a test file are errors too.
	writeFile(t, filepath.Join(dir, "p.yaml"), "apiVersion: warden/v1\nkind: Policy\nname: p\nsubjects: [{identity: a}]\nrules: [{id: r, effect: allow, actions: [a:b]}]\n")
	writeFile(t, filepath.Join(dir, "p_test.yaml"), "cases: [{identity: {name: a}, action: 'a:b', expct: {decision: allow}}]\n")
	rep, _ = RunTests(dir)
	if !rep.Failed() || rep.Files[0].Err == nil || !strings.Contains(rep.Files[0].Err.Error(), "expct") {
		t.Fatalf("%+v", rep.Files)
	}
	if _, err := RunTests(t.TempDir()); err == nil {
		t.Fatal("empty dir accepted")
	}
}

func TestValidateFiles(t *testing.T) {
	res, err := ValidateFiles([]string{filepath.Join("testdata", "invalid")})
	if !warden.IsCode(err, warden.CodeInvalid) || len(res) != 2 {
		t.Fatalf("err %v, results %+v", err, res)
	}
	for _, r := range res {
		switch filepath.Base(r.Path) {
		case "bad.yaml":
			if r.Err == nil || !strings.Contains(r.Err.Error(), `unknown time zone "Mars/Olympus"`) || !strings.Contains(r.Err.Error(), "rules[0].when") {
				t.Errorf("bad.yaml: %v", r.Err)
			}
		case "good.json":
			if r.Err != nil || r.Name != "good" {
				t.Errorf("good.json: %v", r.Err)
			}
		}
	}
	res, err = ValidateFiles([]string{filepath.Join("testdata", "suite", "support.yaml"), filepath.Join("testdata", "suite", "github.yaml")})
	if err != nil || len(res) != 2 {
		t.Fatalf("%v %+v", err, res)
	}
	// The same policy twice is an error on the second file.
	res, err = ValidateFiles([]string{filepath.Join("testdata", "suite", "support.yaml"), filepath.Join("testdata", "suite")})
	if err == nil || res[len(res)-1].Err == nil && res[1].Err == nil {
		t.Fatalf("duplicate names accepted: %+v", res)
	}
	if _, err := ValidateFiles([]string{"testdata/does-not-exist.yaml"}); err == nil {
		t.Fatal("missing file accepted")
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := osWriteFile(path, []byte(content)); err != nil {
		t.Fatal(err)
	}
}
