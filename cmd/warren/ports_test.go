package main

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

func TestParsePublish(t *testing.T) {
	const (
		tcp     = apiv1.PortProtocol_PORT_PROTOCOL_TCP
		udp     = apiv1.PortProtocol_PORT_PROTOCOL_UDP
		ingress = apiv1.PublishMode_PUBLISH_MODE_INGRESS
		host    = apiv1.PublishMode_PUBLISH_MODE_HOST
	)
	tests := []struct {
		in   string
		want *apiv1.PortConfig
		err  string
	}{
		{"8080:80", &apiv1.PortConfig{Published: 8080, Target: 80, Protocol: tcp, Mode: ingress}, ""},
		{"53:5353/udp", &apiv1.PortConfig{Published: 53, Target: 5353, Protocol: udp, Mode: ingress}, ""},
		{"1:65535/TCP", &apiv1.PortConfig{Published: 1, Target: 65535, Protocol: tcp, Mode: ingress}, ""},
		{"published=8080,target=80", &apiv1.PortConfig{Published: 8080, Target: 80, Protocol: tcp, Mode: ingress}, ""},
		{"published=53,target=53,protocol=udp,mode=host", &apiv1.PortConfig{Published: 53, Target: 53, Protocol: udp, Mode: host}, ""},
		{"8080", nil, "expected PUBLISHED:TARGET"},
		{"70000:80", nil, `published port "70000" is not a number from 1 to 65535`},
		{"0:80", nil, `published port "0"`},
		{"80:x", nil, `target port "x"`},
		{"80:80/sctp", nil, `protocol "sctp" is not tcp or udp`},
		{"published=80", nil, "published= and target= are both required"},
		{"published=80,target=80,mode=everywhere", nil, `mode "everywhere" is not ingress or host`},
		{"published=80,target=80,colour=red", nil, `unknown key "colour"`},
		{"published=80,published=81,target=80", nil, "published given twice"},
		{"published=80,target", nil, `"target" is not KEY=VALUE`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parsePublish("--publish", tt.in)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error = %v, want one containing %q", err, tt.err)
				}
				return
			}
			if err != nil || !proto.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
	if _, err := parsePublishes("--publish", []string{"8080:80", "8080:81"}); err == nil || !strings.Contains(err.Error(), "port 8080/tcp given twice") {
		t.Errorf("the same port twice: %v", err)
	}
}

func TestEditPorts(t *testing.T) {
	p := func(s string) *apiv1.PortConfig {
		c, err := parsePublish("--publish-add", s)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rm := func(s string) string {
		k, err := parsePublishRm(s)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	tests := []struct {
		name string
		have []string
		rm   []string
		add  []string
		want string // portsColumn of the result
	}{
		{"add to none", nil, nil, []string{"8080:80"}, "8080->80/tcp"},
		{"remove by number", []string{"8080:80", "53:53/udp"}, []string{"8080"}, nil, "53->53/udp"},
		{"remove by number and protocol", []string{"53:53/udp", "53:53"}, []string{"53/udp"}, nil, "53->53/tcp"},
		{"add replaces the same port", []string{"8080:80"}, nil, []string{"published=8080,target=81,mode=host"}, "8080->81/tcp (host)"},
		{"remove all", []string{"8080:80"}, []string{"8080/tcp"}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var have, add []*apiv1.PortConfig
			var keys []string
			for _, s := range tt.have {
				have = append(have, p(s))
			}
			for _, s := range tt.add {
				add = append(add, p(s))
			}
			for _, s := range tt.rm {
				keys = append(keys, rm(s))
			}
			ports, err := publishEdit(add, keys).apply("web", have)
			if err != nil {
				t.Fatal(err)
			}
			if got := portsColumn(ports); got != tt.want {
				t.Errorf("ports = %q, want %q", got, tt.want)
			}
		})
	}
	if _, err := parsePublishRm("8080/sctp"); err == nil {
		t.Errorf("--publish-rm 8080/sctp accepted")
	}
}
