//go:build ignore

// canonical_vectors.go writes tests/unit/canonical_vectors.h, the expected outputs that
// tests/unit/check_canonical.c compares src/canonical_json.c and src/bundle_hash.c against.
// It uses only the Go standard library: the canonical text of a JSON document is what Go's
// encoding/json prints for it after json.Unmarshal into `any` (the definition go-oversync uses
// for bundle_hash), so every expected value below is computed by encoding/json itself.
//
// Regenerate (from the top of the checkout; deterministic for a given Go version):
//
//	go run tests/unit/canonical_vectors.go > tests/unit/canonical_vectors.h
//
// Mass comparison (not committed, run by hand when the C number code changes):
//
//	go run tests/unit/canonical_vectors.go -mass 2000000 > /tmp/mass.txt
//	CANONICAL_MASS_FILE=/tmp/mass.txt tests/unit/check_canonical
//
// writes one "hex-input<TAB>expected-or-!" line per random number literal, float64 bit pattern
// or (one in eight) random document, valid or damaged.
package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"math/big"
	"math/rand"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// canonical is the definition under test: decode into any, encode again.
func canonical(in []byte) ([]byte, bool) {
	var v any
	if err := json.Unmarshal(in, &v); err != nil {
		return nil, false
	}
	out, err := json.Marshal(v)
	if err != nil {
		panic(err) // a decoded value always marshals
	}
	return out, true
}

