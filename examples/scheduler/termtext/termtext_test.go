package termtext_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/kubexec/kubexec/examples/scheduler/termtext"
)

func TestLineAndText(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, in, line, text string
	}{
		{"empty", "", "", ""},
		{"plain", "exit code 3: boom", "exit code 3: boom", "exit code 3: boom"},
		{"OSC 52 writes the clipboard", "\x1b]52;c;cHduZWQ=\x07done", `\x1b]52;c;cHduZWQ=\x07done`, `\x1b]52;c;cHduZWQ=\x07done`},
		{"OSC ended by ST", "\x1b]0;title\x1b\\x", `\x1b]0;title\x1b\x`, `\x1b]0;title\x1b\x`},
		{"CSI erases the screen", "\x1b[2J\x1b[31mred\x1b[0m", `\x1b[2J\x1b[31mred\x1b[0m`, `\x1b[2J\x1b[31mred\x1b[0m`},
		{"C1 CSI", "\u009b31mred", `\u009b31mred`, `\u009b31mred`},
		{"C1 OSC and ST", "\u009d52;c;eA==\u009c", `\u009d52;c;eA==\u009c`, `\u009d52;c;eA==\u009c`},
		{"NEL is a line break", "a\u0085b", "a b", `a\u0085b`},
		{"DEL, NUL, BEL, backspace", "a\x7fb\x00c\x07d\x08e", `a\x7fb\x00c\x07d\x08e`, `a\x7fb\x00c\x07d\x08e`},
		{"carriage return overwrites the line", "ok\rFAILED", "ok FAILED", `ok\x0dFAILED`},
		{"line breaks and tabs", "  first\tline\n\nsecond \r\n", "first line second", "  first\tline\n\nsecond \n"},
		{"vertical tab, form feed", "a\vb\fc", "a b c", `a\x0bb\x0cc`},
		{"Unicode line separators", "a\u2028b\u2029c", "a b c", "a\u2028b\u2029c"},
		{"bidirectional override", "txt.\u202eexe", `txt.\u202eexe`, `txt.\u202eexe`},
		{"bidirectional isolates and marks", "\u2066a\u2069\u200e\u061c", `\u2066a\u2069\u200e\u061c`, `\u2066a\u2069\u200e\u061c`},
		{"not UTF-8", "a\xff\xfeb", `a\xff\xfeb`, `a\xff\xfeb`},
		{"multibyte rune cut", "caf\xc3", `caf\xc3`, `caf\xc3`},
		{"printable Unicode is kept", "Größe 5€ 日本語 é 🙂 👩‍💻 \ufffd", "Größe 5€ 日本語 é 🙂 👩‍💻 \ufffd", "Größe 5€ 日本語 é 🙂 👩‍💻 \ufffd"},
		{"only white space", " \t\n ", "", " \t\n "},
		{"spaces collapse", "a    b", "a b", "a    b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.line, termtext.Line(tc.in), "Line")
			require.Equal(t, tc.text, termtext.Text(tc.in), "Text")
		})
	}
}

// FuzzLineAndText: whatever the input, the output is valid UTF-8 with no
// character a terminal obeys (Text keeps only '\n' and '\t'), cleaning it
// again changes nothing, and every printable character of the input is
// still there, in order.
func FuzzLineAndText(f *testing.F) {
	for _, s := range []string{
		"", "plain", "\x1b]52;c;cHduZWQ=\x07", "\x1b[2J", "\u009b31m", "ok\rFAILED", "a\r\nb", "\xff", "caf\xc3",
		"\u202e", " \t\n ", "日本語 🙂", "\x1b\x1b[", "\r", "\r\r\n", "\u0085\u2028",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, mode := range []struct {
			name  string
			clean func(string) string
			keep  func(rune) bool
		}{
			{"Line", termtext.Line, func(rune) bool { return false }},
			{"Text", termtext.Text, func(r rune) bool { return r == '\n' || r == '\t' }},
		} {
			out := mode.clean(s)
			if !utf8.ValidString(out) {
				t.Fatalf("%s(%q) = %q: not valid UTF-8", mode.name, s, out)
			}
			for _, r := range out {
				if termtext.IsEscaped(r) && !mode.keep(r) {
					t.Fatalf("%s(%q) = %q: holds %U", mode.name, s, out, r)
				}
			}
			if again := mode.clean(out); again != out {
				t.Fatalf("%s is not idempotent: %q -> %q -> %q", mode.name, s, out, again)
			}
			if want := printable(s); !subsequence(want, out) {
				t.Fatalf("%s(%q) = %q lost some of %q", mode.name, s, out, want)
			}
		}
		if strings.ContainsAny(termtext.Line(s), "\n\r\t") {
			t.Fatalf("Line(%q) spans lines", s)
		}
	})
}

// printable returns the valid, printable, non-space runes of s.
func printable(s string) []rune {
	var out []rune
	for i, r := range s {
		if r == utf8.RuneError {
			if _, n := utf8.DecodeRuneInString(s[i:]); n == 1 {
				continue
			}
		}
		if !termtext.IsEscaped(r) && !unicode.IsSpace(r) {
			out = append(out, r)
		}
	}
	return out
}

func subsequence(want []rune, s string) bool {
	for _, r := range s {
		if len(want) > 0 && want[0] == r {
			want = want[1:]
		}
	}
	return len(want) == 0
}
