/* Compiled-code differential test: a small printf-style formatter and
 * string routines (varargs, switch tables, byte loads/stores, 64-bit
 * division by constants). Every formatted string is printed and compared
 * with the text the C semantics require; the exit status is the number of
 * mismatches. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "runtime.h"

static size_t text_length(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static int text_compare(const char *a, const char *b)
{
    while (*a && *a == *b) {
        a++;
        b++;
    }
    return (int)(unsigned char)*a - (int)(unsigned char)*b;
}

static void text_reverse(char *s)
{
    size_t n = text_length(s);
    for (size_t i = 0; i < n / 2; i++) {
        char t = s[i];
        s[i] = s[n - 1 - i];
        s[n - 1 - i] = t;
    }
}

/* Parses an unsigned number in base 2..36; *end points after it. */
static uint64_t parse_unsigned(const char *s, const char **end, unsigned base)
{
    uint64_t value = 0;
    for (;; s++) {
        unsigned digit;
        if (*s >= '0' && *s <= '9')
            digit = (unsigned)(*s - '0');
        else if (*s >= 'a' && *s <= 'z')
            digit = (unsigned)(*s - 'a' + 10);
        else if (*s >= 'A' && *s <= 'Z')
            digit = (unsigned)(*s - 'A' + 10);
        else
            break;
        if (digit >= base)
            break;
        value = value * base + digit;
    }
    *end = s;
    return value;
}

struct sink {
    char *buffer;
    size_t size;
    size_t length; /* as if the buffer were unbounded */
};

static void sink_put(struct sink *sink, char c)
{
    if (sink->length + 1 < sink->size)
        sink->buffer[sink->length] = c;
    sink->length++;
}

static void sink_pad(struct sink *sink, char c, int count)
{
    while (count-- > 0)
        sink_put(sink, c);
}

/* Formats value in base with the given digits into a reversed scratch. */
static int format_digits(char *scratch, uint64_t value, unsigned base, int upper)
{
    const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    int n = 0;
    do {
        scratch[n++] = digits[value % base];
        value /= base;
    } while (value);
    return n;
}