// cstr renders b as a C string literal: printable ASCII as is (except " \ ?), the rest as
// three-digit octal escapes, which never absorb a following character.
func cstr(b []byte) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for _, c := range b {
		switch {
		case c == '"' || c == '\\' || c == '?':
			fmt.Fprintf(&sb, "\\%03o", c)
		case c >= 0x20 && c < 0x7f:
			sb.WriteByte(c)
		default:
			fmt.Fprintf(&sb, "\\%03o", c)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// ------------------------------------------------------------------ hand-written cases

func handCases() []string {
	cases := []string{
		// numbers
		"0", "-0", "0.0", "-0.0", "0e0", "-0e-5", "0.000", "1", "-1", "1.0", "1.5", "-1.5",
		"1E5", "1e5", "1E+5", "1e+05", "1e-05", "1.0e1", "10", "100", "1e2", "123e-2",
		"0.1", "0.2", "0.3", "0.30000000000000004", "1.1", "2.675", "1e-6", "0.000001",
		"9.999999e-7", "9.9999999999999995e-7", "0.00000099999999999999995", "1e-7", "1.5e-7",
		"0.0000001", "1e-10", "1e-100", "1e20", "1e21", "1e22", "999999999999999999999",
		"999999999999999900000", "999999999999999934463", "999999999999999934464", "1e+21",
		"100000000000000000000", "123456789012345678901234", "12345678901234567890",
		"1.2345678901234567e+20", "0.3333333333333333", "0.33333333333333331",
		"0.333333333333333314829616256247390992939472198486328125", "0.6666666666666666",
		"5e-324", "4.9406564584124654e-324", "2.4703282292062327e-324",
		"2.4703282292062328e-324", "1e-323", "2.2250738585072014e-308",
		"2.2250738585072011e-308", "2.225073858507201e-308", "1.7976931348623157e308",
		"1.7976931348623158e308", "1.7976931348623159e308", "-1.7976931348623157e308",
		"179769313486231570000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000",
		"9007199254740991", "9007199254740992", "9007199254740993", "9007199254740994",
		"9007199254740995", "-9007199254740993", "18014398509481985", "9223372036854775807",
		"-9223372036854775808", "18446744073709551615", "18446744073709551616",
		"1e400", "-1e400", "1e309", "1e-400", "-1e-400", "1e-325", "-1e-325",
		"1e00000000000000000000000001", "1e-0000000000000000000000000000000000001",
		"1e10000", "1e-10000", "1e99999999999999999999", "-1e-99999999999999999999",
		"1125899906842624.25", "1125899906842624.75", "1125899906842625.25",
		"4503599627370496.5", "4503599627370497.5", "2251799813685248.25",
		"0.1e1", "0.01e2", "12.34e-2", "1.7e308", "1.7e-308", "3.14159265358979323846264338327950288",
		"144115188075855877", "144115188075855872", "295147905179352825856",
		"7.0e-10", "100e-10", "4.35", "0.000123", "123456.789", "1234567.0e-3",
		"6.02214076e23", "1.602176634e-19", "6.62607015e-34",
		// number syntax errors
		"01", "-01", "00", "1.", ".5", "-.5", "+1", "1e", "1e+", "1e-", "1.e5", "--1", "-",
		"0x10", "1_000", "NaN", "nan", "Infinity", "-Infinity", "inf", "1.5.5", "1e5e5",
		"[01]", "[1.]", "{\"a\":01}", "[-]",
		// literals
		"true", "false", "null", " true ", "True", "nul", "nulll", "truefalse", "[true,false,null]",
		// whitespace and framing
		"", " ", "\t\r\n 1 \t\r\n", "1 2", "1,", "[1] x", "[1]]", "{}}", "1 x", "\"a\"\"b\"",
		"\x00", "1\x00", "\xef\xbb\xbf1", "\f1", "1\v", "\u00a01", "[1,]", "[,1]", "[1 2]",
		"{\"a\" 1}", "{\"a\":1,}", "{,}", "{\"a\"}", "{a:1}", "{'a':1}", "['a']", "{\"a\":1 \"b\":2}",
		// containers
		"[]", "{}", "[[]]", "[{}]", "{\"a\":[]}", "{\"a\":{}}", " [ 1 , 2 , [ ] , { } ] ",
		"[[[[[[[[[[]]]]]]]]]]", "{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}",
		// keys: sorting, duplicates, escapes
		"{\"b\":1,\"a\":2}", "{\"a\":1,\"a\":2}", "{\"a\":1,\"b\":2,\"a\":3}", "{\"a\":1,\"\\u0061\":2}",
		"{\"\\u0061\":1,\"a\":2}", "{\"a\":{\"y\":1,\"x\":2},\"a\":{\"z\":3}}",
		"{\"B\":1,\"a\":2,\"_\":3,\"A\":4,\"b\":5,\"0\":6,\"\":7,\" \":8}",
		"{\"é\":1,\"e\":2,\"z\":3,\"É\":4,\"ÿ\":5,\"Ā\":6,\"中\":7,\"😀\":8,\"\uffff\":9,\"\ufffd\":10}",
		"{\"\\ud83d\\ude00\":1,\"\\uffff\":2,\"\\u00ff\":3}", "{\"a\\u0000\":1,\"a\":2}",
		"{\"<\":1,\"A\":2,\"&\":3,\">\":4}", "{\"\xff\":1,\"\xfe\":2}", "{\"\xff\":1,\"\\ufffd\":2}",
		"{\"ab\":1,\"a\":2,\"abc\":3,\"a\\u0000\":4}", "{\"x\":1,\"X\":2,\"x\":null}",
		// strings: escapes accepted and rejected
		"\"\"", "\"abc\"", "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\u0041\\u00e9\\u4e2d\"",
		"\"\\u00E9\\u00e9\"", "\"\\uD83D\\uDE00\"", "\"\\ud83d\\ude00\"", "\"\\ud800\"", "\"\\udc00\"",
		"\"\\udfff\"", "\"\\ud800\\u0041\"", "\"\\ud800\\ud800\\udc00\"", "\"\\udc00\\ud800\"",
		"\"\\ud800x\"", "\"\\ud800\\\\\"", "\"\\ud800\\n\"", "\"\\ud800\\\"\"", "\"\\uDBFF\\uDFFF\"",
		"\"\\ud800\\udbff\"", "\"a\\ud800\"", "\"\\u0000\"", "\"\\u001f\\u007f\\u0080\\u009f\\u00a0\"",
		"\"\\u2028\\u2029\\u2027\\u202a\"", "\"\u2028\u2029\"", "\"<>&'\"", "\"\\u003c\\u003e\\u0026\"",
		"\"\\'\"", "\"\\a\"", "\"\\x41\"", "\"\\u12\"", "\"\\u12G4\"", "\"\\U0041\"", "\"\\\"",
		"\"abc", "\"\\", "\"\\u", "\"\\ud800\\u12\"", "\"\\ud800\\uzzzz\"", "\"a\tb\"", "\"a\nb\"",
		"\"\x7f\"", "\"\x1f\"", "\"\x00\"", "\"\ufeff\"", "\"\U0010ffff\"", "\"\U0001f600\"",
		// strings: invalid UTF-8 (one U+FFFD per bad byte)
		"\"\xff\"", "\"\xfe\xff\"", "\"\x80\"", "\"\xbf\"", "\"\xc0\x80\"", "\"\xc1\xbf\"",
		"\"\xc2\"", "\"\xc2\x7f\"", "\"\xc2\xc0\"", "\"\xe0\x80\x80\"", "\"\xe0\x9f\xbf\"",
		"\"\xe0\xa0\"", "\"\xe2\x82\"", "\"\xe2\x82A\"", "\"\xe2\x82\xac\"", "\"\xed\xa0\x80\"",
		"\"\xed\xbf\xbf\"", "\"\xed\x9f\xbf\"", "\"\xed\xa0\x80\xed\xb0\x80\"", "\"\xf0\x80\x80\x80\"",
		"\"\xf0\x8f\xbf\xbf\"", "\"\xf0\x90\x80\x80\"", "\"\xf0\x9f\x98\"", "\"\xf0\x9f\x98\x80\"",
		"\"\xf4\x8f\xbf\xbf\"", "\"\xf4\x90\x80\x80\"", "\"\xf5\x80\x80\x80\"", "\"\xf8\x88\x80\x80\x80\"",
		"\"\xfc\x84\x80\x80\x80\x80\"", "\"a\xffb\xc3\xa9c\"", "\"\xe2\x80\xa8\"", "\"\xef\xbf\xbd\"",
		"\"\xef\xbf\xbe\xef\xbf\xbf\"", "\"\xc3\"", "\"\xc3\xa9\xc3\"", "[\"\xff\",\"\xc3\xa9\"]",
		// a realistic payload
		`{"id":"550e8400-e29b-41d4-a716-446655440000","name":"John Doe","email":"john@example.com"}`,
		`{"count_value":9007199254740993,"created_at":"2026-03-22T12:00:00.5+00:00","note":null,"rating":0.1,"data":"AAFoZWxsb/8=","enabled_flag":1}`,
		`{ "z" : [ 1 , 2.50 , -0 , 1E400 ] }`,
		`{"html":"<script>alert('x')</script> & more","sep":"a` + "\u2028" + `b"}`,
	}
	// every byte as a raw string character and as an escape
	for c := 0; c < 0x100; c++ {
		cases = append(cases, "\""+string([]byte{byte(c)})+"\"")
		cases = append(cases, fmt.Sprintf("\"\\u%04x\"", c))
		cases = append(cases, fmt.Sprintf("\"\\u%04X\"", c))
	}
	// nesting: Go's scanner allows 10000 open containers
	cases = append(cases,
		strings.Repeat("[", 10000)+strings.Repeat("]", 10000),
		strings.Repeat("[", 10001)+strings.Repeat("]", 10001),
		strings.Repeat("{\"a\":", 10000)+"1"+strings.Repeat("}", 10000),
		strings.Repeat("{\"a\":", 10001)+"1"+strings.Repeat("}", 10001),
		strings.Repeat("[{\"b\":0,\"a\":", 2500)+"null"+strings.Repeat("}]", 2500),
		strings.Repeat("[", 10000),
	)
	// long numbers (Go reads at most 800 digits exactly, then remembers "more")
	cases = append(cases,
		"0."+strings.Repeat("0", 400)+"1e400",
		"0."+strings.Repeat("0", 20000)+"1e20010",
		"0."+strings.Repeat("0", 12000)+"1e120010",
		"-0."+strings.Repeat("0", 12000)+"1e-120010",
		"0."+strings.Repeat("0", 12000)+"1e12010",
		"0."+strings.Repeat("0", 20000)+"1e-20010",
		"1"+strings.Repeat("0", 799)+".5e-790",
		strings.Repeat("9", 800)+"e-790",
		"1"+strings.Repeat("0", 900),
		"1"+strings.Repeat("0", 900)+".5",
		"1"+strings.Repeat("0", 900)+"e0",
		"1"+strings.Repeat("0", 900)+"e+5",
		"1"+strings.Repeat("0", 900)+"e-0",
		"9007199254740993"+strings.Repeat("0", 784)+"e-784",
		"9007199254740993."+strings.Repeat("0", 2000)+"1",
		"9007199254740993."+strings.Repeat("0", 2000),
		"9007199254740992."+strings.Repeat("0", 2000)+"1",
		"0.1"+strings.Repeat("0", 900)+"1",
		"2.4703282292062327208828439643411068618252990130716238221279284125033775363510437593264991818081799618989828234772285886546332835517796989819938739800539093906315035659515570226392290858392449105184435931802849936536152500319370457678249219365623669863658480757001585769269903706311928279558551332927834338409351978015531246597263579574622766465272827220056374006485499977096599470454020828166226237857393450736339007967761930577506740176324673600968951340535537458516661134223766678604162159680461914467291840300530057530849048765391711386591646239524912623653881879636239373280423891018672348497668235089863388587925628302755995657524455507255189313690836254779186948667994968324049705821028513185451396213837722826145437693412532098591327667236328125e-324",
		"2.4703282292062327208828439643411068618252990130716238221279284125033775363510437593264991818081799618989828234772285886546332835517796989819938739800539093906315035659515570226392290858392449105184435931802849936536152500319370457678249219365623669863658480757001585769269903706311928279558551332927834338409351978015531246597263579574622766465272827220056374006485499977096599470454020828166226237857393450736339007967761930577506740176324673600968951340535537458516661134223766678604162159680461914467291840300530057530849048765391711386591646239524912623653881879636239373280423891018672348497668235089863388587925628302755995657524455507255189313690836254779186948667994968324049705821028513185451396213837722826145437693412532098591327667236328125001e-324",
		"1.797693134862315807937289714053034150799341327710739694474466094497486495758346289166818897497467627271758925849950016908958946245436127493063866227296451262564223453434936546612713617233498036864549446627316138567154452271025451049648939012626612993920658003808049218624357934609616393427307286054913812864e308",
		"1.797693134862315807937289714053034150799341327710739694474466094497486495758346289166818897497467627271758925849950016908958946245436127493063866227296451262564223453434936546612713617233498036864549446627316138567154452271025451049648939012626612993920658003808049218624357934609616393427307286054913812863e308",
	)
	return cases
}

// Inputs Go accepts that canonical_json refuses on purpose (see canonical_json.h): more than 800
// significant integer digits with a negative exponent, where Go's slow path loses the decimal
// point. Go's answers are recorded for the record.
func divergentCases() []string {
	return []string{
		"1" + strings.Repeat("0", 800) + "e-790", // Go happens to get this one right
		"1" + strings.Repeat("0", 900) + "e-890",
		"1" + strings.Repeat("0", 12000) + "e-120010",
		"1" + strings.Repeat("0", 1999) + "e-1600",
		"1" + strings.Repeat("0", 900) + "e-1210",
		"1" + strings.Repeat("0", 1000) + "e-650",
		"9007199254740993" + strings.Repeat("0", 884) + "e-884",
		"-" + strings.Repeat("7", 801) + ".5e-801",
	}
}

// ------------------------------------------------------------------ random documents

type gen struct{ r *rand.Rand }

func (g gen) pick(n int) int { return g.r.Intn(n) }

func (g gen) ws() string {
	if g.pick(3) != 0 {
		return ""
	}
	return []string{" ", "\n", "\t", "\r\n", "  ", " \t "}[g.pick(6)]
}

var awkwardFloats = []float64{
	0, 1, -1, 0.1, 0.2, 1.0 / 3, 2.0 / 3, 1e-6, 1e-7, 9.999999e-7, 1e21, 1e20, 1e-300, 1e300,
	math.MaxFloat64, math.SmallestNonzeroFloat64, 2.2250738585072014e-308, 1 << 53, 1<<53 + 2,
	123456789012345678, 0.000001234, 5e-324, 1.5, 100, 1e15, 1e16, 1e17, 999999999999999900000,
	math.Pi, math.E, 1e-5, 0.5, 0.25, 3.0000000000000004, 4.35, 0.07, 1e23, 8.41e21, 5e-7,
}

func (g gen) randomFloat() float64 {
	switch g.pick(6) {
	case 0:
		return awkwardFloats[g.pick(len(awkwardFloats))]
	case 1: // any bit pattern
		for {
			f := math.Float64frombits(g.r.Uint64())
			if !math.IsNaN(f) && !math.IsInf(f, 0) {
				return f
			}
		}
	case 2: // a power of two, scaled a little
		f := math.Ldexp(1, g.pick(2098)-1074)
		for i := g.pick(3); i > 0; i-- {
			f = math.Nextafter(f, math.Inf(1-2*g.pick(2)))
		}
		return f
	case 3: // near the plain/exponent cut-offs
		base := []float64{1e-6, 1e21}[g.pick(2)]
		f := base
		for i := g.pick(4); i > 0; i-- {
			f = math.Nextafter(f, math.Inf(1-2*g.pick(2)))
		}
		return f
	case 4:
		return g.r.NormFloat64() * math.Pow(10, float64(g.pick(60)-30))
	default:
		return float64(g.r.Int63n(1<<62)) / float64(int64(1)<<uint(g.pick(62)))
	}
}

func (g gen) digits(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + g.pick(10))
	}
	return string(b)
}

