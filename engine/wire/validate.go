package wire

import (
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

var (
	// ErrMalformed is wrapped by every error about a frame or message that
	// breaks the protocol: not a CBOR map, a required field missing or of
	// the wrong CBOR type, an invalid document id, and so on. The error text
	// names the message type and the field.
	ErrMalformed = errors.New("wire: malformed message")
	// ErrUnknownType is wrapped when the type field is text but not one of
	// the types of protocol "1".
	ErrUnknownType = errors.New("wire: unknown message type")
)

// MaxCount is the largest ephemeral count accepted: JavaScript's
// Number.MAX_SAFE_INTEGER (2^53-1). A JS peer cannot produce a larger exact
// count, and every count up to it survives the trip through a float64.
const MaxCount = 1<<53 - 1

// knownType reports whether t is a message type of protocol "1".
func knownType(t string) bool {
	switch t {
	case TypeJoin, TypePeer, TypeError, TypeLeave, TypeSync, TypeRequest,
		TypeDocUnavailable, TypeEphemeral, TypeRemoteSubscriptionChange,
		TypeRemoteHeadsChanged:
		return true
	}
	return false
}

// hasTarget reports whether messages of type t carry a targetId.
func hasTarget(t string) bool { return t != TypeJoin && t != TypeLeave }

// hasDocument reports whether messages of type t carry a documentId.
func hasDocument(t string) bool {
	switch t {
	case TypeSync, TypeRequest, TypeDocUnavailable, TypeEphemeral, TypeRemoteHeadsChanged:
		return true
	}
	return false
}

// hasData reports whether messages of type t carry data.
func hasData(t string) bool { return t == TypeSync || t == TypeRequest || t == TypeEphemeral }

// malformed returns an error wrapping ErrMalformed about field of a message
// of type typ ("" while the type is not known yet).
func malformed(typ, field, format string, args ...any) error {
	if typ == "" {
		return fmt.Errorf("%w: field %q: %s", ErrMalformed, field, fmt.Sprintf(format, args...))
	}
	return fmt.Errorf("%w: %s: field %q: %s", ErrMalformed, typ, field, fmt.Sprintf(format, args...))
}

// Validate checks the fields of m that its type uses, with the rules Decode
// applies to a frame: senderId, targetId (all but join and leave),
// documentId (a valid document id), selectedProtocolVersion (peer),
// sessionId (ephemeral) must be non-empty; data must be non-empty for sync,
// request and ephemeral; count at most MaxCount; newHeads present with
// non-nil heads and finite timestamps; every string valid UTF-8. Fields of
// other types are ignored. Errors wrap ErrMalformed or ErrUnknownType.
func (m *Message) Validate() error {
	t := m.Type
	if !knownType(t) {
		return fmt.Errorf("%w: %q", ErrUnknownType, truncate(t))
	}
	if err := requireText(t, "senderId", m.SenderID); err != nil {
		return err
	}
	if hasTarget(t) {
		if err := requireText(t, "targetId", m.TargetID); err != nil {
			return err
		}
	}
	if hasDocument(t) && !validDocumentID(m.DocumentID) {
		return fmt.Errorf("%w: %s: field %q: %w: %q", ErrMalformed, t, "documentId", ErrInvalidDocumentID, truncate(m.DocumentID))
	}
	if hasData(t) && len(m.Data) == 0 {
		return malformed(t, "data", "empty")
	}
	switch t {
	case TypeJoin:
		if err := validPeerMetadata(t, m.PeerMetadata); err != nil {
			return err
		}
		return validTextList(t, "supportedProtocolVersions", m.SupportedProtocolVersions)
	case TypePeer:
		if err := validPeerMetadata(t, m.PeerMetadata); err != nil {
			return err
		}
		return requireText(t, "selectedProtocolVersion", m.SelectedProtocolVersion)
	case TypeError:
		if !utf8.ValidString(m.ErrorMessage) {
			return malformed(t, "message", "not valid UTF-8")
		}
	case TypeEphemeral:
		if m.Count > MaxCount {
			return malformed(t, "count", "%d is above %d", m.Count, uint64(MaxCount))
		}
		return requireText(t, "sessionId", m.SessionID)
	case TypeRemoteSubscriptionChange:
		if err := validTextList(t, "add", m.Add); err != nil {
			return err
		}
		return validTextList(t, "remove", m.Remove)
	case TypeRemoteHeadsChanged:
		if m.NewHeads == nil {
			return malformed(t, "newHeads", "missing")
		}
		for storageID, h := range m.NewHeads {
			if !utf8.ValidString(storageID) {
				return malformed(t, "newHeads", "storage id %q is not valid UTF-8", truncate(storageID))
			}
			if h.Heads == nil {
				return malformed(t, "newHeads", "%q: heads missing", truncate(storageID))
			}
			if err := validTextList(t, "newHeads", h.Heads); err != nil {
				return err
			}
			if math.IsNaN(h.Timestamp) || math.IsInf(h.Timestamp, 0) {
				return malformed(t, "newHeads", "%q: timestamp %v is not finite", truncate(storageID), h.Timestamp)
			}
		}
	}
	return nil
}

func requireText(typ, field, s string) error {
	if s == "" {
		return malformed(typ, field, "missing or empty")
	}
	if !utf8.ValidString(s) {
		return malformed(typ, field, "not valid UTF-8")
	}
	return nil
}

func validTextList(typ, field string, l []string) error {
	for _, s := range l {
		if !utf8.ValidString(s) {
			return malformed(typ, field, "element %q is not valid UTF-8", truncate(s))
		}
	}
	return nil
}

func validPeerMetadata(typ string, md *PeerMetadata) error {
	if md != nil && !utf8.ValidString(md.StorageID) {
		return malformed(typ, "peerMetadata", "storageId is not valid UTF-8")
	}
	return nil
}
