package discovery

import (
	"net"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// BenchmarkAnswer measures a service name's answer over UDP on loopback,
// one query at a time, and reports its p50 and p99; BenchmarkAnswerFloor is
// the same client against a bare miekg/dns server that writes a fixed
// answer, the floor for any server built on the library.
func BenchmarkAnswer(b *testing.B) {
	s := newServer(b)
	s.Set(Table{"web": addrs("10.88.1.2", "10.88.2.7", "10.88.3.4")})
	benchQueries(b, serve(b, s), "web.warren.")
}

func BenchmarkAnswerFloor(b *testing.B) {
	rr, err := mdns.NewRR("web.warren. 2 IN A 10.88.1.2")
	if err != nil {
		b.Fatal(err)
	}
	h := mdns.HandlerFunc(func(w mdns.ResponseWriter, r *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(r)
		m.Answer = []mdns.RR{rr, rr, rr}
		_ = w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &mdns.Server{PacketConn: pc, Handler: h}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.ActivateAndServe() }()
	b.Cleanup(func() { _ = srv.Shutdown(); <-done })
	waitAnswering(b, pc.LocalAddr().String())
	benchQueries(b, pc.LocalAddr().String(), "web.warren.")
}

func benchQueries(b *testing.B, addr, name string) {
	c := &mdns.Client{Timeout: 2 * time.Second}
	conn, err := c.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		resp, rtt, err := c.ExchangeWithConn(m, conn)
		if err != nil || len(resp.Answer) != 3 {
			b.Fatalf("query: %v, %v", resp, err)
		}
		lat = append(lat, rtt)
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
