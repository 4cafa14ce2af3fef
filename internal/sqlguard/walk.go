package sqlguard

import (
	"sort"
	"strings"

	pg "github.com/pganalyze/pg_query_go/v6"
	"google.golang.org/protobuf/reflect/protoreflect"

	"warden"
)

// maxNodes bounds the parse nodes visited per statement (the parser and
// the protobuf decoder already bound nesting depth).
const maxNodes = 1_000_000

// mode says how the relations met under a node are used.
type mode int

const (
	modeRead    mode = iota // queries: relations are read
	modeWrite               // the target of INSERT/UPDATE/DELETE/MERGE/TRUNCATE/COPY FROM/INTO
	modeUtility             // DDL and admin statements: every relation is changed (unless inside a query)
)

// scope holds the CTE names visible at a point of the tree.
type scope struct {
	names  map[string]bool
	parent *scope
}

func (s *scope) has(name string) bool {
	for ; s != nil; s = s.parent {
		if s.names[name] {
			return true
		}
	}
	return false
}

type set struct {
	m   map[string]bool
	out []string
}

func (s *set) add(v string) {
	if v == "" || s.m[v] {
		return
	}
	if s.m == nil {
		s.m = map[string]bool{}
	}
	s.m[v] = true
	s.out = append(s.out, v)
}

func (s *set) sorted() []string {
	out := append([]string(nil), s.out...)
	sort.Strings(out)
	return out
}

// collector gathers the facts of one statement while walking its tree.
type collector struct {
	class     Class
	reasons   set
	reads     set
	writes    set
	schemas   set
	funcs     set
	sawUpdDel bool
	allWhere  bool // every UPDATE/DELETE seen has a WHERE
	params    int
	nodes     int
	tooBig    bool
}

func (c *collector) raise(cl Class, reason string) {
	if cl.rank() > c.class.rank() {
		c.class = cl
	}
	c.reasons.add(reason)
}

// analyzeStmt classifies one parsed statement and walks all of it.
func analyzeStmt(n *pg.Node) (*Statement, error) {
	if n == nil || n.GetNode() == nil {
		return nil, warden.Errorf(warden.CodeInvalid, "empty statement")
	}
	c := &collector{class: Select, allWhere: true}
	kind := string(n.ProtoReflect().WhichOneof(n.ProtoReflect().Descriptor().Oneofs().ByName("node")).Message().Name())
	m := modeRead
	topWhere := false
	var setting, value string
	switch x := n.GetNode().(type) {
	case *pg.Node_SelectStmt:
		topWhere = x.SelectStmt.GetWhereClause() != nil
	case *pg.Node_InsertStmt, *pg.Node_UpdateStmt, *pg.Node_DeleteStmt, *pg.Node_MergeStmt,
		*pg.Node_ExplainStmt, *pg.Node_PrepareStmt, *pg.Node_DeclareCursorStmt:
		// Classed by what the walk finds inside.
	case *pg.Node_CopyStmt:
		cp := x.CopyStmt
		switch {
		case cp.GetIsProgram():
			c.raise(Admin, "COPY ... PROGRAM runs a program on the database server")
		case cp.GetFilename() != "":
			c.raise(Admin, "COPY to or from a server file")
		case cp.GetIsFrom():
			c.raise(Insert, "")
		}
	case *pg.Node_VariableSetStmt:
		setClass(c, x.VariableSetStmt)
		setting, value = strings.ToLower(x.VariableSetStmt.GetName()), settingValue(x.VariableSetStmt)
	case *pg.Node_VariableShowStmt, *pg.Node_ListenStmt, *pg.Node_UnlistenStmt, *pg.Node_DeallocateStmt,
		*pg.Node_FetchStmt, *pg.Node_ClosePortalStmt, *pg.Node_ConstraintsSetStmt, *pg.Node_DiscardStmt:
		// Session housekeeping: reads nothing it was not allowed to.
	case *pg.Node_TransactionStmt:
		switch x.TransactionStmt.GetKind() {
		case pg.TransactionStmtKind_TRANS_STMT_PREPARE, pg.TransactionStmtKind_TRANS_STMT_COMMIT_PREPARED, pg.TransactionStmtKind_TRANS_STMT_ROLLBACK_PREPARED:
			c.raise(Admin, "two-phase commit outlives the session")
		}
	case *pg.Node_TruncateStmt:
		c.raise(Delete, "TRUNCATE removes every row")
		c.sawUpdDel, c.allWhere = true, false
	case *pg.Node_DropStmt:
		c.raise(DDL, "")
		dropTargets(c, x.DropStmt)
		m = modeUtility
	default:
		if ddlKinds[kind] {
			c.raise(DDL, "")
		} else {
			c.raise(Admin, kind+" is an admin statement")
		}
		m = modeUtility
	}
	c.walk(n.ProtoReflect(), nil, m)
	if c.tooBig {
		return nil, warden.Errorf(warden.CodeTooLarge, "statement is too complex to analyse")
	}
	s := &Statement{
		Class: c.class, Kind: kind, Reads: c.reads.sorted(), Writes: c.writes.sorted(),
		Schemas: c.schemas.sorted(), Functions: c.funcs.sorted(), Params: c.params, Reasons: c.reasons.sorted(),
		Setting: setting, SettingValue: value,
	}
	var all set
	for _, t := range c.reads.out {
		all.add(t)
	}
	for _, t := range c.writes.out {
		all.add(t)
	}
	s.Tables = all.sorted()
	if c.sawUpdDel {
		s.HasWhere = c.allWhere
	} else {
		s.HasWhere = topWhere
	}
	return s, nil
}

