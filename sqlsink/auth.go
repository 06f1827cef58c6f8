package sqlsink

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"go.etcd.io/etcd/api/v3/authpb"

	"github.com/etcdsql/etcdsql/fsm"
)

// The auth store in the database: users, their roles, roles and their key
// permissions, in four tables. They are created when the first user or
// role is written, not by the schema migrations, so a database that never
// held one keeps release v0.1.0's schema (and a v0.1.0 leader writes kv
// through it unchanged); the meta row auth_schema records their version.
// Each batch that carries a changed auth store replaces the tables' rows
// with it, in the batch's transaction: idempotent, and ordered with the
// revisions around it.

// schemaWithAuth is the database's schema_version once the auth tables
// exist (1 before: the first release's schema).
const schemaWithAuth = 2

// metaAuthSchema is the meta row that holds the auth tables' version; no
// row: the tables do not exist.
const metaAuthSchema = "auth_schema"

// authSchemaVersion is the auth tables' current version: 2 adds
// auth_settings, the one row holding the auth switch, the auth revision
// and the token signing key.
const authSchemaVersion = 2

func (mysqlDialect) authTables() []string {
	return []string{
		"CREATE TABLE IF NOT EXISTS auth_users (name VARBINARY(255) NOT NULL PRIMARY KEY," +
			" password VARBINARY(255) NOT NULL, no_password TINYINT NOT NULL) ENGINE=InnoDB",
		"CREATE TABLE IF NOT EXISTS auth_user_roles (user_name VARBINARY(255) NOT NULL, role_name VARBINARY(255) NOT NULL," +
			" PRIMARY KEY (user_name, role_name)) ENGINE=InnoDB",
		"CREATE TABLE IF NOT EXISTS auth_roles (name VARBINARY(255) NOT NULL PRIMARY KEY) ENGINE=InnoDB",
		"CREATE TABLE IF NOT EXISTS auth_permissions (role_name VARBINARY(255) NOT NULL, seq INT NOT NULL, perm_type INT NOT NULL," +
			" `key` VARBINARY(3072) NOT NULL, range_end VARBINARY(3072) NOT NULL, PRIMARY KEY (role_name, seq)) ENGINE=InnoDB",
		"CREATE TABLE IF NOT EXISTS auth_settings (id INT NOT NULL PRIMARY KEY, enabled TINYINT NOT NULL," +
			" revision BIGINT UNSIGNED NOT NULL, signing_key VARBINARY(64) NOT NULL) ENGINE=InnoDB",
	}
}

func (sqliteDialect) authTables() []string {
	return []string{
		"CREATE TABLE IF NOT EXISTS auth_users (name BLOB NOT NULL PRIMARY KEY, password BLOB NOT NULL, no_password INTEGER NOT NULL)",
		"CREATE TABLE IF NOT EXISTS auth_user_roles (user_name BLOB NOT NULL, role_name BLOB NOT NULL, PRIMARY KEY (user_name, role_name))",
		"CREATE TABLE IF NOT EXISTS auth_roles (name BLOB NOT NULL PRIMARY KEY)",
		`CREATE TABLE IF NOT EXISTS auth_permissions (role_name BLOB NOT NULL, seq INTEGER NOT NULL, perm_type INTEGER NOT NULL,` +
			` "key" BLOB NOT NULL, range_end BLOB NOT NULL, PRIMARY KEY (role_name, seq))`,
		"CREATE TABLE IF NOT EXISTS auth_settings (id INTEGER NOT NULL PRIMARY KEY, enabled INTEGER NOT NULL," +
			" revision INTEGER NOT NULL, signing_key BLOB NOT NULL)",
	}
}

// authSchema returns the auth tables' version, 0 when they do not exist.
func (s *Sink) authSchema(ctx context.Context) (int64, error) {
	var v int64
	err := s.db.QueryRowContext(ctx, "SELECT value FROM meta WHERE name = ?", metaAuthSchema).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlsink: read auth schema: %w", err)
	}
	if v > authSchemaVersion {
		return 0, fmt.Errorf("sqlsink: auth schema %d is newer than this binary knows (%d): upgrade etcdsql", v, authSchemaVersion)
	}
	return v, nil
}

// ensureAuthTables creates the auth tables and records their version. It
// runs outside a batch's transaction (MySQL commits one at a DDL
// statement); it is idempotent, and writes no data, so it needs no fence.
func (s *Sink) ensureAuthTables(ctx context.Context) error {
	if s.authTables.Load() {
		return nil
	}
	for _, q := range s.d.authTables() {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("sqlsink: create auth tables: %w", err)
		}
	}
	if _, err := s.db.ExecContext(ctx, s.d.insertIgnore("meta")+" (name, value) VALUES (?, ?)", metaAuthSchema, authSchemaVersion); err != nil {
		return fmt.Errorf("sqlsink: record auth schema: %w", err)
	}
	if _, err := s.db.ExecContext(ctx, "UPDATE meta SET value = ? WHERE name = ? AND value < ?", authSchemaVersion, metaAuthSchema, authSchemaVersion); err != nil {
		return fmt.Errorf("sqlsink: record auth schema: %w", err)
	}
	// The database's schema version rises with the auth tables: release
	// v0.1.0 refuses a database of a newer schema at start, so it cannot
	// serve, without authentication, a cluster whose data has it.
	if _, err := s.db.ExecContext(ctx, "UPDATE meta SET value = ? WHERE name = ? AND value < ?", schemaWithAuth, metaSchema, schemaWithAuth); err != nil {
		return fmt.Errorf("sqlsink: record schema %d: %w", schemaWithAuth, err)
	}
	s.authTables.Store(true)
	return nil
}