static int format(char *buffer, size_t size, const char *fmt, ...)
{
    struct sink sink = { buffer, size, 0 };
    va_list args;
    va_start(args, fmt);
    for (const char *p = fmt; *p; p++) {
        if (*p != '%') {
            sink_put(&sink, *p);
            continue;
        }
        p++;
        int left = 0, zero = 0, plus = 0, space = 0, alt = 0;
        for (;; p++) {
            if (*p == '-')
                left = 1;
            else if (*p == '0')
                zero = 1;
            else if (*p == '+')
                plus = 1;
            else if (*p == ' ')
                space = 1;
            else if (*p == '#')
                alt = 1;
            else
                break;
        }
        int width = 0;
        if (*p == '*') {
            width = va_arg(args, int);
            if (width < 0) {
                left = 1;
                width = -width;
            }
            p++;
        } else {
            while (*p >= '0' && *p <= '9')
                width = width * 10 + (*p++ - '0');
        }
        int precision = -1;
        if (*p == '.') {
            p++;
            precision = 0;
            if (*p == '*') {
                precision = va_arg(args, int);
                p++;
            } else {
                while (*p >= '0' && *p <= '9')
                    precision = precision * 10 + (*p++ - '0');
            }
        }
        int longs = 0;
        while (*p == 'l') {
            longs++;
            p++;
        }
        if (*p == 'z') {
            longs = 2;
            p++;
        }
        char scratch[72];
        int n = 0;
        const char *prefix = "";
        switch (*p) {
        case 'd':
        case 'i': {
            int64_t v = longs ? va_arg(args, int64_t) : va_arg(args, int);
            uint64_t magnitude = v < 0 ? -(uint64_t)v : (uint64_t)v;
            n = format_digits(scratch, magnitude, 10, 0);
            prefix = v < 0 ? "-" : plus ? "+" : space ? " " : "";
            goto number;
        }
        case 'u':
        case 'x':
        case 'X':
        case 'o':
        case 'b': {
            uint64_t v = longs ? va_arg(args, uint64_t) : va_arg(args, unsigned);
            unsigned base = *p == 'u' ? 10 : *p == 'o' ? 8 : *p == 'b' ? 2 : 16;
            n = format_digits(scratch, v, base, *p == 'X');
            if (alt && v) {
                prefix = *p == 'x' ? "0x" : *p == 'X' ? "0X" : *p == 'o' ? "0" : "";
            }
            goto number;
        }
        case 'p': {
            uintptr_t v = (uintptr_t)va_arg(args, void *);
            n = format_digits(scratch, v, 16, 0);
            prefix = "0x";
            goto number;
        }
        number : {
            int digits = n;
            if (precision > digits)
                digits = precision;
            if (precision == 0 && n == 1 && scratch[0] == '0')
                digits = n = 0;
            int prefix_length = (int)text_length(prefix);
            int total = digits + prefix_length;
            if (!left && !(zero && precision < 0))
                sink_pad(&sink, ' ', width - total);
            for (const char *q = prefix; *q; q++)
                sink_put(&sink, *q);
            if (!left && zero && precision < 0)
                sink_pad(&sink, '0', width - total);
            sink_pad(&sink, '0', digits - n);
            while (n)
                sink_put(&sink, scratch[--n]);
            if (left)
                sink_pad(&sink, ' ', width - total);
            break;
        }
        case 'c': {
            char c = (char)va_arg(args, int);
            if (!left)
                sink_pad(&sink, ' ', width - 1);
            sink_put(&sink, c);
            if (left)
                sink_pad(&sink, ' ', width - 1);
            break;
        }
        case 's': {
            const char *s = va_arg(args, const char *);
            if (!s)
                s = "(null)";
            int length = (int)text_length(s);
            if (precision >= 0 && precision < length)
                length = precision;
            if (!left)
                sink_pad(&sink, ' ', width - length);
            for (int i = 0; i < length; i++)
                sink_put(&sink, s[i]);
            if (left)
                sink_pad(&sink, ' ', width - length);
            break;
        }
        case '%':
            sink_put(&sink, '%');
            break;
        default:
            sink_put(&sink, '%');
            sink_put(&sink, *p);
            break;
        }
        if (!*p)
            break;
    }
    va_end(args);
    if (size)
        buffer[sink.length < size ? sink.length : size - 1] = 0;
    return (int)sink.length;
}

static int failures;
static int case_number;

static void expect_text(const char *got, const char *expected)
{
    case_number++;
    guest_puts("[");
    guest_put_decimal((uint64_t)case_number);
    guest_puts("] \"");
    guest_puts(got);
    guest_puts("\"");
    if (text_compare(got, expected) != 0) {
        guest_puts(" FAIL expected \"");
        guest_puts(expected);
        guest_puts("\"");
        failures++;
    }
    guest_puts("\n");
}

static void expect_number(const char *what, uint64_t got, uint64_t expected)
{
    case_number++;
    guest_puts("[");
    guest_put_decimal((uint64_t)case_number);
    guest_puts("] ");
    guest_puts(what);
    guest_puts(" = ");
    guest_put_signed((int64_t)got);
    if (got != expected) {
        guest_puts(" FAIL expected ");
        guest_put_signed((int64_t)expected);
        failures++;
    }
    guest_puts("\n");
}