// ddlKinds are the statements that change the schema of objects the role
// may own; everything not listed here or handled above is admin.
var ddlKinds = map[string]bool{
	"CreateStmt": true, "AlterTableStmt": true, "IndexStmt": true, "ViewStmt": true, "CreateSeqStmt": true,
	"AlterSeqStmt": true, "CreateFunctionStmt": true, "AlterFunctionStmt": true, "RenameStmt": true,
	"CommentStmt": true, "CreateTableAsStmt": true, "RefreshMatViewStmt": true, "CreateSchemaStmt": true,
	"CreateDomainStmt": true, "AlterDomainStmt": true, "DefineStmt": true, "CompositeTypeStmt": true,
	"CreateEnumStmt": true, "CreateRangeStmt": true, "AlterEnumStmt": true, "AlterTypeStmt": true,
	"CreateTrigStmt": true, "RuleStmt": true, "CreatePolicyStmt": true, "AlterPolicyStmt": true,
	"CreateStatsStmt": true, "AlterStatsStmt": true, "AlterObjectSchemaStmt": true, "AlterObjectDependsStmt": true,
	"AlterCollationStmt": true, "ReplicaIdentityStmt": true, "CreateOpClassStmt": true, "CreateOpFamilyStmt": true,
	"AlterOpFamilyStmt": true, "AlterOperatorStmt": true, "AlterTSDictionaryStmt": true, "AlterTSConfigurationStmt": true,
	"CreateConversionStmt": true, "CreateCastStmt": true,
}

// harmlessSettings are session settings that change presentation or
// waiting only; SET of anything else is admin. Deliberately absent:
// role, session_authorization (who runs the statement), search_path
// (which table an unqualified name means), statement_timeout (the
// connector's bound), client_encoding and standard_conforming_strings
// (how the server lexes the text Warden analysed).
var harmlessSettings = map[string]bool{
	"application_name": true, "datestyle": true, "intervalstyle": true, "timezone": true, "extra_float_digits": true,
	"client_min_messages": true, "bytea_output": true, "lc_monetary": true, "lc_numeric": true, "lc_time": true,
	"default_transaction_isolation": true, "transaction_isolation": true, "default_transaction_read_only": true,
	"transaction_read_only": true, "lock_timeout": true, "idle_in_transaction_session_timeout": true,
}

