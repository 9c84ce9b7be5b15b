package proto

// Client-facing commands served by session nodes.
const (
	CmdPing        = "ping"
	CmdEcho        = "echo"
	CmdQuit        = "quit"
	CmdHello       = "hello"
	CmdClient      = "client"
	CmdCommand     = "command"
	CmdSelect      = "select"
	CmdRegister    = "register"
	CmdUnregister  = "unregister"
	CmdRenew       = "renew"
	CmdLookup      = "lookup"
	CmdSubscribe   = "subscribe"
	CmdUnsubscribe = "unsubscribe"
	CmdInfo        = "info"
)

// Sub-commands and option words.
const (
	SubSetName = "setname"
	SubGetName = "getname"
	SubSetInfo = "setinfo"
	SubID      = "id"
	SubDocs    = "docs"
	SubCount   = "count"
	SubInfo    = "info"
	SubList    = "list"
	OptTTL     = "ttl"
	OptAuth    = "auth"
)

// Push kinds sent to subscribers (Redis pub/sub framing).
const (
	PushSubscribe   = "subscribe"
	PushUnsubscribe = "unsubscribe"
	PushMessage     = "message"
	// PushGoAway is the RESP3 push a session sends every client when it
	// shuts down: [goaway, <milliseconds until it closes the connection>].
	PushGoAway = "goaway"
	// ChanGoAway is the pub/sub channel a subscribed connection gets the
	// same notice on, as a message whose payload is the milliseconds.
	ChanGoAway = ReservedPrefix + "goaway"
	// ReservedPrefix starts the channels a session speaks on by itself;
	// no dataInfoId may start with it.
	ReservedPrefix = "__slotreg__:"
)

// Inter-node commands served by meta nodes.
const (
	CmdHeartbeat = "heartbeat"
	CmdTable     = "table"
	CmdNodes     = "nodes"
	CmdLeave     = "leave"
	// CmdSuspect is a node reporting that another refuses connections
	// (see Suspect).
	CmdSuspect = "suspect"
	// CmdTableWait is a node's long poll for a newer table or session
	// list (see TableWait).
	CmdTableWait = "tablewait"
)

// Inter-node commands served by data nodes. A session's change stream uses
// the pub/sub commands above on the data node's port: the channel is the
// dataInfoId and the payload a Datum in binary form.
const (
	CmdDWrite    = "dwrite"
	CmdDLookup   = "dlookup"
	CmdDChildren = "dchildren"
)

// Node kinds as they appear in heartbeats and membership listings.
const (
	KindMeta    = "meta"
	KindData    = "data"
	KindSession = "session"
)
