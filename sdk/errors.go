package sdk

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Sentinel errors shared by the host and every plugin. Wrap them with the
// identifier they concern, fmt.Errorf("task %q: %w", id, sdk.ErrNotFound),
// and they keep their identity across the gRPC wire: errors.Is works on the
// other side.
var (
	// ErrNotFound: the named object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrAlreadyExists: an object with that name or ID exists already.
	ErrAlreadyExists = errors.New("already exists")
	// ErrConflict: the call conflicts with the current state (a stale
	// version, a concurrent change).
	ErrConflict = errors.New("conflict")
	// ErrInvalidArgument: the request itself is malformed or out of range.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrFailedPrecondition: the request is well-formed but the system is not
	// in a state that allows it (e.g. Configure was not called yet).
	ErrFailedPrecondition = errors.New("failed precondition")
	// ErrUnsupported: the plugin does not implement this feature. Plugins
	// return it instead of pretending.
	ErrUnsupported = errors.New("unsupported")
	// ErrPluginUnavailable: the plugin process is gone or not answering
	// (gRPC Unavailable). The host restarts it; the caller may retry.
	ErrPluginUnavailable = errors.New("plugin unavailable")
	// ErrDataLoss: the plugin's durable data is damaged or unreadable (gRPC
	// DataLoss): it must not be acted on. The error names what is damaged
	// (a file path) and what was found.
	ErrDataLoss = errors.New("data loss")
	// ErrInternal: anything else that went wrong inside the plugin.
	ErrInternal = errors.New("internal error")
)

var codeOf = []struct {
	err  error
	code codes.Code
}{
	{ErrNotFound, codes.NotFound},
	{ErrAlreadyExists, codes.AlreadyExists},
	{ErrConflict, codes.Aborted},
	{ErrInvalidArgument, codes.InvalidArgument},
	{ErrFailedPrecondition, codes.FailedPrecondition},
	{ErrUnsupported, codes.Unimplemented},
	{ErrPluginUnavailable, codes.Unavailable},
	{ErrDataLoss, codes.DataLoss},
	{context.DeadlineExceeded, codes.DeadlineExceeded},
	{context.Canceled, codes.Canceled},
}

// Code returns the gRPC code that stands for err.
func Code(err error) codes.Code {
	if err == nil {
		return codes.OK
	}
	for _, c := range codeOf {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	if s, ok := status.FromError(err); ok {
		return s.Code()
	}
	return codes.Unknown
}

// ToStatus converts err into a gRPC status error carrying its message and
// the code of the sentinel it wraps. A nil error stays nil.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	return status.Error(Code(err), err.Error())
}

// FromStatus converts a gRPC status error back into an error that wraps the
// matching sentinel, keeping the original message. A nil error stays nil.
func FromStatus(err error) error {
	if err == nil {
		return nil
	}
	s, ok := status.FromError(err)
	if !ok {
		return err
	}
	var kind error
	for _, c := range codeOf {
		if c.code == s.Code() {
			kind = c.err
			break
		}
	}
	if kind == nil {
		kind = ErrInternal
	}
	return &wireError{msg: s.Message(), kind: kind, code: s.Code()}
}

// wireError is an error that crossed the wire: its text is the remote
// message and it unwraps to the sentinel for its code.
type wireError struct {
	msg  string
	kind error
	code codes.Code
}

func (e *wireError) Error() string { return e.msg }
func (e *wireError) Unwrap() error { return e.kind }

// GRPCStatus lets a wireError pass through another gRPC hop unchanged.
func (e *wireError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }
