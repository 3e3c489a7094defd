// Package boltcheck verifies a BoltDB (go.etcd.io/bbolt) file before a
// process opens it: Warren's store-bolt plugin checks its state file with
// it, and the core its Raft log, and a third-party store kept in bbolt can
// do the same.
//
// bbolt trusts its file. On a damaged one it panics or faults, often in a
// goroutine of its own where no recover can catch it: "assertion failed:
// Page expected to be: 11, but self identifies as 0" after a truncation,
// "freepages: failed to get all reachable pages" after flipped bytes, or a
// SIGBUS reading past the end of a truncated file. Or it opens the file and
// simply does not see the data that the damage hid. So Check runs bbolt's
// own consistency check (Tx.Check: every page reachable once, no page both
// used and free, keys in order), and checks that the file holds all the
// pages its meta page counts, in a child process: the running executable
// started again, which this package's init turns into the checker before
// main runs. Whatever the damage does to the child, the caller gets an error
// naming the file and what was found.
//
// Any program that imports this package (directly or not) can be the child:
// a plugin, the warren agent, a test binary.
package boltcheck

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/warrenorch/warren/sdk"
)

// The child's environment: the file to check and how long to wait for its
// lock.
const (
	envPath    = "WARREN_BOLTCHECK_PATH"
	envTimeout = "WARREN_BOLTCHECK_TIMEOUT"
)

// The child's exit codes besides 0 (consistent). A panic exits 2 (Go's
// own), a fatal fault 2 as well.
const (
	exitDamaged = 1
	exitLocked  = 3
)

// maxReported bounds the problems the child lists; it counts all of them.
const maxReported = 5

func init() {
	if path := os.Getenv(envPath); path != "" {
		os.Exit(child(path))
	}
}

// Check verifies the bbolt file at path in a child process and returns nil
// when bbolt's check finds nothing wrong. A damaged file (bbolt's check
// reports problems, or opening or walking it panics or faults) is an error
// wrapping sdk.ErrDataLoss that names path and what was found; a file
// another process holds locked for longer than lockTimeout, one wrapping
// sdk.ErrFailedPrecondition; a missing file, one wrapping os.ErrNotExist.
// An empty file passes: bbolt opens it as a new database.
// The check reads every page of the file once: its time grows with the
// file's size.
func Check(ctx context.Context, path string, lockTimeout time.Duration) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	if fi.Size() == 0 {
		// bbolt makes an empty file a new database: what a crash right
		// after creating one leaves.
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("check %s: finding this executable to run the check: %w", path, err)
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), envPath+"="+path, envTimeout+"="+lockTimeout.String())
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("check %s: %w", path, ctx.Err())
	case !errors.As(err, &ee):
		return fmt.Errorf("check %s: running the check: %w", path, err)
	case ee.ExitCode() == exitLocked:
		return fmt.Errorf("check %s: the file is locked by another process (waited %s): %w", path, lockTimeout, sdk.ErrFailedPrecondition)
	case ee.ExitCode() == exitDamaged:
		return fmt.Errorf("%s is damaged: %s: %w", path, strings.Join(lines(stdout.String()), "; "), sdk.ErrDataLoss)
	}
	return fmt.Errorf("%s is damaged: reading it crashed bbolt (%s): %w", path, crash(stderr.String(), ee), sdk.ErrDataLoss)
}

// lines returns the non-empty lines of s.
func lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// crash picks the line of a Go crash report that says what happened.
func crash(stderr string, ee *exec.ExitError) string {
	for _, l := range lines(stderr) {
		if strings.HasPrefix(l, "panic: ") || strings.HasPrefix(l, "fatal error: ") || strings.HasPrefix(l, "unexpected fault address") {
			return l
		}
	}
	return ee.String()
}

// child is the check, run in the child process; its result is its exit code.
func child(path string) int {
	timeout, _ := time.ParseDuration(os.Getenv(envTimeout))
	if timeout <= 0 {
		timeout = time.Second
	}
	// The freelist is loaded here, in this goroutine: see walk.
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: timeout, PreLoadFreelist: true})
	if errors.Is(err, berrors.ErrTimeout) {
		return exitLocked
	}
	if err != nil {
		fmt.Printf("opening it: %v\n", err)
		return exitDamaged
	}
	defer db.Close()
	n, first := 0, []string{}
	err = db.View(func(tx *bbolt.Tx) error {
		// Pages past the end of a truncated file may all be free, which
		// Tx.Check does not look at; bbolt would still use them.
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.Size() < tx.Size() {
			n++
			first = append(first, fmt.Sprintf("the file is %d bytes, shorter than the %d bytes of pages it holds: it was truncated", fi.Size(), tx.Size()))
			return nil
		}
		walk(tx)
		for err := range tx.Check() {
			if n++; n <= maxReported {
				first = append(first, err.Error())
			}
		}
		return nil
	})
	if err != nil {
		fmt.Printf("reading it: %v\n", err)
		return exitDamaged
	}
	if n == 0 {
		return 0
	}
	if n == 1 {
		fmt.Println("1 problem found")
	} else {
		fmt.Println(strconv.Itoa(n) + " problems found")
	}
	for _, p := range first {
		fmt.Println(p)
	}
	return exitDamaged
}

// walk reads every bucket, key and value of tx, in this goroutine. Tx.Check
// runs in a goroutine of its own whose deferred close of its channel runs
// before a panic in it ends the process: the caller would see the check end
// without errors and exit 0 first. Reading everything here first makes
// every damaged page that a read would trip on panic here instead, before
// Tx.Check starts (it reads the same pages, by then known to be sound).
func walk(tx *bbolt.Tx) {
	_ = tx.ForEach(func(_ []byte, b *bbolt.Bucket) error {
		walkBucket(b)
		return nil
	})
}

func walkBucket(b *bbolt.Bucket) {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if v == nil {
			if child := b.Bucket(k); child != nil {
				walkBucket(child)
			}
			continue
		}
		if len(v) > 0 {
			// The value's last byte: its last (overflow) page is mapped.
			_ = v[len(v)-1]
		}
	}
}
