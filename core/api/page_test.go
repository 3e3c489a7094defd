package api_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/warrenorch/warren/core/api"
	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/core/dispatcher/dispatchertest"
)

// createServices creates services named prefix-00, prefix-01... with the
// given replicas and labels.
func (e *env) createServices(t *testing.T, prefix string, n int, replicas uint64, labels map[string]string) {
	t.Helper()
	for i := range n {
		spec := &apiv1.ServiceSpec{Name: fmt.Sprintf("%s-%02d", prefix, i), Image: "busybox", Replicas: replicas, Labels: labels}
		if _, err := e.client.CreateService(context.Background(), &apiv1.CreateServiceRequest{Spec: spec}); err != nil {
			t.Fatalf("create %s: %v", spec.GetName(), err)
		}
	}
}

// servicePages lists services page by page and returns the names of each page.
func (e *env) servicePages(t *testing.T, req *apiv1.ListServicesRequest) [][]string {
	t.Helper()
	var pages [][]string
	for {
		resp, err := e.client.ListServices(context.Background(), req)
		if err != nil {
			t.Fatalf("list services (page %d): %v", len(pages)+1, err)
		}
		if n := proto.Size(resp); n > api.MaxPageBytes+64<<10 {
			t.Fatalf("page %d is %d bytes, more than MaxPageBytes (%d) and a little framing", len(pages)+1, n, api.MaxPageBytes)
		}
		var names []string
		for _, s := range resp.GetServices() {
			names = append(names, s.GetSpec().GetName())
		}
		pages = append(pages, names)
		if resp.GetNextPageToken() == "" {
			return pages
		}
		if len(pages) > 1000 {
			t.Fatal("more than 1000 pages: the token does not advance")
		}
		req = proto.CloneOf(req)
		req.PageToken = resp.GetNextPageToken()
	}
}

func names(prefix string, from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("%s-%02d", prefix, i))
	}
	return out
}

func TestListServicesPages(t *testing.T) {
	e := newEnv(t)
	e.createServices(t, "svc", 7, 0, nil)
	e.createServices(t, "tagged", 3, 0, map[string]string{"tier": "front"})
	all := append(names("svc", 0, 7), names("tagged", 0, 3)...)
	tests := []struct {
		name      string
		req       *apiv1.ListServicesRequest
		want      []string
		wantPages int
	}{
		{"default page size: one page", &apiv1.ListServicesRequest{}, all, 1},
		{"page size 1", &apiv1.ListServicesRequest{PageSize: 1}, all, 10},
		{"page size 3", &apiv1.ListServicesRequest{PageSize: 3}, all, 4},
		{"page size a divisor", &apiv1.ListServicesRequest{PageSize: 5}, all, 2},
		{"page size above the maximum", &apiv1.ListServicesRequest{PageSize: 1 << 30}, all, 1},
		{"label filter, page size 2", &apiv1.ListServicesRequest{PageSize: 2, Labels: map[string]string{"tier": "front"}}, names("tagged", 0, 3), 2},
		{"label filter matching nothing", &apiv1.ListServicesRequest{PageSize: 2, Labels: map[string]string{"tier": "back"}}, nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pages := e.servicePages(t, tt.req)
			if len(pages) != tt.wantPages {
				t.Errorf("%d pages %v, want %d", len(pages), pages, tt.wantPages)
			}
			var got []string
			for i, p := range pages {
				if size := tt.req.GetPageSize(); size > 0 && len(p) > int(size) {
					t.Errorf("page %d has %d services, more than page_size %d", i+1, len(p), size)
				}
				got = append(got, p...)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("listed %v, want %v", got, tt.want)
			}
		})
	}
}

// TestListServicesPagesBoundedByBytes: services of nearly the largest spec
// allowed add up to more than gRPC's 4 MiB; each page stays under
// MaxPageBytes and all of them are listed.
func TestListServicesPagesBoundedByBytes(t *testing.T) {
	e := newEnv(t)
	big := map[string]string{}
	for i := range 60 {
		big[fmt.Sprintf("k%02d", i)] = strings.Repeat("v", 4000) // 60 × 4 KB: ~240 KiB
	}
	e.createServices(t, "big", 20, 0, big)
	pages := e.servicePages(t, &apiv1.ListServicesRequest{})
	if len(pages) < 3 {
		t.Errorf("%d pages for ~4.7 MiB of services, want at least 3 of at most %d bytes", len(pages), api.MaxPageBytes)
	}
	if got := slices.Concat(pages...); !slices.Equal(got, names("big", 0, 20)) {
		t.Errorf("listed %v", got)
	}
}

