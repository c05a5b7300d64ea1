package wsrelay

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/store/badgerstore"
	"github.com/amsync/amsync/engine/wire"
)

type fixture struct {
	t   *testing.T
	srv *Server
	eng *engine.Engine
	ts  *httptest.Server
	url string
}

func newFixture(t *testing.T, mut func(*Config)) *fixture {
	st, err := badgerstore.Open(badgerstore.Config{Dir: t.TempDir()})
	require.NoError(t, err)
	eng, err := engine.New(engine.Config{Store: st, PeerID: "relay"})
	require.NoError(t, err)
	cfg := Config{Engine: eng, PingInterval: time.Second, PongTimeout: 2 * time.Second}
	if mut != nil {
		mut(&cfg)
	}
	srv, err := New(cfg)
	require.NoError(t, err)
	return serve(t, srv, eng, st)
}

// serve serves srv on a loopback HTTP server until the test ends, then
// shuts srv, eng and st down.
func serve(t *testing.T, srv *Server, eng *engine.Engine, st *badgerstore.Store) *fixture {
	ts := httptest.NewServer(srv)
	f := &fixture{t: t, srv: srv, eng: eng, ts: ts, url: "ws" + strings.TrimPrefix(ts.URL, "http")}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		ts.Close()
		require.NoError(t, eng.Close(ctx))
		require.NoError(t, st.Close())
	})
	return f
}

type wsClient struct {
	t  *testing.T
	ws *websocket.Conn
	id string
}

func (f *fixture) dial(path string, hdr http.Header) (*wsClient, *http.Response, error) {
	ws, resp, err := websocket.DefaultDialer.Dial(f.url+path, hdr)
	if err != nil {
		return nil, resp, err
	}
	f.t.Cleanup(func() { ws.Close() })
	return &wsClient{t: f.t, ws: ws}, resp, nil
}

func (c *wsClient) write(m wire.Message) {
	b, err := wire.Encode(m)
	require.NoError(c.t, err)
	require.NoError(c.t, c.ws.WriteMessage(websocket.BinaryMessage, b))
}

// read returns the next message, or the close error.
func (c *wsClient) read() (wire.Message, error) {
	c.ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, b, err := c.ws.ReadMessage()
	if err != nil {
		return wire.Message{}, err
	}
	require.Equal(c.t, websocket.BinaryMessage, typ, "the relay sends binary frames only")
	m, err := wire.Decode(b)
	require.NoError(c.t, err)
	return m, nil
}

func (c *wsClient) join(id string) wire.Message {
	c.id = id
	c.write(wire.Message{Type: wire.TypeJoin, SenderID: id, PeerMetadata: &wire.PeerMetadata{StorageID: "st-" + id}, SupportedProtocolVersions: []string{"1"}})
	m, err := c.read()
	require.NoError(c.t, err)
	require.Equal(c.t, wire.TypePeer, m.Type)
	return m
}

// closeCode reads until the connection ends and returns its close code.
func (c *wsClient) closeCode() (int, string) {
	for {
		_, err := c.read()
		if err != nil {
			var ce *websocket.CloseError
			if ok := asCloseError(err, &ce); ok {
				return ce.Code, ce.Text
			}
			return -1, err.Error()
		}
	}
}

func asCloseError(err error, target **websocket.CloseError) bool {
	ce, ok := err.(*websocket.CloseError)
	if ok {
		*target = ce
	}
	return ok
}

const emptyRequest = "\x42\x00\x00\x01\x00\x00\x00\x02\x02\x84"
const docID = "25gQkE3hoP2bJikoQWmNSo2vm1CY"

func TestHandshakeOnAnyPath(t *testing.T) {
	f := newFixture(t, nil)
	for _, path := range []string{"/", "/sync", "/some/deep/path?x=1"} {
		c, _, err := f.dial(path, nil)
		require.NoError(t, err)
		m := c.join("peer-" + path)
		assert.Equal(t, "relay", m.SenderID)
		assert.Equal(t, "1", m.SelectedProtocolVersion)
		assert.Equal(t, f.eng.StorageID(), m.PeerMetadata.StorageID)
	}
}

func TestUnknownDocumentUnavailable(t *testing.T) {
	f := newFixture(t, nil)
	c, _, err := f.dial("/", nil)
	require.NoError(t, err)
	c.join("a")
	c.write(wire.Message{Type: wire.TypeRequest, SenderID: "a", TargetID: "relay", DocumentID: docID, Data: []byte(emptyRequest)})
	m, err := c.read()
	require.NoError(t, err)
	assert.Equal(t, wire.TypeDocUnavailable, m.Type)
	assert.Equal(t, docID, m.DocumentID)
	assert.Equal(t, "a", m.TargetID)
}

