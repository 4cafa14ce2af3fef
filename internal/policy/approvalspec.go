package policy

import (
	"regexp"
	"time"
)

// Approval is a require_approval rule's compiled approval settings.
type Approval struct {
	Approvers  []string      // roles or people; empty: the approver role
	Required   int           // distinct approvers needed (>= 1)
	Uses       int           // identical calls one approval covers (>= 1)
	TTL        time.Duration // 0: the server's default
	AllowOwner bool
}

var approverRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@+-]{0,253}$`)

func compileApproval(s *ApprovalSpec) (*Approval, string, string) {
	a := &Approval{Approvers: s.Approvers, Required: s.Required, Uses: s.Uses, AllowOwner: s.AllowOwner}
	if a.Required == 0 {
		a.Required = 1
	}
	if a.Uses == 0 {
		a.Uses = 1
	}
	if a.Required < 1 || a.Required > 5 {
		return nil, "required must be between 1 and 5 distinct approvers", "required"
	}
	if a.Uses < 1 || a.Uses > 100 {
		return nil, "uses must be between 1 and 100", "uses"
	}
	if len(a.Approvers) > 50 {
		return nil, "at most 50 approvers", "approvers"
	}
	for _, x := range a.Approvers {
		if !approverRE.MatchString(x) {
			return nil, "approver " + x + " is not a role or a person (e.g. security or alice@example.com)", "approvers"
		}
	}
	if s.TTL != "" {
		d, err := ParsePeriod(s.TTL)
		if err != nil || d < time.Minute || d > 7*24*time.Hour {
			return nil, "ttl must be a duration between 1m and 7d", "ttl"
		}
		a.TTL = d
	}
	return a, "", ""
}

// ApprovalFor returns the approval settings of a policy's rule, or nil when
// the rule has none (defaults apply) or no longer exists.
func (e *Engine) ApprovalFor(policyName, ruleID string) *Approval {
	p, ok := e.Get(policyName)
	if !ok {
		return nil
	}
	for _, r := range p.rules {
		if r.id == ruleID {
			return r.approval
		}
	}
	return nil
}
