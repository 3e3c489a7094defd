package cluster_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/cluster"
	"github.com/warrenorch/warren/core/clusternet"
	"github.com/warrenorch/warren/core/pki"
	"github.com/warrenorch/warren/core/pki/pkitest"
	"github.com/warrenorch/warren/core/state"
)

// clock is a settable clock for the limiter.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// TestFailedJoinsAreLimited sends bad joins over real TLS without a client
// certificate to the NodeCA service behind a real cluster port: after the
// burst, the source gets ResourceExhausted; another source still gets its
// answer; the bucket refills with time (issue 9, minor point).
func TestFailedJoinsAreLimited(t *testing.T) {
	const burst, every = 5, 6 * time.Second
	c := pkitest.NewCluster(t, "c1")
	mux, err := clusternet.Listen("127.0.0.1:0", c.Creds(t, "m1", pki.RoleManager), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mux.Close() })
	clk := &clock{now: time.Unix(1_000_000, 0)}
	authz := &cluster.Authorizer{State: state.New(), Joins: cluster.NewJoinLimiter(burst, every, clk.Now, hclog.NewNullLogger())}
	srv := grpc.NewServer(grpc.Creds(mux.ServerCredentials()), grpc.ChainUnaryInterceptor(authz.UnaryInterceptor))
	apiv1.RegisterNodeCAServer(srv, cluster.NewServices(cluster.Deps{State: state.New()}))
	done := make(chan error, 1)
	go func() { done <- srv.Serve(mux.GRPCListener()) }()
	t.Cleanup(func() {
		srv.Stop()
		<-done
	})

	joinFrom := func(src net.IP) apiv1.NodeCAClient {
		dial := func(ctx context.Context, a string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}}
			return d.DialContext(ctx, "tcp", a)
		}
		tc := credentials.NewTLS(pki.JoinConfig(pki.Digest(c.CA.Cert.Raw), nil, "h2"))
		cc, err := grpc.NewClient(mux.Addr().String(), grpc.WithTransportCredentials(tc), grpc.WithContextDialer(dial))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return apiv1.NewNodeCAClient(cc)
	}
	bad := &apiv1.JoinRequest{Token: "not-a-token", Name: "intruder", NodeId: "intruder-1", Addr: "127.0.0.2:7420", Csr: []byte{1}}
	join := func(cl apiv1.NodeCAClient) codes.Code {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := cl.Join(ctx, bad)
		return status.Code(err)
	}

	attacker := joinFrom(net.IPv4(127, 0, 0, 2))
	for i := range burst {
		if got := join(attacker); got != codes.InvalidArgument {
			t.Fatalf("bad join %d: %v, want InvalidArgument", i+1, got)
		}
	}
	start := time.Now()
	const over = 20
	for i := range over {
		if got := join(attacker); got != codes.ResourceExhausted {
			t.Fatalf("bad join %d past the burst of %d: %v, want ResourceExhausted", burst+i+1, burst, got)
		}
	}
	t.Logf("a refused join takes %v on an open connection", time.Since(start)/over)
	// Another source is not held back by the first one's failures.
	if got := join(joinFrom(net.IPv4(127, 0, 0, 3))); got != codes.InvalidArgument {
		t.Errorf("bad join from another source: %v, want InvalidArgument", got)
	}
	// One more failure is allowed every `every`.
	clk.Add(every)
	if got := join(attacker); got != codes.InvalidArgument {
		t.Errorf("bad join after %v: %v, want InvalidArgument", every, got)
	}
	if got := join(attacker); got != codes.ResourceExhausted {
		t.Errorf("second bad join after %v: %v, want ResourceExhausted", every, got)
	}
}