func setClass(c *collector, v *pg.VariableSetStmt) {
	name := strings.ToLower(v.GetName())
	switch v.GetKind() {
	case pg.VariableSetKind_VAR_SET_MULTI, pg.VariableSetKind_VAR_RESET_ALL:
		// SET TRANSACTION ..., SET SESSION CHARACTERISTICS, RESET ALL
		// (back to the connection's start values, which Warden set).
		return
	}
	switch {
	case name == "role" || name == "session_authorization":
		c.raise(Admin, "changes the role statements run as")
	case !harmlessSettings[name]:
		c.raise(Admin, "SET "+name+" changes a setting Warden keeps fixed")
	}
}

// settingValue is the value of SET name = 'value' (or = identifier) when
// it is exactly one string; "" otherwise.
func settingValue(v *pg.VariableSetStmt) string {
	if v.GetKind() != pg.VariableSetKind_VAR_SET_VALUE || len(v.GetArgs()) != 1 {
		return ""
	}
	return v.GetArgs()[0].GetAConst().GetSval().GetSval()
}

// dropTargets records what DROP removes (its objects are names, not
// relation nodes).
func dropTargets(c *collector, d *pg.DropStmt) {
	for _, o := range d.GetObjects() {
		var parts []string
		switch {
		case o.GetList() != nil:
			for _, it := range o.GetList().GetItems() {
				parts = append(parts, it.GetString_().GetSval())
			}
		case o.GetString_() != nil:
			parts = []string{o.GetString_().GetSval()}
		}
		name := strings.Join(parts, ".")
		switch d.GetRemoveType() {
		case pg.ObjectType_OBJECT_TABLE, pg.ObjectType_OBJECT_VIEW, pg.ObjectType_OBJECT_MATVIEW, pg.ObjectType_OBJECT_SEQUENCE,
			pg.ObjectType_OBJECT_FOREIGN_TABLE, pg.ObjectType_OBJECT_INDEX:
			c.writes.add(name)
			if len(parts) > 1 {
				c.schemas.add(parts[len(parts)-2])
			}
		case pg.ObjectType_OBJECT_SCHEMA:
			c.schemas.add(name)
		}
	}
}

// isTarget reports whether field fd of message m holds the relation a
// statement writes.
func isTarget(m protoreflect.Message, fd protoreflect.FieldDescriptor) bool {
	switch x := m.Interface().(type) {
	case *pg.InsertStmt, *pg.UpdateStmt, *pg.DeleteStmt, *pg.MergeStmt:
		return fd.Name() == "relation"
	case *pg.TruncateStmt:
		return fd.Name() == "relations"
	case *pg.IntoClause:
		return fd.Name() == "rel"
	case *pg.CopyStmt:
		return fd.Name() == "relation" && x.GetIsFrom()
	}
	return false
}

