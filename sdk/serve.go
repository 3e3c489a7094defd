package sdk

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"slices"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-plugin"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	basev1 "github.com/warrenorch/warren/sdk/proto/base/v1"
)

// Handshake is the go-plugin handshake every Warren plugin shares. The magic
// cookie only keeps people from running a plugin binary by hand; it is not a
// security measure (go-plugin's AutoMTLS is).
var Handshake = plugin.HandshakeConfig{
	ProtocolVersion:  APIVersion,
	MagicCookieKey:   "WARREN_PLUGIN",
	MagicCookieValue: "3b2f8e1c-warren-plugin-v1",
}

// DispenseName is the single name every Warren plugin is served under in its
// go-plugin plugin set; the kind is learned from Info.
const DispenseName = "warren"

// MaxMessageSize bounds one gRPC message between host and plugin.
const MaxMessageSize = 16 << 20

// RegisterFunc registers a kind's gRPC service on a plugin's server.
type RegisterFunc func(s grpc.ServiceRegistrar)

// grpcPlugin is the go-plugin Plugin for every Warren plugin: its server side
// registers the base service and the kind's service; its client side hands
// back the raw connection, which the host wraps in the kind's client.
type grpcPlugin struct {
	plugin.NetRPCUnsupportedPlugin
	impl     Plugin
	register RegisterFunc
}

func (p *grpcPlugin) GRPCServer(_ *plugin.GRPCBroker, s *grpc.Server) error {
	r := newRecoverer(s, p.impl)
	basev1.RegisterPluginServer(r, &baseServer{impl: p.impl})
	p.register(r)
	return nil
}

func (p *grpcPlugin) GRPCClient(_ context.Context, _ *plugin.GRPCBroker, c *grpc.ClientConn) (any, error) {
	return c, nil
}

// PluginSets is what the host passes to go-plugin's ClientConfig as
// VersionedPlugins: one plugin set per API version the host speaks.
func PluginSets() map[int]plugin.PluginSet {
	return map[int]plugin.PluginSet{
		APIVersion: {DispenseName: &grpcPlugin{}},
	}
}

// stderr is the process's real standard error, captured before go-plugin's
// Serve replaces os.Stderr with a pipe of its own.
var stderr = os.Stderr

// Logger is what a plugin logs with: a message and key-value pairs
// ("task", id, "error", err), at a level the host keeps when it forwards
// the line into its own log. It is safe for concurrent use.
type Logger interface {
	Trace(msg string, args ...any)
	Debug(msg string, args ...any)
	Info(msg string, args ...any)
	Warn(msg string, args ...any)
	Error(msg string, args ...any)
	// Named returns a logger whose lines carry name after this one's.
	Named(name string) Logger
	// With returns a logger that adds args to every line.
	With(args ...any) Logger
}

// NewLogger returns the logger a plugin should use: JSON lines on the real
// stderr, which the host parses and forwards into its own log, with their
// levels, under the plugin's name. It may be called before or after Serve.
func NewLogger(name string) Logger {
	return hcLogger{newHCLogger(name)}
}

func newHCLogger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       name,
		Level:      hclog.Trace,
		Output:     stderr,
		JSONFormat: true,
	})
}

// hcLogger is a Logger over go-hclog, which the host's log forwarding
// reads; plugin authors see only Logger.
type hcLogger struct{ l hclog.Logger }

func (h hcLogger) Trace(msg string, args ...any) { h.l.Trace(msg, args...) }
func (h hcLogger) Debug(msg string, args ...any) { h.l.Debug(msg, args...) }
func (h hcLogger) Info(msg string, args ...any)  { h.l.Info(msg, args...) }
func (h hcLogger) Warn(msg string, args ...any)  { h.l.Warn(msg, args...) }
func (h hcLogger) Error(msg string, args ...any) { h.l.Error(msg, args...) }
func (h hcLogger) Named(name string) Logger      { return hcLogger{h.l.Named(name)} }
func (h hcLogger) With(args ...any) Logger       { return hcLogger{h.l.With(args...)} }

