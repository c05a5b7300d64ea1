package wsrelay

import (
	"net/http"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/amsync/amsync/engine"
	"github.com/amsync/amsync/engine/wire"
)

var secret = []byte("test-secret")

func token(t *testing.T, claims map[string]any) string {
	tok, err := SignHS256(secret, claims)
	require.NoError(t, err)
	return tok
}

func TestJWTVerify(t *testing.T) {
	now := time.Unix(1800000000, 0)
	j := &JWT{Secret: secret, Now: func() time.Time { return now }}
	p, err := j.Verify(token(t, map[string]any{"sub": "alice", "exp": now.Unix() + 60, "docs": map[string]string{"A": "r", "*": "rw"}}))
	require.NoError(t, err)
	assert.Equal(t, "alice", p.ID)
	assert.Equal(t, now.Add(60*time.Second), p.Expires)
	assert.Equal(t, engine.AccessRead, p.Access("A"))
	assert.Equal(t, engine.AccessReadWrite, p.Access("B"))

	p, err = j.Verify(token(t, map[string]any{"sub": "bob", "docs": map[string]string{"A": "rw"}}))
	require.NoError(t, err)
	assert.Equal(t, engine.AccessNone, p.Access("B"), "documents not named are inaccessible")

	_, err = j.Verify(token(t, map[string]any{"exp": now.Unix() - 1}))
	require.ErrorIs(t, err, ErrExpired)
	_, err = j.Verify(token(t, map[string]any{"nbf": now.Unix() + 100}))
	require.ErrorIs(t, err, ErrExpired)
	forged, err := SignHS256([]byte("other"), map[string]any{"sub": "mallory"})
	require.NoError(t, err)
	_, err = j.Verify(forged)
	require.ErrorIs(t, err, ErrBadToken)
	_, err = j.Verify("eyJhbGciOiJub25lIn0.e30.")
	require.ErrorIs(t, err, ErrBadToken, "alg none is refused")
	_, err = j.Verify(token(t, map[string]any{"docs": map[string]string{"A": "admin"}}))
	require.ErrorIs(t, err, ErrBadToken)
	_, err = j.Verify("garbage")
	require.ErrorIs(t, err, ErrBadToken)
}

func TestTokenFromRequest(t *testing.T) {
	r, _ := http.NewRequest("GET", "http://x/?token=q", nil)
	assert.Equal(t, "q", TokenFromRequest(r))
	r, _ = http.NewRequest("GET", "http://x/", nil)
	r.Header.Set("Authorization", "Bearer h")
	assert.Equal(t, "h", TokenFromRequest(r))
	r, _ = http.NewRequest("GET", "http://x/", nil)
	r.AddCookie(&http.Cookie{Name: "relay_token", Value: "c"})
	assert.Equal(t, "c", TokenFromRequest(r))
}

func TestUpgradeNeedsAValidToken(t *testing.T) {
	j := &JWT{Secret: secret}
	f := newFixture(t, func(c *Config) { c.Authenticate = j.Authenticate })
	for name, path := range map[string]string{
		"missing": "/",
		"forged":  "/?token=" + func() string { s, _ := SignHS256([]byte("x"), map[string]any{}); return s }(),
		"expired": "/?token=" + token(t, map[string]any{"exp": time.Now().Add(-time.Minute).Unix()}),
	} {
		_, resp, err := f.dial(path, nil)
		require.Error(t, err, name)
		require.NotNil(t, resp, name)
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, name)
	}
	c, _, err := f.dial("/?token="+token(t, map[string]any{"sub": "alice"}), nil)
	require.NoError(t, err)
	c.join("alice-peer")
	c2, _, err := f.dial("/", http.Header{"Cookie": {"relay_token=" + token(t, map[string]any{"sub": "bob"})}})
	require.NoError(t, err)
	c2.join("bob-peer")
}

func TestTokenExpiryClosesTheConnection(t *testing.T) {
	j := &JWT{Secret: secret}
	f := newFixture(t, func(c *Config) { c.Authenticate = j.Authenticate })
	exp := time.Now().Add(1500 * time.Millisecond)
	c, _, err := f.dial("/?token="+token(t, map[string]any{"sub": "a", "exp": float64(exp.UnixMilli()) / 1000}), nil)
	require.NoError(t, err)
	c.join("a")
	m, err := c.read()
	require.NoError(t, err)
	assert.Equal(t, wire.TypeError, m.Type)
	assert.Contains(t, m.ErrorMessage, "expired")
	code, reason := c.closeCode()
	assert.Equal(t, websocket.ClosePolicyViolation, code)
	assert.Contains(t, reason, "expired")
}

func TestJoinTimeout(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.JoinTimeout = 200 * time.Millisecond })
	c, _, err := f.dial("/", nil)
	require.NoError(t, err)
	m, err := c.read()
	require.NoError(t, err)
	assert.Equal(t, wire.TypeError, m.Type)
	code, _ := c.closeCode()
	assert.Equal(t, websocket.ClosePolicyViolation, code)
}

func TestConnectionCaps(t *testing.T) {
	j := &JWT{Secret: secret}
	f := newFixture(t, func(c *Config) {
		c.Authenticate = j.Authenticate
		c.MaxConnections = 3
		c.MaxConnectionsPerPrincipal = 2
	})
	alice := token(t, map[string]any{"sub": "alice"})
	for i := range 2 {
		c, _, err := f.dial("/?token="+alice, nil)
		require.NoError(t, err)
		c.join("alice-" + string(rune('a'+i)))
	}
	_, resp, err := f.dial("/?token="+alice, nil)
	require.Error(t, err)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	c, _, err := f.dial("/?token="+token(t, map[string]any{"sub": "bob"}), nil)
	require.NoError(t, err)
	c.join("bob")
	_, resp, err = f.dial("/?token="+token(t, map[string]any{"sub": "carol"}), nil)
	require.Error(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}
