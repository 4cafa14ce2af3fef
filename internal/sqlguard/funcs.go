package sqlguard

import "strings"

// dangerousFuncs are functions that act outside the rows a statement
// names: they signal other sessions, read or write server files, open
// connections to other servers, change settings (the role among them), or
// run SQL handed to them as a string, which no analysis of the calling
// statement can see. A call to any of them makes the statement admin.
// Matched on the function's own name whatever its schema (a look-alike in
// another schema is admin too: failing closed).
var dangerousFuncs = map[string]string{
	"pg_terminate_backend":                "ends other sessions",
	"pg_cancel_backend":                   "cancels other sessions' queries",
	"pg_reload_conf":                      "reloads the server configuration",
	"pg_rotate_logfile":                   "rotates the server log",
	"pg_promote":                          "promotes a standby",
	"pg_switch_wal":                       "switches the WAL file",
	"pg_create_restore_point":             "writes a WAL restore point",
	"pg_backup_start":                     "starts a base backup",
	"pg_backup_stop":                      "stops a base backup",
	"pg_start_backup":                     "starts a base backup",
	"pg_stop_backup":                      "stops a base backup",
	"pg_stat_file":                        "reads server file metadata",
	"pg_logical_emit_message":             "writes into the WAL",
	"pg_notify":                           "notifies other sessions",
	"set_config":                          "changes a setting (role and search_path included)",
	"pg_import_system_collations":         "changes the catalog",
	"query_to_xml":                        "runs SQL given as a string",
	"query_to_xmlschema":                  "runs SQL given as a string",
	"query_to_xml_and_xmlschema":          "runs SQL given as a string",
	"cursor_to_xml":                       "reads a cursor opened elsewhere",
	"cursor_to_xmlschema":                 "reads a cursor opened elsewhere",
	"table_to_xml":                        "reads a table named in a string",
	"table_to_xmlschema":                  "reads a table named in a string",
	"table_to_xml_and_xmlschema":          "reads a table named in a string",
	"schema_to_xml":                       "reads every table of a schema",
	"schema_to_xmlschema":                 "reads every table of a schema",
	"schema_to_xml_and_xmlschema":         "reads every table of a schema",
	"database_to_xml":                     "reads every table of the database",
	"database_to_xmlschema":               "reads every table of the database",
	"database_to_xml_and_xmlschema":       "reads every table of the database",
	"ts_stat":                             "runs SQL given as a string",
	"ts_rewrite":                          "runs SQL given as a string",
	"pg_advisory_lock":                    "takes a session lock that outlives the statement",
	"pg_advisory_lock_shared":             "takes a session lock that outlives the statement",
	"pg_drop_replication_slot":            "drops a replication slot",
	"pg_create_physical_replication_slot": "creates a replication slot",
	"pg_create_logical_replication_slot":  "creates a replication slot",
	"pg_replication_origin_create":        "changes replication state",
	"pg_replication_origin_drop":          "changes replication state",
	"pg_log_backend_memory_contexts":      "writes to the server log",
}

// dangerousPrefixes cover families of such functions.
var dangerousPrefixes = []struct{ prefix, why string }{
	{"pg_read_", "reads server files"},
	{"pg_ls_", "lists server directories"},
	{"pg_file_", "writes server files"},
	{"lo_", "reads or writes large objects and server files"},
	{"dblink", "connects to another server"},
	{"pg_stat_reset", "resets statistics"},
	{"binary_upgrade_", "changes the catalog"},
	{"pg_replication_slot_", "changes replication state"},
	{"pg_logical_slot_", "consumes replication data"},
	{"pg_wal_replay_", "controls recovery"},
}

// dangerous says why calling the function name (lower case, without
// schema) makes a statement admin, or "" when it does not.
func dangerous(name string) string {
	if why, ok := dangerousFuncs[name]; ok {
		return why
	}
	for _, p := range dangerousPrefixes {
		if strings.HasPrefix(name, p.prefix) {
			return p.why
		}
	}
	return ""
}
