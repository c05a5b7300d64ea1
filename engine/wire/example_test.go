package wire_test

import (
	"encoding/hex"
	"fmt"
	"math/rand/v2"

	"github.com/amsync/amsync/engine/wire"
	"github.com/fxamacker/cbor/v2"
)

func ExampleEncode() {
	frame, err := wire.Encode(wire.Message{
		Type:       wire.TypeDocUnavailable,
		SenderID:   "srv",
		TargetID:   "cli",
		DocumentID: "25gQkE3hoP2bJikoQWmNSo2vm1CY",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(hex.EncodeToString(frame[:16]), "…")
	diag, _ := cbor.Diagnose(frame) // RFC 8949 diagnostic notation
	fmt.Println(diag)

	_, err = wire.Encode(wire.Message{Type: wire.TypeSync, SenderID: "srv", TargetID: "cli",
		DocumentID: "25gQkE3hoP2bJikoQWmNSo2vm1CY"})
	fmt.Println(err)
	// Output:
	// a464747970656f646f632d756e617661 …
	// {"type": "doc-unavailable", "senderId": "srv", "targetId": "cli", "documentId": "25gQkE3hoP2bJikoQWmNSo2vm1CY"}
	// wire: malformed message: sync: field "data": empty
}

func ExampleDecode() {
	// The join message an automerge-repo 2.5.6 client without storage sends.
	frame, _ := hex.DecodeString("b90004647479706564" +
		"6a6f696e6873656e646572496463636c696c706565724d65746164617461b900026973746f726167654964f7" +
		"6b6973457068656d6572616cf5781973757070" +
		"6f7274656450726f746f636f6c56657273696f6e73816131")
	m, err := wire.Decode(frame)
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Type, m.SenderID, m.SupportedProtocolVersions, *m.PeerMetadata)

	_, err = wire.Decode([]byte{0xf6}) // a CBOR null
	fmt.Println(err)
	// Output:
	// join cli [1] { true}
	// wire: malformed message: top level is null, want a map
}

func ExampleParseURL() {
	u, err := wire.ParseURL("automerge:25gQkE3hoP2bJikoQWmNSo2vm1CY")
	if err != nil {
		panic(err)
	}
	id, _ := wire.ParseDocumentID(u.DocumentID)
	fmt.Printf("%s %x %v\n", u.DocumentID, id, u.Heads == nil)

	head := wire.EncodeHead([32]byte{0xa4, 0x6f})
	u, _ = wire.ParseURL("automerge:25gQkE3hoP2bJikoQWmNSo2vm1CY#" + head)
	fmt.Println(len(u.Heads), u.Heads[0] == head)

	_, err = wire.ParseURL("automerge:25gQkE3hoP2bJikoQWmNSo2vm1CX")
	fmt.Println(err)
	// Output:
	// 25gQkE3hoP2bJikoQWmNSo2vm1CY 4d91ebe6f5c64c63acb994b1b97df19f true
	// 1 true
	// wire: invalid automerge URL: wire: invalid document id: "25gQkE3hoP2bJikoQWmNSo2vm1CX"
}

func ExampleNewDocumentID() {
	id, err := wire.NewDocumentID(rand.NewChaCha8([32]byte{1}))
	if err != nil {
		panic(err)
	}
	fmt.Println(wire.FormatURL(id))
	// Output:
	// automerge:2VP1PoUuhsnMMFr4pMV1YKAS8i9a
}
