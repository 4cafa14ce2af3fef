// Package sqlguard analyses SQL for the database fronts with PostgreSQL's
// own parser (libpg_query through pg_query_go): every statement of a
// request gets a class (select, insert, update, delete, ddl, admin), the
// tables and schemas it reads and writes, the functions it calls, whether
// its UPDATE and DELETE parts carry a WHERE clause, and a fingerprint with
// the constants stripped. Policies decide on these facts; the database
// fronts (POST /v1/execute and the wire listener) never let a statement
// through that this package did not understand.
//
// Contract: Analyze either returns a full analysis or an error, and every
// error means "deny". Anything the analysis does not recognise is classed
// admin, the class no ordinary policy grants.
package sqlguard

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	pg "github.com/pganalyze/pg_query_go/v6"

	"warden"
)

// Class is a statement class; connectors' operations are these names.
type Class string

// Statement classes, from least to most powerful. A statement's class is
// the most powerful class of any of its parts (a SELECT with a writable
// CTE that deletes is a delete).
const (
	Select Class = "select"
	Insert Class = "insert"
	Update Class = "update"
	Delete Class = "delete"
	DDL    Class = "ddl"
	Admin  Class = "admin"
)

// Classes lists every class in order of power.
var Classes = []Class{Select, Insert, Update, Delete, DDL, Admin}

func (c Class) rank() int { return slices.Index(Classes, c) }

// Limits of one request.
const (
	// MaxSQLBytes bounds the text analysed at once.
	MaxSQLBytes = 1 << 20
	// MaxStatements bounds the statements in one request.
	MaxStatements = 1000
)

// Statement is the analysis of one statement. Table names are as written,
// schema-qualified only when the statement qualifies them ("public.users"
// vs "users"): unqualified names resolve through the search_path, which
// the fronts keep fixed (SET search_path is admin).
type Statement struct {
	// Class is the statement's class.
	Class Class
	// Kind is the parse node of the statement, e.g. "SelectStmt".
	Kind string
	// Text is the statement's text as sent (without the separator).
	Text string
	// Normalized is Text with constants replaced by $n placeholders.
	Normalized string
	// Fingerprint identifies statements that differ only in constants,
	// whitespace and comments (hex, pg_query's fingerprint).
	Fingerprint string
	// Tables is every table, view or sequence named (Reads and Writes).
	Tables []string
	Reads  []string
	Writes []string
	// Schemas is every schema named explicitly.
	Schemas []string
	// Functions is every function called, as written (lower case).
	Functions []string
	// HasWhere is true when every UPDATE and DELETE in the statement has a
	// WHERE clause; for a statement without UPDATE or DELETE parts, whether
	// its top-level query has one. TRUNCATE has none.
	HasWhere bool
	// Params is the highest $n placeholder used (0 when none).
	Params int
	// Setting and SettingValue are the name (lower case) and string value
	// of a SET statement (SettingValue empty unless it is one string or
	// identifier), so fronts can serve their own session settings.
	Setting      string
	SettingValue string
	// Reasons say why a statement is admin (or otherwise notable), e.g.
	// "calls pg_terminate_backend".
	Reasons []string
}

// Analysis is the analysis of a request. It is shared by caches: never
// modify one.
type Analysis struct {
	Statements []Statement
}

// Class returns the most powerful class among the statements.
func (a *Analysis) Class() Class {
	c := Select
	for _, s := range a.Statements {
		if s.Class.rank() > c.rank() {
			c = s.Class
		}
	}
	return c
}

// ErrNoStatement is returned for text that holds no statement (empty, or
// only comments): PostgreSQL answers it with an empty-query response.
var ErrNoStatement = warden.FieldError("sql", "holds no statement")

// Analyze parses sql and analyses each statement. Errors (all
// *warden.Error): too_large (over MaxSQLBytes or MaxStatements), invalid
// (syntax errors, no statement, text that is not UTF-8 or holds a NUL
// byte). Every error means the SQL must not run.
func Analyze(sql string) (*Analysis, error) {
	if len(sql) > MaxSQLBytes {
		return nil, warden.Errorf(warden.CodeTooLarge, "sql is larger than %d bytes", MaxSQLBytes)
	}
	if strings.IndexByte(sql, 0) >= 0 {
		// The C parser would stop at the NUL and miss what follows.
		return nil, warden.FieldError("sql", "must not contain NUL bytes")
	}
	if !utf8.ValidString(sql) {
		return nil, warden.FieldError("sql", "must be valid UTF-8")
	}
	tree, err := pg.Parse(sql)
	if err != nil {
		return nil, &warden.Error{Code: warden.CodeInvalid, Field: "sql", Message: "does not parse: " + clip(err.Error(), 200)}
	}
	raws := tree.GetStmts()
	if len(raws) == 0 {
		return nil, ErrNoStatement
	}
	if len(raws) > MaxStatements {
		return nil, warden.Errorf(warden.CodeTooLarge, "sql holds more than %d statements", MaxStatements)
	}
	a := &Analysis{Statements: make([]Statement, 0, len(raws))}
	for i, raw := range raws {
		text, err := stmtText(sql, raw)
		if err != nil {
			return nil, err
		}
		s, err := analyzeStmt(raw.GetStmt())
		if err != nil {
			return nil, warden.Wrap(err, warden.CodeInvalid, fmt.Sprintf("statement %d", i+1))
		}
		s.Text = text
		if s.Fingerprint, err = pg.Fingerprint(text); err != nil {
			return nil, &warden.Error{Code: warden.CodeInvalid, Field: "sql", Message: fmt.Sprintf("statement %d cannot be fingerprinted", i+1)}
		}
		if s.Normalized, err = pg.Normalize(text); err != nil {
			return nil, &warden.Error{Code: warden.CodeInvalid, Field: "sql", Message: fmt.Sprintf("statement %d cannot be normalised", i+1)}
		}
		a.Statements = append(a.Statements, *s)
	}
	return a, nil
}

// stmtText cuts one statement's text out of the request by the parser's
// byte offsets (a length of 0 means "to the end").
func stmtText(sql string, raw *pg.RawStmt) (string, error) {
	loc, n := int(raw.GetStmtLocation()), int(raw.GetStmtLen())
	if loc < 0 || loc > len(sql) || n < 0 || loc+n > len(sql) {
		return "", warden.Errorf(warden.CodeInvalid, "sql: the parser reported a statement outside the text")
	}
	if n == 0 {
		n = len(sql) - loc
	}
	return strings.TrimSpace(sql[loc : loc+n]), nil
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