// randomNumber returns a number literal (valid JSON grammar) in one of many spellings.
func (g gen) randomNumber() string {
	var s string
	switch g.pick(9) {
	case 0:
		s = strconv.Itoa(g.pick(1000) - 500)
	case 1:
		s = strconv.FormatInt(g.r.Int63()>>uint(g.pick(63)), 10)
	case 2:
		s = "1" + g.digits(g.pick(30))
	case 3:
		f := g.randomFloat()
		s = strconv.FormatFloat(f, []byte{'e', 'E', 'f', 'g', 'G'}[g.pick(5)], g.pick(25)-1, 64)
		if strings.Contains(s, "Inf") || strings.Contains(s, "NaN") {
			s = "0"
		}
	case 4:
		s = strconv.FormatFloat(g.randomFloat(), 'g', -1, 64)
	case 5: // digits.digits e±exp
		s = strconv.Itoa(g.pick(10)) + "." + g.digits(1+g.pick(25)) + []string{"e", "E"}[g.pick(2)] +
			[]string{"", "+", "-"}[g.pick(3)] + strconv.Itoa(g.pick(330))
	case 6: // long mantissa
		s = "0." + strings.Repeat("0", g.pick(5)) + g.digits(20+g.pick(60))
	case 7: // exponent with leading zeros
		s = g.digits(1+g.pick(3)) + "e" + []string{"", "+", "-"}[g.pick(3)] + strings.Repeat("0", g.pick(4)) + strconv.Itoa(g.pick(30))
	default: // an exact halfway point between two doubles, written out in full
		f := math.Abs(g.randomFloat())
		if f == 0 || f == math.MaxFloat64 {
			f = 1.5
		}
		lo := new(big.Float).SetPrec(2000).SetFloat64(f)
		hi := new(big.Float).SetPrec(2000).SetFloat64(math.Nextafter(f, math.Inf(1)))
		mid := new(big.Float).SetPrec(2000).Add(lo, hi)
		mid.Quo(mid, big.NewFloat(2))
		s = mid.Text('g', 800)
		s = strings.Replace(s, "e+", "e", 1)
	}
	// JSON grammar: strip '+' and leading zeros the Go formatter may produce
	if s[0] == '+' {
		s = s[1:]
	}
	if strings.HasPrefix(s, "-") == false && g.pick(3) == 0 && s != "0" {
		s = "-" + s
	}
	return s
}