// Serve runs a plugin of the given kind until the host tells it to stop. The
// kind packages call it from their own Serve; plugin authors call those.
// When impl also implements io.Closer, Close is called after a clean stop.
func Serve(kind Kind, impl Plugin, register RegisterFunc) {
	info, err := impl.Info(context.Background())
	if err != nil || info.Kind != kind {
		fmt.Fprintf(os.Stderr, "warren plugin: Info must report kind %q (got %q, err %v)\n", kind, info.Kind, err)
		os.Exit(1)
	}
	plugin.Serve(&plugin.ServeConfig{
		HandshakeConfig: Handshake,
		VersionedPlugins: map[int]plugin.PluginSet{
			APIVersion: {DispenseName: &grpcPlugin{impl: impl, register: register}},
		},
		GRPCServer: func(opts []grpc.ServerOption) *grpc.Server {
			opts = append(opts, grpc.MaxRecvMsgSize(MaxMessageSize), grpc.MaxSendMsgSize(MaxMessageSize))
			return grpc.NewServer(opts...)
		},
		Logger: newHCLogger(info.Name),
	})
	// The host asked the plugin to stop (a crash never gets here): give it
	// the chance to release what it holds.
	if c, ok := impl.(io.Closer); ok {
		if err := c.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "warren plugin %s: close: %v\n", info.Name, err)
		}
	}
}

// TestConn serves impl in-process over a real go-plugin gRPC connection and
// returns the client side of it, closed when the test ends. Conformance
// suites use it; so can a plugin author's own tests.
func TestConn(t testing.TB, impl Plugin, register RegisterFunc) *grpc.ClientConn {
	t.Helper()
	client, _ := plugin.TestPluginGRPCConn(t, false, map[string]plugin.Plugin{
		DispenseName: &grpcPlugin{impl: impl, register: register},
	})
	// Closing the client tells the test server to stop itself; stopping the
	// server here as well would race with that inside go-plugin.
	t.Cleanup(func() { client.Close() })
	raw, err := client.Dispense(DispenseName)
	if err != nil {
		t.Fatalf("dispense: %v", err)
	}
	return raw.(*grpc.ClientConn)
}

// baseServer serves the base service for any Plugin.
type baseServer struct {
	basev1.UnimplementedPluginServer
	impl Plugin
}

func (s *baseServer) Info(ctx context.Context, _ *basev1.InfoRequest) (*basev1.InfoResponse, error) {
	info, err := s.impl.Info(ctx)
	if err != nil {
		return nil, ToStatus(err)
	}
	return &basev1.InfoResponse{
		Kind:        string(info.Kind),
		Name:        info.Name,
		Version:     info.Version,
		ApiVersions: info.APIVersions,
		Description: info.Description,
	}, nil
}

func (s *baseServer) ConfigSchema(ctx context.Context, _ *basev1.ConfigSchemaRequest) (*basev1.ConfigSchemaResponse, error) {
	schema, err := s.impl.ConfigSchema(ctx)
	if err != nil {
		return nil, ToStatus(err)
	}
	resp := &basev1.ConfigSchemaResponse{}
	for _, a := range schema.Attributes {
		resp.Attributes = append(resp.Attributes, &basev1.Attribute{
			Name: a.Name, Type: string(a.Type), Required: a.Required, Description: a.Description,
		})
	}
	return resp, nil
}

func (s *baseServer) Configure(ctx context.Context, req *basev1.ConfigureRequest) (*basev1.ConfigureResponse, error) {
	if err := s.impl.Configure(ctx, req.GetConfigJson()); err != nil {
		return nil, ToStatus(err)
	}
	return &basev1.ConfigureResponse{}, nil
}

