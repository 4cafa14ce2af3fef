package auditsink_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"warden/internal/audit"
	"warden/internal/auditsink"
	"warden/internal/store"
	"warden/internal/wardentest"
)

// syslogServer is a real syslog receiver: TCP or TLS with octet-counted
// frames (RFC 6587), or UDP with one message per datagram. It parses every
// message as RFC 5424 and keeps the events in their MSG.
type syslogServer struct {
	t    testing.TB
	addr string

	mu       sync.Mutex
	msgs     []syslogMsg
	problems []string
	conns    []net.Conn
}

type syslogMsg struct {
	pri                       int
	ts, host, app, msgid, msg string
	event                     audit.Event
}

// rfc5424 matches "<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG".
var rfc5424 = regexp.MustCompile(`^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) - (.*)$`)

func (s *syslogServer) add(raw []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := rfc5424.FindSubmatch(raw)
	if m == nil {
		s.problems = append(s.problems, fmt.Sprintf("not an RFC 5424 message: %q", raw))
		return
	}
	var sm syslogMsg
	sm.pri, _ = strconv.Atoi(string(m[1]))
	sm.ts, sm.host, sm.app, sm.msgid, sm.msg = string(m[2]), string(m[3]), string(m[4]), string(m[6]), string(m[7])
	if _, err := time.Parse(time.RFC3339Nano, sm.ts); err != nil {
		s.problems = append(s.problems, "bad timestamp "+sm.ts)
	}
	if err := json.Unmarshal(m[7], &sm.event); err != nil {
		s.problems = append(s.problems, fmt.Sprintf("MSG is not one JSON event: %v", err))
	}
	s.msgs = append(s.msgs, sm)
}

func listenSyslog(t testing.TB, network string, tc *tls.Config) *syslogServer {
	t.Helper()
	s := &syslogServer{t: t}
	if network == "udp" {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		s.addr = pc.LocalAddr().String()
		go func() {
			buf := make([]byte, 70000)
			for {
				n, _, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				s.add(append([]byte(nil), buf[:n]...))
			}
		}()
		return s
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	t.Cleanup(func() { ln.Close(); s.dropConns() })
	s.addr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go s.readFrames(c)
		}
	}()
	return s
}

// readFrames reads "LEN SP MSG" frames until the connection ends.
func (s *syslogServer) readFrames(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	for {
		lenText, err := r.ReadString(' ')
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) && lenText != "" {
				s.mu.Lock()
				s.problems = append(s.problems, "reading a frame: "+err.Error())
				s.mu.Unlock()
			}
			return
		}
		n, err := strconv.Atoi(lenText[:len(lenText)-1])
		if err != nil || n <= 0 || n > 1<<20 {
			s.mu.Lock()
			s.problems = append(s.problems, fmt.Sprintf("bad octet count %q", lenText))
			s.mu.Unlock()
			return
		}
		msg := make([]byte, n)
		if _, err := io.ReadFull(r, msg); err != nil {
			return
		}
		s.add(msg)
	}
}

// dropConns closes every accepted connection (a receiver restarting).
func (s *syslogServer) dropConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func (s *syslogServer) snapshot() ([]syslogMsg, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]syslogMsg(nil), s.msgs...), append([]string(nil), s.problems...)
}

func (s *syslogServer) count() int { m, _ := s.snapshot(); return len(m) }

func syslogSink(name, network, addr string) auditsink.Config {
	return auditsink.Config{Name: name, Type: auditsink.TypeSyslog, Network: network, Address: addr, Hostname: "warden-test",
		PollInterval: 10 * time.Millisecond, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Timeout: 5 * time.Second}
}

// hostile is an event whose fields try to start messages or lines of their
// own, or to smuggle terminal escapes.
func hostile(i int) audit.Event {
	e := decided(i)
	e.Reason = "line one\nline two\r\n<13>1 2026-01-01T00:00:00Z evil app - - - forged\x1b[2J\u2028\x00 end"
	e.Resource = "12 <14>1 - - - - - injected"
	e.Request.UserAgent = "agent\ttab\x7f\x01"
	e.Detail = []byte(`{"note":"a\nb","frame":"99 <13>1"}`)
	if i%2 == 1 {
		e.Decision = "deny"
	}
	return e
}

