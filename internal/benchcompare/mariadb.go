package main

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// freshDatabase creates an empty database named after tag on dsn's server
// and returns its DSN and a function that drops it.
func freshDatabase(ctx context.Context, dsn, tag string) (string, func(), error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "", nil, fmt.Errorf("--mysql-dsn: %w", err)
	}
	name := fmt.Sprintf("benchcompare_%d_%s", time.Now().Unix(), strings.NewReplacer("-", "_", ".", "_").Replace(tag))
	admin := cfg.Clone()
	admin.DBName = ""
	db, err := sql.Open("mysql", admin.FormatDSN())
	if err != nil {
		return "", nil, err
	}
	if _, err := db.ExecContext(ctx, "CREATE DATABASE `"+name+"`"); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	cfg.DBName = name
	return cfg.FormatDSN(), func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		db.ExecContext(ctx, "DROP DATABASE `"+name+"`")
		db.Close()
	}, nil
}