// TestListPagesSurviveChanges: services created or removed between two pages
// move no other service across the cursor: each one present throughout is
// listed exactly once, and one created after the cursor is listed too.
func TestListPagesSurviveChanges(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.createServices(t, "m", 6, 0, nil) // m-00 .. m-05
	first, err := e.client.ListServices(ctx, &apiv1.ListServicesRequest{PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	// Before the cursor (m-02): a new a-00 and the removal of m-01; after
	// it: a new z-00 and the removal of m-04.
	e.createServices(t, "a", 1, 0, nil)
	e.createServices(t, "z", 1, 0, nil)
	for _, name := range []string{"m-01", "m-04"} {
		if _, err := e.client.RemoveService(ctx, &apiv1.RemoveServiceRequest{NameOrId: name}); err != nil {
			t.Fatal(err)
		}
	}
	rest := e.servicePages(t, &apiv1.ListServicesRequest{PageSize: 3, PageToken: first.GetNextPageToken()})
	var got []string
	for _, s := range first.GetServices() {
		got = append(got, s.GetSpec().GetName())
	}
	got = append(got, slices.Concat(rest...)...)
	if want := []string{"m-00", "m-01", "m-02", "m-03", "m-05", "z-00"}; !slices.Equal(got, want) {
		t.Errorf("listed %v, want %v", got, want)
	}
}

func TestListTasksPages(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.createServices(t, "web", 2, 5, nil)
	dispatchertest.Eventually(t, "10 tasks", func() bool {
		resp, err := e.client.ListTasks(ctx, &apiv1.ListTasksRequest{})
		return err == nil && len(resp.GetTasks()) == 10
	})
	full, err := e.client.ListTasks(ctx, &apiv1.ListTasksRequest{All: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name  string
		req   *apiv1.ListTasksRequest
		want  int
		pages int
	}{
		{"all tasks, page size 3", &apiv1.ListTasksRequest{All: true, PageSize: 3}, 10, 4},
		{"one service by name, page size 2", &apiv1.ListTasksRequest{Service: "web-01", PageSize: 2}, 5, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req := tt.req
			var got []string
			pages := 0
			for {
				resp, err := e.client.ListTasks(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				pages++
				for _, task := range resp.GetTasks() {
					got = append(got, task.GetId())
				}
				if resp.GetNextPageToken() == "" {
					break
				}
				req = proto.CloneOf(req)
				req.PageToken = resp.GetNextPageToken()
			}
			var want []string
			for _, task := range full.GetTasks() {
				if tt.req.GetService() == "" || task.GetServiceName() == tt.req.GetService() {
					want = append(want, task.GetId())
				}
			}
			if pages != tt.pages || len(got) != tt.want || !slices.Equal(got, want) {
				t.Errorf("%d pages listing %v, want %d pages listing %v", pages, got, tt.pages, want)
			}
		})
	}
}

func TestListBadPageTokens(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.createServices(t, "web", 3, 1, nil)
	dispatchertest.Eventually(t, "3 tasks", func() bool {
		resp, err := e.client.ListTasks(ctx, &apiv1.ListTasksRequest{})
		return err == nil && len(resp.GetTasks()) == 3
	})
	svcPage, err := e.client.ListServices(ctx, &apiv1.ListServicesRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	taskPage, err := e.client.ListTasks(ctx, &apiv1.ListTasksRequest{PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	if svcPage.GetNextPageToken() == "" || taskPage.GetNextPageToken() == "" {
		t.Fatal("no next page token for a page of 1 out of 3")
	}
	tok := svcPage.GetNextPageToken()
	tests := []struct {
		name string
		call func() error
		msg  string
	}{
		{"not base64", func() error {
			_, err := e.client.ListServices(ctx, &apiv1.ListServicesRequest{PageToken: "!!not a token!!"})
			return err
		}, "is not a page token of this list"},
		{"truncated", func() error {
			_, err := e.client.ListServices(ctx, &apiv1.ListServicesRequest{PageToken: tok[:4]})
			return err
		}, "is not a page token of this list"},
		{"damaged", func() error {
			_, err := e.client.ListServices(ctx, &apiv1.ListServicesRequest{PageToken: tok + "AAAA"})
			return err
		}, "is damaged"},
		{"a task list's token", func() error {
			_, err := e.client.ListServices(ctx, &apiv1.ListServicesRequest{PageToken: taskPage.GetNextPageToken()})
			return err
		}, "is not a page token of this list"},
		{"other filter than the token's", func() error {
			_, err := e.client.ListServices(ctx, &apiv1.ListServicesRequest{PageToken: tok, Labels: map[string]string{"a": "b"}})
			return err
		}, "was given for a request with other fields"},
		{"a service list's token for nodes", func() error {
			_, err := e.client.ListNodes(ctx, &apiv1.ListNodesRequest{PageToken: tok})
			return err
		}, "list nodes: page_token"},
		{"task token with another filter", func() error {
			_, err := e.client.ListTasks(ctx, &apiv1.ListTasksRequest{PageToken: taskPage.GetNextPageToken(), All: true})
			return err
		}, "was given for a request with other fields"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), tt.msg) {
				t.Fatalf("got %v, want InvalidArgument mentioning %q", err, tt.msg)
			}
		})
	}
	// Another page size with the same token is fine (AIP-158).
	if _, err := e.client.ListServices(ctx, &apiv1.ListServicesRequest{PageToken: tok, PageSize: 7}); err != nil {
		t.Errorf("same token, other page size: %v", err)
	}
}
