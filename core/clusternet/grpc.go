package clusternet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/warrenorch/warren/core/pki"
)

// ErrNoCertificate is returned (wrapped) by PeerIdentity when the caller
// presented no verified client certificate (a joining node, or a connection
// that is not TLS).
var ErrNoCertificate = errors.New("no client certificate")

// ServerCredentials returns the gRPC transport credentials for the connections
// of GRPCListener. They are handshaken already, so ServerHandshake does not
// handshake again: it reports the connection's TLS state as a
// credentials.TLSInfo (so peer.FromContext and PeerIdentity work in
// handlers).
func (m *Mux) ServerCredentials() credentials.TransportCredentials { return muxCreds{} }

// muxCreds are the server-side gRPC credentials for pre-handshaken conns.
type muxCreds struct{}

func (muxCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("clusternet: Mux.ServerCredentials are for serving only; dial with ClientCredentials")
}

func (muxCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc, ok := conn.(interface{ ConnectionState() tls.ConnectionState })
	if !ok {
		return nil, nil, fmt.Errorf("clusternet: connection from %s is %T, not a handshaken TLS connection (serve Mux.GRPCListener)", conn.RemoteAddr(), conn)
	}
	cs := tc.ConnectionState()
	if !cs.HandshakeComplete {
		return nil, nil, fmt.Errorf("clusternet: connection from %s has not completed its TLS handshake", conn.RemoteAddr())
	}
	return conn, credentials.TLSInfo{
		State:          cs,
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

func (muxCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.3"}
}

func (c muxCreds) Clone() credentials.TransportCredentials { return c }

func (muxCreds) OverrideServerName(string) error { return nil }

// ClientCredentials returns gRPC transport credentials for dialing managers
// with creds: credentials.NewTLS(creds.ClientConfig("h2")). The server is
// checked against pki.ManagerServerName whatever address is dialed.
func ClientCredentials(creds *pki.Creds) credentials.TransportCredentials {
	return credentials.NewTLS(creds.ClientConfig("h2"))
}

// PeerIdentity returns the verified identity of the gRPC caller in ctx. The
// error wraps ErrNoCertificate when the caller presented no verified
// certificate.
func PeerIdentity(ctx context.Context) (pki.Identity, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return pki.Identity{}, fmt.Errorf("no peer in context: %w", ErrNoCertificate)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return pki.Identity{}, fmt.Errorf("caller %s: connection is not TLS: %w", p.Addr, ErrNoCertificate)
	}
	id, err := verifiedIdentity(info.State)
	if err != nil {
		return pki.Identity{}, fmt.Errorf("caller %s: %w", p.Addr, err)
	}
	return id, nil
}

// verifiedIdentity is the identity of the verified client certificate of a
// server-side connection.
func verifiedIdentity(cs tls.ConnectionState) (pki.Identity, error) {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return pki.Identity{}, ErrNoCertificate
	}
	return pki.IdentityOf(cs.VerifiedChains[0][0])
}

// TransportBufferBytes is the size of the read and of the write buffer of
// each gRPC connection on the cluster port, on both sides. Workers'
// messages are small (heartbeats, status batches, assignments of a few
// tasks), and a leader holds one connection per node: gRPC's 32 KiB
// defaults cost a 1,000-node leader ~40 MiB of heap (docs/benchmarks.md).
// Larger messages still go through, in more reads.
const TransportBufferBytes = 8 << 10

// ServerBufferOptions are the buffer options of every gRPC server on the
// cluster port.
func ServerBufferOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ReadBufferSize(TransportBufferBytes), grpc.WriteBufferSize(TransportBufferBytes)}
}

// DialBufferOptions are the buffer options of every gRPC client of the
// cluster port.
func DialBufferOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithReadBufferSize(TransportBufferBytes), grpc.WithWriteBufferSize(TransportBufferBytes)}
}