func (g gen) randomString() string {
	var sb strings.Builder
	sb.WriteByte('"')
	n := g.pick(12)
	for i := 0; i < n; i++ {
		switch g.pick(16) {
		case 0, 1, 2, 3: // printable ASCII but the quote and backslash
			c := byte(0x20 + g.pick(0x5f))
			if c == '"' || c == '\\' {
				c = '#'
			}
			sb.WriteByte(c)
		case 4:
			sb.WriteString([]string{`\"`, `\\`, `\/`, `\b`, `\f`, `\n`, `\r`, `\t`}[g.pick(8)])
		case 5:
			fmt.Fprintf(&sb, []string{`\u%04x`, `\u%04X`}[g.pick(2)], g.pick(0x80))
		case 6:
			fmt.Fprintf(&sb, `\u%04x`, g.pick(0x10000))
		case 7: // escaped pair, sometimes broken
			r := 0x10000 + g.pick(0x100000)
			hi, lo := 0xd800+(r-0x10000)>>10, 0xdc00+(r-0x10000)&0x3ff
			switch g.pick(4) {
			case 0:
				fmt.Fprintf(&sb, `\u%04x`, hi)
			case 1:
				fmt.Fprintf(&sb, `\u%04x`, lo)
			case 2:
				fmt.Fprintf(&sb, `\u%04x\u%04x`, lo, hi)
			default:
				fmt.Fprintf(&sb, `\u%04x\u%04x`, hi, lo)
			}
		case 8:
			sb.WriteString([]string{"<", ">", "&", "\u2028", "\u2029", `\u2028`, "\x7f", "'"}[g.pick(8)])
		case 9, 10: // valid multi-byte characters
			r := []rune{0xe9, 0x3b1, 0x4e2d, 0xfffd, 0xffff, 0x1f600, 0x10ffff, 0x800, 0x7ff, 0x10000, 0xd7ff, 0xe000}[g.pick(12)]
			if g.pick(2) == 0 {
				r = rune(0x80 + g.pick(0x10ff80))
				if r >= 0xd800 && r < 0xe000 {
					r = 0xfffd
				}
			}
			sb.WriteRune(r)
		case 11: // random high bytes: usually invalid UTF-8
			for k := g.pick(4) + 1; k > 0; k-- {
				sb.WriteByte(byte(0x80 + g.pick(0x80)))
			}
		case 12: // truncated or overlong sequences
			sb.WriteString([]string{"\xc3", "\xe2\x82", "\xf0\x9f\x98", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf8\x88\x80\x80\x80"}[g.pick(8)])
		default:
			sb.WriteString([]string{"a", "b", "key", "id", "é", "z", "0", "_"}[g.pick(8)])
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

var keyPool = []string{`"a"`, `"b"`, `"id"`, `"name"`, `"\u0061"`, `"A"`, `"é"`, `"\u00e9"`, `"z"`, `""`,
	`"aa"`, `"a\u0000"`, `"<"`, `"\ud800"`, "\"\xff\"", `"\ufffd"`, `"中"`, `"😀"`, `"\ud83d\ude00"`, `"\uffff"`}

func (g gen) randomValue(depth int) string {
	k := g.pick(10)
	if depth > 4 && k >= 7 {
		k = g.pick(7)
	}
	switch k {
	case 0:
		return []string{"null", "true", "false"}[g.pick(3)]
	case 1, 2, 3:
		return g.randomNumber()
	case 4, 5, 6:
		return g.randomString()
	case 7, 8:
		n := g.pick(5)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = g.ws() + g.randomValue(depth+1) + g.ws()
		}
		return "[" + strings.Join(parts, ",") + g.ws() + "]"
	default:
		n := g.pick(7)
		parts := make([]string, n)
		for i := range parts {
			var key string
			if g.pick(3) == 0 {
				key = g.randomString()
			} else {
				key = keyPool[g.pick(len(keyPool))]
			}
			parts[i] = g.ws() + key + g.ws() + ":" + g.ws() + g.randomValue(depth+1) + g.ws()
		}
		return "{" + strings.Join(parts, ",") + g.ws() + "}"
	}
}

// mutate damages a document a little; the result may or may not still be valid JSON.
func (g gen) mutate(doc string) string {
	b := []byte(doc)
	if len(b) == 0 {
		return "x"
	}
	i := g.pick(len(b))
	switch g.pick(5) {
	case 0:
		return string(b[:i])
	case 1:
		return string(b[:i]) + string(b[i+1:])
	case 2:
		ins := []string{",", "]", "}", "\"", ":", "0", "-", ".", "e", "\\", "\x00", "\x01", " ", "\xff", "NaN", "1e999"}[g.pick(16)]
		return string(b[:i]) + ins + string(b[i:])
	case 3:
		return doc + []string{" x", ",", " 1", "]", "\x00", "\n"}[g.pick(6)]
	default:
		b[i] = byte(g.pick(256))
		return string(b)
	}
}

// ------------------------------------------------------------------ bundles

type row struct {
	schema, table, key, op string
	version                int64
	payload                *string // nil: SQL NULL / absent
}

// bundleHash is the definition of SPEC-v2 §4.7, written from its description: an array of
// {key,op,payload,row_ordinal,row_version,schema,table} objects, canonicalized, SHA-256.
func bundleHash(rows []row) (string, int) {
	elems := make([]any, 0, len(rows))
	for i, r := range rows {
		var payload any
		if r.op != "DELETE" && r.payload != nil && len(*r.payload) > 0 {
			if err := json.Unmarshal([]byte(*r.payload), &payload); err != nil {
				panic(err)
			}
		}
		var key any
		if r.key != "" {
			if err := json.Unmarshal([]byte(r.key), &key); err != nil {
				panic(err)
			}
		}
		elems = append(elems, map[string]any{
			"row_ordinal": i, "schema": r.schema, "table": r.table, "key": key,
			"op": r.op, "row_version": r.version, "payload": payload,
		})
	}
	raw, err := json.Marshal(elems)
	if err != nil {
		panic(err)
	}
	text, ok := canonical(raw)
	if !ok {
		panic("not canonical")
	}
	sum := sha256.Sum256(text)
	return hex.EncodeToString(sum[:]), len(text)
}

func strp(s string) *string { return &s }

func bundles(g gen) [][]row {
	out := [][]row{
		{{schema: "business", table: "users", key: `{"id":"550e8400-e29b-41d4-a716-446655440000"}`, op: "INSERT", version: 143,
			payload: strp(`{"id":"550e8400-e29b-41d4-a716-446655440000","name":"John Doe","email":"john@example.com"}`)}},
		{},
		{{schema: "public", table: "users", key: `{"id":"row-1"}`, op: "INSERT", version: 3,
			payload: strp(`{"name":"Alice","email":"alice@example.com"}`)}},
		{{schema: "public", table: "users", key: `{"id":"row-1"}`, op: "DELETE", version: 4,
			payload: strp(`{"ignored":true}`)},
			{schema: "public", table: "users", key: `{"id":"row-2"}`, op: "UPDATE", version: 4, payload: nil},
			{schema: "public", table: "users", key: `{"id":"row-3"}`, op: "UPDATE", version: 4, payload: strp("")},
			{schema: "public", table: "users", key: `{"id":"row-4"}`, op: "INSERT", version: 4, payload: strp("null")}},
		{{schema: "s\xff<&>", table: "t\u2028", key: `{"id":"\u003c\ud800"}`, op: "INSERT", version: 1<<53 + 1,
			payload: strp(`{"b":1,"a":[1.0,1e21,-0.0,"x\u0000"]}`)}},
		{{schema: "business", table: "typed_rows", key: `{"id":"00000000-0000-0000-0000-000000000001"}`, op: "INSERT",
			version: 9223372036854775807,
			payload: strp(`{"id":"00000000-0000-0000-0000-000000000001","name":"typed","note":null,"count_value":9007199254740993,"enabled_flag":1,"rating":0.1,"data":"AAFoZWxsb/8=","created_at":"2026-03-22T12:00:00.5+00:00"}`)}},
	}
	tables := []string{"users", "posts", "files", "file_reviews", "typed_rows", "teams"}
	ops := []string{"INSERT", "UPDATE", "DELETE"}
	for b := 0; b < 40; b++ {
		n := 1 + g.pick(6)
		version := int64(1 + g.pick(100000))
		if g.pick(8) == 0 {
			version = g.r.Int63()
		}
		var rows []row
		for i := 0; i < n; i++ {
			r := row{schema: "business", table: tables[g.pick(len(tables))], op: ops[g.pick(3)], version: version}
			if g.pick(10) == 0 {
				r.schema = "schéma<" + strconv.Itoa(g.pick(10)) + ">"
			}
			r.key = fmt.Sprintf(`{"id":%s}`, g.randomString())
			if g.pick(3) == 0 {
				r.key = fmt.Sprintf(`{"id":"%08x-0000-4000-8000-%012x"}`, g.r.Uint32(), g.r.Int63n(1<<48))
			}
			if r.op != "DELETE" || g.pick(2) == 0 {
				// a random object payload; keep only ones Go accepts
				for {
					p := g.randomValue(1)
					if _, ok := canonical([]byte(p)); ok && (r.op == "DELETE" || strings.HasPrefix(p, "{")) {
						r.payload = &p
						break
					}
					if g.pick(5) == 0 {
						p = "{}"
						r.payload = &p
						break
					}
				}
			}
			rows = append(rows, r)
		}
		out = append(out, rows)
	}
	return out
}

// ------------------------------------------------------------------ output

func main() {
	mass := flag.Int("mass", 0, "print N mass-comparison lines instead of the header")
	flag.Parse()
	g := gen{rand.New(rand.NewSource(20261206))}
	if *mass > 0 {
		writeMass(g, *mass)
		return
	}
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	fmt.Fprintf(w, "/* Generated by tests/unit/canonical_vectors.go with %s; do not edit.\n", runtime.Version())
	fmt.Fprintf(w, " * Regenerate: go run tests/unit/canonical_vectors.go > tests/unit/canonical_vectors.h */\n\n")

	// documents
	type doc struct {
		in, out []byte
		ok      bool
		kind    string
	}
	var docs []doc
	add := func(in, kind string) {
		out, ok := canonical([]byte(in))
		docs = append(docs, doc{[]byte(in), out, ok, kind})
	}
	for _, c := range handCases() {
		add(c, "hand")
	}
	for i := 0; i < 1500; i++ {
		add(g.randomValue(0), "random")
	}
	for i := 0; i < 600; i++ {
		add(g.mutate(g.randomValue(0)), "mutated")
	}
	for i := 0; i < 1500; i++ {
		add(g.ws()+g.randomNumber()+g.ws(), "number")
	}
	fmt.Fprintf(w, "static const struct canon_vector canon_vectors[] = {\n")
	nok := 0
	for _, d := range docs {
		if d.ok {
			nok++
			fmt.Fprintf(w, "    { %s, %d, true, %s, %d }, /* %s */\n", cstr(d.in), len(d.in), cstr(d.out), len(d.out), d.kind)
		} else {
			fmt.Fprintf(w, "    { %s, %d, false, NULL, 0 }, /* %s */\n", cstr(d.in), len(d.in), d.kind)
		}
	}
	fmt.Fprintf(w, "};\n/* %d documents: %d accepted, %d rejected by Go */\n\n", len(docs), nok, len(docs)-nok)

	fmt.Fprintf(w, "/* Accepted by Go, refused by canonical_json on purpose; Go's output for the record. */\n")
	fmt.Fprintf(w, "static const struct canon_vector canon_divergent[] = {\n")
	for _, in := range divergentCases() {
		out, ok := canonical([]byte(in))
		if !ok {
			panic("divergent case rejected by Go: " + in[:20])
		}
		fmt.Fprintf(w, "    { %s, %d, true, %s, %d },\n", cstr([]byte(in)), len(in), cstr(out), len(out))
	}
	fmt.Fprintf(w, "};\n\n")

	// doubles
	var fl []float64
	for e := -1074; e <= 1023; e++ {
		fl = append(fl, math.Ldexp(1, e))
	}
	for _, f := range awkwardFloats {
		fl = append(fl, f, -f, math.Nextafter(f, math.Inf(1)), math.Nextafter(f, math.Inf(-1)))
	}
	for i := 1; i <= 200; i++ {
		fl = append(fl, math.Float64frombits(uint64(i)), math.Float64frombits(0x7fefffffffffffff-uint64(i)))
		fl = append(fl, float64(i)/10, float64(i)/3, float64(i)*1e20, float64(i)*1e-7, 1/float64(i))
	}
	for i := 0; i < 4000; i++ {
		fl = append(fl, g.randomFloat())
	}
	for i := 0; i < 1000; i++ { // integers above 2^53 and their neighbours
		f := float64(g.r.Int63()) * math.Pow(2, float64(g.pick(20)))
		fl = append(fl, f, math.Nextafter(f, 0))
	}
	fmt.Fprintf(w, "static const struct canon_double canon_doubles[] = {\n")
	nd := 0
	for _, f := range fl {
		if math.IsNaN(f) || math.IsInf(f, 0) {
			continue
		}
		out, err := json.Marshal(f)
		if err != nil {
			panic(err)
		}
		fmt.Fprintf(w, "    { 0x%016xULL, %s },\n", math.Float64bits(f), cstr(out))
		nd++
	}
	fmt.Fprintf(w, "};\n/* %d doubles */\n\n", nd)

	// bundles
	bs := bundles(g)
	fmt.Fprintf(w, "static const struct canon_bundle_row canon_bundle_rows[] = {\n")
	type bmeta struct {
		first, n, bytes int
		hash            string
	}
	var metas []bmeta
	total := 0
	for _, rows := range bs {
		h, n := bundleHash(rows)
		metas = append(metas, bmeta{total, len(rows), n, h})
		for _, r := range rows {
			p := "NULL, 0"
			if r.payload != nil {
				p = fmt.Sprintf("%s, %d", cstr([]byte(*r.payload)), len(*r.payload))
			}
			fmt.Fprintf(w, "    { %s, %s, %s, %d, %s, %dLL, %s },\n", cstr([]byte(r.schema)), cstr([]byte(r.table)),
				cstr([]byte(r.key)), len(r.key), cstr([]byte(r.op)), r.version, p)
		}
		total += len(rows)
	}
	fmt.Fprintf(w, "    { NULL, NULL, NULL, 0, NULL, 0, NULL, 0 } /* so the table is never empty */\n};\n\n")
	fmt.Fprintf(w, "static const struct canon_bundle canon_bundles[] = {\n")
	for _, m := range metas {
		fmt.Fprintf(w, "    { %d, %d, \"%s\", %d },\n", m.first, m.n, m.hash, m.bytes)
	}
	fmt.Fprintf(w, "};\n/* %d bundles, %d rows */\n", len(metas), total)
}

func writeMass(g gen, n int) {
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for i := 0; i < n; i++ {
		var in string
		if i%8 == 7 {
			in = g.randomValue(0)
			if g.pick(4) == 0 {
				in = g.mutate(in)
			}
		} else if i%2 == 0 {
			// a random double in 17 significant digits (which read back exactly), so that parsing
			// and printing are both exercised
			f := g.randomFloat()
			if i%4 == 0 {
				f = math.Float64frombits(g.r.Uint64())
				if math.IsNaN(f) || math.IsInf(f, 0) {
					continue
				}
			}
			in = strconv.FormatFloat(f, 'e', 16+g.pick(2), 64)
		} else {
			in = g.randomNumber()
		}
		out, ok := canonical([]byte(in))
		res := "!"
		if ok {
			res = string(out)
		}
		fmt.Fprintf(w, "%s\t%s\n", hex.EncodeToString([]byte(in)), res)
	}
}
