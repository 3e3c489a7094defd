package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/warrenorch/warren/sdk"
	runtimev1 "github.com/warrenorch/warren/sdk/proto/runtime/v1"
)

// chunkBytes bounds the data in one ImportImage or TaskLogs message.
const chunkBytes = 1 << 20

// subscribedHeader is the header TaskEvents sends once the subscription is
// in place, so the client returns only when no later event can be missed.
const subscribedHeader = "warren-subscribed"

// eventBuffer is how many events the client side buffers for a subscriber.
const eventBuffer = 64

// Serve runs impl as a runtime plugin process. Call it from main.
func Serve(impl Runtime) {
	sdk.Serve(sdk.KindRuntime, impl, Register(impl))
}

// Register returns the function that registers impl's runtime service on a
// gRPC server.
func Register(impl Runtime) sdk.RegisterFunc {
	return func(s grpc.ServiceRegistrar) { runtimev1.RegisterRuntimeServer(s, &server{impl: impl}) }
}

// NewClient returns a Runtime that calls a runtime plugin over conn.
func NewClient(conn grpc.ClientConnInterface) Runtime {
	return &client{BaseClient: sdk.NewBaseClient(conn), rpc: runtimev1.NewRuntimeClient(conn)}
}

type server struct {
	runtimev1.UnimplementedRuntimeServer
	impl Runtime
}

func (s *server) Health(ctx context.Context, _ *runtimev1.HealthRequest) (*runtimev1.HealthResponse, error) {
	if err := s.impl.Health(ctx); err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &runtimev1.HealthResponse{}, nil
}

func (s *server) Fingerprint(ctx context.Context, _ *runtimev1.FingerprintRequest) (*runtimev1.FingerprintResponse, error) {
	fp, err := s.impl.Fingerprint(ctx)
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return fingerprintToPB(fp), nil
}

func (s *server) EnsureImage(ctx context.Context, req *runtimev1.EnsureImageRequest) (*runtimev1.EnsureImageResponse, error) {
	img, err := s.impl.EnsureImage(ctx, req.GetRef(), req.GetAlwaysPull())
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &runtimev1.EnsureImageResponse{Image: imageToPB(img)}, nil
}

func (s *server) ListImages(ctx context.Context, _ *runtimev1.ListImagesRequest) (*runtimev1.ListImagesResponse, error) {
	imgs, err := s.impl.ListImages(ctx)
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	out := &runtimev1.ListImagesResponse{}
	for _, img := range imgs {
		out.Images = append(out.Images, imageToPB(img))
	}
	return out, nil
}

func (s *server) ImportImage(stream runtimev1.Runtime_ImportImageServer) error {
	r := &chunkReader{recv: func() ([]byte, error) {
		chunk, err := stream.Recv()
		return chunk.GetData(), err
	}}
	imgs, err := s.impl.ImportImage(stream.Context(), r)
	if err != nil {
		return sdk.ToStatus(err)
	}
	resp := &runtimev1.ImportImageResponse{}
	for _, img := range imgs {
		resp.Images = append(resp.Images, imageToPB(img))
	}
	return stream.SendAndClose(resp)
}

func (s *server) StartTask(ctx context.Context, req *runtimev1.StartTaskRequest) (*runtimev1.StartTaskResponse, error) {
	h, st, err := s.impl.StartTask(ctx, specFromPB(req.GetSpec()))
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &runtimev1.StartTaskResponse{Handle: handleToPB(h), Status: statusToPB(st)}, nil
}

func (s *server) StopTask(ctx context.Context, req *runtimev1.StopTaskRequest) (*runtimev1.StopTaskResponse, error) {
	st, err := s.impl.StopTask(ctx, req.GetTaskId(), durationFromPB(req.GetGracePeriod()))
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &runtimev1.StopTaskResponse{Status: statusToPB(st)}, nil
}

func (s *server) DestroyTask(ctx context.Context, req *runtimev1.DestroyTaskRequest) (*runtimev1.DestroyTaskResponse, error) {
	if err := s.impl.DestroyTask(ctx, req.GetTaskId(), req.GetForce()); err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &runtimev1.DestroyTaskResponse{}, nil
}

func (s *server) InspectTask(ctx context.Context, req *runtimev1.InspectTaskRequest) (*runtimev1.InspectTaskResponse, error) {
	st, err := s.impl.InspectTask(ctx, req.GetTaskId())
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &runtimev1.InspectTaskResponse{Status: statusToPB(st)}, nil
}

