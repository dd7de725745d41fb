package registry

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/docker/cli/cli/config/types"
	"github.com/moby/buildkit/session"
	"github.com/moby/buildkit/session/auth/authprovider"

	"manifold/builds"
	"manifold/outbound"
)

// Credential is what Manifold keeps for one registry host. The
// password is stored sealed and never leaves this package.
type Credential struct {
	Host      string    `json:"host"`
	Username  string    `json:"username"`
	Insecure  bool      `json:"insecure"`
	UpdatedAt time.Time `json:"updated_at"`
}

// CredentialStore keeps sealed registry credentials. The db package implements it.
type CredentialStore interface {
	PutCredential(ctx context.Context, c Credential, sealed []byte) error
	GetCredential(ctx context.Context, host string) (Credential, []byte, bool, error)
	ListCredentials(ctx context.Context) ([]Credential, error)
	DeleteCredential(ctx context.Context, host string) (bool, error)
}

// Credentials manages registry credentials, sealed with AES-GCM under a key
// file, and hands them to BuildKit and to pushes from the store.
type Credentials struct {
	store  CredentialStore
	aead   cipher.AEAD
	policy *outbound.Policy
}

// SetPolicy sets the outbound policy that registry hosts must pass before
// credentials are stored for them (nil refuses every non-public address).
// It is called once, while wiring, before anything is served.
func (r *Credentials) SetPolicy(p *outbound.Policy) { r.policy = p }

// LoadKey reads the 32-byte key at path (hex), creating it with mode 0600 on
// first start. A key file others may read is refused.
func LoadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		key := make([]byte, 32)
		if _, err := rand.Read(key); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return nil, fmt.Errorf("create key file %s: %w", path, err)
		}
		_, err = f.WriteString(hex.EncodeToString(key) + "\n")
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(path)
			return nil, fmt.Errorf("write key file %s: %w", path, err)
		}
		return key, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read key file %s: %w", path, err)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s can be read by other users (mode %v); run chmod 600 on it", path, fi.Mode().Perm())
	}
	key, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(key) != 32 {
		return nil, fmt.Errorf("key file %s does not hold 64 hex digits", path)
	}
	return key, nil
}

// NewCredentials seals credentials with key (32 bytes).
func NewCredentials(store CredentialStore, key []byte) (*Credentials, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Credentials{store: store, aead: aead}, nil
}

// Seal seals plain with associated data ad (accounts seal build secrets with it).
func (r *Credentials) Seal(plain, ad string) ([]byte, error) { return r.seal(plain, ad) }

// Open opens what Seal sealed with the same associated data.
func (r *Credentials) Open(sealed []byte, ad string) (string, error) { return r.open(sealed, ad) }

func (r *Credentials) seal(plain, host string) ([]byte, error) {
	nonce := make([]byte, r.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	// The host is the additional data: a sealed password cannot be moved to another host's row.
	return r.aead.Seal(nonce, nonce, []byte(plain), []byte(host)), nil
}

func (r *Credentials) open(sealed []byte, host string) (string, error) {
	n := r.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("sealed credential is too short")
	}
	plain, err := r.aead.Open(nil, sealed[:n], sealed[n:], []byte(host))
	if err != nil {
		return "", fmt.Errorf("the credential for %s cannot be opened with this key file", host)
	}
	return string(plain), nil
}

var hostPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$|^\[[0-9a-f:]+\](:[0-9]{1,5})?$`)

// NormalizeHost checks a registry host[:port] and folds Docker Hub's names into "docker.io".
func NormalizeHost(h string) (string, error) {
	h = strings.ToLower(strings.TrimSpace(h))
	h = strings.TrimPrefix(strings.TrimPrefix(h, "https://"), "http://")
	h = strings.TrimSuffix(h, "/")
	if strings.HasPrefix(h, "index.docker.io") || strings.HasPrefix(h, "registry-1.docker.io") {
		h = "docker.io"
	}
	if h == "" || len(h) > 255 || !hostPattern.MatchString(h) {
		return "", builds.CodeErrorf(builds.EInvalid, "invalid_registry", "%q is not a registry host; give host or host:port, like registry.example.com:5000", h)
	}
	return h, nil
}

// Set stores (or replaces) the credential for host.
func (r *Credentials) Set(ctx context.Context, host, username, password string, insecure bool) (Credential, error) {
	h, err := NormalizeHost(host)
	if err != nil {
		return Credential{}, err
	}
	if len(username) > 256 || len(password) > 8192 || strings.ContainsAny(username, "\x00\n:") {
		return Credential{}, builds.CodeErrorf(builds.EInvalid, "invalid_credential", "the username or password is too long or holds characters a registry login cannot")
	}
	if (username == "") != (password == "") {
		return Credential{}, builds.CodeErrorf(builds.EInvalid, "invalid_credential", "give both a username and a password, or neither (to only mark the registry insecure)")
	}
	// Credentials for an address the policy refuses would only ever be sent there.
	host, port := builds.SplitHostPort(h, "443")
	if err := r.policy.Check(ctx, host, port); err != nil {
		e, _ := builds.RefusedError("registry", "invalid_registry", err)
		return Credential{}, e
	}
	sealed, err := r.seal(password, h)
	if err != nil {
		return Credential{}, err
	}
	c := Credential{Host: h, Username: username, Insecure: insecure, UpdatedAt: time.Now().UTC()}
	return c, r.store.PutCredential(ctx, c, sealed)
}

// List returns every stored credential, without passwords.
func (r *Credentials) List(ctx context.Context) ([]Credential, error) {
	return r.store.ListCredentials(ctx)
}

// Delete removes host's credential.
func (r *Credentials) Delete(ctx context.Context, host string) error {
	h, err := NormalizeHost(host)
	if err != nil {
		return err
	}
	ok, err := r.store.DeleteCredential(ctx, h)
	if err != nil {
		return err
	}
	if !ok {
		return builds.CodeErrorf(builds.ENotFound, "registry_not_found", "no credential is stored for %s", h)
	}
	return nil
}

// login returns host's username and password ("" when none) and whether plain HTTP is allowed.
func (r *Credentials) login(ctx context.Context, host string) (user, pass string, insecure bool, err error) {
	h, err := NormalizeHost(host)
	if err != nil {
		return "", "", false, nil
	}
	c, sealed, ok, err := r.store.GetCredential(ctx, h)
	if err != nil || !ok {
		return "", "", false, err
	}
	if c.Username != "" {
		if pass, err = r.open(sealed, h); err != nil {
			return "", "", false, err
		}
	}
	return c.Username, pass, c.Insecure, nil
}

// Insecure reports whether host was configured for plain HTTP. Loopback
// registries are always allowed plain HTTP, as BuildKit and containerd do.
func (r *Credentials) Insecure(ctx context.Context, host string) bool {
	if isLoopbackHost(host) {
		return true
	}
	_, _, insecure, _ := r.login(ctx, host)
	return insecure
}

// isLoopbackHost reads host[:port] with the outbound policy's normaliser.
func isLoopbackHost(host string) bool {
	h, _ := builds.SplitHostPort(host, "")
	return outbound.IsLoopback(h)
}

// authProvider hands the credentials to BuildKit through the session, for
// pulls of private base images and for pushes.
func (r *Credentials) AuthProvider() session.Attachable {
	return authprovider.NewDockerAuthProvider(authprovider.DockerAuthProviderConfig{
		AuthConfigProvider: func(ctx context.Context, host string, _ []string, _ authprovider.ExpireCachedAuthCheck) (types.AuthConfig, error) {
			user, pass, _, err := r.login(ctx, host)
			if err != nil {
				return types.AuthConfig{}, err
			}
			return types.AuthConfig{Username: user, Password: pass, ServerAddress: host}, nil
		},
	})
}
