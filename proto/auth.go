package proto

import "errors"

// CmdAuth authenticates a connection: AUTH <secret> or AUTH <user>
// <secret>. On the inter-node ports (meta RPC, data) the secret is the
// cluster secret and the user name, if any, is ignored.
const CmdAuth = "auth"

// Authentication errors, as Redis names them, so stock clients and
// operators recognise them.
var (
	// ErrNoAuth refuses a command on a connection that has not
	// authenticated yet.
	ErrNoAuth = errors.New("authentication required")
	// ErrWrongPass refuses an AUTH whose secret is not accepted.
	ErrWrongPass = errors.New("wrong secret")
)
