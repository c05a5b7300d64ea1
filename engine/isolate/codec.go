package isolate

import (
	"encoding/binary"
	"fmt"

	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store"
)

// The body of a frame is a fixed sequence of fields, no field names or
// types on the wire: byte strings and strings are a uvarint length and the
// bytes, lists a uvarint count and the elements, booleans one byte, hashes
// 32 bytes. Host and worker are the same binary, so they always agree on
// the layout; a version byte guards against anything else.
//
// It replaced CBOR (fxamacker/cbor) here: with reflection, CBOR was about
// 17 % of the relay process's CPU and 14 % of a worker's in the benchmark
// set, and its recursion grew the calling goroutine's stack on every call.
// The decoder checks every length against the bytes that are left, so a
// bad frame is an error, not a panic or a huge allocation (FuzzDecode*).

const codecVersion = 1

type encoder struct{ b []byte }

func (e *encoder) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }

func (e *encoder) bytes(p []byte) {
	e.uvarint(uint64(len(p)))
	e.b = append(e.b, p...)
}

func (e *encoder) str(s string) {
	e.uvarint(uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

func (e *encoder) hashes(hs [][32]byte) {
	e.uvarint(uint64(len(hs)))
	for _, h := range hs {
		e.b = append(e.b, h[:]...)
	}
}

// appendStrings encodes a list of strings: error texts, peer keys, store
// keys. (Methods cannot have type parameters.)
func appendStrings[S ~string](e *encoder, ss []S) {
	e.uvarint(uint64(len(ss)))
	for _, s := range ss {
		e.str(string(s))
	}
}

func (e *encoder) byteSlices(bs [][]byte) {
	e.uvarint(uint64(len(bs)))
	for _, b := range bs {
		e.bytes(b)
	}
}

func (e *encoder) peerData(ds []engine.PeerData) {
	e.uvarint(uint64(len(ds)))
	for _, d := range ds {
		e.str(string(d.Peer))
		e.bytes(d.Data)
	}
}

// appendRequest encodes req after dst. In.Changes (functions) cannot be
// encoded: the host turns them into RawChanges first.
func appendRequest(dst []byte, req *request) []byte {
	e := encoder{b: dst}
	e.b = append(e.b, codecVersion, byte(req.Op))
	e.str(req.Doc)
	e.str(req.Actor)
	e.uvarint(uint64(len(req.Chunks)))
	for _, c := range req.Chunks {
		appendStrings(&e, c.Key)
		e.bytes(c.Data)
	}
	in := &req.In
	e.uvarint(uint64(len(in.Attach)))
	for _, a := range in.Attach {
		e.str(string(a.Peer))
		e.str(a.StorageID)
		e.bytes(a.SyncState)
		e.bool(a.Resumed)
	}
	appendStrings(&e, in.Reset)
	e.byteSlices(in.Remote)
	e.bool(in.Publish)
	e.byteSlices(in.RawChanges)
	e.peerData(in.Receive)
	appendStrings(&e, in.Detach)
	appendStrings(&e, in.Generate)
	appendStrings(&e, in.Always)
	e.bool(in.Flush)
	return e.b
}

// appendResponse encodes resp after dst.
func appendResponse(dst []byte, resp *response) []byte {
	e := encoder{b: dst}
	e.b = append(e.b, codecVersion)
	e.str(resp.Err)
	e.bool(resp.Out != nil)
	if o := resp.Out; o != nil {
		e.uvarint(uint64(len(o.Saves)))
		for _, op := range o.Saves {
			appendStrings(&e, op.Key)
			e.bytes(op.Data)
			e.bool(op.Delete)
		}
		e.peerData(o.Messages)
		e.uvarint(uint64(len(o.Rejected)))
		for _, r := range o.Rejected {
			e.str(string(r.Peer))
			e.str(r.Err)
		}
		e.uvarint(uint64(len(o.TheirHeads)))
		for k, hs := range o.TheirHeads {
			e.str(string(k))
			e.hashes(hs)
		}
		appendStrings(&e, o.ChangeErrors)
		e.hashes(o.Heads)
		e.bool(o.HeadsChanged)
		e.bool(o.Empty)
		e.uvarint(uint64(o.SavedBytes))
		appendStrings(&e, o.RemoteErrors)
		e.bytes(o.Published)
	}
	e.uvarint(uint64(len(resp.States)))
	for k, s := range resp.States {
		e.str(string(k))
		e.bytes(s)
	}
	e.bytes(resp.Data)
	return e.b
}

// decoder reads a frame body. Byte strings it returns share the frame's
// memory (a frame is read into its own buffer and never reused). The first
// error sticks; every read after it returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at %d bytes from the end", errFrame, what, len(d.b))
	}
	d.b = nil
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a list length; each element takes at least min bytes, so a
// count the rest of the frame cannot hold is an error before anything is
// allocated.
func (d *decoder) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail("list longer than the frame")
		return 0
	}
	return int(n)
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("byte string longer than the frame")
		return nil
	}
	if n == 0 {
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *decoder) str() string { return string(d.bytes()) }

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.fail("frame cut short")
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) bool() bool {
	switch d.byte() {
	case 0:
		return false
	case 1:
		return true
	}
	d.fail("bad boolean")
	return false
}

