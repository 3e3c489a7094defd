package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// procKB reads a "Name:  N kB" line of /proc/pid/status.
func procKB(t *testing.T, pid int, name string) int64 {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+":"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatalf("/proc/%d/status %s: %v", pid, name, err)
			}
			return n
		}
	}
	t.Fatalf("/proc/%d/status has no %s", pid, name)
	return 0
}

// TestEventsLaggardsAreBoundedInBytes opens many event streams that never
// read and updates a 60 KB spec many times: the agent's peak RSS must stay
// bounded, and each laggard, once it reads, gets the end-of-stream reason.
func TestEventsLaggardsAreBoundedInBytes(t *testing.T) {
	const (
		subscribers = 1000
		conns       = 20
		updates     = 160
	)
	a, _ := startAgent(t, "")
	c := a.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute) // a bound on a hung test, not a timing: the suite runs in parallel
	defer cancel()
	if _, err := c.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: bigSpec("big")}); err != nil {
		t.Fatal(err)
	}

	var clients []apiv1.WarrenClient
	for range conns {
		conn, err := grpc.NewClient("unix://"+a.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		clients = append(clients, apiv1.NewWarrenClient(conn))
	}
	streams := make([]apiv1.Warren_EventsClient, subscribers)
	var wg sync.WaitGroup
	errs := make(chan error, subscribers)
	for i := range subscribers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := clients[i%conns].Events(ctx, &apiv1.EventsRequest{Kinds: []string{"service"}})
			if err == nil {
				_, err = s.Header() // subscribed once headers arrive
			}
			if err != nil {
				errs <- err
				return
			}
			streams[i] = s
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("subscribe: %v", err)
	}
	// A few more never read at all: their window stays 64 KiB.
	stalledConn, err := grpc.NewClient("unix://"+a.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stalledConn.Close() })
	var stalled []apiv1.Warren_EventsClient
	for range 5 {
		s, err := apiv1.NewWarrenClient(stalledConn).Events(ctx, &apiv1.EventsRequest{Kinds: []string{"service"}})
		if err == nil {
			_, err = s.Header()
		}
		if err != nil {
			t.Fatalf("subscribe: %v", err)
		}
		stalled = append(stalled, s)
	}
	before := procKB(t, a.PID(), "VmRSS")

	for i := range updates {
		spec := bigSpec("big")
		spec.Env = map[string]string{"N": strconv.Itoa(i)}
		if _, err := c.UpdateService(ctx, &apiv1.UpdateServiceRequest{NameOrId: "big", Spec: spec}); err != nil {
			t.Fatalf("update %d: %v", i, err)
		}
	}
	peak := procKB(t, a.PID(), "VmHWM")
	t.Logf("agent RSS with %d subscribers: %d MiB before %d updates of a 60 KB spec, peak %d MiB", subscribers, before>>10, updates, peak>>10)

	// Every stream, reading now, gets events in order and then, when it
	// fell behind, the reason; the stalled ones (a small fixed window)
	// always fall behind.
	readAll := func(i int, s apiv1.Warren_EventsClient) (int, error) {
		for n := 0; ; n++ {
			if n == updates {
				return n, nil // kept up: the broker never dropped it
			}
			if _, err := s.Recv(); err != nil {
				if status.Code(err) != codes.ResourceExhausted || !strings.Contains(status.Convert(err).Message(), "fell behind by more than 4 MiB") {
					t.Fatalf("subscriber %d: after %d events: %v, want ResourceExhausted: fell behind by more than 4 MiB", i, n, err)
				}
				return n, err
			}
		}
	}
	for i, s := range stalled {
		if n, err := readAll(i, s); err == nil {
			t.Fatalf("stalled subscriber %d got all %d events, want it dropped", i, n)
		} else if i == 0 {
			t.Logf("stalled subscriber: %d events, then %v", n, err)
		}
	}
	dropped := 0
	for i, s := range streams[:50] {
		if _, err := readAll(i, s); err != nil {
			dropped++
		}
	}
	t.Logf("%d of the first 50 default subscribers were dropped", dropped)
	// Measured on 2 cores: 106 MiB with the bound and shared event bytes,
	// 3.2 GiB without (each stream marshaling its own copy into gRPC).
	if limit := int64(512 << 10); peak > limit { // KiB
		t.Fatalf("agent peak RSS %d MiB is over %d MiB", peak>>10, limit>>10)
	}
}
