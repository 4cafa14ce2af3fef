package discovery

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
)

// Output formats. Every writer prints the secret only when showSecrets is
// true; otherwise only the redacted preview and the fingerprint appear.

// Summary describes a finished scan for the JSON and table outputs.
type Summary struct {
	Findings    int   `json:"findings"`
	Credentials int   `json:"credentials"` // distinct fingerprints
	Files       int64 `json:"files"`
	Bytes       int64 `json:"bytes"`
	Commits     int64 `json:"commits"`
	Skipped     int64 `json:"skipped"`
}

// Summarize counts findings and distinct credentials.
func Summarize(fs []Finding, p Progress) Summary {
	fps := map[string]bool{}
	for _, f := range fs {
		fps[f.Fingerprint] = true
	}
	return Summary{Findings: len(fs), Credentials: len(fps), Files: p.Files, Bytes: p.Bytes, Commits: p.Commits, Skipped: p.Skipped}
}

type jsonFinding struct {
	Finding
	SecretValue string `json:"secret,omitempty"`
}

// WriteJSON writes {"findings": [...], "summary": {...}}.
func WriteJSON(w io.Writer, fs []Finding, sum Summary, showSecrets bool) error {
	out := struct {
		Findings []jsonFinding `json:"findings"`
		Summary  Summary       `json:"summary"`
	}{Findings: make([]jsonFinding, 0, len(fs)), Summary: sum}
	for _, f := range fs {
		jf := jsonFinding{Finding: f}
		if showSecrets {
			jf.SecretValue = f.Secret.Reveal()
		}
		out.Findings = append(out.Findings, jf)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(out)
}

// WriteTable writes one aligned row per finding and a summary line, for
// people. File names and authors are sanitised of control characters.
func WriteTable(w io.Writer, fs []Finding, sum Summary, showSecrets bool) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	if len(fs) > 0 {
		hdr := "KIND\tRULE\tLOCATION\tCOMMIT\tPREVIEW\tVERIFIED\tFINGERPRINT"
		if showSecrets {
			hdr += "\tSECRET"
		}
		fmt.Fprintln(tw, hdr)
	}
	for _, f := range fs {
		commit := "-"
		if f.Commit != "" {
			commit = f.Commit[:min(10, len(f.Commit))] + " " + f.Author
		}
		verified := "no"
		if f.Verified {
			verified = "yes"
		}
		row := fmt.Sprintf("%s\t%s\t%s:%d:%d\t%s\t%s\t%s\t%s", f.Kind, f.Rule, sanitize(f.File), f.Line, f.Column, sanitize(commit), f.Preview, verified, f.Fingerprint[:16])
		if showSecrets {
			row += "\t" + strconv.Quote(f.Secret.Reveal())
		}
		fmt.Fprintln(tw, row)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	scope := fmt.Sprintf("%d files", sum.Files)
	if sum.Commits > 0 {
		scope += fmt.Sprintf(", %d commits", sum.Commits)
	}
	_, err := fmt.Fprintf(w, "%d findings (%d distinct credentials) in %s, %s scanned, %d skipped\n",
		sum.Findings, sum.Credentials, scope, humanBytes(sum.Bytes), sum.Skipped)
	return err
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// SARIFSchema is the $schema written into SARIF output.
const SARIFSchema = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"

type sarifLog struct {
	Version string     `json:"version"`
	Schema  string     `json:"$schema"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool       sarifTool     `json:"tool"`
	ColumnKind string        `json:"columnKind"`
	Results    []sarifResult `json:"results"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	Version        string      `json:"version,omitempty"`
	InformationURI string      `json:"informationUri,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifRule struct {
	ID                   string         `json:"id"`
	Name                 string         `json:"name"`
	ShortDescription     sarifText      `json:"shortDescription"`
	FullDescription      sarifText      `json:"fullDescription"`
	Help                 sarifText      `json:"help"`
	DefaultConfiguration map[string]any `json:"defaultConfiguration"`
	Properties           map[string]any `json:"properties"`
}

type sarifResult struct {
	RuleID              string            `json:"ruleId"`
	RuleIndex           int               `json:"ruleIndex"`
	Level               string            `json:"level"`
	Message             sarifText         `json:"message"`
	Locations           []sarifLocation   `json:"locations"`
	PartialFingerprints map[string]string `json:"partialFingerprints"`
	Properties          map[string]any    `json:"properties"`
}

type sarifLocation struct {
	PhysicalLocation sarifPhysical `json:"physicalLocation"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
	Region           sarifRegion   `json:"region"`
}

type sarifArtifact struct {
	URI string `json:"uri"`
}

type sarifRegion struct {
	StartLine   int `json:"startLine"`
	StartColumn int `json:"startColumn,omitempty"`
	EndLine     int `json:"endLine,omitempty"`
}

// WriteSARIF writes a SARIF 2.1.0 log with one run whose driver lists every
// rule. Results carry the fingerprint as a partial fingerprint, so
// code-scanning UIs track one credential across commits.
func WriteSARIF(w io.Writer, fs []Finding, toolVersion string, showSecrets bool) error {
	index := map[string]int{}
	var rs []sarifRule
	for i, r := range rules {
		index[r.ID] = i
		rs = append(rs, sarifRule{
			ID: r.ID, Name: sarifName(r.ID),
			ShortDescription:     sarifText{r.Kind},
			FullDescription:      sarifText{r.Description},
			Help:                 sarifText{"Revoke or rotate this " + r.Kind + ", then move it into a vault (warden discovery vault) and remove it from the file and its history."},
			DefaultConfiguration: map[string]any{"level": "error"},
			Properties:           map[string]any{"tags": []string{"security", "secret"}, "security-severity": "8.0"},
		})
	}
	results := make([]sarifResult, 0, len(fs))
	for _, f := range fs {
		msg := fmt.Sprintf("%s found (%s)", f.Kind, f.Preview)
		if f.Commit != "" {
			msg += fmt.Sprintf(" in commit %s by %s", f.Commit, f.Author)
		}
		props := map[string]any{"kind": f.Kind, "verified": f.Verified, "fingerprint": f.Fingerprint, "preview": f.Preview}
		if f.Commit != "" {
			props["commit"], props["author"], props["date"] = f.Commit, f.Author, f.Date
		}
		if showSecrets {
			props["secret"] = f.Secret.Reveal()
		}
		results = append(results, sarifResult{
			RuleID: f.Rule, RuleIndex: index[f.Rule], Level: "error",
			Message: sarifText{msg},
			Locations: []sarifLocation{{PhysicalLocation: sarifPhysical{
				ArtifactLocation: sarifArtifact{URI: sarifURI(f.File)},
				Region:           sarifRegion{StartLine: max(1, f.Line), StartColumn: max(1, f.Column), EndLine: max(1, f.Line, f.EndLine)},
			}}},
			PartialFingerprints: map[string]string{"wardenFingerprint/v1": f.Fingerprint},
			Properties:          props,
		})
	}
	log := sarifLog{Version: "2.1.0", Schema: SARIFSchema, Runs: []sarifRun{{
		Tool:       sarifTool{Driver: sarifDriver{Name: "warden", Version: toolVersion, Rules: rs}},
		ColumnKind: "unicodeCodePoints",
		Results:    results,
	}}}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(log)
}

// sarifName turns a rule id into SARIF's PascalCase rule name.
func sarifName(id string) string {
	var b strings.Builder
	for _, p := range strings.FieldsFunc(id, func(r rune) bool { return r == '-' || r == '_' }) {
		b.WriteString(strings.ToUpper(p[:1]) + p[1:])
	}
	return b.String()
}

// sarifURI turns a display path into a URI reference: relative paths stay
// relative (resolved against the scan root), absolute ones become file URIs,
// and every segment is percent-encoded.
func sarifURI(p string) string {
	p = strings.ToValidUTF8(p, "\uFFFD")
	if strings.HasPrefix(p, "/") {
		return (&url.URL{Scheme: "file", Path: p}).String()
	}
	return (&url.URL{Path: p}).String()
}