func (d *decoder) hashes() [][32]byte {
	n := d.count(32)
	if n == 0 {
		return nil
	}
	out := make([][32]byte, n)
	for i := range out {
		copy(out[i][:], d.b[32*i:])
	}
	d.b = d.b[32*n:]
	return out
}

// readStrings decodes what appendStrings encoded; nil when empty.
func readStrings[L ~[]S, S ~string](d *decoder) L {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	out := make(L, n)
	for i := range out {
		out[i] = S(d.str())
	}
	return out
}

func (d *decoder) byteSlices() [][]byte {
	n := d.count(1)
	if n == 0 {
		return nil
	}
	out := make([][]byte, n)
	for i := range out {
		out[i] = d.bytes()
	}
	return out
}

func (d *decoder) peerData() []engine.PeerData {
	n := d.count(2)
	if n == 0 {
		return nil
	}
	out := make([]engine.PeerData, n)
	for i := range out {
		out[i] = engine.PeerData{Peer: engine.PeerKey(d.str()), Data: d.bytes()}
	}
	return out
}

func (d *decoder) version() {
	if v := d.byte(); d.err == nil && v != codecVersion {
		d.fail(fmt.Sprintf("codec version %d, want %d", v, codecVersion))
	}
}

func (d *decoder) end() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("bytes after the last field")
	}
	return d.err
}

// decodeRequest decodes a frame body written by appendRequest.
func decodeRequest(b []byte) (request, error) {
	d := decoder{b: b}
	var req request
	d.version()
	req.Op = op(d.byte())
	req.Doc = d.str()
	req.Actor = d.str()
	if n := d.count(2); n > 0 {
		req.Chunks = make([]store.Chunk, n)
		for i := range req.Chunks {
			req.Chunks[i] = store.Chunk{Key: readStrings[store.Key](&d), Data: d.bytes()}
		}
	}
	in := &req.In
	if n := d.count(4); n > 0 {
		in.Attach = make([]engine.PeerInit, n)
		for i := range in.Attach {
			in.Attach[i] = engine.PeerInit{Peer: engine.PeerKey(d.str()), StorageID: d.str(), SyncState: d.bytes(), Resumed: d.bool()}
		}
	}
	in.Reset = readStrings[[]engine.PeerKey](&d)
	in.Remote = d.byteSlices()
	in.Publish = d.bool()
	in.RawChanges = d.byteSlices()
	in.Receive = d.peerData()
	in.Detach = readStrings[[]engine.PeerKey](&d)
	in.Generate = readStrings[[]engine.PeerKey](&d)
	in.Always = readStrings[[]engine.PeerKey](&d)
	in.Flush = d.bool()
	if err := d.end(); err != nil {
		return request{}, err
	}
	return req, nil
}

// decodeResponse decodes a frame body written by appendResponse.
func decodeResponse(b []byte) (response, error) {
	d := decoder{b: b}
	var resp response
	d.version()
	resp.Err = d.str()
	if d.bool() {
		o := &output{}
		if n := d.count(3); n > 0 {
			o.Saves = make([]store.Op, n)
			for i := range o.Saves {
				o.Saves[i] = store.Op{Key: readStrings[store.Key](&d), Data: d.bytes(), Delete: d.bool()}
			}
		}
		o.Messages = d.peerData()
		if n := d.count(2); n > 0 {
			o.Rejected = make([]rejected, n)
			for i := range o.Rejected {
				o.Rejected[i] = rejected{Peer: engine.PeerKey(d.str()), Err: d.str()}
			}
		}
		if n := d.count(2); n > 0 {
			o.TheirHeads = make(map[engine.PeerKey][][32]byte, n)
			for range n {
				k := engine.PeerKey(d.str())
				o.TheirHeads[k] = d.hashes()
			}
		}
		o.ChangeErrors = readStrings[[]string](&d)
		o.Heads = d.hashes()
		o.HeadsChanged = d.bool()
		o.Empty = d.bool()
		o.SavedBytes = int(d.uvarint())
		if o.SavedBytes < 0 {
			d.fail("saved bytes out of range")
		}
		o.RemoteErrors = readStrings[[]string](&d)
		o.Published = d.bytes()
		resp.Out = o
	}
	if n := d.count(2); n > 0 {
		resp.States = make(map[engine.PeerKey][]byte, n)
		for range n {
			k := engine.PeerKey(d.str())
			resp.States[k] = d.bytes()
		}
	}
	resp.Data = d.bytes()
	if err := d.end(); err != nil {
		return response{}, err
	}
	return resp, nil
}
