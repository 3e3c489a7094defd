package pki

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File names inside a Dir.
const (
	caFile   = "ca.pem"
	certFile = "node.pem"
	keyFile  = "node-key.pem"
	kekFile  = "kek"
)

// Dir is the directory holding a node's credentials: ca.pem, node.pem,
// node-key.pem (0600) and, on managers, kek (0600). Files are written
// atomically (temporary file, fsync, rename, fsync of the directory); the
// directory is created 0700.
type Dir string

// Exists reports whether node.pem, node-key.pem and ca.pem all exist.
func (d Dir) Exists() bool {
	for _, name := range []string{caFile, certFile, keyFile} {
		if _, err := os.Stat(d.path(name)); err != nil {
			return false
		}
	}
	return true
}

// Save writes the CA certificate, the node certificate and its key. All three
// are written to temporary files first and renamed only once all are on disk,
// so a failure leaves the previous set in place. (A crash between the renames
// can still leave a mixed set; NewCreds refuses a key that does not match its
// certificate.)
func (d Dir) Save(caPEM, certPEM, keyPEM []byte) error {
	if err := d.mkdir(); err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		perm os.FileMode
	}{
		{keyFile, keyPEM, 0o600},
		{certFile, certPEM, 0o644},
		{caFile, caPEM, 0o644},
	}
	tmps := make([]string, 0, len(files))
	defer func() {
		for _, t := range tmps {
			os.Remove(t) // gone already after a successful rename
		}
	}()
	for _, f := range files {
		tmp, err := writeTemp(string(d), f.name, f.data, f.perm)
		if err != nil {
			return err
		}
		tmps = append(tmps, tmp)
	}
	for i, f := range files {
		if err := os.Rename(tmps[i], d.path(f.name)); err != nil {
			return fmt.Errorf("save credentials: %w", err)
		}
	}
	return syncDir(string(d))
}

// Load reads what Save wrote.
func (d Dir) Load() (caPEM, certPEM, keyPEM []byte, err error) {
	if caPEM, err = os.ReadFile(d.path(caFile)); err != nil {
		return nil, nil, nil, fmt.Errorf("load credentials: %w", err)
	}
	if certPEM, err = os.ReadFile(d.path(certFile)); err != nil {
		return nil, nil, nil, fmt.Errorf("load credentials: %w", err)
	}
	if keyPEM, err = os.ReadFile(d.path(keyFile)); err != nil {
		return nil, nil, nil, fmt.Errorf("load credentials: %w", err)
	}
	return caPEM, certPEM, keyPEM, nil
}

// SaveKEK writes the manager's key-encryption key (0600).
func (d Dir) SaveKEK(kek []byte) error {
	if len(kek) != kekSize {
		return fmt.Errorf("save KEK: key is %d bytes, want %d", len(kek), kekSize)
	}
	if err := d.mkdir(); err != nil {
		return err
	}
	tmp, err := writeTemp(string(d), kekFile, kek, 0o600)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, d.path(kekFile)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("save KEK: %w", err)
	}
	return syncDir(string(d))
}

// LoadKEK reads the key-encryption key. The error wraps os.ErrNotExist when
// there is none (a worker, or a manager that has not joined yet).
func (d Dir) LoadKEK() ([]byte, error) {
	kek, err := os.ReadFile(d.path(kekFile))
	if err != nil {
		return nil, fmt.Errorf("load KEK: %w", err)
	}
	if len(kek) != kekSize {
		return nil, fmt.Errorf("load KEK %s: %d bytes, want %d", d.path(kekFile), len(kek), kekSize)
	}
	return kek, nil
}

func (d Dir) path(name string) string { return filepath.Join(string(d), name) }

func (d Dir) mkdir() error {
	if d == "" {
		return errors.New("credentials directory: empty path")
	}
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("credentials directory: %w", err)
	}
	return nil
}

// writeTemp writes data to a new temporary file next to dir/name with perm,
// fsyncs it and returns its path.
func writeTemp(dir, name string, data []byte, perm os.FileMode) (path string, err error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write %s: %w", name, err)
	}
	return f.Name(), nil
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