// checkSyslog asserts exactly one well-formed message per event, in seq
// order, with the event intact in MSG.
func checkSyslog(t testing.TB, s *syslogServer, st *store.Store, head int64) {
	t.Helper()
	msgs, problems := s.snapshot()
	if len(problems) > 0 {
		t.Fatalf("receiver saw: %q", problems)
	}
	if int64(len(msgs)) != head {
		t.Fatalf("%d messages for %d events: want exactly one each", len(msgs), head)
	}
	stored, err := st.QueryAudit(ctx, audit.Filter{Ascending: true, Limit: int(head) + 1})
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range msgs {
		want := stored[i]
		if m.event.Seq != int64(i+1) || m.event.Hash != want.Hash || m.event.Reason != want.Reason || m.event.Request.UserAgent != want.Request.UserAgent {
			t.Fatalf("message %d carries seq %d reason %q; want seq %d reason %q", i, m.event.Seq, m.event.Reason, want.Seq, want.Reason)
		}
		// The message carries the hashed bytes: a receiver can recompute
		// the event's hash, detail (with its '<') included.
		if !bytes.Equal(m.event.Detail, want.Detail) {
			t.Fatalf("seq %d: detail %s, want %s", want.Seq, m.event.Detail, want.Detail)
		}
		if h, _, _ := audit.ComputeHash(nil, &m.event); h != want.Hash {
			t.Fatalf("seq %d: the hash does not recompute from the message", want.Seq)
		}
		sev := 6
		if want.Decision == "deny" {
			sev = 4
		}
		if m.app != "warden" || m.msgid != want.Kind || m.host != "warden-test" || m.pri != 13*8+sev {
			t.Fatalf("seq %d header: pri %d host %q app %q msgid %q", want.Seq, m.pri, m.host, m.app, m.msgid)
		}
	}
}

func TestSyslogTCP(t *testing.T) {
	wardentest.Engines(t, func(t *testing.T, st *store.Store) {
		e := newEnv(t, st)
		srv := listenSyslog(t, "tcp", nil)
		head := e.appendN(t, 40, hostile)
		start(t, st, syslogSink("rsyslog", "tcp", srv.addr))
		waitFor(t, "40 messages", func() bool { return srv.count() >= 40 })
		waitFor(t, "cursor at 40", func() bool { c, _ := st.AuditSinkCursor(ctx, "rsyslog"); return c == head })
		// The receiver restarts between batches: the sink notices the
		// closed connection and reconnects instead of writing into it.
		srv.dropConns()
		head = e.appendN(t, 40, hostile)
		waitFor(t, "80 messages", func() bool { return srv.count() >= 80 })
		waitFor(t, "cursor at 80", func() bool { c, _ := st.AuditSinkCursor(ctx, "rsyslog"); return c == head })
		checkSyslog(t, srv, st, head)
	})
}

func TestSyslogUDP(t *testing.T) {
	st := wardentest.SQLite(t)
	e := newEnv(t, st)
	srv := listenSyslog(t, "udp", nil)
	// UDP has no flow control: small batches keep the test's socket
	// buffer from overflowing.
	cfg := syslogSink("udp", "udp", srv.addr)
	cfg.BatchSize = 10
	head := e.appendN(t, 30, hostile)
	start(t, st, cfg)
	waitFor(t, "30 datagrams", func() bool { return srv.count() >= 30 })
	checkSyslog(t, srv, st, head)
}

func TestSyslogTLS(t *testing.T) {
	st := wardentest.SQLite(t)
	e := newEnv(t, st)
	cert, caFile := selfSigned(t)
	srv := listenSyslog(t, "tls", &tls.Config{Certificates: []tls.Certificate{cert}})
	head := e.appendN(t, 25, hostile)

	// Without the CA the server's certificate is refused and nothing is
	// delivered (the cursor stays).
	untrusted := syslogSink("untrusted", "tls", srv.addr)
	r := start(t, st, untrusted)
	waitFor(t, "a refused handshake", func() bool { return r.metric(t, "warden_audit_sink_failures_total", "untrusted") >= 1 })
	r.stop()
	if c, _ := st.AuditSinkCursor(ctx, "untrusted"); c != 0 || srv.count() != 0 {
		t.Fatalf("an unverified server got events (cursor %d, %d messages)", c, srv.count())
	}

	cfg := syslogSink("siem-tls", "tls", srv.addr)
	cfg.CAFile = caFile
	start(t, st, cfg)
	waitFor(t, "25 messages", func() bool { return srv.count() >= 25 })
	checkSyslog(t, srv, st, head)
}

// selfSigned makes a certificate for 127.0.0.1 and writes it as a CA file.
func selfSigned(t testing.TB) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "syslog test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, file
}
