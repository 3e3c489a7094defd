// Package fsm is Warren's Raft state machine. Log entries are typed
// commands: one byte of CommandType followed by the matching protobuf
// message from fsmpb. Each applied batch of entries becomes one atomic
// write to the store plugin, stamped with its Raft index, then updates the
// in-memory state view and publishes events.
package fsm

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/warrenorch/warren/core/fsm/fsmpb"
)

// CommandType is the first byte of every Raft log entry Warren writes.
type CommandType uint8

// The command types. Never renumber: they are in every Raft log on disk.
const (
	CreateServiceType CommandType = 1
	UpdateServiceType CommandType = 2
	RemoveServiceType CommandType = 3
	UpsertNodeType    CommandType = 4
	RemoveNodeType    CommandType = 5
	UpsertTasksType   CommandType = 6
	RemoveTasksType   CommandType = 7
	UpsertSecretType  CommandType = 8
	RemoveSecretType  CommandType = 9
	UpsertVolumeType  CommandType = 10
	RemoveVolumeType  CommandType = 11
	// 12 and 13 were UpsertNetwork and RemoveNetwork, of a named-network
	// model that never had an API and was removed (docs/architecture.md,
	// "The network"); no log holds them. Never reuse the numbers.
	SetClusterInfoType CommandType = 14
	SetSecurityType    CommandType = 15
	BatchType          CommandType = 16
	// The field-owned task commands: each writer changes only the fields
	// it owns (docs/architecture.md, "The write path").
	CreateTasksType     CommandType = 17
	AssignTasksType     CommandType = 18
	ReportStatusType    CommandType = 19
	SetDesiredStateType CommandType = 20
	// 21 to 23 are left for other commands of the same release.
	UpsertConfigType CommandType = 24
	RemoveConfigType CommandType = 25
	// MarkNodesDownType: the nodes of one dispatcher sweep, DOWN in one
	// entry.
	MarkNodesDownType CommandType = 26
)

// IgnoreUnknownTypeFlag marks a command that an older agent which does not
// know its type may skip instead of failing (as in Nomad's FSM).
const IgnoreUnknownTypeFlag CommandType = 128

// Command is a typed Raft command.
type Command interface {
	proto.Message
}

// TypeOf returns the command type of a command message.
func TypeOf(cmd Command) (CommandType, error) {
	switch cmd.(type) {
	case *fsmpb.CreateService:
		return CreateServiceType, nil
	case *fsmpb.UpdateService:
		return UpdateServiceType, nil
	case *fsmpb.RemoveService:
		return RemoveServiceType, nil
	case *fsmpb.UpsertNode:
		return UpsertNodeType, nil
	case *fsmpb.RemoveNode:
		return RemoveNodeType, nil
	case *fsmpb.UpsertTasks:
		return UpsertTasksType, nil
	case *fsmpb.RemoveTasks:
		return RemoveTasksType, nil
	case *fsmpb.UpsertSecret:
		return UpsertSecretType, nil
	case *fsmpb.RemoveSecret:
		return RemoveSecretType, nil
	case *fsmpb.UpsertConfig:
		return UpsertConfigType, nil
	case *fsmpb.RemoveConfig:
		return RemoveConfigType, nil
	case *fsmpb.UpsertVolume:
		return UpsertVolumeType, nil
	case *fsmpb.RemoveVolume:
		return RemoveVolumeType, nil
	case *fsmpb.SetClusterInfo:
		return SetClusterInfoType, nil
	case *fsmpb.SetSecurity:
		return SetSecurityType, nil
	case *fsmpb.Batch:
		return BatchType, nil
	case *fsmpb.CreateTasks:
		return CreateTasksType, nil
	case *fsmpb.AssignTasks:
		return AssignTasksType, nil
	case *fsmpb.ReportStatus:
		return ReportStatusType, nil
	case *fsmpb.SetDesiredState:
		return SetDesiredStateType, nil
	case *fsmpb.MarkNodesDown:
		return MarkNodesDownType, nil
	}
	return 0, fmt.Errorf("fsm: %T is not a command", cmd)
}

// Encode returns the log entry bytes for cmd.
func Encode(cmd Command) ([]byte, error) {
	t, err := TypeOf(cmd)
	if err != nil {
		return nil, err
	}
	body, err := proto.MarshalOptions{Deterministic: true}.Marshal(cmd)
	if err != nil {
		return nil, fmt.Errorf("fsm: encode %T: %w", cmd, err)
	}
	return append([]byte{byte(t)}, body...), nil
}

// EncodeBatch returns one log entry carrying several encoded commands (from
// Encode), applied in order at that entry's index. The entry's Raft
// response is a []any holding each command's result in the same order.
func EncodeBatch(entries [][]byte) ([]byte, error) {
	return Encode(&fsmpb.Batch{Commands: entries})
}

// newCommand returns an empty message for a command type.
func newCommand(t CommandType) (Command, bool) {
	switch t {
	case CreateServiceType:
		return &fsmpb.CreateService{}, true
	case UpdateServiceType:
		return &fsmpb.UpdateService{}, true
	case RemoveServiceType:
		return &fsmpb.RemoveService{}, true
	case UpsertNodeType:
		return &fsmpb.UpsertNode{}, true
	case RemoveNodeType:
		return &fsmpb.RemoveNode{}, true
	case UpsertTasksType:
		return &fsmpb.UpsertTasks{}, true
	case RemoveTasksType:
		return &fsmpb.RemoveTasks{}, true
	case UpsertSecretType:
		return &fsmpb.UpsertSecret{}, true
	case RemoveSecretType:
		return &fsmpb.RemoveSecret{}, true
	case UpsertConfigType:
		return &fsmpb.UpsertConfig{}, true
	case RemoveConfigType:
		return &fsmpb.RemoveConfig{}, true
	case UpsertVolumeType:
		return &fsmpb.UpsertVolume{}, true
	case RemoveVolumeType:
		return &fsmpb.RemoveVolume{}, true
	case SetClusterInfoType:
		return &fsmpb.SetClusterInfo{}, true
	case SetSecurityType:
		return &fsmpb.SetSecurity{}, true
	case BatchType:
		return &fsmpb.Batch{}, true
	case CreateTasksType:
		return &fsmpb.CreateTasks{}, true
	case AssignTasksType:
		return &fsmpb.AssignTasks{}, true
	case ReportStatusType:
		return &fsmpb.ReportStatus{}, true
	case SetDesiredStateType:
		return &fsmpb.SetDesiredState{}, true
	case MarkNodesDownType:
		return &fsmpb.MarkNodesDown{}, true
	}
	return nil, false
}

// Decode parses a log entry. ok is false for an unknown type flagged
// ignorable; an unknown type without the flag is an error.
func Decode(data []byte) (t CommandType, cmd Command, ok bool, err error) {
	if len(data) == 0 {
		return 0, nil, false, fmt.Errorf("fsm: empty command")
	}
	t = CommandType(data[0])
	cmd, known := newCommand(t &^ IgnoreUnknownTypeFlag)
	if !known {
		if t&IgnoreUnknownTypeFlag != 0 {
			return t, nil, false, nil
		}
		return t, nil, false, fmt.Errorf("fsm: unknown command type %d", t)
	}
	if err := proto.Unmarshal(data[1:], cmd); err != nil {
		return t, nil, false, fmt.Errorf("fsm: decode command type %d: %w", t, err)
	}
	return t &^ IgnoreUnknownTypeFlag, cmd, true, nil
}
