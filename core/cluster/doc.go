// Package cluster is what makes several agents one cluster: the node CA
// service (join, certificate renewal, entering the Raft configuration), the
// cluster administration service (join tokens, members, promote/demote,
// admin certificates), the authorization of every RPC by the caller's
// certificate, and the forwarding of API calls from followers to the leader.
//
// Every connection between nodes is mutual TLS with the cluster CA
// (core/clusternet). A certificate carries the node ID, its role and the
// cluster ID (core/pki). Authorize checks, for each method, which roles may
// call it; a node certificate is only honoured while the node is a member of
// the cluster state, and a manager certificate of a node the state now says
// is a worker (demoted) counts as a worker certificate.
package cluster
