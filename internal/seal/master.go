package seal

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"warden"
)

// MasterKeySize is the size of a master key in bytes.
const MasterKeySize = keySize

// DevKeyFile is the name of the file, in the data directory, that holds the
// generated master key of dev mode.
const DevKeyFile = "master.key"

// maxKeyFileSize bounds what ReadMasterKeyFile reads: a key is 44 characters.
const maxKeyFileSize = 4096

// ParseMasterKey decodes a master key given as base64 (standard or URL-safe
// alphabet, padded or not; surrounding whitespace ignored), as in
// WARDEN_MASTER_KEY. It must decode to exactly 32 bytes and not be all zeros.
// Errors name WARDEN_MASTER_KEY and never echo the value.
func ParseMasterKey(b64 string) ([]byte, error) {
	return parseMasterKey(b64, "WARDEN_MASTER_KEY")
}

func parseMasterKey(text, source string) ([]byte, error) {
	s := strings.TrimSpace(text)
	if s == "" {
		return nil, fieldErr(source, "empty; it must hold a base64-encoded %d-byte random key", MasterKeySize)
	}
	var key []byte
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			key = b
			break
		}
	}
	switch {
	case key == nil:
		return nil, fieldErr(source, "not valid base64; it must hold a base64-encoded %d-byte random key", MasterKeySize)
	case len(key) != MasterKeySize:
		n := len(key)
		clear(key)
		return nil, fieldErr(source, "decodes to %d bytes; a master key is exactly %d random bytes, base64-encoded", n, MasterKeySize)
	case allZero(key):
		return nil, fieldErr(source, "is all zeros; a master key must be %d random bytes", MasterKeySize)
	}
	return key, nil
}

func allZero(b []byte) bool {
	var acc byte
	for _, c := range b {
		acc |= c
	}
	return acc == 0
}

// EncodeMasterKey returns key in the form ParseMasterKey reads (standard
// base64, padded). For printing a freshly generated key once.
func EncodeMasterKey(key []byte) string { return base64.StdEncoding.EncodeToString(key) }

// GenerateMasterKey returns 32 bytes from crypto/rand.
func GenerateMasterKey() []byte {
	key := make([]byte, MasterKeySize)
	// crypto/rand.Read never returns an error since Go 1.24: on failure the
	// program crashes irrecoverably rather than return weak bytes.
	_, _ = rand.Read(key)
	return key
}

// ReadMasterKeyFile reads a master key file (--master-key-file): base64 as
// for ParseMasterKey, surrounding whitespace ignored. It refuses a file that
// is not a regular file or that group or others may read or write (on
// Windows, where permission bits mean nothing, that check is skipped). A
// missing file gives an error matching fs.ErrNotExist.
func ReadMasterKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fail(warden.CodeInvalid, err, "cannot open master key file %s", path)
	}
	defer f.Close()
	// Stat the open file, not the path, so the checked file is the read one.
	fi, err := f.Stat()
	if err != nil {
		return nil, fail(warden.CodeInvalid, err, "cannot stat master key file %s", path)
	}
	if !fi.Mode().IsRegular() {
		return nil, fail(warden.CodeInvalid, nil, "master key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fail(warden.CodeInvalid, nil,
			"master key file %s has mode %04o: group and others must have no access (chmod 600 %s)", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	defer clear(data)
	if err != nil {
		return nil, fail(warden.CodeInvalid, err, "cannot read master key file %s", path)
	}
	if len(data) > maxKeyFileSize {
		return nil, fail(warden.CodeInvalid, nil, "master key file %s is too large to be a master key", path)
	}
	return parseMasterKey(string(data), "master key file "+path)
}

// LoadOrCreateDevKey returns the dev-mode master key kept in
// dataDir/master.key, creating the directory (0700) and the file (0600) with a
// fresh key when the file does not exist; created reports that. The file is
// written completely before it appears under its name, and two processes
// racing to create it end up with the same key. An existing file is read with
// ReadMasterKeyFile's checks. Dev mode only: the key sits next to the data it
// protects.
func LoadOrCreateDevKey(dataDir string) (key []byte, created bool, err error) {
	if dataDir == "" {
		return nil, false, fieldErr("data", "dev mode needs a data directory for its master key")
	}
	path := filepath.Join(dataDir, DevKeyFile)
	key, err = ReadMasterKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return key, false, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fail(warden.CodeInvalid, err, "cannot create data directory %s", dataDir)
	}
	key = GenerateMasterKey()
	if err := writeNew(path, []byte(EncodeMasterKey(key)+"\n")); err != nil {
		clear(key)
		if errors.Is(err, fs.ErrExist) { // another process won the race: use its key
			key, err = ReadMasterKeyFile(path)
			return key, false, err
		}
		return nil, false, fail(warden.CodeInvalid, err, "cannot write master key file %s", path)
	}
	return key, true, nil
}

// writeNew writes data to a temporary file (0600) in path's directory, syncs
// it and links it to path, which fails with fs.ErrExist if path exists. So
// path never holds a partial key and is never overwritten.
func writeNew(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".master.key-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	defer os.Remove(name)
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Link(name, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil { // make the new name durable
		_ = d.Sync()
		d.Close()
	}
	return nil
}