int main(void)
{
    char b[128];
    int n;

    guest_puts("printf_like: formatting\n");
    format(b, sizeof b, "%d %i %u", 42, -17, 3000000000u);
    expect_text(b, "42 -17 3000000000");
    format(b, sizeof b, "%ld %lu", (int64_t)INT64_MIN, (uint64_t)UINT64_MAX);
    expect_text(b, "-9223372036854775808 18446744073709551615");
    format(b, sizeof b, "%x %X %#x %#o %o %b", 0xbeefu, 0xbeefu, 255u, 8u, 0u, 10u);
    expect_text(b, "beef BEEF 0xff 010 0 1010");
    format(b, sizeof b, "%lx", (uint64_t)0x0123456789abcdefull);
    expect_text(b, "123456789abcdef");
    format(b, sizeof b, "[%5d] [%-5d] [%05d] [%+d] [% d]", 42, 42, -42, 7, 7);
    expect_text(b, "[   42] [42   ] [-0042] [+7] [ 7]");
    format(b, sizeof b, "[%.3d] [%8.3d] [%.0d] [%-8.4x]", 5, -5, 0, 0xau);
    expect_text(b, "[005] [    -005] [] [000a    ]");
    format(b, sizeof b, "[%*d] [%-*d] [%.*s]", 6, 1, 6, 2, 3, "abcdef");
    expect_text(b, "[     1] [2     ] [abc]");
    format(b, sizeof b, "[%s] [%10s] [%-10s] [%.2s] [%s]", "hi", "right", "left", "xyz", (const char *)0);
    expect_text(b, "[hi] [     right] [left      ] [xy] [(null)]");
    format(b, sizeof b, "%c%c%c [%3c] [%-3c] 100%%", 'a', 'b', 'c', 'x', 'y');
    expect_text(b, "abc [  x] [y  ] 100%");
    format(b, sizeof b, "%p", (void *)(uintptr_t)0x80001234u);
    expect_text(b, "0x80001234");
    format(b, sizeof b, "%zu %d %q", (size_t)12345, INT32_MIN);
    expect_text(b, "12345 -2147483648 %q");

    /* truncation: the return value is the full length */
    n = format(b, 8, "%s-%d", "truncate", 123456);
    expect_text(b, "truncat");
    expect_number("untruncated length", (uint64_t)n, 15);

    guest_puts("printf_like: strings\n");
    char s[32];
    format(s, sizeof s, "%s", "colo emulator");
    text_reverse(s);
    expect_text(s, "rotalume oloc");
    expect_number("length", text_length(s), 13);
    expect_number("compare <", (uint64_t)(text_compare("abc", "abd") < 0), 1);
    expect_number("compare =", (uint64_t)(text_compare("same", "same") == 0), 1);
    expect_number("compare > (unsigned bytes)", (uint64_t)(text_compare("\xff", "a") > 0), 1);
    const char *end;
    expect_number("parse 12345", parse_unsigned("12345x", &end, 10), 12345);
    expect_number("parse stops at x", (uint64_t)(*end == 'x'), 1);
    expect_number("parse hex", parse_unsigned("DeadBeefCafe", &end, 16), 0xdeadbeefcafeull);
    expect_number("parse base 36", parse_unsigned("zz", &end, 36), 1295);
    expect_number("parse max", parse_unsigned("18446744073709551615", &end, 10), UINT64_MAX);

    /* round trips through the formatter and the parser */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    uint64_t mismatches = 0;
    for (int i = 0; i < 200; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned base = 2 + (unsigned)(x % 15);
        char digits[72];
        int length;
        if (base == 16)
            length = format(digits, sizeof digits, "%lx", x);
        else if (base == 8)
            length = format(digits, sizeof digits, "%lo", x);
        else if (base == 2)
            length = format(digits, sizeof digits, "%lb", x);
        else {
            base = 10;
            length = format(digits, sizeof digits, "%lu", x);
        }
        if (parse_unsigned(digits, &end, base) != x || end != digits + length)
            mismatches++;
    }
    expect_number("round trip mismatches", mismatches, 0);
    format(b, sizeof b, "%lx", x);
    expect_text(b, "1c54594f126dcce4");

    guest_puts("printf_like: ");
    guest_put_decimal((uint64_t)failures);
    guest_puts(" failures\n");
    return failures;
}
