package wire

// Message types of protocol "1".
const (
	TypeJoin                     = "join"
	TypePeer                     = "peer"
	TypeError                    = "error"
	TypeLeave                    = "leave"
	TypeSync                     = "sync"
	TypeRequest                  = "request"
	TypeDocUnavailable           = "doc-unavailable"
	TypeEphemeral                = "ephemeral"
	TypeRemoteSubscriptionChange = "remote-subscription-change"
	TypeRemoteHeadsChanged       = "remote-heads-changed"
)

// ProtocolV1 is the only protocol version automerge-repo 1.x and 2.x speak.
const ProtocolV1 = "1"

// PeerMetadata is what a peer says about its storage in join and peer.
type PeerMetadata struct {
	// StorageID is the peer's persistent storage id; empty when the peer has
	// no storage (cbor-x then sends undefined).
	StorageID   string
	IsEphemeral bool
}

// HeadsInfo is one entry of remote-heads-changed's newHeads.
type HeadsInfo struct {
	Heads     []string // bs58check-encoded change hashes
	Timestamp float64  // milliseconds since the epoch
}

// Message is one protocol message. Which fields are meaningful depends on
// Type; Decode checks that the fields a type requires are present and of
// the right CBOR type, and Encode writes only the fields of its type.
type Message struct {
	Type     string
	SenderID string
	TargetID string

	// join / peer
	PeerMetadata              *PeerMetadata // nil when absent
	SupportedProtocolVersions []string      // join; nil when absent
	SelectedProtocolVersion   string        // peer

	// error
	ErrorMessage string // the "message" field

	// sync, request, doc-unavailable, ephemeral, remote-heads-changed
	DocumentID string
	// Data is the automerge sync message (sync, request) or the CBOR payload
	// (ephemeral). Never empty on the wire for those types.
	Data []byte

	// ephemeral
	Count     uint64
	SessionID string

	// remote-subscription-change
	Add    []string
	Remove []string

	// remote-heads-changed: storageId -> heads
	NewHeads map[string]HeadsInfo
}
