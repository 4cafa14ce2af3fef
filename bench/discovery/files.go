package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// unit writes one slice of a repository-like tree: source files, configs,
// a lock file, docs, test fixtures, and now and then minified JavaScript,
// binary blobs, credential files and Kubernetes manifests.
func (g *gen) unit(i int) error {
	dir := fmt.Sprintf("svc%03d", i)
	for j := range 6 {
		ext := g.pick(".go", ".py", ".js", ".ts", ".go", ".py")
		if err := g.source(fmt.Sprintf("%s/src/%s%d%s", dir, g.ident(), j, ext), ext); err != nil {
			return err
		}
	}
	if err := g.config(dir); err != nil {
		return err
	}
	if err := g.docs(dir + "/README.md"); err != nil {
		return err
	}
	if err := g.fixture(fmt.Sprintf("%s/tests/fixtures/%s.json", dir, g.ident())); err != nil {
		return err
	}
	if i%3 == 0 {
		if err := g.lockFile(dir); err != nil {
			return err
		}
		if err := g.kubernetes(dir + "/deploy/secret.yaml"); err != nil {
			return err
		}
	}
	if i%4 == 0 {
		if err := g.minified(dir + "/web/dist/app." + g.s(hexLow, 8) + ".min.js"); err != nil {
			return err
		}
		if err := g.binary(dir + "/assets/" + g.ident() + g.pick(".png", ".bin", ".woff2", ".ico")); err != nil {
			return err
		}
	}
	if i%5 == 0 {
		if err := g.credentialFiles(dir + "/home"); err != nil {
			return err
		}
	}
	return nil
}

func (g *gen) source(name, ext string) error {
	f := g.file(name)
	switch ext {
	case ".go":
		f.add("package "+strings.ToLower(g.ident()), "", "import (", "\t\"context\"", "\t\"fmt\"", ")", "")
	case ".py":
		f.add("import logging", "import os", "", "logger = logging.getLogger(__name__)", "")
	default:
		f.add("import { api } from './api';", "")
	}
	n := 150 + g.rng.IntN(250)
	for k := 0; k < n; k++ {
		if k%40 == 0 {
			switch ext {
			case ".go":
				f.add("", fmt.Sprintf("func (s *Service) %s(ctx context.Context) error {", title(g.ident())))
			case ".py":
				f.add("", fmt.Sprintf("def %s(self, ctx):", strings.ToLower(g.ident())))
			default:
				f.add("", fmt.Sprintf("export async function %s(ctx) {", g.ident()))
			}
		}
		switch r := g.rng.IntN(1000); {
		case r < 2:
			text, kind, secret, cat := g.hardLine()
			f.plant(text, kind, secret, cat)
		case r < 6:
			text, kind := g.secretLine(ext)
			f.plant(text, kind, true, "")
		case r < 12:
			text, kind, cat := g.decoyLine(ext)
			f.plant(text, kind, false, cat)
		default:
			f.add(g.codeLine(ext))
		}
		if k%40 == 39 && ext != ".py" {
			f.add("}")
		}
	}
	return f.write()
}

