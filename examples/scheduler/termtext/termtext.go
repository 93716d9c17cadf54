// Package termtext makes text that the scheduler did not write safe to
// print on an operator's terminal: termination messages, pod conditions,
// Events, reasons, container and node names, error messages from the API
// server. Any of them can hold what a pod, a node or another user of the
// cluster put there, and a terminal obeys control characters: ESC sequences
// (CSI moves the cursor and erases the screen, OSC 52 writes the
// clipboard), carriage returns that overwrite a line, C1 controls that
// some terminals take as ESC sequences, bidirectional overrides that
// reorder what a line shows.
//
// Line and Text replace each such character with an escape a person can
// read (`\x1b`, `\u009b`), so that an ESC sequence is shown, not obeyed,
// and keep every other valid printable character. Bytes that are not
// UTF-8 are escaped too (`\xff`), so the result is always valid UTF-8.
// The scheduler's commands pass every such string through one of them
// where they print it.
package termtext

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

const hex = "0123456789abcdef"

// Line returns s as one line: each run of white space, line breaks and
// tabs included, becomes one space, with none at either end, and control
// characters (C0, DEL, C1), bidirectional formatting characters and bytes
// that are not UTF-8 are escaped. Use it for a message, reason or name
// printed within a line or a table cell.
func Line(s string) string { return clean(s, false) }

// Text returns s with its line breaks (a CRLF becomes one) and tabs kept
// and every other control character, bidirectional formatting character
// and byte that is not UTF-8 escaped, as Line does. Use it for text whose
// lines are part of what it says, such as an error message printed on
// lines of its own.
func Text(s string) string { return clean(s, true) }

// IsEscaped reports whether Line and Text escape r: C0 controls, DEL, C1
// controls and bidirectional formatting characters. (Text keeps '\n' and
// '\t' and Line turns them into spaces.)
func IsEscaped(r rune) bool {
	switch {
	case r < 0x20, r == 0x7f, r >= 0x80 && r < 0xa0:
		return true
	case r == '\u061c', r == '\u200e', r == '\u200f', r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069':
		return true
	}
	return false
}

func clean(s string, multiline bool) string {
	if safe(s, multiline) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	space := false // Line: white space is pending, written before what comes next
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if !multiline && r != utf8.RuneError && unicode.IsSpace(r) {
			space = b.Len() > 0
			i += n
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		switch {
		case r == utf8.RuneError && n == 1:
			escapeByte(&b, s[i])
		case multiline && (r == '\n' || r == '\t'):
			b.WriteRune(r)
		case multiline && r == '\r' && i+1 < len(s) && s[i+1] == '\n':
			// CRLF: the '\n' is written next.
		case IsEscaped(r):
			if r < 0x80 {
				escapeByte(&b, byte(r))
			} else {
				b.WriteString(`\u`)
				for shift := 12; shift >= 0; shift -= 4 {
					b.WriteByte(hex[r>>shift&0xf])
				}
			}
		default:
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

func escapeByte(b *strings.Builder, c byte) {
	b.WriteString(`\x`)
	b.WriteByte(hex[c>>4])
	b.WriteByte(hex[c&0xf])
}

// safe reports whether clean would return s unchanged, so that the common
// case allocates nothing: printable ASCII (and, for Text, line breaks and
// tabs), with single spaces between words for Line.
func safe(s string, multiline bool) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80:
			return false
		case multiline && (c == '\n' || c == '\t'):
		case c < 0x20 || c == 0x7f:
			return false
		case !multiline && c == ' ' && (i == 0 || i == len(s)-1 || s[i+1] == ' '):
			return false
		}
	}
	return true
}
