package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	_ "time/tzdata" // time zones must resolve the same in a scratch container as on a laptop

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/decls"
	"cel.dev/cel-go/common/overloads"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/ext"
)

// Cost bounds for conditions. CEL cost units are roughly one per operation.
const (
	// CostLimit is the runtime budget of one condition evaluation. A condition
	// that exceeds it fails to evaluate (and so never grants).
	CostLimit = 1_000_000
	// costSizeHint is the size assumed for each list, map and string taken from
	// the request (params, resource, context, labels) when estimating a
	// condition's cost at save time. A condition whose estimated worst case
	// over inputs of this size exceeds CostLimit is rejected.
	costSizeHint = 1000
)

// CEL object type names for the declared variables. Declaring them as object
// types (rather than maps) lets the checker reject unknown fields such as
// identity.nmae at save time, and lets the runtime read fields without
// reflection.
const (
	identityTypeName = "warden.Identity"
	actionTypeName   = "warden.Action"
	requestTypeName  = "warden.Request"
)

// object is the runtime value of the CEL variables identity, action and
// request. Field values are boxed into CEL values at most once per decision,
// however many conditions read them.
type object struct {
	strs      [5]string
	boxed     [5]ref.Val
	labels    map[string]string // identity only
	labelsVal ref.Val
	time      time.Time // request only
	timeVal   ref.Val
}

// Field positions in object.strs.
const (
	fIdentityID, fIdentityName, fIdentityType, fIdentityOwner, fIdentityEnvironment = 0, 1, 2, 3, 4
	fActionName, fActionConnector, fActionOperation, fActionClass                   = 0, 1, 2, 3
	fRequestIP, fRequestMethod, fRequestPath                                        = 0, 1, 2
)

func strField(i int) *types.FieldType {
	return &types.FieldType{
		Type:  types.StringType,
		IsSet: func(t any) bool { return t.(*object).strs[i] != "" },
		GetFrom: func(t any) (any, error) {
			o := t.(*object)
			if o.boxed[i] == nil {
				o.boxed[i] = types.String(o.strs[i])
			}
			return o.boxed[i], nil
		},
	}
}

var objectFields = map[string]map[string]*types.FieldType{
	identityTypeName: {
		"id":          strField(fIdentityID),
		"name":        strField(fIdentityName),
		"type":        strField(fIdentityType),
		"owner":       strField(fIdentityOwner),
		"environment": strField(fIdentityEnvironment),
		"labels": {
			Type:  types.NewMapType(types.StringType, types.StringType),
			IsSet: func(t any) bool { return len(t.(*object).labels) > 0 },
			GetFrom: func(t any) (any, error) {
				o := t.(*object)
				if o.labelsVal == nil {
					l := o.labels
					if l == nil {
						l = emptyLabels
					}
					o.labelsVal = types.NewStringStringMap(types.DefaultTypeAdapter, l)
				}
				return o.labelsVal, nil
			},
		},
	},
	actionTypeName: {
		"name":      strField(fActionName),
		"connector": strField(fActionConnector),
		"operation": strField(fActionOperation),
		"class":     strField(fActionClass),
	},
	requestTypeName: {
		"time": {
			Type:  types.TimestampType,
			IsSet: func(t any) bool { return true },
			GetFrom: func(t any) (any, error) {
				o := t.(*object)
				if o.timeVal == nil {
					o.timeVal = types.Timestamp{Time: o.time}
				}
				return o.timeVal, nil
			},
		},
		"ip":     strField(fRequestIP),
		"method": strField(fRequestMethod),
		"path":   strField(fRequestPath),
	},
}

var (
	emptyLabels = map[string]string{}
	emptyMap    = map[string]any{}
)

// provider adds Warden's three object types to the default CEL registry.
type provider struct {
	*types.Registry
}

func (p provider) FindStructType(name string) (*types.Type, bool) {
	if _, ok := objectFields[name]; ok {
		return types.NewTypeTypeWithParam(types.NewObjectType(name)), true
	}
	return p.Registry.FindStructType(name)
}

func (p provider) FindStructFieldNames(name string) ([]string, bool) {
	if f, ok := objectFields[name]; ok {
		names := make([]string, 0, len(f))
		for n := range f {
			names = append(names, n)
		}
		return names, true
	}
	return p.Registry.FindStructFieldNames(name)
}

