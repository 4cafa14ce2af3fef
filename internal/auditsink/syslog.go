package auditsink

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"warden/internal/audit"
)

// Syslog: one RFC 5424 message per event,
//
//	<PRI>1 TIMESTAMP HOSTNAME warden - MSGID - MSG
//
// PRI is facility 13 (log audit) with severity 4 (warning) for denials,
// errors and anomaly findings, 5 (notice) for approvals required and 6
// (informational) otherwise; TIMESTAMP the event's time (UTC, µs); MSGID the
// event kind; MSG the event in the sink's format (JSON, one line, no BOM).
// UDP sends one datagram per message (RFC 5426); TCP and TLS frame each with
// octet counting, "LEN SP MSG" (RFC 6587 3.4.1, RFC 5425).
const (
	facilityLogAudit = 13
	appName          = "warden"
	// maxDatagram bounds a UDP message (IPv4's largest payload is 65507).
	maxDatagram = 65000
)

type syslogSink struct {
	network, address string
	hostname         string
	format           string
	timeout          time.Duration
	tls              *tls.Config
	conn             net.Conn
	buf, msg         []byte
	enc              encoder
}

func newSyslog(c Config, roots *x509.CertPool) *syslogSink {
	s := &syslogSink{network: c.Network, address: c.Address, hostname: headerField(c.Hostname, 255), format: c.Format, timeout: c.Timeout}
	if c.Network == "tls" {
		host, _, _ := net.SplitHostPort(c.Address)
		s.tls = &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	return s
}

func (s *syslogSink) dial(ctx context.Context) error {
	d := &net.Dialer{Timeout: s.timeout}
	var (
		c   net.Conn
		err error
	)
	switch s.network {
	case "tls":
		c, err = (&tls.Dialer{NetDialer: d, Config: s.tls}).DialContext(ctx, "tcp", s.address)
	default:
		c, err = d.DialContext(ctx, s.network, s.address)
	}
	if err != nil {
		return fmt.Errorf("syslog %s %s: %w", s.network, s.address, err)
	}
	s.conn = c
	return nil
}

// alive reports whether a stream connection is still open. Syslog receivers
// never write, so a read that does not time out at once means the peer
// closed (or reset) it; writing into such a connection would "succeed" and
// lose the batch.
func (s *syslogSink) alive() bool {
	_ = s.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	var b [1]byte
	_, err := s.conn.Read(b[:])
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (s *syslogSink) send(ctx context.Context, evs []*audit.Event, lines [][]byte) error {
	if s.conn != nil && s.network != "udp" && !s.alive() {
		s.close()
	}
	if s.conn == nil {
		if err := s.dial(ctx); err != nil {
			return err
		}
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(s.timeout)
	}
	_ = s.conn.SetWriteDeadline(deadline)
	s.buf = s.buf[:0]
	for i, e := range evs {
		line := lines[i]
		if s.network == "udp" && len(line) > maxDatagram-512 {
			line = s.shrink(e, line)
		}
		s.msg = appendMessage(s.msg[:0], s.hostname, e, bytes.TrimSuffix(line, []byte{'\n'}))
		if s.network == "udp" {
			if _, err := s.conn.Write(s.msg); err != nil {
				s.close()
				return fmt.Errorf("syslog udp %s: %w", s.address, err)
			}
			continue
		}
		s.buf = strconv.AppendInt(s.buf, int64(len(s.msg)), 10)
		s.buf = append(s.buf, ' ')
		s.buf = append(s.buf, s.msg...)
	}
	if s.network == "udp" {
		return nil
	}
	if _, err := s.conn.Write(s.buf); err != nil {
		s.close()
		return fmt.Errorf("syslog %s %s: %w", s.network, s.address, err)
	}
	return nil
}

// shrink makes an event fit one datagram: its detail is replaced by a note
// (the chain keeps it; TCP and TLS carry any size), and if that is not
// enough the line is cut.
func (s *syslogSink) shrink(e *audit.Event, line []byte) []byte {
	c := *e
	c.Detail = []byte(`{"detail_omitted":"too large for a syslog datagram"}`)
	if l, err := s.enc.encode(s.format, &c); err == nil {
		line = l
	}
	if len(line) > maxDatagram-512 {
		line = line[:maxDatagram-512]
	}
	return line
}

func (s *syslogSink) close() {
	if s.conn != nil {
		s.conn.Close()
		s.conn = nil
	}
}

// appendMessage appends the RFC 5424 message for e with msg as MSG.
func appendMessage(b []byte, hostname string, e *audit.Event, msg []byte) []byte {
	b = append(b, '<')
	b = strconv.AppendInt(b, int64(facilityLogAudit*8+severity(e)), 10)
	b = append(b, ">1 "...)
	b = e.Time.UTC().AppendFormat(b, "2006-01-02T15:04:05.000000Z07:00")
	b = append(b, ' ')
	b = append(b, hostname...)
	b = append(b, " "+appName+" - "...)
	b = append(b, headerField(e.Kind, 32)...)
	b = append(b, " - "...)
	return append(b, msg...)
}

func severity(e *audit.Event) int {
	switch {
	case e.Decision == "deny" || e.Decision == "error" || e.Kind == audit.KindFinding:
		return 4
	case e.Decision == "require_approval":
		return 5
	}
	return 6
}

// headerField makes s a valid RFC 5424 header field: printable US-ASCII
// without spaces, at most max characters, "-" when empty.
func headerField(s string, max int) string {
	b := make([]byte, 0, min(len(s), max))
	for i := 0; i < len(s) && len(b) < max; i++ {
		if c := s[i]; c >= 33 && c <= 126 {
			b = append(b, c)
		} else {
			b = append(b, '_')
		}
	}
	if len(b) == 0 {
		return "-"
	}
	return string(b)
}