func (s *server) TaskStats(ctx context.Context, req *runtimev1.TaskStatsRequest) (*runtimev1.TaskStatsResponse, error) {
	st, err := s.impl.TaskStats(ctx, req.GetTaskId())
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &runtimev1.TaskStatsResponse{CpuUsageNs: st.CPUUsageNanos, MemoryBytes: st.MemoryBytes, MemoryLimitBytes: st.MemoryLimitBytes}, nil
}

func (s *server) RecoverTask(ctx context.Context, req *runtimev1.RecoverTaskRequest) (*runtimev1.RecoverTaskResponse, error) {
	st, err := s.impl.RecoverTask(ctx, handleFromPB(req.GetHandle()))
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	return &runtimev1.RecoverTaskResponse{Status: statusToPB(st)}, nil
}

func (s *server) ListTasks(ctx context.Context, _ *runtimev1.ListTasksRequest) (*runtimev1.ListTasksResponse, error) {
	sts, err := s.impl.ListTasks(ctx)
	if err != nil {
		return nil, sdk.ToStatus(err)
	}
	resp := &runtimev1.ListTasksResponse{}
	for _, st := range sts {
		resp.Tasks = append(resp.Tasks, statusToPB(st))
	}
	return resp, nil
}

func (s *server) TaskEvents(_ *runtimev1.TaskEventsRequest, stream runtimev1.Runtime_TaskEventsServer) error {
	ctx := stream.Context()
	events, err := s.impl.TaskEvents(ctx)
	if err != nil {
		return sdk.ToStatus(err)
	}
	if err := stream.SendHeader(metadata.Pairs(subscribedHeader, "1")); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			if err := stream.Send(eventToPB(ev)); err != nil {
				return err
			}
		}
	}
}

func (s *server) TaskLogs(req *runtimev1.TaskLogsRequest, stream runtimev1.Runtime_TaskLogsServer) error {
	lr := LogsRequest{TaskID: req.GetTaskId(), Follow: req.GetFollow(), Tail: req.GetTail(), Timestamps: req.GetTimestamps()}
	if ns := req.GetSinceUnixNano(); ns > 0 {
		lr.Since = time.Unix(0, ns)
	}
	err := s.impl.TaskLogs(stream.Context(), lr, func(c LogChunk) error {
		for data := c.Data; len(data) > 0; {
			n := min(len(data), chunkBytes)
			if err := stream.Send(&runtimev1.LogChunk{Stream: runtimev1.LogChunk_Stream(c.Stream), Data: data[:n]}); err != nil {
				return err
			}
			data = data[n:]
		}
		return nil
	})
	return sdk.ToStatus(err)
}

type client struct {
	*sdk.BaseClient
	rpc runtimev1.RuntimeClient
}

func (c *client) Health(ctx context.Context) error {
	_, err := c.rpc.Health(ctx, &runtimev1.HealthRequest{})
	return sdk.FromStatus(err)
}

func (c *client) Fingerprint(ctx context.Context) (Fingerprint, error) {
	resp, err := c.rpc.Fingerprint(ctx, &runtimev1.FingerprintRequest{})
	if err != nil {
		return Fingerprint{}, sdk.FromStatus(err)
	}
	return fingerprintFromPB(resp), nil
}

func (c *client) EnsureImage(ctx context.Context, ref string, alwaysPull bool) (Image, error) {
	resp, err := c.rpc.EnsureImage(ctx, &runtimev1.EnsureImageRequest{Ref: ref, AlwaysPull: alwaysPull})
	if err != nil {
		return Image{}, sdk.FromStatus(err)
	}
	return imageFromPB(resp.GetImage()), nil
}

func (c *client) ListImages(ctx context.Context) ([]Image, error) {
	resp, err := c.rpc.ListImages(ctx, &runtimev1.ListImagesRequest{})
	if err != nil {
		return nil, sdk.FromStatus(err)
	}
	out := make([]Image, 0, len(resp.GetImages()))
	for _, img := range resp.GetImages() {
		out = append(out, imageFromPB(img))
	}
	return out, nil
}

