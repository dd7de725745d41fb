package builder

import (
	"context"
	"fmt"
	"time"

	"manifold/builds"
)

// Service issues, lists and revokes builder client certificates: one policy
// for the CLI, the API and the account page.
type Service struct {
	CA    *CA
	Certs Certs
	Users Users
}

// Issue makes and records a certificate for user, valid for days (1 to
// 366), when user may build.
func (s *Service) Issue(ctx context.Context, user string, days int) (Issued, error) {
	if days < 1 || days > 366 {
		return Issued{}, builds.CodeErrorf(builds.EInvalid, "invalid_validity", "a builder certificate is valid for 1 to 366 days, not %d", days)
	}
	if err := s.Users.MayBuild(ctx, user); err != nil {
		return Issued{}, err
	}
	c, err := s.CA.Issue(user, time.Duration(days)*24*time.Hour)
	if err != nil {
		return Issued{}, err
	}
	if err := s.Certs.SaveCert(ctx, c); err != nil {
		return Issued{}, fmt.Errorf("record the certificate: %w", err)
	}
	return c, nil
}

// List is user's certificates ("" for everyone's), newest first.
func (s *Service) List(ctx context.Context, user string) ([]Issued, error) {
	return s.Certs.ListCerts(ctx, user)
}

// Revoke revokes certificate serial, which must be user's ("" for anyone's);
// it reports false when there is no such certificate not yet revoked.
func (s *Service) Revoke(ctx context.Context, serial, user string) (bool, error) {
	return s.Certs.RevokeCert(ctx, serial, user, time.Now().UTC())
}

// CAPEM is the CA certificate clients check the endpoint with (ca.pem).
func (s *Service) CAPEM() []byte { return s.CA.CertPEM() }