// BaseClient implements Plugin over a connection to any Warren plugin. The
// kind packages embed it in their clients.
type BaseClient struct {
	rpc basev1.PluginClient
}

// NewBaseClient returns a Plugin that calls the base service on conn.
func NewBaseClient(conn grpc.ClientConnInterface) *BaseClient {
	return &BaseClient{rpc: basev1.NewPluginClient(conn)}
}

// Info calls the plugin's Info.
func (c *BaseClient) Info(ctx context.Context) (Info, error) {
	resp, err := c.rpc.Info(ctx, &basev1.InfoRequest{})
	if err != nil {
		return Info{}, FromStatus(err)
	}
	return Info{
		Kind:        Kind(resp.GetKind()),
		Name:        resp.GetName(),
		Version:     resp.GetVersion(),
		APIVersions: resp.GetApiVersions(),
		Description: resp.GetDescription(),
	}, nil
}

// ConfigSchema calls the plugin's ConfigSchema.
func (c *BaseClient) ConfigSchema(ctx context.Context) (Schema, error) {
	resp, err := c.rpc.ConfigSchema(ctx, &basev1.ConfigSchemaRequest{})
	if err != nil {
		return Schema{}, FromStatus(err)
	}
	var s Schema
	for _, a := range resp.GetAttributes() {
		s.Attributes = append(s.Attributes, Attribute{
			Name: a.GetName(), Type: AttributeType(a.GetType()), Required: a.GetRequired(), Description: a.GetDescription(),
		})
	}
	return s, nil
}

// Configure calls the plugin's Configure.
func (c *BaseClient) Configure(ctx context.Context, configJSON []byte) error {
	_, err := c.rpc.Configure(ctx, &basev1.ConfigureRequest{ConfigJson: configJSON})
	return FromStatus(err)
}

// recoverer registers services with every handler wrapped so that a panic
// in a plugin's method becomes an Internal error for that call, logged
// with its stack, instead of killing the plugin process with every other
// call in flight. A panic in a goroutine the plugin starts itself is not a
// call's and still ends the process; the host restarts it.
type recoverer struct {
	grpc.ServiceRegistrar
	name string
	log  Logger
}

func newRecoverer(s grpc.ServiceRegistrar, impl Plugin) recoverer {
	name := "plugin"
	if info, err := impl.Info(context.Background()); err == nil && info.Name != "" {
		name = info.Name
	}
	return recoverer{ServiceRegistrar: s, name: name, log: NewLogger(name)}
}

// RegisterService registers a copy of desc whose handlers recover.
func (r recoverer) RegisterService(desc *grpc.ServiceDesc, impl any) {
	d := *desc
	d.Methods = slices.Clone(desc.Methods)
	for i := range d.Methods {
		method, h := "/"+desc.ServiceName+"/"+d.Methods[i].MethodName, d.Methods[i].Handler
		d.Methods[i].Handler = func(srv any, ctx context.Context, dec func(any) error, in grpc.UnaryServerInterceptor) (resp any, err error) {
			defer r.recover(method, &err)
			return h(srv, ctx, dec, in)
		}
	}
	d.Streams = slices.Clone(desc.Streams)
	for i := range d.Streams {
		method, h := "/"+desc.ServiceName+"/"+d.Streams[i].StreamName, d.Streams[i].Handler
		d.Streams[i].Handler = func(srv any, stream grpc.ServerStream) (err error) {
			defer r.recover(method, &err)
			return h(srv, stream)
		}
	}
	r.ServiceRegistrar.RegisterService(&d, impl)
}

// recover, deferred in a handler, turns a panic into the call's error.
func (r recoverer) recover(method string, err *error) {
	v := recover()
	if v == nil {
		return
	}
	r.log.Error("panic in a call, answered with an internal error", "method", method, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
	*err = status.Errorf(codes.Internal, "plugin %s: panic in %s: %v (the stack is in the plugin's log)", r.name, method, v)
}
