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

	"github.com/warrenorch/warren/core/raftnode"
)

// nopFSM applies nothing: BenchmarkRaftFloor measures Raft and its fsynced
// log alone, the floor under Warren's write path on this machine.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, fmt.Errorf("no snapshots") }
func (nopFSM) Restore(io.ReadCloser) error         { return nil }

// floorNode starts one Raft server with a raft-boltdb log in its own
// directory (opened as the agent opens its own), a TCP transport on
// loopback and the agent's Raft settings.
func floorNode(b *testing.B, id string) (*raft.Raft, raft.ServerAddress) {
	b.Helper()
	logs, err := raftnode.OpenLogStore(filepath.Join(b.TempDir(), "raft.db"))
	if err != nil {
		b.Fatal(err)
	}
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
	cfg.LocalID = raft.ServerID(id)
	cfg.Logger = hclog.NewNullLogger()
	cfg.BatchApplyCh = true
	cfg.MaxAppendEntries = 512
	cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 500*time.Millisecond, 500*time.Millisecond, 250*time.Millisecond
	r, err := raft.NewRaft(cfg, nopFSM{}, logs, logs, raft.NewInmemSnapshotStore(), trans)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = r.Shutdown().Error()
		_ = trans.Close()
		_ = logs.Close()
	})
	return r, trans.LocalAddr()
}

// floorApply bootstraps servers, then has 64 goroutines apply b.N 300-byte
// entries on the leader and reports writes/s.
func floorApply(b *testing.B, rafts []*raft.Raft, addrs []raft.ServerAddress) {
	var conf raft.Configuration
	for i := range rafts {
		conf.Servers = append(conf.Servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("n%d", i+1)), Address: addrs[i]})
	}
	if err := rafts[0].BootstrapCluster(conf).Error(); err != nil {
		b.Fatal(err)
	}
	var leader *raft.Raft
	deadline := time.Now().Add(30 * time.Second)
	for leader == nil {
		for _, r := range rafts {
			if r.State() == raft.Leader {
				leader = r
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
		time.Sleep(10 * time.Millisecond) // polling for the election's outcome
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
				if err := leader.Apply(payload, 10*time.Second).Error(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "writes/s")
}

func BenchmarkRaftFloor64(b *testing.B) {
	r, addr := floorNode(b, "n1")
	floorApply(b, []*raft.Raft{r}, []raft.ServerAddress{addr})
}

// BenchmarkRaftFloor3x64: three Raft servers in one process on this
// machine (loopback TCP, no TLS, three fsynced logs on the same disk), 64
// goroutines applying on the leader: the floor under a 3-manager cluster's
// writes here.
func BenchmarkRaftFloor3x64(b *testing.B) {
	var rafts []*raft.Raft
	var addrs []raft.ServerAddress
	for i := 1; i <= 3; i++ {
		r, addr := floorNode(b, fmt.Sprintf("n%d", i))
		rafts, addrs = append(rafts, r), append(addrs, addr)
	}
	floorApply(b, rafts, addrs)
}