func TestMalformedFrameClosesOnlyItsConnection(t *testing.T) {
	f := newFixture(t, nil)
	good, _, err := f.dial("/", nil)
	require.NoError(t, err)
	good.join("good")

	for name, frame := range map[string][]byte{
		"cbor null":    {0xf6},
		"random bytes": {0x13, 0x37, 0xde, 0xad, 0xbe, 0xef},
		"array":        {0x81, 0x01},
	} {
		t.Run(name, func(t *testing.T) {
			bad, _, err := f.dial("/", nil)
			require.NoError(t, err)
			bad.join("bad-" + name)
			require.NoError(t, bad.ws.WriteMessage(websocket.BinaryMessage, frame))
			m, err := bad.read()
			require.NoError(t, err)
			assert.Equal(t, wire.TypeError, m.Type)
			assert.Contains(t, m.ErrorMessage, "malformed")
			code, _ := bad.closeCode()
			assert.Equal(t, websocket.CloseUnsupportedData, code)
		})
	}
	// The good connection still works.
	good.write(wire.Message{Type: wire.TypeRequest, SenderID: "good", TargetID: "relay", DocumentID: docID, Data: []byte(emptyRequest)})
	m, err := good.read()
	require.NoError(t, err)
	assert.Equal(t, wire.TypeDocUnavailable, m.Type)
}

func TestTextFrameRejected(t *testing.T) {
	f := newFixture(t, nil)
	c, _, err := f.dial("/", nil)
	require.NoError(t, err)
	require.NoError(t, c.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"join"}`)))
	m, err := c.read()
	require.NoError(t, err)
	assert.Equal(t, wire.TypeError, m.Type)
	code, _ := c.closeCode()
	assert.Equal(t, websocket.CloseUnsupportedData, code)
}

func TestOversizedFrameClosedWith1009(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxFrameBytes = 4096 })
	c, _, err := f.dial("/", nil)
	require.NoError(t, err)
	c.join("a")
	require.NoError(t, c.ws.WriteMessage(websocket.BinaryMessage, make([]byte, 8192)))
	code, _ := c.closeCode()
	assert.Equal(t, websocket.CloseMessageTooBig, code)
}

func TestOriginAllowList(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.AllowedOrigins = []string{"https://app.example"} })
	_, resp, err := f.dial("/", http.Header{"Origin": {"https://evil.example"}})
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode)
	c, _, err := f.dial("/", http.Header{"Origin": {"https://app.example"}})
	require.NoError(t, err)
	c.join("a")
	// Non-browser clients send no Origin and are let in.
	c2, _, err := f.dial("/", nil)
	require.NoError(t, err)
	c2.join("b")
}

func TestCrossOriginAllowedByDefault(t *testing.T) {
	f := newFixture(t, nil)
	c, _, err := f.dial("/", http.Header{"Origin": {"https://anywhere.example"}})
	require.NoError(t, err)
	c.join("a")
}

func TestShutdownClosesWith1001AndRefusesNew(t *testing.T) {
	f := newFixture(t, nil)
	c, _, err := f.dial("/", nil)
	require.NoError(t, err)
	c.join("a")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, f.srv.Shutdown(ctx))
	code, _ := c.closeCode()
	assert.Equal(t, websocket.CloseGoingAway, code)
	_, resp, err := f.dial("/", nil)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}

func TestDeadPeerDroppedByPing(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.PingInterval = 100 * time.Millisecond; c.PongTimeout = 200 * time.Millisecond })
	c, _, err := f.dial("/", nil)
	require.NoError(t, err)
	c.join("a")
	// A client that never reads never processes pings, so never answers.
	waitFor(t, 10*time.Second, func() bool { return f.srv.Connections() == 0 }, "dead peer not dropped")
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(within)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		require.True(t, time.Now().Before(deadline), msg)
		<-tick.C
	}
}

func TestConfigValidation(t *testing.T) {
	_, err := New(Config{})
	require.ErrorIs(t, err, ErrConfig)
	st, err := badgerstore.Open(badgerstore.Config{InMemory: true})
	require.NoError(t, err)
	defer st.Close()
	eng, err := engine.New(engine.Config{Store: st})
	require.NoError(t, err)
	_, err = New(Config{Engine: eng, MaxFrameBytes: 10})
	require.ErrorIs(t, err, ErrConfig)
	_, err = New(Config{Engine: eng, AllowedOrigins: []string{"not a url"}})
	require.ErrorIs(t, err, ErrConfig)
}
