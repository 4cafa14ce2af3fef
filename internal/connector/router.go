package connector

import (
	"errors"
	"net/url"
	"strings"

	"warden"
)

// router is a trie per method: literal children first, then one parameter
// child. Matching walks the path once; cost grows with its depth, not with
// the number of operations.
type router struct {
	roots map[string]*node
}

type node struct {
	literals map[string]*node
	param    *node
	pname    string
	op       *Op
}

func newRouter() *router { return &router{roots: map[string]*node{}} }

func (r *router) add(method string, segs []segment, op *Op) error {
	n := r.roots[method]
	if n == nil {
		n = &node{}
		r.roots[method] = n
	}
	for _, s := range segs {
		if s.param == "" {
			if n.literals == nil {
				n.literals = map[string]*node{}
			}
			child := n.literals[s.literal]
			if child == nil {
				child = &node{}
				n.literals[s.literal] = child
			}
			n = child
			continue
		}
		if n.param == nil {
			n.param = &node{pname: s.param}
		} else if n.param.pname != s.param {
			return errors.New("conflicts with another operation's parameter name at the same position ({" + n.param.pname + "})")
		}
		n = n.param
	}
	if n.op != nil {
		return errors.New("same method and path as operation " + n.op.ID)
	}
	n.op = op
	return nil
}

// Match maps a request to an operation. rawPath is the escaped path after
// the connector prefix. Paths that an upstream could read differently from
// Warden are refused rather than normalised: encoded slashes or
// backslashes, dot segments (plain or encoded), empty segments (double
// slashes), percent signs that survive decoding (double encoding), control
// characters. Literal segments match exactly (case-sensitive); the upstream
// receives the path rebuilt from the template, never the raw one.
func (c *Connector) Match(method, rawPath string) (*Op, map[string]string, error) {
	n := c.router.roots[method]
	if n == nil {
		return nil, nil, errUnknownOp(method, rawPath)
	}
	if rawPath == "" || rawPath[0] != '/' {
		return nil, nil, errUnknownOp(method, rawPath)
	}
	var params map[string]string
	rest := rawPath[1:]
	if rest == "" {
		if n.op == nil {
			return nil, nil, errUnknownOp(method, rawPath)
		}
		return n.op, nil, nil
	}
	for {
		seg, tail, more := strings.Cut(rest, "/")
		if seg == "" || (more && tail == "") {
			return nil, nil, warden.Errorf(warden.CodeInvalid, "path %q has an empty segment (double or trailing slash)", clip(rawPath))
		}
		if strings.ContainsAny(seg, "\\") {
			return nil, nil, warden.Errorf(warden.CodeInvalid, "path %q contains a backslash", clip(rawPath))
		}
		dec, err := url.PathUnescape(seg)
		if err != nil {
			return nil, nil, warden.Errorf(warden.CodeInvalid, "path %q is not validly escaped", clip(rawPath))
		}
		if err := checkParamValue(dec); err != nil {
			return nil, nil, warden.Errorf(warden.CodeInvalid, "path segment %q %s", clip(seg), err.Error())
		}
		if next := n.literals[dec]; next != nil {
			// A literal wins over a parameter however it was escaped: the
			// upstream receives the literal either way.
			n = next
		} else if lit := foldMatch(n.literals, dec); lit != "" {
			// Differs from a literal only in case: an upstream that ignores
			// case would run the literal's operation, so refuse.
			return nil, nil, warden.Errorf(warden.CodeInvalid, "path segment %q differs only in case from %q; refused as ambiguous", clip(dec), lit)
		} else if n.param != nil {
			if params == nil {
				params = map[string]string{}
			}
			params[n.param.pname] = dec
			n = n.param
		} else {
			return nil, nil, errUnknownOp(method, rawPath)
		}
		if !more {
			break
		}
		rest = tail
	}
	if n.op == nil {
		return nil, nil, errUnknownOp(method, rawPath)
	}
	return n.op, params, nil
}

func foldMatch(lits map[string]*node, s string) string {
	for l := range lits {
		if strings.EqualFold(l, s) {
			return l
		}
	}
	return ""
}

func errUnknownOp(method, path string) error {
	return warden.Errorf(warden.CodeUnknownOperation, "%s %s matches no operation of this connector; it is not forwarded", method, clip(path))
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
