package main

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/slotreg/slotreg/proto"
)

// metaCommand groups the operations on the meta group itself.
func metaCommand() *cli.Command {
	return &cli.Command{
		Name:  "meta",
		Usage: "manage the meta Raft group",
		Subcommands: []*cli.Command{{
			Name:  "remove",
			Usage: "take a meta voter out of the Raft group (then stop its process)",
			Description: "The leader commits a Raft configuration without the voter and forgets its address.\n" +
				"Removing the leader is allowed: it steps down and the others elect a new one. The last\n" +
				"voter cannot be removed. Stop the removed node's process afterwards; its data dir is then\n" +
				"of no use to the group.",
			ArgsUsage: "META-ID",
			Action:    action(runMetaRemove),
		}},
	}
}

func runMetaRemove(c *cli.Context, e *env) error {
	if c.NArg() != 1 {
		return usageErrorf("meta remove takes one META-ID, got %d arguments", c.NArg())
	}
	id := c.Args().First()
	if _, err := e.write((&proto.MetaRemove{NodeID: id}).Args()...); err != nil {
		return fmt.Errorf("meta remove %s: %w", id, err)
	}
	e.printf("%s removed from the meta group; stop its process now\n", id)
	return nil
}
