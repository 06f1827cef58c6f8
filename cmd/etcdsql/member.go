package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/etcdsql/etcdsql/node"
)

// runMember is `etcdsql member list|remove`: what an operator needs to
// see members and to remove a dead one (etcdctl member list/remove work
// too; this one takes member names).
func runMember(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("etcdsql member", flag.ContinueOnError)
	fs.SetOutput(out)
	endpoints := fs.String("endpoints", "http://127.0.0.1:2379", "comma-separated client URLs of members")
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: etcdsql member [--endpoints URLS] list | remove NAME")
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.Usage()
		return flag.ErrHelp
	}
	cmd := args[0]
	// Flags may come before or after the member name.
	var names []string
	for rest := args[1:]; ; {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		rest = fs.Args()[1:]
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: splitList(*endpoints), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	switch cmd {
	case "list":
		resp, err := c.MemberList(ctx)
		if err != nil {
			return err
		}
		st, err := c.Status(ctx, c.Endpoints()[0])
		if err != nil {
			return err
		}
		w := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(w, "ID\tNAME\tROLE\tSTATUS\tCLIENT URLS\tPEER URLS")
		for _, m := range resp.Members {
			role := "voter"
			if m.IsLearner {
				role = "nonvoter"
			}
			if m.ID == st.Leader {
				role += ",leader"
			}
			status := "alive"
			if len(m.ClientURLs) == 0 {
				status = "failed"
			}
			fmt.Fprintf(w, "%x\t%s\t%s\t%s\t%v\t%v\n", m.ID, m.Name, role, status, m.ClientURLs, m.PeerURLs)
		}
		return w.Flush()
	case "remove":
		if len(names) != 1 {
			return errors.New("member remove: give the member's name")
		}
		name := names[0]
		id := node.MemberID(name)
		if _, err := c.MemberRemove(ctx, id); err != nil {
			return fmt.Errorf("remove %s (%s): %w", name, strconv.FormatUint(id, 16), err)
		}
		fmt.Fprintf(out, "Member %x (%s) removed\n", id, name)
		return nil
	}
	fs.Usage()
	return flag.ErrHelp
}