func (p provider) FindStructFieldType(name, field string) (*types.FieldType, bool) {
	if f, ok := objectFields[name]; ok {
		ft, ok := f[field]
		return ft, ok
	}
	return p.Registry.FindStructFieldType(name, field)
}

var (
	envOnce sync.Once
	celEnv  *cel.Env
	envErr  error
)

// env returns the one CEL environment every condition compiles in. cel.Env is
// safe for concurrent use.
func env() (*cel.Env, error) {
	envOnce.Do(func() { celEnv, envErr = newEnv() })
	return celEnv, envErr
}

// timeFuncs are the CEL timestamp accessors that take a time zone. Their
// standard implementations call time.LoadLocation on every evaluation (about
// 18 µs); Warden redeclares the same overloads with a cached location.
var timeFuncs = []struct {
	fn, overload string
	get          func(time.Time) int
}{
	{overloads.TimeGetFullYear, overloads.TimestampToYearWithTz, func(t time.Time) int { return t.Year() }},
	{overloads.TimeGetMonth, overloads.TimestampToMonthWithTz, func(t time.Time) int { return int(t.Month()) - 1 }},
	{overloads.TimeGetDayOfYear, overloads.TimestampToDayOfYearWithTz, func(t time.Time) int { return t.YearDay() - 1 }},
	{overloads.TimeGetDayOfMonth, overloads.TimestampToDayOfMonthZeroBasedWithTz, func(t time.Time) int { return t.Day() - 1 }},
	{overloads.TimeGetDate, overloads.TimestampToDayOfMonthOneBasedWithTz, func(t time.Time) int { return t.Day() }},
	{overloads.TimeGetDayOfWeek, overloads.TimestampToDayOfWeekWithTz, func(t time.Time) int { return int(t.Weekday()) }},
	{overloads.TimeGetHours, overloads.TimestampToHoursWithTz, func(t time.Time) int { return t.Hour() }},
	{overloads.TimeGetMinutes, overloads.TimestampToMinutesWithTz, func(t time.Time) int { return t.Minute() }},
	{overloads.TimeGetSeconds, overloads.TimestampToSecondsWithTz, func(t time.Time) int { return t.Second() }},
	{overloads.TimeGetMilliseconds, overloads.TimestampToMillisecondsWithTz, func(t time.Time) int { return t.Nanosecond() / 1e6 }},
}

// noGuards drops cel-go's per-call runtime argument type checks for Warden's
// own functions: each has a single overload and its binding checks its
// arguments itself.
var noGuards = decls.DisableTypeGuards(true)

