package main

import (
	"slices"
	"strconv"
	"strings"

	apiv1 "github.com/warrenorch/warren/core/api/v1"
)

// publishFlagUsage is the help text of --publish and --publish-add.
const publishFlagUsage = "publish a port: `PUBLISHED:TARGET[/tcp|udp]`, or published=P,target=T[,protocol=tcp|udp][,mode=ingress|host] (repeatable); ingress (the default) listens on every node, host only on the nodes running a task"

var (
	portProtocols = map[string]apiv1.PortProtocol{"tcp": apiv1.PortProtocol_PORT_PROTOCOL_TCP, "udp": apiv1.PortProtocol_PORT_PROTOCOL_UDP}
	publishModes  = map[string]apiv1.PublishMode{"ingress": apiv1.PublishMode_PUBLISH_MODE_INGRESS, "host": apiv1.PublishMode_PUBLISH_MODE_HOST}
)

// parsePort parses a port number of flag, 1-65535.
func parsePort(flag, what, s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n < 1 || n > 65535 {
		return 0, usageErrorf("invalid %s: %s port %q is not a number from 1 to 65535", flag, what, s)
	}
	return uint32(n), nil
}

// parseProtocol parses "tcp" or "udp".
func parseProtocol(flag, s string) (apiv1.PortProtocol, error) {
	p, ok := portProtocols[strings.ToLower(s)]
	if !ok {
		return 0, usageErrorf("invalid %s: protocol %q is not tcp or udp", flag, s)
	}
	return p, nil
}

// parsePublish parses one --publish value, in the short form
// PUBLISHED:TARGET[/PROTO] or the long form published=,target=,protocol=,mode=.
func parsePublish(flag, v string) (*apiv1.PortConfig, error) {
	p := &apiv1.PortConfig{Protocol: apiv1.PortProtocol_PORT_PROTOCOL_TCP, Mode: apiv1.PublishMode_PUBLISH_MODE_INGRESS}
	var err error
	if !strings.Contains(v, "=") {
		ports, proto, hasProto := strings.Cut(v, "/")
		pub, target, ok := strings.Cut(ports, ":")
		if !ok {
			return nil, usageErrorf("invalid %s %q: expected PUBLISHED:TARGET[/tcp|udp], e.g. 8080:80", flag, v)
		}
		if p.Published, err = parsePort(flag, "published", pub); err != nil {
			return nil, err
		}
		if p.Target, err = parsePort(flag, "target", target); err != nil {
			return nil, err
		}
		if hasProto {
			if p.Protocol, err = parseProtocol(flag, proto); err != nil {
				return nil, err
			}
		}
		return p, nil
	}
	seen := map[string]bool{}
	for _, field := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(field, "=")
		k = strings.TrimSpace(k)
		if !ok || val == "" {
			return nil, usageErrorf("invalid %s %q: %q is not KEY=VALUE", flag, v, field)
		}
		if seen[k] {
			return nil, usageErrorf("invalid %s %q: %s given twice", flag, v, k)
		}
		seen[k] = true
		switch k {
		case "published":
			p.Published, err = parsePort(flag, "published", val)
		case "target":
			p.Target, err = parsePort(flag, "target", val)
		case "protocol":
			p.Protocol, err = parseProtocol(flag, val)
		case "mode":
			m, ok := publishModes[strings.ToLower(val)]
			if !ok {
				err = usageErrorf("invalid %s: mode %q is not ingress or host", flag, val)
			}
			p.Mode = m
		default:
			err = usageErrorf("invalid %s %q: unknown key %q (published, target, protocol, mode)", flag, v, k)
		}
		if err != nil {
			return nil, err
		}
	}
	if p.Published == 0 || p.Target == 0 {
		return nil, usageErrorf("invalid %s %q: published= and target= are both required", flag, v)
	}
	return p, nil
}

// parsePublishes parses every value of flag; a published port/protocol
// given twice is an error.
func parsePublishes(flag string, vs []string) ([]*apiv1.PortConfig, error) {
	var out []*apiv1.PortConfig
	for _, v := range vs {
		p, err := parsePublish(flag, v)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(out, func(o *apiv1.PortConfig) bool { return o.Key() == p.Key() }) {
			return nil, usageErrorf("invalid %s: port %s given twice", flag, p.Key())
		}
		out = append(out, p)
	}
	return out, nil
}

// parsePublishRm parses a --publish-rm value, PUBLISHED[/tcp|udp], into
// the key it removes ("8080/tcp").
func parsePublishRm(v string) (string, error) {
	port, proto, hasProto := strings.Cut(v, "/")
	n, err := parsePort("--publish-rm", "published", port)
	if err != nil {
		return "", err
	}
	p := &apiv1.PortConfig{Published: n}
	if hasProto {
		if p.Protocol, err = parseProtocol("--publish-rm", proto); err != nil {
			return "", err
		}
	}
	return p.Key(), nil
}

// publishEdit is the --publish-add/--publish-rm edit of a spec's ports:
// a port is known by its number and protocol ("8080/tcp"), and an added
// port replaces the one of the same key.
func publishEdit(add []*apiv1.PortConfig, rm []string) listEdit[*apiv1.PortConfig] {
	return listEdit[*apiv1.PortConfig]{addFlag: "--publish-add", rmFlag: "--publish-rm", what: "published port",
		key: (*apiv1.PortConfig).Key, add: add, rm: rm}
}

// portsColumn is the PORTS cell of `service ls`.
func portsColumn(ports []*apiv1.PortConfig) string {
	labels := make([]string, 0, len(ports))
	for _, p := range ports {
		labels = append(labels, p.Label())
	}
	return strings.Join(labels, ",")
}
