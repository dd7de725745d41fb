package db

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"manifold/builds"
	"manifold/builds/projects"
)

// Projects implements projects.Store with SQLite.
type Projects struct{ db *DB }

// NewProjects is the project store over d.
func NewProjects(d *DB) *Projects { return &Projects{db: d} }

const projectColumns = `name, git_url, branches, dockerfile_path, context_dir, platforms, build_args, tags, push, created_by, created_at, updated_at`

func projectArgs(p projects.Project) ([]any, error) {
	plats, err := json.Marshal(p.Platforms)
	if err != nil {
		return nil, err
	}
	args, err := json.Marshal(p.BuildArgs)
	if err != nil {
		return nil, err
	}
	tags, err := json.Marshal(p.Tags)
	if err != nil {
		return nil, err
	}
	return []any{p.Name, p.GitURL, p.Branches, p.DockerfilePath, p.ContextDir, string(plats), string(args), string(tags), p.Push,
		p.CreatedBy, formatTime(p.CreatedAt), formatTime(p.UpdatedAt)}, nil
}

// CreateProject inserts a project; a taken name is a conflict.
func (s *Projects) CreateProject(ctx context.Context, p projects.Project, sealed []byte) error {
	args, err := projectArgs(p)
	if err != nil {
		return fmt.Errorf("db: encode project: %w", err)
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO projects (`+projectColumns+`, secret) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, append(args, sealed)...)
	if err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed") {
		return builds.CodeErrorf(builds.EConflict, "project_exists", "a project named %s exists already", p.Name)
	}
	if err != nil {
		return fmt.Errorf("db: insert project: %w", err)
	}
	return nil
}

// UpdateProject replaces a project's settings and sealed secret.
func (s *Projects) UpdateProject(ctx context.Context, p projects.Project, sealed []byte) error {
	args, err := projectArgs(p)
	if err != nil {
		return fmt.Errorf("db: encode project: %w", err)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE projects SET git_url = ?, branches = ?, dockerfile_path = ?, context_dir = ?, platforms = ?,
		build_args = ?, tags = ?, push = ?, updated_at = ?, secret = ? WHERE name = ?`,
		args[1], args[2], args[3], args[4], args[5], args[6], args[7], args[8], args[11], sealed, p.Name)
	if err != nil {
		return fmt.Errorf("db: update project: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return builds.CodeErrorf(builds.ENotFound, "project_not_found", "no project named %s", p.Name)
	}
	return nil
}

func scanProject(sc scanner, secret *[]byte) (projects.Project, error) {
	var p projects.Project
	var plats, args, tags, created, updated string
	dest := []any{&p.Name, &p.GitURL, &p.Branches, &p.DockerfilePath, &p.ContextDir, &plats, &args, &tags, &p.Push, &p.CreatedBy, &created, &updated}
	if secret != nil {
		dest = append(dest, secret)
	}
	if err := sc.Scan(dest...); err != nil {
		return p, err
	}
	if err := errors.Join(json.Unmarshal([]byte(plats), &p.Platforms), json.Unmarshal([]byte(args), &p.BuildArgs), json.Unmarshal([]byte(tags), &p.Tags)); err != nil {
		return p, fmt.Errorf("db: decode project %s: %w", p.Name, err)
	}
	var err error
	if p.CreatedAt, err = parseTime(created); err != nil {
		return p, err
	}
	p.UpdatedAt, err = parseTime(updated)
	return p, err
}

// GetProject is one project and its sealed secret.
func (s *Projects) GetProject(ctx context.Context, name string) (projects.Project, []byte, error) {
	var sealed []byte
	p, err := scanProject(s.db.QueryRowContext(ctx, `SELECT `+projectColumns+`, secret FROM projects WHERE name = ?`, name), &sealed)
	if errors.Is(err, sql.ErrNoRows) {
		return p, nil, builds.CodeErrorf(builds.ENotFound, "project_not_found", "no project named %q", clipped(name))
	}
	if err != nil {
		return p, nil, fmt.Errorf("db: get project: %w", err)
	}
	return p, sealed, nil
}

// ListProjects is every project by name.
func (s *Projects) ListProjects(ctx context.Context) ([]projects.Project, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+projectColumns+` FROM projects ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("db: list projects: %w", err)
	}
	defer rows.Close()
	var out []projects.Project
	for rows.Next() {
		p, err := scanProject(rows, nil)
		if err != nil {
			return nil, fmt.Errorf("db: list projects: %w", err)
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// ProjectBuilds are a project's build ids, newest first.
func (s *Projects) ProjectBuilds(ctx context.Context, name string, limit int) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT build_id FROM project_builds WHERE project = ? ORDER BY build_id DESC LIMIT ?`, name, limit)
	if err != nil {
		return nil, fmt.Errorf("db: project builds: %w", err)
	}
	defer rows.Close()
	var ids []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("db: project builds: %w", err)
		}
		ids = append(ids, id)
	}
	return ids, rows.Err()
}

// DeliveryBuild is the build a webhook delivery started, if it did.
func (s *Projects) DeliveryBuild(ctx context.Context, project, delivery string) (string, bool, error) {
	var id string
	err := s.db.QueryRowContext(ctx, `SELECT build_id FROM project_builds WHERE project = ? AND delivery = ?`, project, delivery).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("db: find delivery: %w", err)
	}
	return id, true, nil
}

// RecordProjectBuild links a build to its project and the delivery that started it.
func (s *Projects) RecordProjectBuild(ctx context.Context, project, buildID string, t projects.Trigger) error {
	if _, err := s.db.ExecContext(ctx, `INSERT INTO project_builds (project, build_id, delivery, event, ref, sha) VALUES (?, ?, ?, ?, ?, ?)`,
		project, buildID, t.Delivery, t.Event, t.Ref, t.SHA); err != nil {
		return fmt.Errorf("db: record project build: %w", err)
	}
	return nil
}

func clipped(s string) string {
	if len(s) > 100 {
		return s[:100] + "…"
	}
	return s
}
