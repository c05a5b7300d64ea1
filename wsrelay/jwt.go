package wsrelay

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/amsync/amsync/engine"
)

// Authentication errors; Authenticate hooks wrap them and the server
// answers 401.
var (
	// ErrNoToken: the request carries no credentials.
	ErrNoToken = errors.New("wsrelay: no token")
	// ErrBadToken: the token is malformed or its signature is wrong.
	ErrBadToken = errors.New("wsrelay: invalid token")
	// ErrExpired: the token has expired (or is not valid yet).
	ErrExpired = errors.New("wsrelay: token expired")
)

// TokenFromRequest returns the bearer token of a request: the `token`
// query parameter, an `Authorization: Bearer` header, or the `relay_token`
// cookie (browsers cannot set headers on a WebSocket).
func TokenFromRequest(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	if c, err := r.Cookie("relay_token"); err == nil {
		return c.Value
	}
	return ""
}

// JWT verifies HS256 JSON Web Tokens.
//
// Claims used: `sub` (the principal id), `exp` and `nbf` (seconds since the
// epoch; a token past exp, or before nbf, is refused, with Leeway), and
// `docs`, a map from document ids, or "*" for every document, to "r" (read)
// or "rw" (read and write). A specific id wins over "*"; documents the map
// does not name are inaccessible. A token without `docs` grants read-write
// access to every document.
type JWT struct {
	// Secret is the HMAC key.
	Secret []byte
	// Leeway tolerates clock skew on exp and nbf. Default 0.
	Leeway time.Duration
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Authenticate is a Config.Authenticate hook: it verifies the request's
// token and returns its principal.
func (j *JWT) Authenticate(r *http.Request) (*engine.Principal, error) {
	tok := TokenFromRequest(r)
	if tok == "" {
		return nil, ErrNoToken
	}
	return j.Verify(tok)
}

type jwtClaims struct {
	Sub  string            `json:"sub"`
	Exp  *float64          `json:"exp"`
	Nbf  *float64          `json:"nbf"`
	Docs map[string]string `json:"docs"`
}

// Verify checks a token and returns its principal.
func (j *JWT) Verify(tok string) (*engine.Principal, error) {
	if len(j.Secret) == 0 {
		return nil, fmt.Errorf("%w: no secret configured", ErrBadToken)
	}
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: not three dot-separated parts", ErrBadToken)
	}
	hdrJSON, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadToken, err)
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if err := json.Unmarshal(hdrJSON, &hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadToken, err)
	}
	if hdr.Alg != "HS256" {
		return nil, fmt.Errorf("%w: algorithm %q (only HS256 is accepted)", ErrBadToken, hdr.Alg)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrBadToken, err)
	}
	mac := hmac.New(sha256.New, j.Secret)
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if !hmac.Equal(sig, mac.Sum(nil)) {
		return nil, fmt.Errorf("%w: bad signature", ErrBadToken)
	}
	body, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrBadToken, err)
	}
	var c jwtClaims
	if err := json.Unmarshal(body, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrBadToken, err)
	}
	now := time.Now
	if j.Now != nil {
		now = j.Now
	}
	t := now()
	p := &engine.Principal{ID: c.Sub}
	if c.Exp != nil {
		if math.IsNaN(*c.Exp) || math.IsInf(*c.Exp, 0) {
			return nil, fmt.Errorf("%w: exp", ErrBadToken)
		}
		exp := time.Unix(0, int64(*c.Exp*1e9))
		if !t.Before(exp.Add(j.Leeway)) {
			return nil, fmt.Errorf("%w at %s", ErrExpired, exp.UTC().Format(time.RFC3339))
		}
		p.Expires = exp.Add(j.Leeway)
	}
	if c.Nbf != nil {
		nbf := time.Unix(0, int64(*c.Nbf*1e9))
		if t.Add(j.Leeway).Before(nbf) {
			return nil, fmt.Errorf("%w: not valid before %s", ErrExpired, nbf.UTC().Format(time.RFC3339))
		}
	}
	if c.Docs != nil {
		grants := make(map[string]engine.Access, len(c.Docs))
		for id, a := range c.Docs {
			switch a {
			case "r":
				grants[id] = engine.AccessRead
			case "rw":
				grants[id] = engine.AccessReadWrite
			default:
				return nil, fmt.Errorf("%w: docs[%q] = %q, want \"r\" or \"rw\"", ErrBadToken, id, a)
			}
		}
		p.Access = func(docID string) engine.Access {
			if a, ok := grants[docID]; ok {
				return a
			}
			return grants["*"] // AccessNone when absent
		}
	}
	return p, nil
}

// SignHS256 makes an HS256 token with claims; for tests and tools.
func SignHS256(secret []byte, claims map[string]any) (string, error) {
	hdr := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	msg := hdr + "." + base64.RawURLEncoding.EncodeToString(body)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(msg))
	return msg + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), nil
}