// writeAuth replaces the auth tables' rows with a.
func (s *Sink) writeAuth(sc *script, a *fsm.AuthState) {
	for _, t := range []string{"auth_users", "auth_user_roles", "auth_roles", "auth_permissions", "auth_settings"} {
		sc.add("auth", "DELETE FROM "+t)
	}
	sc.add("auth settings", "INSERT INTO auth_settings (id, enabled, revision, signing_key) VALUES (1, ?, ?, ?)",
		boolInt(a.Enabled), a.Revision, nonNil(a.Key))
	sc.addRows("auth users", "INSERT INTO auth_users (name, password, no_password) VALUES ", "", 3, s.d, func(yield func([]any)) {
		for _, u := range a.Users {
			yield([]any{u.Name, nonNil(u.Password), boolInt(u.Options != nil && u.Options.NoPassword)})
		}
	})
	sc.addRows("auth user roles", "INSERT INTO auth_user_roles (user_name, role_name) VALUES ", "", 2, s.d, func(yield func([]any)) {
		for _, u := range a.Users {
			for _, r := range u.Roles {
				yield([]any{u.Name, []byte(r)})
			}
		}
	})
	sc.addRows("auth roles", "INSERT INTO auth_roles (name) VALUES ", "", 1, s.d, func(yield func([]any)) {
		for _, r := range a.Roles {
			yield([]any{r.Name})
		}
	})
	head := "INSERT INTO auth_permissions (role_name, seq, perm_type, " + s.d.q("key") + ", range_end) VALUES "
	sc.addRows("auth permissions", head, "", 5, s.d, func(yield func([]any)) {
		for _, r := range a.Roles {
			for i, p := range r.KeyPermission {
				yield([]any{r.Name, i, int32(p.PermType), nonNil(p.Key), nonNil(p.RangeEnd)})
			}
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// loadAuth reads the auth tables, if they exist, into an auth state.
func (s *Sink) loadAuth(ctx context.Context) (fsm.AuthState, error) {
	var a fsm.AuthState
	v, err := s.authSchema(ctx)
	if err != nil || v == 0 {
		return a, err
	}
	if v >= 2 {
		if err := s.loadAuthSettings(ctx, &a); err != nil {
			return a, err
		}
	}
	users := map[string]*authpb.User{}
	err = s.scan(ctx, "SELECT name, password, no_password FROM auth_users ORDER BY name", func(rows *sql.Rows) error {
		u := &authpb.User{Options: &authpb.UserAddOptions{}}
		var noPw int
		if err := rows.Scan(&u.Name, &u.Password, &noPw); err != nil {
			return err
		}
		u.Options.NoPassword = noPw != 0
		if len(u.Password) == 0 {
			u.Password = nil
		}
		users[string(u.Name)] = u
		a.Users = append(a.Users, u)
		return nil
	})
	if err == nil {
		err = s.scan(ctx, "SELECT user_name, role_name FROM auth_user_roles ORDER BY user_name, role_name", func(rows *sql.Rows) error {
			var user, role []byte
			if err := rows.Scan(&user, &role); err != nil {
				return err
			}
			if u := users[string(user)]; u != nil {
				u.Roles = append(u.Roles, string(role))
			}
			return nil
		})
	}
	if err == nil {
		a.Roles, err = s.loadRoles(ctx)
	}
	if err != nil {
		return fsm.AuthState{}, fmt.Errorf("sqlsink: load auth: %w", err)
	}
	return a, nil
}

// loadAuthSettings reads the auth switch, revision and signing key; a
// database without the row (no batch wrote it yet) reads as disabled.
func (s *Sink) loadAuthSettings(ctx context.Context, a *fsm.AuthState) error {
	var on int
	err := s.db.QueryRowContext(ctx, "SELECT enabled, revision, signing_key FROM auth_settings WHERE id = 1").Scan(&on, &a.Revision, &a.Key)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sqlsink: load auth settings: %w", err)
	}
	a.Enabled = on != 0
	if len(a.Key) == 0 {
		a.Key = nil
	}
	return nil
}

// loadRoles reads the roles with their permissions in their order.
func (s *Sink) loadRoles(ctx context.Context) ([]*authpb.Role, error) {
	var roles []*authpb.Role
	byName := map[string]*authpb.Role{}
	err := s.scan(ctx, "SELECT name FROM auth_roles ORDER BY name", func(rows *sql.Rows) error {
		r := &authpb.Role{}
		if err := rows.Scan(&r.Name); err != nil {
			return err
		}
		byName[string(r.Name)] = r
		roles = append(roles, r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	q := "SELECT role_name, perm_type, " + s.d.q("key") + ", range_end FROM auth_permissions ORDER BY role_name, seq"
	err = s.scan(ctx, q, func(rows *sql.Rows) error {
		var role []byte
		p := &authpb.Permission{}
		var typ int32
		if err := rows.Scan(&role, &typ, &p.Key, &p.RangeEnd); err != nil {
			return err
		}
		p.PermType = authpb.Permission_Type(typ)
		if len(p.Key) == 0 {
			p.Key = nil
		}
		if len(p.RangeEnd) == 0 {
			p.RangeEnd = nil
		}
		if r := byName[string(role)]; r != nil {
			r.KeyPermission = append(r.KeyPermission, p)
		}
		return nil
	})
	return roles, err
}

// scan runs a query and calls row for each row.
func (s *Sink) scan(ctx context.Context, q string, row func(*sql.Rows) error) error {
	rows, err := s.db.QueryContext(ctx, q)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := row(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}
