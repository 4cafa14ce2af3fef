package store

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"
)

var driverBadConn = driver.ErrBadConn

// isNetErr reports errors that mean the database connection went away.
func isNetErr(err error) bool {
	var ne net.Error
	var oe *net.OpError
	return errors.As(err, &ne) || errors.As(err, &oe) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE)
}
