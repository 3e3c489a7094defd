package cluster

import (
	"context"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/ratelimit"
)

// Default limits of failed joins per source address: 10 at once, then one
// more every 6 s (10 a minute).
const (
	DefaultJoinFailureBurst = 10
	DefaultJoinFailureEvery = 6 * time.Second
)

// JoinLimiter logs the joins that fail and limits them per source IP
// address with a token bucket: each failure that is the caller's fault
// (wrong token, bad request, name taken) takes a token, and a source with none left is answered ResourceExhausted
// without its request being looked at. Joins that succeed cost nothing, so
// a fleet joining from behind one address is not slowed down. Only joins
// from callers without a certificate are counted: a join a manager
// forwards was counted where it arrived. Its methods are safe for
// concurrent use.
type JoinLimiter struct {
	every    time.Duration
	failures *ratelimit.Keyed
	logger   hclog.Logger
	log      ratelimit.Sometimes
}

// NewJoinLimiter returns a JoinLimiter allowing burst failed joins per
// source, and one more each every. now is the clock (nil: time.Now).
func NewJoinLimiter(burst int, every time.Duration, now func() time.Time, logger hclog.Logger) *JoinLimiter {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &JoinLimiter{
		every:    every,
		failures: ratelimit.NewKeyed(float64(time.Second)/float64(every), burst, now),
		logger:   logger,
		log:      ratelimit.Sometimes{Every: 5 * time.Second},
	}
}

// guard runs the Join handler h for a caller without a certificate.
func (l *JoinLimiter) guard(ctx context.Context, req any, h grpc.UnaryHandler) (any, error) {
	src := "unknown"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		src = p.Addr.String()
		if host, _, err := net.SplitHostPort(src); err == nil {
			src = host
		}
	}
	if l.failures.Empty(src) {
		l.logFailure(src, req, "too many failed joins from this address")
		return nil, status.Errorf(codes.ResourceExhausted,
			"too many failed joins from %s: wait (one more is allowed every %v) and check the join token", src, l.every)
	}
	resp, err := h(ctx, req)
	if err != nil {
		if callersFault(err) {
			l.failures.Take(src)
		}
		l.logFailure(src, req, err.Error())
	}
	return resp, err
}

// callersFault reports whether a failed join was the caller's doing (its
// token or request), not the cluster's (no leader, say): only those count.
func callersFault(err error) bool {
	switch status.Code(err) {
	case codes.InvalidArgument, codes.PermissionDenied, codes.AlreadyExists, codes.FailedPrecondition, codes.Unauthenticated:
		return true
	}
	return false
}

func (l *JoinLimiter) logFailure(src string, req any, reason string) {
	jr, _ := req.(*apiv1.JoinRequest)
	l.log.Do(func(suppressed int) {
		l.logger.Warn("join refused", "source", src, "node", jr.GetName(), "node_id", jr.GetNodeId(),
			"reason", reason, "more_since_last_log", suppressed)
	})
}