func (g *gen) config(dir string) error {
	ext := g.pick(".env", ".yaml", ".json", ".tf", ".properties")
	name := map[string]string{".env": "/.env", ".yaml": "/config/app.yaml", ".json": "/config/settings.json", ".tf": "/infra/main.tf", ".properties": "/config/application.properties"}[ext]
	f := g.file(dir + name)
	if ext == ".json" {
		f.add("{")
	}
	if ext == ".yaml" {
		f.add("server:", "  port: 8080", "  host: 0.0.0.0", "database:")
	}
	if ext == ".tf" {
		f.add(`resource "aws_db_instance" "main" {`)
	}
	for k := 0; k < 30+g.rng.IntN(30); k++ {
		switch r := g.rng.IntN(100); {
		case r < 3:
			text, kind, secret, cat := g.hardLine()
			f.plant(text, kind, secret, cat)
		case r < 12:
			text, kind := g.secretLine(ext)
			f.plant(text, kind, true, "")
		case r < 24:
			text, kind, cat := g.decoyLine(ext)
			f.plant(text, kind, false, cat)
		default:
			key, val := strings.ToLower(g.ident()), g.pick("true", "false", fmt.Sprint(g.rng.IntN(10000)), g.s(lower, 8), "https://"+g.s(lower, 6)+".example.org/v1", "info")
			switch ext {
			case ".yaml":
				f.add(fmt.Sprintf("  %s: %s", key, val))
			case ".json":
				f.add(fmt.Sprintf("  \"%s\": \"%s\",", key, val))
			case ".tf":
				f.add(fmt.Sprintf("  %s = \"%s\"", key, val))
			default:
				f.add(fmt.Sprintf("%s=%s", strings.ToUpper(key), val))
			}
		}
	}
	if ext == ".json" {
		f.add(`  "end": true`, "}")
	}
	if ext == ".tf" {
		f.add("}")
	}
	return f.write()
}

func (g *gen) docs(name string) error {
	f := g.file(name)
	f.add("# "+g.ident(), "", "Set up the service and its credentials.", "", "```sh")
	for range 4 + g.rng.IntN(4) {
		text, kind, cat := g.decoyLine(".env")
		f.plant("export "+text, kind, false, cat)
		f.add("")
	}
	f.add("```", "", "See the runbook for rotation. "+strings.Repeat(g.ident()+" ", 20))
	return f.write()
}

func (g *gen) fixture(name string) error {
	f := g.file(name)
	f.add("{")
	for range 5 + g.rng.IntN(5) {
		text, kind, cat := g.decoyLine(".json")
		if cat != "fixture" && cat != "placeholder" {
			f.add(fmt.Sprintf("  \"%s\": %d,", g.ident(), g.rng.IntN(100)))
			continue
		}
		f.plant(text, kind, false, cat)
	}
	f.add(`  "ok": true`, "}")
	return f.write()
}

func (g *gen) lockFile(dir string) error {
	f := g.file(dir + "/package-lock.json")
	f.add("{", `  "name": "app",`, `  "lockfileVersion": 3,`, `  "packages": {`)
	for range 300 + g.rng.IntN(300) {
		pkg := strings.ToLower(g.ident())
		f.add(fmt.Sprintf(`    "node_modules/%s": {`, pkg),
			fmt.Sprintf(`      "version": "%d.%d.%d",`, g.rng.IntN(9), g.rng.IntN(30), g.rng.IntN(30)),
			fmt.Sprintf(`      "resolved": "https://registry.example.org/%s/-/%s-1.0.0.tgz",`, pkg, pkg),
			fmt.Sprintf(`      "integrity": "sha512-%s=="`, g.s(b64, 86)),
			"    },")
	}
	f.add("  }", "}")
	if err := f.write(); err != nil {
		return err
	}
	s := g.file(dir + "/go.sum")
	for range 200 {
		m := "example.org/" + strings.ToLower(g.ident())
		s.add(fmt.Sprintf("%s v1.%d.0 h1:%s=", m, g.rng.IntN(20), g.s(b64, 43)), fmt.Sprintf("%s v1.%d.0/go.mod h1:%s=", m, g.rng.IntN(20), g.s(b64, 43)))
	}
	return s.write()
}

// minified writes a bundle of a few very long lines, with data: URIs,
// hashes and, rarely, a key compiled into the bundle.
func (g *gen) minified(name string) error {
	f := g.file(name)
	for range 6 {
		var b strings.Builder
		for b.Len() < 60000 {
			switch g.rng.IntN(12) {
			case 0:
				b.WriteString(`background:url(data:image/png;base64,` + g.s(b64, 400) + `);`)
			case 1:
				b.WriteString(`var ` + g.s(lower, 2) + `="` + g.s(hexLow, 40) + `";`)
			default:
				b.WriteString(fmt.Sprintf(`function %s(%s,%s){return %s.%s(%s)||%d}`, g.s(lower, 2), g.s(lower, 1), g.s(lower, 1), g.s(lower, 1), g.ident(), g.s(lower, 1), g.rng.IntN(99)))
			}
		}
		if g.rng.IntN(3) == 0 {
			// A key compiled into a bundle: the line is planted as a whole.
			key := "AIza" + g.s(urlB64, 35)
			f.plant(b.String()+`;var firebaseConfig={apiKey:"`+key+`",authDomain:"app.firebaseapp.com"};`, "google-api-key", true, "")
			continue
		}
		f.add(b.String())
	}
	return f.write()
}

