// Package proto is the one place where slotreg's wire commands live: every
// command name (client-facing and inter-node) is a constant here, every
// inter-node command has a struct with a builder (Args) and a parser
// (ParseX), and every sentinel error maps to exactly one RESP error prefix.
//
// proto does no I/O and starts no goroutines: it only turns values into
// RESP argument lists and back, so that the meta, data and session roles and
// the tests agree on the bytes without sharing any other code.
package proto
