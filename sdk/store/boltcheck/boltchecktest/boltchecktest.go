// Package boltchecktest damages bbolt files the way disks and crashes do,
// for tests of what a program does with a damaged store file or Raft log.
// The files are real bbolt files; the damage is written into them.
package boltchecktest

import (
	"os"
	"testing"

	bbolt "go.etcd.io/bbolt"
)

// FlipPages flips (XOR 0xff) n bytes in each of pages in-use pages of the
// closed bbolt file at path: the page headers' flags and item count, which
// bbolt trusts when it walks the tree. The pages are branch and leaf pages
// spread over the file; FlipPages returns their IDs and fails the test when
// the file has fewer in-use pages than asked.
func FlipPages(t testing.TB, path string, pages, n int) []int {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, PreLoadFreelist: true})
	if err != nil {
		t.Fatalf("open %s to find its pages: %v", path, err)
	}
	pageSize := db.Info().PageSize
	var used []int
	err = db.View(func(tx *bbolt.Tx) error {
		for id := 2; ; id++ {
			p, err := tx.Page(id)
			if err != nil || p == nil {
				return err
			}
			if p.Type == "leaf" || p.Type == "branch" {
				used = append(used, id)
			}
			id += p.OverflowCount
		}
	})
	db.Close()
	if err != nil {
		t.Fatalf("list the pages of %s: %v", path, err)
	}
	if len(used) < pages {
		t.Fatalf("%s has %d branch and leaf pages, fewer than the %d to damage", path, len(used), pages)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hit []int
	for i := range pages {
		id := used[i*len(used)/pages]
		buf := make([]byte, n)
		off := int64(id*pageSize + 8) // after the page ID: flags, count, overflow
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		for j := range buf {
			buf[j] ^= 0xff
		}
		if _, err := f.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
		hit = append(hit, id)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	return hit
}

// Truncate cuts the closed bbolt file at path to keep (0 < keep < 1) of the
// pages in use (bbolt grows a file ahead of its use: cutting only that
// space damages nothing), as a crash of a filesystem without data
// journaling or a bad copy leaves it. It returns the new size.
func Truncate(t testing.TB, path string, keep float64) int64 {
	t.Helper()
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open %s to find its size: %v", path, err)
	}
	var used int64
	_ = db.View(func(tx *bbolt.Tx) error { used = tx.Size(); return nil })
	pageSize := int64(db.Info().PageSize)
	db.Close()
	size := max(2*pageSize, int64(float64(used)*keep)/pageSize*pageSize)
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	return size
}