func (g *gen) binary(name string) error {
	b := make([]byte, 64<<10+g.rng.IntN(64<<10))
	for i := range b {
		b[i] = byte(g.rng.IntN(256))
	}
	b[10] = 0
	p := filepath.Join(g.root, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	g.man.Bytes += int64(len(b))
	g.files++
	return os.WriteFile(p, b, 0o644)
}

func (g *gen) kubernetes(name string) error {
	f := g.file(name)
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	f.add("apiVersion: v1", "kind: Secret", "metadata:", "  name: "+strings.ToLower(g.ident()), "type: Opaque", "data:")
	f.add("  username: " + enc(g.pick("app", "admin", "svc")))
	f.plant("  password: "+enc(g.password()), "k8s-secret", true, "")
	f.plant("  api-token: "+enc(g.s(alnum, 40)), "k8s-secret", true, "")
	f.add("  ca.crt: " + enc(g.s(b64, 60)))
	return f.write()
}

func (g *gen) credentialFiles(home string) error {
	pw := g.password()
	files := []struct {
		name, before, secret, after, kind string
	}{
		{"/.npmrc", "registry=https://registry.example.org/\n", "//registry.example.org/:_authToken=" + g.s(alnum, 36), "", "npmrc"},
		{"/.netrc", "", "machine git.example.org login deploy password " + pw, "", "netrc"},
		{"/.git-credentials", "", "https://deploy:" + g.s(alnum, 32) + "@git.example.org", "", "git-credentials"},
		{"/.aws/credentials", "[default]\nregion = eu-west-1\n", "aws_secret_access_key = " + g.s(b64, 40), "", "aws-secret-key"},
		{"/.pgpass", "", "db.internal:5432:app:app:" + g.password(), "", "pgpass"},
	}
	for _, c := range files {
		f := g.file(home + c.name)
		if c.before != "" {
			f.add(strings.Split(strings.TrimSuffix(c.before, "\n"), "\n")...)
		}
		f.plant(c.secret, c.kind, true, "")
		if err := f.write(); err != nil {
			return err
		}
	}
	auth := base64.StdEncoding.EncodeToString([]byte("robot:" + g.s(alnum, 24)))
	d := g.file(home + "/.docker/config.json")
	d.add("{", `  "auths": {`, `    "registry.example.org": {`)
	d.plant(`      "auth": "`+auth+`"`, "docker-auth", true, "")
	d.add("    }", "  }", "}")
	if err := d.write(); err != nil {
		return err
	}
	k := g.file(home + "/.ssh/id_" + g.pick("ecdsa", "ed25519"))
	k.plant(g.privateKey(), "private-key", true, "")
	if err := k.write(); err != nil {
		return err
	}
	sa, _ := json.MarshalIndent(map[string]string{
		"type": "service_account", "project_id": strings.ToLower(g.ident()), "private_key_id": g.s(hexLow, 40),
		"private_key": g.privateKey() + "\n", "client_email": "svc@p.iam.gserviceaccount.com", "client_id": g.s("0123456789", 21),
	}, "", "  ")
	s := g.file(home + "/gcp-key.json")
	for _, ln := range strings.Split(string(sa), "\n") {
		if strings.Contains(ln, `"private_key"`) {
			s.plant(ln, "gcp-service-account", true, "")
			continue
		}
		s.add(ln)
	}
	return s.write()
}