func (c *client) ImportImage(ctx context.Context, r io.Reader) ([]Image, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.ImportImage(ctx)
	if err != nil {
		return nil, sdk.FromStatus(err)
	}
	buf := make([]byte, chunkBytes)
	for {
		n, err := fillChunk(r, buf)
		if n > 0 {
			if serr := stream.Send(&runtimev1.ImportImageChunk{Data: buf[:n]}); serr != nil {
				if errors.Is(serr, io.EOF) {
					break // the server ended the call; CloseAndRecv has its answer
				}
				return nil, sdk.FromStatus(serr)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("import image: reading archive: %w", err)
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, sdk.FromStatus(err)
	}
	imgs := make([]Image, 0, len(resp.GetImages()))
	for _, img := range resp.GetImages() {
		imgs = append(imgs, imageFromPB(img))
	}
	return imgs, nil
}

// importFlushAfter is how long ImportImage's client collects a slow
// archive's bytes before it sends what it has: the runtime bounds an import
// by its progress (see Runtime), so bytes must not wait for a full chunk.
const importFlushAfter = 100 * time.Millisecond

// fillChunk reads r into buf until buf is full, r ends or fails, or reading
// has taken importFlushAfter; it returns the bytes read and io.EOF (or
// io.ErrUnexpectedEOF) at the end, as io.ReadFull does.
func fillChunk(r io.Reader, buf []byte) (int, error) {
	start := time.Now()
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		switch {
		case err == io.EOF && n > 0:
			return n, io.ErrUnexpectedEOF
		case err != nil:
			return n, err
		case time.Since(start) >= importFlushAfter && n > 0:
			return n, nil
		}
	}
	return n, nil
}

func (c *client) StartTask(ctx context.Context, spec TaskSpec) (TaskHandle, TaskStatus, error) {
	resp, err := c.rpc.StartTask(ctx, &runtimev1.StartTaskRequest{Spec: specToPB(spec)})
	if err != nil {
		return TaskHandle{}, TaskStatus{}, sdk.FromStatus(err)
	}
	return handleFromPB(resp.GetHandle()), statusFromPB(resp.GetStatus()), nil
}

func (c *client) StopTask(ctx context.Context, taskID string, grace time.Duration) (TaskStatus, error) {
	resp, err := c.rpc.StopTask(ctx, &runtimev1.StopTaskRequest{TaskId: taskID, GracePeriod: durationToPB(grace)})
	if err != nil {
		return TaskStatus{}, sdk.FromStatus(err)
	}
	return statusFromPB(resp.GetStatus()), nil
}

func (c *client) DestroyTask(ctx context.Context, taskID string, force bool) error {
	_, err := c.rpc.DestroyTask(ctx, &runtimev1.DestroyTaskRequest{TaskId: taskID, Force: force})
	return sdk.FromStatus(err)
}

func (c *client) InspectTask(ctx context.Context, taskID string) (TaskStatus, error) {
	resp, err := c.rpc.InspectTask(ctx, &runtimev1.InspectTaskRequest{TaskId: taskID})
	if err != nil {
		return TaskStatus{}, sdk.FromStatus(err)
	}
	return statusFromPB(resp.GetStatus()), nil
}

func (c *client) TaskStats(ctx context.Context, taskID string) (TaskStats, error) {
	resp, err := c.rpc.TaskStats(ctx, &runtimev1.TaskStatsRequest{TaskId: taskID})
	if err != nil {
		return TaskStats{}, sdk.FromStatus(err)
	}
	return TaskStats{CPUUsageNanos: resp.GetCpuUsageNs(), MemoryBytes: resp.GetMemoryBytes(), MemoryLimitBytes: resp.GetMemoryLimitBytes()}, nil
}

func (c *client) RecoverTask(ctx context.Context, h TaskHandle) (TaskStatus, error) {
	resp, err := c.rpc.RecoverTask(ctx, &runtimev1.RecoverTaskRequest{Handle: handleToPB(h)})
	if err != nil {
		return TaskStatus{}, sdk.FromStatus(err)
	}
	return statusFromPB(resp.GetStatus()), nil
}

func (c *client) ListTasks(ctx context.Context) ([]TaskStatus, error) {
	resp, err := c.rpc.ListTasks(ctx, &runtimev1.ListTasksRequest{})
	if err != nil {
		return nil, sdk.FromStatus(err)
	}
	out := make([]TaskStatus, 0, len(resp.GetTasks()))
	for _, st := range resp.GetTasks() {
		out = append(out, statusFromPB(st))
	}
	return out, nil
}

func (c *client) TaskEvents(ctx context.Context) (<-chan TaskEvent, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := c.rpc.TaskEvents(ctx, &runtimev1.TaskEventsRequest{})
	if err != nil {
		cancel()
		return nil, sdk.FromStatus(err)
	}
	// Header blocks until the server has subscribed. Without the marker the
	// call failed (or ended) first, and Recv has the reason.
	if md, _ := stream.Header(); len(md.Get(subscribedHeader)) == 0 {
		defer cancel()
		_, err := stream.Recv()
		if err == nil || err == io.EOF {
			return nil, fmt.Errorf("task events: stream ended before subscribing: %w", sdk.ErrInternal)
		}
		return nil, sdk.FromStatus(err)
	}
	out := make(chan TaskEvent, eventBuffer)
	go func() {
		defer cancel()
		defer close(out)
		for {
			ev, err := stream.Recv()
			if err != nil {
				return
			}
			select {
			case out <- eventFromPB(ev):
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

func (c *client) TaskLogs(ctx context.Context, req LogsRequest, fn func(LogChunk) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.rpc.TaskLogs(ctx, &runtimev1.TaskLogsRequest{TaskId: req.TaskID, Follow: req.Follow, Tail: req.Tail, SinceUnixNano: unixNano(req.Since), Timestamps: req.Timestamps})
	if err != nil {
		return sdk.FromStatus(err)
	}
	for {
		chunk, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return sdk.FromStatus(err)
		}
		if err := fn(LogChunk{Stream: LogStream(chunk.GetStream()), Data: chunk.GetData()}); err != nil {
			return err
		}
	}
}

// chunkReader turns a stream of byte chunks into an io.Reader.
type chunkReader struct {
	recv func() ([]byte, error)
	buf  []byte
	err  error
}

func (r *chunkReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.buf, r.err = r.recv()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	return n, nil
}

// Conversions between the Go types and the protocol's. Zero times and
// durations travel as absent fields.

func specToPB(s TaskSpec) *runtimev1.TaskSpec {
	pb := &runtimev1.TaskSpec{
		TaskId:          s.TaskID,
		Image:           s.Image,
		Command:         s.Command,
		Args:            s.Args,
		Env:             s.Env,
		WorkingDir:      s.WorkingDir,
		User:            s.User,
		Labels:          s.Labels,
		StopSignal:      s.StopSignal,
		StopGracePeriod: durationToPB(s.StopGracePeriod),
		NetnsPath:       s.NetnsPath,
		Hostname:        s.Hostname,
		HostNetwork:     s.HostNetwork,
	}
	if s.Limits != (Resources{}) {
		pb.Limits = &runtimev1.Resources{NanoCpus: s.Limits.NanoCPUs, MemoryBytes: s.Limits.MemoryBytes}
	}
	for _, m := range s.Mounts {
		pb.Mounts = append(pb.Mounts, &runtimev1.Mount{Type: string(m.Type), Source: m.Source, Target: m.Target, ReadOnly: m.ReadOnly, TmpfsSizeBytes: m.TmpfsSize, TmpfsMode: m.TmpfsMode})
	}
	return pb
}

func specFromPB(pb *runtimev1.TaskSpec) TaskSpec {
	s := TaskSpec{
		TaskID:          pb.GetTaskId(),
		Image:           pb.GetImage(),
		Command:         pb.GetCommand(),
		Args:            pb.GetArgs(),
		Env:             pb.GetEnv(),
		WorkingDir:      pb.GetWorkingDir(),
		User:            pb.GetUser(),
		Labels:          pb.GetLabels(),
		Limits:          Resources{NanoCPUs: pb.GetLimits().GetNanoCpus(), MemoryBytes: pb.GetLimits().GetMemoryBytes()},
		StopSignal:      pb.GetStopSignal(),
		StopGracePeriod: durationFromPB(pb.GetStopGracePeriod()),
		NetnsPath:       pb.GetNetnsPath(),
		Hostname:        pb.GetHostname(),
		HostNetwork:     pb.GetHostNetwork(),
	}
	for _, m := range pb.GetMounts() {
		s.Mounts = append(s.Mounts, Mount{Type: MountType(m.GetType()), Source: m.GetSource(), Target: m.GetTarget(), ReadOnly: m.GetReadOnly(), TmpfsSize: m.GetTmpfsSizeBytes(), TmpfsMode: m.GetTmpfsMode()})
	}
	return s
}

func handleToPB(h TaskHandle) *runtimev1.TaskHandle {
	return &runtimev1.TaskHandle{Version: h.Version, TaskId: h.TaskID, Runtime: h.Runtime, State: h.State}
}

func handleFromPB(pb *runtimev1.TaskHandle) TaskHandle {
	return TaskHandle{Version: pb.GetVersion(), TaskID: pb.GetTaskId(), Runtime: pb.GetRuntime(), State: pb.GetState()}
}

func statusToPB(s TaskStatus) *runtimev1.TaskStatus {
	return &runtimev1.TaskStatus{
		TaskId:     s.TaskID,
		State:      runtimev1.TaskStatus_State(s.State),
		Pid:        s.PID,
		ExitCode:   s.ExitCode,
		OomKilled:  s.OOMKilled,
		Error:      s.Error,
		StartedAt:  timeToPB(s.StartedAt),
		FinishedAt: timeToPB(s.FinishedAt),
	}
}

func statusFromPB(pb *runtimev1.TaskStatus) TaskStatus {
	return TaskStatus{
		TaskID:     pb.GetTaskId(),
		State:      State(pb.GetState()),
		PID:        pb.GetPid(),
		ExitCode:   pb.GetExitCode(),
		OOMKilled:  pb.GetOomKilled(),
		Error:      pb.GetError(),
		StartedAt:  timeFromPB(pb.GetStartedAt()),
		FinishedAt: timeFromPB(pb.GetFinishedAt()),
	}
}

func eventToPB(e TaskEvent) *runtimev1.TaskEvent {
	return &runtimev1.TaskEvent{
		TaskId:   e.TaskID,
		Type:     runtimev1.TaskEvent_Type(e.Type),
		ExitCode: e.ExitCode,
		Time:     timeToPB(e.Time),
		Message:  e.Message,
	}
}

func eventFromPB(pb *runtimev1.TaskEvent) TaskEvent {
	return TaskEvent{
		TaskID:   pb.GetTaskId(),
		Type:     EventType(pb.GetType()),
		ExitCode: pb.GetExitCode(),
		Time:     timeFromPB(pb.GetTime()),
		Message:  pb.GetMessage(),
	}
}

func fingerprintToPB(f Fingerprint) *runtimev1.FingerprintResponse {
	return &runtimev1.FingerprintResponse{
		NanoCpus:       f.NanoCPUs,
		MemoryBytes:    f.MemoryBytes,
		Os:             f.OS,
		Arch:           f.Arch,
		RuntimeName:    f.RuntimeName,
		RuntimeVersion: f.RuntimeVersion,
		Attributes:     f.Attributes,
		Capabilities:   capabilitiesToPB(f.Capabilities),
	}
}

func capabilitiesToPB(cs []Capability) []string {
	out := make([]string, len(cs))
	for i, c := range cs {
		out[i] = string(c)
	}
	return out
}

func fingerprintFromPB(pb *runtimev1.FingerprintResponse) Fingerprint {
	return Fingerprint{
		NanoCPUs:       pb.GetNanoCpus(),
		MemoryBytes:    pb.GetMemoryBytes(),
		OS:             pb.GetOs(),
		Arch:           pb.GetArch(),
		RuntimeName:    pb.GetRuntimeName(),
		RuntimeVersion: pb.GetRuntimeVersion(),
		Attributes:     pb.GetAttributes(),
		Capabilities:   capabilitiesFromPB(pb.GetCapabilities()),
	}
}

func capabilitiesFromPB(ss []string) []Capability {
	if len(ss) == 0 {
		return nil
	}
	out := make([]Capability, len(ss))
	for i, s := range ss {
		out[i] = Capability(s)
	}
	return out
}

func imageToPB(img Image) *runtimev1.Image {
	out := &runtimev1.Image{Ref: img.Ref, Digest: img.Digest, Size: img.Size}
	if h := img.HealthCheck; h != nil {
		out.HealthCheck = &runtimev1.ImageHealthCheck{
			Command:     h.Command,
			Interval:    durationToPB(h.Interval),
			Timeout:     durationToPB(h.Timeout),
			StartPeriod: durationToPB(h.StartPeriod),
			Retries:     int32(h.Retries),
		}
	}
	return out
}

func imageFromPB(pb *runtimev1.Image) Image {
	out := Image{Ref: pb.GetRef(), Digest: pb.GetDigest(), Size: pb.GetSize()}
	if h := pb.GetHealthCheck(); h != nil {
		out.HealthCheck = &ImageHealthCheck{
			Command:     h.GetCommand(),
			Interval:    durationFromPB(h.GetInterval()),
			Timeout:     durationFromPB(h.GetTimeout()),
			StartPeriod: durationFromPB(h.GetStartPeriod()),
			Retries:     int(h.GetRetries()),
		}
	}
	return out
}

func durationToPB(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func durationFromPB(pb *durationpb.Duration) time.Duration {
	if pb == nil {
		return 0
	}
	return pb.AsDuration()
}

func timeToPB(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func timeFromPB(pb *timestamppb.Timestamp) time.Time {
	if pb == nil {
		return time.Time{}
	}
	return pb.AsTime()
}

// unixNano is t in nanoseconds since the epoch, 0 for the zero time.
func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}
