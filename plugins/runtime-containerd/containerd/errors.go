package containerd

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/warrenorch/warren/sdk"
)

// sdkSentinels are the sdk errors an error may already wrap.
var sdkSentinels = []error{
	sdk.ErrNotFound, sdk.ErrAlreadyExists, sdk.ErrConflict, sdk.ErrInvalidArgument,
	sdk.ErrFailedPrecondition, sdk.ErrUnsupported, sdk.ErrInternal,
}

// classify returns the sdk sentinel (or context error) that stands for err,
// an error from containerd's client or API. It never returns
// sdk.ErrPluginUnavailable: containerd being down is this plugin's internal
// trouble, not the plugin being gone.
func classify(err error) error {
	// containerd's errdefs reads these two codes as "unknown".
	switch status.Code(err) {
	case codes.DeadlineExceeded:
		return context.DeadlineExceeded
	case codes.Canceled:
		return context.Canceled
	}
	err = errdefs.FromGRPC(err)
	for _, s := range sdkSentinels {
		if errors.Is(err, s) {
			return s
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return context.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	case errdefs.IsNotFound(err):
		return sdk.ErrNotFound
	case errdefs.IsAlreadyExists(err):
		return sdk.ErrAlreadyExists
	case errdefs.IsInvalidArgument(err):
		return sdk.ErrInvalidArgument
	case errdefs.IsFailedPrecondition(err):
		return sdk.ErrFailedPrecondition
	case errdefs.IsNotImplemented(err):
		return sdk.ErrUnsupported
	case errdefs.IsConflict(err), errdefs.IsAborted(err):
		return sdk.ErrConflict
	}
	return sdk.ErrInternal
}

// wrapErr describes err after what was being done and makes it wrap the
// sdk sentinel of its class. Only err's text is kept: gRPC statuses from
// containerd must not cross the plugin's own wire as they are (an
// Unavailable would read as "the plugin is gone").
func wrapErr(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %v: %w", fmt.Sprintf(format, args...), errdefs.FromGRPC(err), classify(err))
}

// wrapAs is wrapErr with the sentinel chosen by the caller.
func wrapAs(kind, err error, format string, args ...any) error {
	return fmt.Errorf("%s: %v: %w", fmt.Sprintf(format, args...), errdefs.FromGRPC(err), kind)
}
