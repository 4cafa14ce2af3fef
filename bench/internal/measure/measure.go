// Package measure holds what the benchmark commands read about the process
// and about Warden while they run: CPU time, and the audit writer's group
// commits from /metrics.
package measure

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// CPUTime is the process's user and system CPU time so far.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		log.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Audit is Warden's audit writer metrics (warden_audit_*) at one moment.
type Audit struct{ events, commits, seconds float64 }

// ReadAudit reads them from the server at addr (http://host:port).
func ReadAudit(addr string) Audit {
	resp, err := http.Get(addr + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var a Audit
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(val, 64)
		switch name {
		case "warden_audit_events_total":
			a.events = v
		case "warden_audit_commits_total":
			a.commits = v
		case "warden_audit_commit_seconds_total":
			a.seconds = v
		}
	}
	return a
}

// Since describes the group commits between before and a, d apart.
func (a Audit) Since(before Audit, d time.Duration) string {
	n := a.commits - before.commits
	if n <= 0 {
		return "audit: no commits"
	}
	events, secs := a.events-before.events, a.seconds-before.seconds
	return fmt.Sprintf("audit at saturation: %.0f events in %.0f commits (%.1f per commit), %.0f µs per commit, writer busy %.0f%%",
		events, n, events/n, secs/n*1e6, secs/d.Seconds()*100)
}
