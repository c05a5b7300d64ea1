package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/crdt"
	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/wire"
	"github.com/amsync/amsync/peer"
	"github.com/amsync/amsync/wsrelay"
)

func TestRelayBinaryJWTAccess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the relay binary")
	}
	secret := []byte("s3cret-for-tests")
	secretFile := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(secretFile, append(secret, '\n'), 0o600))
	p := startRelay(t, buildRelay(t), "-addr", "127.0.0.1:0", "-data", t.TempDir(), "-jwt-secret-file", secretFile)
	tok := func(claims map[string]any) string {
		s, err := wsrelay.SignHS256(secret, claims)
		require.NoError(t, err)
		return s
	}
	url := func(token string) string { return "ws://" + p.addr + "/?token=" + token }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// No token, a forged one, an expired one: 401 at the upgrade.
	for name, u := range map[string]string{
		"none":    "ws://" + p.addr + "/",
		"forged":  url(func() string { s, _ := wsrelay.SignHS256([]byte("guess"), map[string]any{"sub": "x"}); return s }()),
		"expired": url(tok(map[string]any{"sub": "x", "exp": time.Now().Add(-time.Minute).Unix()})),
	} {
		_, resp, err := websocket.DefaultDialer.Dial(u, nil)
		require.Error(t, err, name)
		require.NotNil(t, resp, name)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, name)
	}

	// A writer with access to everything creates two documents.
	w, err := peer.Open(peer.Config{URL: url(tok(map[string]any{"sub": "writer", "docs": map[string]string{"*": "rw"}})), Seed: 1})
	require.NoError(t, err)
	defer w.Close()
	shared, err := w.Create(ctx, func(tx *crdt.Tx) error { return tx.Set([]any{"v"}, "by writer") })
	require.NoError(t, err)
	secretDoc, err := w.Create(ctx, func(tx *crdt.Tx) error { return tx.Set([]any{"v"}, "hidden") })
	require.NoError(t, err)
	require.NoError(t, w.WaitSynced(ctx))

	// A reader of one document reads it, cannot change it, cannot see the other.
	r, err := peer.Open(peer.Config{URL: url(tok(map[string]any{"sub": "reader", "docs": map[string]string{shared: "r"}})), Seed: 2})
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, r.Find(ctx, shared))
	require.NoError(t, r.Read(ctx, shared, func(d *crdt.Doc) error {
		v, err := d.Value()
		assert.Equal(t, "by writer", v["v"])
		return err
	}))
	err = r.Find(ctx, secretDoc)
	require.True(t, errors.Is(err, engine.ErrUnavailable), "the other document is unavailable to the reader: %v", err)
	_, err = r.Change(ctx, shared, func(tx *crdt.Tx) error { return tx.Set([]any{"v"}, "by reader") })
	require.NoError(t, err) // locally; the relay refuses it
	assert.Equal(t, []string{shared}, r.Pending(), "never acknowledged")

	// The writer's view (and the store) never get the reader's change, while
	// the writer's later changes still reach the reader.
	_, err = w.Change(ctx, shared, func(tx *crdt.Tx) error { return tx.Set([]any{"w2"}, "again") })
	require.NoError(t, err)
	require.NoError(t, w.WaitSynced(ctx))
	require.Eventually(t, func() bool {
		var got map[string]any
		r.Read(ctx, shared, func(d *crdt.Doc) error { got, _ = d.Value(); return nil })
		return got["w2"] == "again"
	}, 15*time.Second, 10*time.Millisecond, "the reader did not receive the writer's change")
	fresh, err := peer.Open(peer.Config{URL: url(tok(map[string]any{"sub": "auditor"})), Seed: 3})
	require.NoError(t, err)
	defer fresh.Close()
	require.NoError(t, fresh.Find(ctx, shared))
	require.NoError(t, fresh.Read(ctx, shared, func(d *crdt.Doc) error {
		v, err := d.Value()
		assert.Equal(t, "by writer", v["v"], "the read-only change was neither persisted nor forwarded")
		return err
	}))
	assert.Positive(t, p.metric(t, "amsync_connection_errors_total{kind=\"unauthorized\"}"))
}

func TestRelayBinaryTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the relay binary")
	}
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	p := startRelay(t, buildRelay(t), "-addr", "127.0.0.1:0", "-data", t.TempDir(), "-tls-cert", cert, "-tls-key", key)
	d := websocket.Dialer{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} // a self-signed test certificate
	ws, _, err := d.Dial("wss://"+p.addr+"/", nil)
	require.NoError(t, err)
	defer ws.Close()
	join, _ := wire.Encode(wire.Message{Type: wire.TypeJoin, SenderID: "tls", SupportedProtocolVersions: []string{"1"}})
	require.NoError(t, ws.WriteMessage(websocket.BinaryMessage, join))
	_, b, err := ws.ReadMessage()
	require.NoError(t, err)
	m, err := wire.Decode(b)
	require.NoError(t, err)
	assert.Equal(t, wire.TypePeer, m.Type)
}

func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(k)
	require.NoError(t, err)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600))
	return certFile, keyFile
}
