package metrics

import (
	"context"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// UnaryServerInterceptor counts and times the unary calls of a gRPC
// server. Put it first in the chain so that it sees the status code the
// client gets.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := h(ctx, req)
		m.observeRequest(info.FullMethod, time.Since(start), err)
		return resp, err
	}
}

// StreamServerInterceptor counts and times the streams of a gRPC server.
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		start := time.Now()
		err := h(srv, ss)
		m.observeRequest(info.FullMethod, time.Since(start), err)
		return err
	}
}

func (m *Metrics) observeRequest(method string, took time.Duration, err error) {
	if m == nil {
		return
	}
	m.apiRequests.WithLabelValues(method, status.Code(err).String()).Inc()
	m.apiLatency.WithLabelValues(method).Observe(took.Seconds())
}

// ServerOptions are the gRPC server options that put the interceptors
// first in a server's chains.
func (m *Metrics) ServerOptions() []grpc.ServerOption {
	if m == nil {
		return nil
	}
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(m.StreamServerInterceptor()),
	}
}
