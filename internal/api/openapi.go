package api

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"warden/apitype"
)

// OpenAPI builds the OpenAPI 3.1 document from the route table, so the
// document describes exactly the routes that are served. Schemas come from
// the apitype structs by reflection.
func (a *API) OpenAPI() ([]byte, error) {
	schemas := map[string]any{}
	paths := map[string]map[string]any{}
	problem := schemaRef(reflect.TypeFor[apitype.Problem](), schemas)
	pathParam := regexp.MustCompile(`\{([a-z_]+)\}`)
	for _, rt := range a.routes() {
		op := map[string]any{
			"summary":     rt.Summary,
			"operationId": operationID(rt),
		}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(rt.Pattern, -1) {
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": map[string]any{"type": "string"}})
		}
		for _, q := range rt.Query {
			params = append(params, map[string]any{"name": q, "in": "query", "required": false, "schema": map[string]any{"type": "string"}})
		}
		if len(params) > 0 {
			op["parameters"] = params
		}
		switch rt.Auth {
		case authAdmin:
			op["security"] = []any{map[string]any{"adminToken": []any{}}}
		case authAgent:
			op["security"] = []any{map[string]any{"agentToken": []any{}}}
		case authAny:
			op["security"] = []any{map[string]any{"adminToken": []any{}}, map[string]any{"agentToken": []any{}}}
		}
		if rt.Request != nil {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/json": map[string]any{"schema": schemaRef(rt.Request, schemas)}}}
		}
		if rt.Pattern == "/v1/token" || rt.Pattern == "/v1/token/revoke" {
			op["requestBody"] = map[string]any{"required": true, "content": map[string]any{"application/x-www-form-urlencoded": map[string]any{"schema": map[string]any{"type": "object"}}}}
		}
		status := rt.Status
		if status == 0 {
			status = http.StatusOK
		}
		ok := map[string]any{"description": http.StatusText(status)}
		if rt.Response != nil {
			ok["content"] = map[string]any{"application/json": map[string]any{"schema": schemaRef(rt.Response, schemas)}}
		}
		op["responses"] = map[string]any{
			itoa(status): ok,
			"default":    map[string]any{"description": "Error", "content": map[string]any{"application/problem+json": map[string]any{"schema": problem}}},
		}
		if paths[rt.Pattern] == nil {
			paths[rt.Pattern] = map[string]any{}
		}
		if rt.Method == "ANY" {
			for _, m := range []string{"get", "post", "put", "patch", "delete"} {
				mop := map[string]any{}
				for k, v := range op {
					mop[k] = v
				}
				mop["operationId"] = m + "_proxy"
				paths[rt.Pattern][m] = mop
			}
			continue
		}
		paths[rt.Pattern][strings.ToLower(rt.Method)] = op
	}
	doc := map[string]any{
		"openapi": "3.1.0",
		"info":    map[string]any{"title": "Warden API", "version": "v1", "description": "Governance gateway for AI agents and other non-human identities."},
		"paths":   paths,
		"components": map[string]any{
			"schemas": schemas,
			"securitySchemes": map[string]any{
				"adminToken": map[string]any{"type": "http", "scheme": "bearer", "description": "An admin token (wdn_at_...) or the root token."},
				"agentToken": map[string]any{"type": "http", "scheme": "bearer", "description": "An identity's API key (wdn_ak_...) or an access token from /v1/token."},
			},
		},
	}
	return json.MarshalIndent(doc, "", "  ")
}

func operationID(rt route) string {
	s := strings.ToLower(rt.Method) + strings.NewReplacer("/v1/", "_", "/", "_", "{", "", "}", "", "-", "_", ".", "_").Replace(rt.Pattern)
	return strings.Trim(s, "_")
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

var timeType = reflect.TypeFor[time.Time]()

// schemaRef returns a JSON Schema for t, registering named structs in
// schemas and referring to them.
func schemaRef(t reflect.Type, schemas map[string]any) map[string]any {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case t == reflect.TypeFor[apitype.Duration]():
		return map[string]any{"oneOf": []any{map[string]any{"type": "integer", "description": "seconds"}, map[string]any{"type": "string", "description": "Go duration or days, e.g. 90m, 24h, 7d"}}}
	}
	switch t.Kind() {
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.Slice, reflect.Array:
		return map[string]any{"type": "array", "items": schemaRef(t.Elem(), schemas)}
	case reflect.Map:
		return map[string]any{"type": "object", "additionalProperties": schemaRef(t.Elem(), schemas)}
	case reflect.Interface:
		return map[string]any{}
	case reflect.Struct:
		name := t.Name()
		if _, done := schemas[name]; !done {
			schemas[name] = map[string]any{} // placeholder against recursion
			props := map[string]any{}
			var required []string
			for i := 0; i < t.NumField(); i++ {
				f := t.Field(i)
				tag := f.Tag.Get("json")
				if tag == "-" || !f.IsExported() {
					continue
				}
				jname, opts, _ := strings.Cut(tag, ",")
				if jname == "" {
					jname = f.Name
				}
				props[jname] = schemaRef(f.Type, schemas)
				if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
					required = append(required, jname)
				}
			}
			sort.Strings(required)
			s := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
			if len(required) > 0 {
				s["required"] = required
			}
			schemas[name] = s
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	return map[string]any{}
}

func (a *API) openapi(w http.ResponseWriter, r *http.Request) error {
	b, err := a.OpenAPI()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "application/json")
	_, err = w.Write(b)
	return err
}
