package connector

import (
	"embed"
	"io/fs"
	"path"
	"sort"
	"strings"

	"warden"
)

//go:embed catalog/*.yaml
var catalogFS embed.FS

// Catalog is the built-in set of connector definitions, embedded in the
// binary. A connector document may say `from_catalog: github` to start from
// one and override its name, base_url, auth and limits.
type Catalog struct {
	docs map[string]*Document
	raw  map[string][]byte
}

// LoadCatalog parses and compiles every embedded definition; a broken one is
// a build defect and fails loudly (tests run this).
func LoadCatalog() (*Catalog, error) {
	c := &Catalog{docs: map[string]*Document{}, raw: map[string][]byte{}}
	entries, err := fs.ReadDir(catalogFS, "catalog")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		b, err := catalogFS.ReadFile("catalog/" + e.Name())
		if err != nil {
			return nil, err
		}
		d, err := Parse(b, "application/yaml")
		if err != nil {
			return nil, warden.Wrap(err, warden.CodeInternal, "catalog "+e.Name())
		}
		if _, err := Compile(cloneDoc(d), ""); err != nil {
			return nil, warden.Wrap(err, warden.CodeInternal, "catalog "+e.Name()+": "+err.Error())
		}
		name := strings.TrimSuffix(e.Name(), path.Ext(e.Name()))
		if d.Name != name {
			return nil, warden.Errorf(warden.CodeInternal, "catalog %s names connector %q", e.Name(), d.Name)
		}
		c.docs[name], c.raw[name] = d, b
	}
	return c, nil
}

// Names lists the catalog's connectors.
func (c *Catalog) Names() []string {
	out := make([]string, 0, len(c.docs))
	for n := range c.docs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Get returns a catalog definition (a copy).
func (c *Catalog) Get(name string) (*Document, bool) {
	d, ok := c.docs[name]
	if !ok {
		return nil, false
	}
	return cloneDoc(d), true
}

// Instantiate resolves a document with from_catalog: the catalog entry
// supplies what the document leaves out; the document may not replace the
// operations (that would no longer be the catalog's connector).
func (c *Catalog) Instantiate(d *Document) (*Document, error) {
	base, ok := c.Get(d.FromCatalog)
	if !ok {
		return nil, warden.FieldError("from_catalog", "no catalog connector named %q (GET /v1/catalog lists them)", d.FromCatalog)
	}
	if len(d.Operations) > 0 {
		return nil, warden.FieldError("operations", "a from_catalog connector takes the catalog's operations; write a full document to define your own")
	}
	out := base
	out.Name = d.Name
	if d.Description != "" {
		out.Description = d.Description
	}
	if d.BaseURL != "" {
		out.BaseURL = d.BaseURL
	}
	if d.Auth != nil {
		out.Auth = d.Auth
	}
	out.AllowPrivateNetwork = d.AllowPrivateNetwork
	if d.Timeout != "" {
		out.Timeout = d.Timeout
	}
	if d.MaxRequestBytes != 0 {
		out.MaxRequestBytes = d.MaxRequestBytes
	}
	if d.MaxResponseBytes != 0 {
		out.MaxResponseBytes = d.MaxResponseBytes
	}
	return out, nil
}

func cloneDoc(d *Document) *Document {
	c := *d
	if d.Auth != nil {
		a := *d.Auth
		c.Auth = &a
	}
	c.Operations = append([]Operation(nil), d.Operations...)
	return &c
}
