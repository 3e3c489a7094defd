package bench

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// nopFSM applies nothing: BenchmarkRaftFloor measures Raft and its fsynced
// log alone, the floor under Warren's write path on this machine.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, fmt.Errorf("no snapshots") }
func (nopFSM) Restore(io.ReadCloser) error         { return nil }

func BenchmarkRaftFloor64(b *testing.B) {
	dir := b.TempDir()
	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, "raft.db")})
	if err != nil {
		b.Fatal(err)
	}
	defer logs.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	tcpAddr, _ := net.ResolveTCPAddr("tcp", addr)
	trans, err := raft.NewTCPTransport(addr, tcpAddr, 3, time.Second, io.Discard)
	if err != nil {
		b.Fatal(err)
	}
	cfg := raft.DefaultConfig()
	cfg.LocalID = "n1"
	cfg.Logger = hclog.NewNullLogger()
	cfg.BatchApplyCh = true
	cfg.MaxAppendEntries = 512
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 500*time.Millisecond, 500*time.Millisecond, 250*time.Millisecond
	r, err := raft.NewRaft(cfg, nopFSM{}, logs, logs, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		b.Fatal(err)
	}
	defer r.Shutdown()
	if err := r.BootstrapCluster(raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: trans.LocalAddr()}}}).Error(); err != nil {
		b.Fatal(err)
	}
	for r.State() != raft.Leader {
		select {
		case <-r.LeaderCh():
		case <-time.After(10 * time.Second):
			b.Fatal("no leader")
		}
	}
	payload := make([]byte, 300)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(b.N) {
				if err := r.Apply(payload, 10*time.Second).Error(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}
