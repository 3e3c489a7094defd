package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
	"github.com/warrenorch/warren/test/clustertest"
	"github.com/warrenorch/warren/test/ctrtest"
	"github.com/warrenorch/warren/test/testutil"
)

// BenchmarkNameOnOtherNode: per iteration, a service with one task is
// created on worker w2 and the time is taken from the moment the state
// shows its task RUNNING (polled every 2 ms) to the moment worker w1's DNS
// server, asked on w1's gateway from inside w1's host, answers the
// service's name with the task's address (polled every 2 ms); then,
// untimed, the service is removed. Target: p50 < 1 s.
func BenchmarkNameOnOtherNode(b *testing.B) {
	bin := testutil.Install(b, clustertest.Plugins...)
	c := clustertest.New(b, bin)
	c.Form([]string{"m1"}, []string{"w1", "w2"})
	m1, w1 := c.Node("m1"), c.Node("w1")
	ctx := context.Background()
	api := m1.Client()
	gw := nodeGateway(b, api, "w1")
	var conn net.Conn
	if err := w1.Host.Do(func() error {
		var err error
		conn, err = net.Dial("udp", net.JoinHostPort(gw, "53"))
		return err
	}); err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	dc := &mdns.Client{Timeout: 200 * time.Millisecond}
	resolves := func(name, addr string) bool {
		m := new(mdns.Msg)
		m.SetQuestion(name+".warren.", mdns.TypeA)
		resp, _, err := dc.ExchangeWithConn(m, &mdns.Conn{Conn: conn})
		if err != nil {
			return false
		}
		for _, rr := range resp.Answer {
			if a, ok := rr.(*mdns.A); ok && a.A.String() == addr {
				return true
			}
		}
		return false
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := fmt.Sprintf("late-%d", i)
		_, err := api.CreateService(ctx, &apiv1.CreateServiceRequest{Spec: &apiv1.ServiceSpec{
			Name: name, Image: ctrtest.TestImage, Replicas: 1, Constraints: []string{"node.name==w2"},
		}})
		if err != nil {
			b.Fatal(err)
		}
		var addr string
		deadline := time.Now().Add(time.Minute)
		for addr == "" {
			resp, err := api.ListTasks(ctx, &apiv1.ListTasksRequest{Service: name, View: apiv1.TaskView_TASK_VIEW_FULL})
			if err != nil {
				b.Fatal(err)
			}
			for _, tk := range resp.GetTasks() {
				if tk.GetState() == apiv1.TaskState_TASK_STATE_RUNNING && tk.GetAddress() != "" {
					addr = strings.SplitN(tk.GetAddress(), "/", 2)[0]
				}
			}
			if time.Now().After(deadline) {
				b.Fatalf("%s's task not running after a minute", name)
			}
			if addr == "" {
				time.Sleep(2 * time.Millisecond) // the poll period
			}
		}
		seen := time.Now()
		for !resolves(name, addr) {
			if time.Since(seen) > 30*time.Second {
				b.Fatalf("w1's DNS does not answer %s with %s 30 s after its task ran", name, addr)
			}
			time.Sleep(2 * time.Millisecond) // the poll period
		}
		lat = append(lat, time.Since(seen))
		b.StopTimer()
		if _, err := api.RemoveService(ctx, &apiv1.RemoveServiceRequest{NameOrId: name}); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	reportLatency(b, lat)
}

// nodeGateway is the gateway (its subnet's first address) of the node
// called name.
func nodeGateway(b *testing.B, api apiv1.WarrenClient, name string) string {
	b.Helper()
	var gw string
	testutil.Eventually(b, time.Minute, name+"'s overlay subnet", func() bool {
		resp, err := api.ListNodes(context.Background(), &apiv1.ListNodesRequest{})
		if err != nil {
			return false
		}
		for _, n := range resp.GetNodes() {
			if p, err := netip.ParsePrefix(n.GetNetwork().GetSubnet()); err == nil && n.GetName() == name {
				gw = p.Masked().Addr().Next().String()
			}
		}
		return gw != ""
	})
	return gw
}