// walk visits every node under m. It is generic (protobuf reflection), so
// no node type can hide a relation or a function call from it; the cases
// below only add meaning to the nodes that carry it.
func (c *collector) walk(m protoreflect.Message, sc *scope, md mode) {
	if c.nodes++; c.nodes > maxNodes {
		c.tooBig = true
		return
	}
	switch x := m.Interface().(type) {
	case *pg.RangeVar:
		c.rangeVar(x, sc, md)
		return
	case *pg.FuncCall:
		c.funcCall(x.GetFuncname())
	case *pg.ParamRef:
		c.params = max(c.params, int(x.GetNumber()))
	case *pg.SelectStmt:
		if x.GetIntoClause() != nil {
			c.raise(DDL, "SELECT INTO creates a table")
		}
		md = modeRead
	case *pg.InsertStmt:
		if x.GetOnConflictClause().GetAction() == pg.OnConflictAction_ONCONFLICT_UPDATE {
			// The conflicting row is the WHERE of this update.
			c.raise(Update, "INSERT ... ON CONFLICT DO UPDATE updates existing rows")
			c.sawUpdDel = true
		} else {
			c.raise(Insert, "")
		}
		md = modeRead
	case *pg.UpdateStmt:
		c.raise(Update, "")
		c.sawUpdDel = true
		c.allWhere = c.allWhere && x.GetWhereClause() != nil
		md = modeRead
	case *pg.DeleteStmt:
		c.raise(Delete, "")
		c.sawUpdDel = true
		c.allWhere = c.allWhere && x.GetWhereClause() != nil
		md = modeRead
	case *pg.MergeStmt:
		for _, w := range x.GetMergeWhenClauses() {
			switch w.GetMergeWhenClause().GetCommandType() {
			case pg.CmdType_CMD_INSERT:
				c.raise(Insert, "")
			case pg.CmdType_CMD_UPDATE:
				c.raise(Update, "")
			case pg.CmdType_CMD_DELETE:
				c.raise(Delete, "")
			}
		}
		c.raise(Insert, "")
		md = modeRead
	case *pg.CopyStmt:
		md = modeRead
	case *pg.CreateTableAsStmt, *pg.ViewStmt:
		c.raise(DDL, "")
		md = modeUtility
	case *pg.ExecuteStmt:
		c.raise(Admin, "EXECUTE runs a prepared statement whose text is not in this request")
	}
	sc = c.withClause(m, sc)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if fd.Name() == "with_clause" || fd.Message() == nil || fd.IsMap() {
			return true
		}
		fm := md
		if isTarget(m, fd) {
			fm = modeWrite
		}
		if fd.IsList() {
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				c.walk(l.Get(i).Message(), sc, fm)
			}
			return true
		}
		c.walk(v.Message(), sc, fm)
		return true
	})
}

// withClause walks the CTEs of m's WITH clause, if any, each in the scope
// PostgreSQL gives it, and returns the scope of the rest of m. Without
// RECURSIVE a CTE sees only the CTEs before it (a CTE named like a table
// reads the table inside its own definition); with RECURSIVE every CTE
// sees all of them.
func (c *collector) withClause(m protoreflect.Message, sc *scope) *scope {
	fd := m.Descriptor().Fields().ByName("with_clause")
	if fd == nil || !m.Has(fd) {
		return sc
	}
	w, ok := m.Get(fd).Message().Interface().(*pg.WithClause)
	if !ok {
		return sc
	}
	all := &scope{names: map[string]bool{}, parent: sc}
	for _, n := range w.GetCtes() {
		all.names[n.GetCommonTableExpr().GetCtename()] = true
	}
	seen := &scope{names: map[string]bool{}, parent: sc}
	for _, n := range w.GetCtes() {
		cte := n.GetCommonTableExpr()
		in := seen
		if w.GetRecursive() {
			in = all
		}
		c.walk(n.ProtoReflect(), in, modeRead)
		seen.names[cte.GetCtename()] = true
	}
	return all
}

func (c *collector) rangeVar(r *pg.RangeVar, sc *scope, md mode) {
	parts := make([]string, 0, 3)
	for _, p := range []string{r.GetCatalogname(), r.GetSchemaname(), r.GetRelname()} {
		if p != "" {
			parts = append(parts, p)
		}
	}
	name := strings.Join(parts, ".")
	if r.GetSchemaname() != "" {
		c.schemas.add(r.GetSchemaname())
	}
	switch {
	case md == modeWrite || md == modeUtility:
		c.writes.add(name)
	case len(parts) == 1 && sc.has(r.GetRelname()):
		// A reference to a CTE in scope, not a table.
	default:
		c.reads.add(name)
	}
}

func (c *collector) funcCall(names []*pg.Node) {
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, strings.ToLower(n.GetString_().GetSval()))
	}
	if len(parts) == 0 {
		return
	}
	c.funcs.add(strings.Join(parts, "."))
	if len(parts) > 1 {
		c.schemas.add(parts[len(parts)-2])
	}
	if why := dangerous(parts[len(parts)-1]); why != "" {
		c.raise(Admin, "calls "+parts[len(parts)-1]+": "+why)
	}
}
