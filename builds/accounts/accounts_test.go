package accounts_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"manifold/builds"
	"manifold/builds/accounts"
	"manifold/builds/registry"
	"manifold/db"
)

func newAccounts(t *testing.T) *accounts.Service {
	t.Helper()
	d, err := db.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	regs, err := registry.NewCredentials(db.NewCredentials(d), make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return accounts.New(db.NewAccounts(d), regs, accounts.Config{IPAttempts: 10})
}

func TestFailedLoginsFromOneAddressWait(t *testing.T) {
	a := newAccounts(t)
	ctx := context.Background()
	if _, err := a.CreateUser(ctx, "kim", "a good long password", accounts.RoleViewer); err != nil {
		t.Fatal(err)
	}
	// Successes never count against an address.
	for range 15 {
		if _, _, err := a.Login(ctx, "kim", "a good long password", "10.0.0.1"); err != nil {
			t.Fatalf("login: %v", err)
		}
	}
	for i := range 10 { // ten names, so only the per-address limit applies
		if _, _, err := a.Login(ctx, fmt.Sprintf("nobody%d", i), "x", "10.0.0.2"); builds.ErrorCode(err) != "bad_login" {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if _, _, err := a.Login(ctx, "kim", "a good long password", "10.0.0.2"); builds.ErrorCode(err) != "too_many_attempts" {
		t.Fatalf("after 10 failures the address was not made to wait: %v", err)
	}
	if _, _, err := a.Login(ctx, "kim", "a good long password", "10.0.0.3"); err != nil {
		t.Fatalf("another address: %v", err)
	}
}

// TestFailedLoginsSlowOneNameFromOneAddress: five failures of a name from an
// address make its next tries wait, alike for a known and an unknown name;
// the real user logs in from elsewhere at once, and nothing locks the account.
func TestFailedLoginsSlowOneNameFromOneAddress(t *testing.T) {
	a := newAccounts(t)
	ctx := context.Background()
	if _, err := a.CreateUser(ctx, "kim", "a good long password", accounts.RoleViewer); err != nil {
		t.Fatal(err)
	}
	var known, unknown error
	for i := range 5 {
		_, _, known = a.Login(ctx, "kim", "wrong", "10.0.0.9")
		_, _, unknown = a.Login(ctx, "ghost", "wrong", "10.0.0.11")
		want := "bad_login"
		if i == 4 {
			want = "too_many_failures"
		}
		if builds.ErrorCode(known) != want || builds.ErrorCode(unknown) != want {
			t.Fatalf("failure %d: known %v, unknown %v; want %s", i+1, known, unknown, want)
		}
	}
	if builds.ErrorMessage(known) != builds.ErrorMessage(unknown) || !strings.Contains(builds.ErrorMessage(known), "try again in") {
		t.Fatalf("the answers differ: %q vs %q", builds.ErrorMessage(known), builds.ErrorMessage(unknown))
	}
	if _, _, err := a.Login(ctx, "kim", "a good long password", "10.0.0.9"); builds.ErrorCode(err) != "too_many_failures" {
		t.Fatalf("the right password from the guessing address during the wait: %v", err)
	}
	if _, _, err := a.Login(ctx, "kim", "a good long password", "10.0.0.10"); err != nil {
		t.Fatalf("the real user from their own address: %v", err)
	}
	// Case does not open a second budget.
	if _, _, err := a.Login(ctx, "KIM", "wrong", "10.0.0.9"); builds.ErrorCode(err) != "too_many_failures" {
		t.Fatalf("another spelling of the name: %v", err)
	}
}

func TestTokensNeverExceedTheirUser(t *testing.T) {
	a := newAccounts(t)
	ctx := context.Background()
	if _, err := a.CreateUser(ctx, "vee", "a good long password", accounts.RoleViewer); err != nil {
		t.Fatal(err)
	}
	secret, _, err := a.CreateToken(ctx, "vee", "ci", "admin")
	if err != nil {
		t.Fatal(err)
	}
	id, err := a.TokenIdentity(ctx, secret)
	if err != nil || id.Role != accounts.RoleViewer {
		t.Fatalf("a viewer's admin-scope token acts as %q (%v)", id.Role, err)
	}
	if _, err := a.TokenIdentity(ctx, secret+"x"); builds.ErrorKind(err) != builds.EUnauthorized {
		t.Fatalf("a wrong token: %v", err)
	}
	if _, err := a.CreateUser(ctx, "Bad Name", "a good long password", accounts.RoleViewer); builds.ErrorCode(err) != "invalid_user" {
		t.Fatalf("bad user name: %v", err)
	}
	if _, err := a.CreateUser(ctx, "short", "short", accounts.RoleViewer); builds.ErrorCode(err) != "weak_password" {
		t.Fatalf("short password: %v", err)
	}
}