func newEnv() (*cel.Env, error) {
	opts := []cel.EnvOption{
		cel.CustomTypeProvider(provider{types.NewEmptyRegistry()}),
		cel.CrossTypeNumericComparisons(true),
		cel.OptionalTypes(),
		ext.Strings(),
		cel.Variable("identity", cel.ObjectType(identityTypeName)),
		cel.Variable("action", cel.ObjectType(actionTypeName)),
		cel.Variable("request", cel.ObjectType(requestTypeName)),
		cel.Variable("resource", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("params", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("context", cel.MapType(cel.StringType, cel.DynType)),
		cel.Function("inCidr",
			cel.Overload("inCidr_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(celInCidr)), noGuards),
		cel.Function("globMatch",
			cel.Overload("globMatch_string_string", []*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
				cel.BinaryBinding(celGlobMatch)), noGuards),
		cel.Function("emailDomain",
			cel.Overload("emailDomain_string", []*cel.Type{cel.StringType}, cel.StringType,
				cel.UnaryBinding(celEmailDomain)), noGuards),
	}
	for _, tf := range timeFuncs {
		get := tf.get
		opts = append(opts, cel.Function(tf.fn,
			cel.MemberOverload(tf.overload, []*cel.Type{cel.TimestampType, cel.StringType}, cel.IntType,
				cel.BinaryBinding(func(ts, tz ref.Val) ref.Val {
					t, ok := ts.(types.Timestamp)
					z, ok2 := tz.(types.String)
					if !ok || !ok2 {
						return types.MaybeNoSuchOverloadErr(tz)
					}
					loc, err := location(string(z))
					if err != nil {
						return types.NewErrFromString(err.Error())
					}
					return types.Int(get(t.In(loc)))
				}))))
	}
	return cel.NewEnv(opts...)
}

func celInCidr(ipv, cidrv ref.Val) ref.Val {
	ips, ok := ipv.(types.String)
	cidrs, ok2 := cidrv.(types.String)
	if !ok || !ok2 {
		return types.MaybeNoSuchOverloadErr(ipv)
	}
	addr, err := netip.ParseAddr(string(ips))
	if err != nil {
		return types.NewErr("inCidr: %q is not an IP address", string(ips))
	}
	pfx, err := netip.ParsePrefix(string(cidrs))
	if err != nil {
		return types.NewErr("inCidr: %q is not a CIDR prefix", string(cidrs))
	}
	return types.Bool(pfx.Masked().Contains(addr.Unmap()) || pfx.Masked().Contains(addr))
}

func celGlobMatch(sv, pv ref.Val) ref.Val {
	s, ok := sv.(types.String)
	p, ok2 := pv.(types.String)
	if !ok || !ok2 {
		return types.MaybeNoSuchOverloadErr(sv)
	}
	return types.Bool(glob(string(p), string(s)))
}

func celEmailDomain(v ref.Val) ref.Val {
	s, ok := v.(types.String)
	if !ok {
		return types.MaybeNoSuchOverloadErr(v)
	}
	i := strings.LastIndexByte(string(s), '@')
	if i < 0 {
		return types.NewErr("emailDomain: %q is not an email address (no '@')", truncate(string(s), 64))
	}
	return types.String(strings.ToLower(string(s[i+1:])))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// Location cache. Entries are never evicted: zone names come from policies
// (bounded) or, for non-constant arguments, from requests, which is why the
// cache stops growing at maxCachedZones and later names are resolved
// uncached (correct, only slower).
const maxCachedZones = 1024

type zoneEntry struct {
	loc *time.Location
	err error
}

// zones is a copy-on-write map: lookups are a plain map read, misses (rare)
// copy it under zoneMu.
var (
	zones  atomic.Pointer[map[string]zoneEntry]
	zoneMu sync.Mutex
)

// location resolves a CEL time zone argument: an IANA name ("Europe/Berlin",
// "UTC") or a fixed offset "+HH:MM" / "-HH:MM", exactly as cel-go does, but
// each name is loaded once.
func location(name string) (*time.Location, error) {
	if m := zones.Load(); m != nil {
		if ze, ok := (*m)[name]; ok {
			return ze.loc, ze.err
		}
	}
	loc, err := loadLocation(name)
	zoneMu.Lock()
	defer zoneMu.Unlock()
	old := zones.Load()
	if old == nil || len(*old) < maxCachedZones {
		m := make(map[string]zoneEntry, 1+lenOf(old))
		if old != nil {
			for k, v := range *old {
				m[k] = v
			}
		}
		m[name] = zoneEntry{loc, err}
		zones.Store(&m)
	}
	return loc, err
}

func loadLocation(name string) (*time.Location, error) {
	i := strings.IndexByte(name, ':')
	if i < 0 {
		if name == "" || name == "Local" {
			// time.LoadLocation maps these to UTC and the host's zone; a
			// policy must not change meaning with the host.
			return nil, fmt.Errorf("time zone %q is not an IANA zone name", name)
		}
		loc, err := time.LoadLocation(name)
		if err != nil {
			return nil, fmt.Errorf("unknown time zone %q", name)
		}
		return loc, nil
	}
	bad := fmt.Errorf("time zone offset %q must look like +HH:MM or -HH:MM", name)
	if i == 0 || len(name)-i-1 != 2 {
		return nil, bad
	}
	hr, err := strconv.Atoi(name[:i])
	if err != nil || hr < -23 || hr > 23 {
		return nil, bad
	}
	mn, err := strconv.Atoi(name[i+1:])
	if err != nil || mn < 0 || mn > 59 {
		return nil, bad
	}
	off := hr*3600 + mn*60
	if name[0] == '-' {
		off = hr*3600 - mn*60
	}
	return time.FixedZone(name, off), nil
}

func lenOf(m *map[string]zoneEntry) int {
	if m == nil {
		return 0
	}
	return len(*m)
}
