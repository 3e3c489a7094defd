package pki_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/warrenorch/warren/core/pki"
)

func TestDirSaveLoad(t *testing.T) {
	d := pki.Dir(filepath.Join(t.TempDir(), "certs"))
	if d.Exists() {
		t.Fatal("Exists before Save")
	}
	if err := d.Save([]byte("ca"), []byte("cert"), []byte("key")); err != nil {
		t.Fatal(err)
	}
	if !d.Exists() {
		t.Fatal("not Exists after Save")
	}
	// Overwrite (renewal) replaces all three.
	if err := d.Save([]byte("ca2"), []byte("cert2"), []byte("key2")); err != nil {
		t.Fatal(err)
	}
	ca, cert, key, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	if string(ca) != "ca2" || string(cert) != "cert2" || string(key) != "key2" {
		t.Errorf("loaded %q %q %q", ca, cert, key)
	}

	kek := bytes.Repeat([]byte{7}, 32)
	if _, err := d.LoadKEK(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadKEK before SaveKEK: %v, want os.ErrNotExist", err)
	}
	if err := d.SaveKEK(kek); err != nil {
		t.Fatal(err)
	}
	got, err := d.LoadKEK()
	if err != nil || !bytes.Equal(got, kek) {
		t.Errorf("LoadKEK = %x, %v", got, err)
	}
	if err := d.SaveKEK(kek[:5]); err == nil {
		t.Error("SaveKEK of 5 bytes: want error")
	}

	perms := []struct {
		name string
		want os.FileMode
	}{
		{".", 0o700 | os.ModeDir},
		{"node-key.pem", 0o600},
		{"kek", 0o600},
	}
	for _, p := range perms {
		fi, err := os.Stat(filepath.Join(string(d), p.name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != p.want {
			t.Errorf("%s mode %v, want %v", p.name, fi.Mode(), p.want)
		}
	}
	entries, err := os.ReadDir(string(d))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 4 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want the 4 files and no temporaries", names)
	}
}

func TestDirLoadMissing(t *testing.T) {
	d := pki.Dir(t.TempDir())
	if _, _, _, err := d.Load(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of an empty dir: %v, want os.ErrNotExist", err)
	}
}
