/* The rendering COPY does not do, in C on the service's side (formats/render.py says when).

PostgreSQL's COPY writes plain cells (CSV, DateStyle ISO, the export's TimeZone); this module
turns whole records of that output into the export's CSV records, JSON Lines or XLSX sheet rows
(a line each, numbered), with what the
SQL select lists would otherwise compute per cell in PostgreSQL (0.3-0.8 µs a cell there,
docs/engine.md): the formula rule, ISO 8601 timestamps as to_char() writes them, true/false,
JSON strings as to_json() escapes them, CSV's CRLF record ends, sheet XML's cells.

Each field of a record has a kind, one byte (formats/render.py names them):
  'x' as COPY wrote it          't' text under the formula rule      's' text as a JSON string
  'q' in JSON quotes as it is   'b' t/f as true/false
  'D' date, 'T' timestamp, 'Z' timestamptz: to_char()'s ISO 8601; an infinity is NULL
  'f' a float8 as JSON (NaN and infinities null, ".0" after a whole number), 'm' a numeric
  as JSON (NaN null)
  XLSX cells: 'X' inline text, styled as text when a formula ('Y' without the rule), 'U' inline
  as it is, 'w' a date-time serial, 'd' a date serial, 'B' a boolean (0/1), 'N' a number,
  'F' a float8 and 'M' a numeric as JSON's 'f' and 'm' (NULL for what JSON writes null)

The formula rule's characters come from learner_export.formats.formula (set_rule()), where the
rule is written once for Python and PostgreSQL.

Input is bytes of whole records (COPY sends a record per message); a trailing partial record is
left unconsumed, and the caller passes it again with what follows. The GIL is released while a
buffer is rendered: the service renders long pieces in a worker thread. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { SKIP = 1, ALWAYS = 2, SIGN = 4, PLAIN = 8, SEP = 16 };

/* Beyond ASCII, characters of a class as ranges; ASCII in a table. */
typedef struct {
    Py_UCS4 lo, hi;
    unsigned char cls;
} Span;

#define MAX_SPANS 64
static Span spans[MAX_SPANS];
static int n_spans;
static unsigned char ascii_class[128];
static int rule_set;

/* Bytes of an unquoted field: its end (`,`, LF), and the formula rule's separators. */
enum { FIELD_END = 1, FIELD_SEP = 2 };
static unsigned char field_class[256];

/* A code point no class holds: invalid UTF-8. */
#define NO_CHAR 0x110000

static inline int has(Py_UCS4 c, unsigned char cls)
{
    if (c < 128)
        return ascii_class[c] & cls;
    for (int i = 0; i < n_spans; i++)
        if ((spans[i].cls & cls) && c >= spans[i].lo && c <= spans[i].hi)
            return 1;
    return 0;
}

/* The character at s, and its length in bytes. Inside a quoted field a double quote is always
   doubled: the pair is one '"'. */
static inline Py_UCS4 decode(const unsigned char *s, const unsigned char *e, int *len)
{
    unsigned char c = s[0];
    if (c < 0x80) {
        *len = (c == '"' && s + 1 < e && s[1] == '"') ? 2 : 1;
        return c;
    }
    int n;
    Py_UCS4 cp;
    if ((c & 0xE0) == 0xC0) {
        n = 2;
        cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
        n = 3;
        cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
        n = 4;
        cp = c & 0x07;
    } else {
        *len = 1;
        return NO_CHAR;
    }
    if (s + n > e) {
        *len = 1;
        return NO_CHAR;
    }
    for (int i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *len = 1;
            return NO_CHAR;
        }
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    *len = n;
    return cp;
}

typedef struct {
    char *p;
    size_t len, cap;
    int failed;
} Buf;

static int grow(Buf *b, size_t more)
{
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    char *p = PyMem_RawRealloc(b->p, cap);
    if (p == NULL) {
        b->failed = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static inline void put(Buf *b, const void *s, size_t n)
{
    if (b->len + n > b->cap && grow(b, n) < 0)
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* A string literal, its length counted by the compiler. */
#define PUTS(b, literal) put((b), literal, sizeof(literal) - 1)

static inline void put1(Buf *b, char c)
{
    if (b->len + 1 > b->cap && grow(b, 1) < 0)
        return;
    b->p[b->len++] = c;
}

/* Whether the piece of a cell starting at p reads as a formula: skipped characters, then `=`,
   `@` (or look-alikes), or a sign followed by more than a plain number up to the cell's end. */
static int formula_at(const unsigned char *p, const unsigned char *e)
{
    int n;
    Py_UCS4 c = NO_CHAR;
    while (p < e) {
        c = decode(p, e, &n);
        if (!has(c, SKIP))
            break;
        p += n;
    }
    if (p >= e)
        return 0;
    if (has(c, ALWAYS))
        return 1;
    if (!has(c, SIGN))
        return 0;
    for (p += n; p < e; p += n)
        if (!has(decode(p, e, &n), PLAIN))
            return 1;
    return 0;
}

/* Where the next piece's separator is (`;`, tab, CR, LF), or e. */
static inline const unsigned char *next_separator(const unsigned char *p, const unsigned char *e)
{
    while (p < e && !(*p < 128 && (ascii_class[*p] & SEP)))
        p++;
    return p;
}

/* A cell's content (quoted or not, as COPY wrote it) with a `'` at the start of each piece
   that reads as a formula: the cell's start and each place after a separator. */
static void neutralised(Buf *out, const unsigned char *s, const unsigned char *e, int one_piece)
{
    if (one_piece) {
        if (formula_at(s, e))
            put1(out, '\'');
        put(out, s, e - s);
        return;
    }
    const unsigned char *copied = s, *piece = s;
    for (;;) {
        if (formula_at(piece, e)) {
            put(out, copied, piece - copied);
            put1(out, '\'');
            copied = piece;
        }
        const unsigned char *q = next_separator(piece, e);
        if (q >= e)
            break;
        piece = q + 1;
    }
    put(out, copied, e - copied);
}

/* PostgreSQL's ISO output of a date, timestamp or timestamptz as to_char() writes it with
   'YYYY-MM-DD"T"HH24:MI:SS.US' and 'TZH:TZM': the era dropped (to_char's YYYY has none),
   microseconds always, the offset's seconds dropped. Returns 0 for an infinity (to_char() gives
   NULL), 1 when written, -1 when the text is not such output. */
static int iso(Buf *out, const unsigned char *s, const unsigned char *e, char kind)
{
    if (s < e && (s[0] == 'i' || (s[0] == '-' && e - s > 1 && s[1] == 'i')))
        return 0;
    if (e - s > 3 && memcmp(e - 3, " BC", 3) == 0)
        e -= 3;
    const unsigned char *space = memchr(s, ' ', e - s);
    if (kind == 'D') {
        if (space != NULL)
            return -1;
        put(out, s, e - s);
        return 1;
    }
    if (space == NULL || e - space < 9)
        return -1;
    put(out, s, space - s);
    put1(out, 'T');
    const unsigned char *t = space + 1;
    put(out, t, 8);
    t += 8;
    put1(out, '.');
    int digits = 0;
    if (t < e && *t == '.') {
        t++;
        while (t + digits < e && t[digits] >= '0' && t[digits] <= '9')
            digits++;
        if (digits > 6)
            return -1;
        put(out, t, digits);
        t += digits;
    }
    put(out, "000000", 6 - digits);
    if (kind == 'T')
        return t == e ? 1 : -1;
    if (e - t < 3)
        return -1;
    put(out, t, 3);
    t += 3;
    if (e - t >= 3 && *t == ':')
        put(out, t, 3);
    else
        PUTS(out, ":00");
    return 1;
}

static int is_text(const unsigned char *s, const unsigned char *e, const char *text)
{
    size_t n = strlen(text);
    return (size_t)(e - s) == n && memcmp(s, text, n) == 0;
}

/* Whether PostgreSQL's output of a float8 is NaN or an infinity (no JSON number, no sheet
   value: written as NULL). */
static int not_finite(const unsigned char *s, const unsigned char *e)
{
    return is_text(s, e, "NaN") || is_text(s, e, "Infinity") || is_text(s, e, "-Infinity");
}

/* A finite float8 as the select lists' python_float() writes it: PostgreSQL's digits, and
   ".0" after a whole number written without an exponent, as Python's repr() writes 50.0. */
static void python_float(Buf *out, const unsigned char *s, const unsigned char *e)
{
    char text[64];
    size_t n = (size_t)(e - s) < sizeof text - 1 ? (size_t)(e - s) : sizeof text - 1;
    memcpy(text, s, n);
    text[n] = '\0';
    double whole, value = strtod(text, NULL);
    put(out, s, e - s);
    if (modf(value, &whole) == 0.0 && memchr(text, 'e', n) == NULL)
        PUTS(out, ".0");
}

/* A JSON string's content as PostgreSQL's to_json() escapes it: `"`, `\` and the control
   characters, nothing else. */
static void json_escaped(Buf *out, const unsigned char *s, const unsigned char *e)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *copied = s;
    while (s < e) {
        unsigned char c = *s;
        if (c >= 0x20 && c != '"' && c != '\\') {
            s++;
            continue;
        }
        put(out, copied, s - copied);
        switch (c) {
        case '"':
            PUTS(out, "\\\"");
            s += (s + 1 < e && s[1] == '"') ? 2 : 1;
            copied = s;
            continue;
        case '\\':
            PUTS(out, "\\\\");
            break;
        case '\b':
            PUTS(out, "\\b");
            break;
        case '\f':
            PUTS(out, "\\f");
            break;
        case '\n':
            PUTS(out, "\\n");
            break;
        case '\r':
            PUTS(out, "\\r");
            break;
        case '\t':
            PUTS(out, "\\t");
            break;
        default: {
            char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            put(out, u, 6);
        }
        }
        s++;
        copied = s;
    }
    put(out, copied, s - copied);
}

enum { CSV, JSON, XLSX };

typedef struct {
    int format;
    const char *kinds;
    Py_ssize_t n_kinds;
    /* JSON Lines: each field's `{"name":` or `,"name":`; XLSX: each column's letters. */
    const char **names;
    const Py_ssize_t *name_lens;
    /* XLSX: the export's index of the first row, and the data rows a sheet holds. */
    long long index, sheet_rows;
    char row[24];
    int row_len;
} Layout;

/* One field of CSV: [s, e) as COPY wrote it; `one_piece` when it holds no separator. */
static int csv_field(Buf *out, const unsigned char *s, const unsigned char *e, int quoted,
                     char kind, int one_piece)
{
    switch (kind) {
    case 't':
        if (quoted) {
            put1(out, '"');
            neutralised(out, s + 1, e - 1, 0);
            put1(out, '"');
        } else {
            neutralised(out, s, e, one_piece);
        }
        return 0;
    case 'b':
        if (e - s == 1 && *s == 't')
            PUTS(out, "true");
        else if (e - s == 1)
            PUTS(out, "false");
        return 0;
    case 'D':
    case 'T':
    case 'Z':
        return s == e ? 0 : (iso(out, s, e, kind) < 0 ? -1 : 0);
    default:
        put(out, s, e - s);
        return 0;
    }
}

/* One field of a JSON Lines object, after its name. */
static int json_field(Buf *out, const unsigned char *s, const unsigned char *e, int quoted,
                      char kind)
{
    if (s == e && !quoted) {
        PUTS(out, "null");
        return 0;
    }
    switch (kind) {
    case 's':
        put1(out, '"');
        if (quoted)
            json_escaped(out, s + 1, e - 1);
        else
            json_escaped(out, s, e);
        put1(out, '"');
        return 0;
    case 'q':
        put1(out, '"');
        put(out, s, e - s);
        put1(out, '"');
        return 0;
    case 'b':
        if (*s == 't')
            PUTS(out, "true");
        else
            PUTS(out, "false");
        return 0;
    case 'f':
        if (not_finite(s, e))
            PUTS(out, "null");
        else
            python_float(out, s, e);
        return 0;
    case 'm':
        if (is_text(s, e, "NaN"))
            PUTS(out, "null");
        else
            put(out, s, e - s);
        return 0;
    case 'D':
    case 'T':
    case 'Z': {
        size_t before = out->len;
        put1(out, '"');
        int r = iso(out, s, e, kind);
        if (r < 0)
            return -1;
        if (r == 0) {
            out->len = before;
            PUTS(out, "null");
            return 0;
        }
        put1(out, '"');
        return 0;
    }
    default:
        put(out, s, e - s);
        return 0;
    }
}

/* Whether some reading of the cell (`,`, `;` or tab separated) has a formula in it. */
static int formula_in(const unsigned char *s, const unsigned char *e)
{
    for (const unsigned char *piece = s;;) {
        if (formula_at(piece, e))
            return 1;
        piece = next_separator(piece, e);
        if (piece >= e)
            return 0;
        piece++;
    }
}

static inline int xml_space(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/* Text as sheet XML writes it: markup characters as entities, CR and LF as references, the
   characters XML forbids dropped (C0 controls but tab, U+FFFE, U+FFFF). */
static void xml_escaped(Buf *out, const unsigned char *s, const unsigned char *e)
{
    const unsigned char *copied = s;
    while (s < e) {
        unsigned char c = *s;
        const char *with = NULL;
        size_t skip = 1;
        if (c == '&')
            with = "&amp;";
        else if (c == '<')
            with = "&lt;";
        else if (c == '>')
            with = "&gt;";
        else if (c == '\r')
            with = "&#13;";
        else if (c == '\n')
            with = "&#10;";
        else if (c == '"' && s + 1 < e && s[1] == '"')
            with = "\"", skip = 2;
        else if (c < 0x20 && c != '\t')
            with = "";
        else if (c == 0xEF && e - s >= 3 && s[1] == 0xBF && (s[2] == 0xBE || s[2] == 0xBF))
            with = "", skip = 3;
        if (with == NULL) {
            s++;
            continue;
        }
        put(out, copied, s - copied);
        put(out, with, strlen(with));
        s += skip;
        copied = s;
    }
    put(out, copied, s - copied);
}

static void cell_ref(Buf *out, const Layout *layout, Py_ssize_t field)
{
    PUTS(out, "<c r=\"");
    put(out, layout->names[field], layout->name_lens[field]);
    put(out, layout->row, layout->row_len);
    put1(out, '"');
}

/* One cell of a sheet's row: nothing for NULL, save the row's last (`<c r="K7"/>`). */
static int xlsx_field(Buf *out, const unsigned char *s, const unsigned char *e, int quoted,
                      char kind, const Layout *layout, Py_ssize_t field)
{
    int null = s == e && !quoted;
    null = null || (kind == 'F' && not_finite(s, e)) || (kind == 'M' && is_text(s, e, "NaN"));
    if (null) {
        if (field == layout->n_kinds - 1) {
            cell_ref(out, layout, field);
            PUTS(out, "/>");
        }
        return 0;
    }
    cell_ref(out, layout, field);
    if (quoted) {
        s++;
        e--;
    }
    switch (kind) {
    case 'X':
    case 'Y': {
        PUTS(out, " t=\"inlineStr\"");
        if (kind == 'X' && formula_in(s, e))
            PUTS(out, " s=\"2\"");
        PUTS(out, "><is><t");
        if (s < e && (xml_space(*s) || xml_space(e[-1])))
            PUTS(out, " xml:space=\"preserve\"");
        put1(out, '>');
        xml_escaped(out, s, e);
        PUTS(out, "</t></is></c>");
        return 0;
    }
    case 'U':
        PUTS(out, " t=\"inlineStr\"><is><t>");
        put(out, s, e - s);
        PUTS(out, "</t></is></c>");
        return 0;
    case 'w':
        PUTS(out, " s=\"1\"><v>");
        break;
    case 'd':
        PUTS(out, " s=\"4\"><v>");
        break;
    case 'B':
        PUTS(out, " t=\"b\" s=\"5\"><v>");
        break;
    case 'N':
    case 'M':
        PUTS(out, "><v>");
        break;
    case 'F':
        PUTS(out, "><v>");
        python_float(out, s, e);
        PUTS(out, "</v></c>");
        return 0;
    default:
        return -1;
    }
    put(out, s, e - s);
    PUTS(out, "</v></c>");
    return 0;
}

/* Renders the whole records of [start, end); returns the bytes consumed, or -1 on output
   that is not COPY's CSV. */
static Py_ssize_t render(Buf *out, const unsigned char *start, const unsigned char *end,
                         Layout *layout, Py_ssize_t *rows)
{
    /* CSV: what is not rendered (most fields, the commas) is copied in runs, from `pending`. */
    const unsigned char *p = start, *record = start, *pending = start;
    size_t committed = 0;
    Py_ssize_t field = 0;
    *rows = 0;
    while (p < end) {
        if (field == 0 && layout->format == XLSX) {
            long long n = (layout->index + *rows) % layout->sheet_rows + 2;
            layout->row_len = snprintf(layout->row, sizeof layout->row, "%lld", n);
            PUTS(out, "<row r=\"");
            put(out, layout->row, layout->row_len);
            PUTS(out, "\">");
        }
        const unsigned char *s = p;
        int quoted = *p == '"', separators = 0;
        if (quoted) {
            p++;
            for (;;) {
                const unsigned char *q = memchr(p, '"', end - p);
                if (q == NULL || q + 1 >= end)
                    goto partial;
                p = q + 1;
                if (*p != '"')
                    break;
                p++;
            }
        } else {
            unsigned char cls;
            while (p < end && !((cls = field_class[*p]) & FIELD_END)) {
                separators |= cls;
                p++;
            }
            if (p >= end)
                goto partial;
        }
        if (field >= layout->n_kinds)
            return -1;
        char kind = layout->kinds[field];
        int bad;
        if (layout->format == JSON) {
            put(out, layout->names[field], layout->name_lens[field]);
            bad = json_field(out, s, p, quoted, kind);
        } else if (layout->format == XLSX) {
            bad = xlsx_field(out, s, p, quoted, kind, layout, field);
        } else if (kind == 'x' || (kind == 't' && !quoted && !separators && !formula_at(s, p))) {
            bad = 0;
        } else {
            put(out, pending, s - pending);
            bad = csv_field(out, s, p, quoted, kind, !separators);
            pending = p;
        }
        if (bad)
            return -1;
        if (*p == ',') {
            field++;
        } else if (*p == '\n' && field == layout->n_kinds - 1) {
            if (layout->format == CSV) {
                put(out, pending, p - pending);
                PUTS(out, "\r\n");
                pending = p + 1;
            }
            else if (layout->format == JSON)
                PUTS(out, "}\n");
            else
                PUTS(out, "</row>\n");
            field = 0;
            record = p + 1;
            committed = out->len;
            ++*rows;
        } else {
            return -1;
        }
        p++;
    }
partial:
    out->len = committed;
    return record - start;
}

static PyObject *run(PyObject *args, int format)
{
    Py_buffer data, kinds;
    PyObject *names = NULL;
    long long index = 0, sheet_rows = 1;
    if (format == XLSX) {
        if (!PyArg_ParseTuple(args, "y*y*O!LL", &data, &kinds, &PyTuple_Type, &names, &index,
                              &sheet_rows))
            return NULL;
    } else if (format == JSON) {
        if (!PyArg_ParseTuple(args, "y*y*O!", &data, &kinds, &PyTuple_Type, &names))
            return NULL;
    } else if (!PyArg_ParseTuple(args, "y*y*", &data, &kinds)) {
        return NULL;
    }
    PyObject *result = NULL;
    const char **name_ptrs = NULL;
    Py_ssize_t *name_lens = NULL;
    Layout layout = {format, kinds.buf, kinds.len, NULL, NULL, index, sheet_rows, "", 0};
    if (sheet_rows < 1) {
        PyErr_SetString(PyExc_ValueError, "a sheet holds at least one row");
        goto done;
    }
    if (!rule_set) {
        PyErr_SetString(PyExc_RuntimeError, "set_rule() was not called");
        goto done;
    }
    if (names != NULL) {
        if (PyTuple_GET_SIZE(names) != kinds.len) {
            PyErr_SetString(PyExc_ValueError, "one name per field");
            goto done;
        }
        name_ptrs = PyMem_Malloc(sizeof(char *) * (kinds.len + 1));
        name_lens = PyMem_Malloc(sizeof(Py_ssize_t) * (kinds.len + 1));
        if (name_ptrs == NULL || name_lens == NULL) {
            PyErr_NoMemory();
            goto done;
        }
        for (Py_ssize_t i = 0; i < kinds.len; i++) {
            char *buf;
            if (PyBytes_AsStringAndSize(PyTuple_GET_ITEM(names, i), &buf, &name_lens[i]) < 0)
                goto done;
            name_ptrs[i] = buf;
        }
        layout.names = name_ptrs;
        layout.name_lens = name_lens;
    }
    Buf out = {NULL, 0, 0, 0};
    Py_ssize_t used, rows = 0;
    Py_BEGIN_ALLOW_THREADS
    grow(&out, (size_t)data.len + data.len / 4 + 64);
    used = out.failed ? 0
                      : render(&out, data.buf, (const unsigned char *)data.buf + data.len, &layout,
                               &rows);
    Py_END_ALLOW_THREADS
    if (out.failed)
        PyErr_NoMemory();
    else if (used < 0)
        PyErr_SetString(PyExc_ValueError, "not the CSV that COPY writes for these columns");
    else
        result = Py_BuildValue("(y#nn)", out.p, (Py_ssize_t)out.len, used, rows);
    PyMem_RawFree(out.p);
done:
    PyMem_Free(name_ptrs);
    PyMem_Free(name_lens);
    PyBuffer_Release(&data);
    PyBuffer_Release(&kinds);
    return result;
}

static PyObject *csv_records(PyObject *self, PyObject *args)
{
    return run(args, CSV);
}

static PyObject *json_lines(PyObject *self, PyObject *args)
{
    return run(args, JSON);
}

static PyObject *sheet_rows(PyObject *self, PyObject *args)
{
    return run(args, XLSX);
}

/* set_rule(spans): (first, last, class) code point ranges of the formula rule's classes. */
static PyObject *set_rule(PyObject *self, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "a sequence of (first, last, class)");
    if (seq == NULL)
        return NULL;
    unsigned char table[128] = {0};
    Span wide[MAX_SPANS];
    int n_wide = 0;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        unsigned long lo, hi;
        unsigned char cls;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "kkb", &lo, &hi, &cls)) {
            Py_DECREF(seq);
            return NULL;
        }
        for (unsigned long c = lo; c <= hi && c < 128; c++)
            table[c] |= cls;
        if (hi >= 128) {
            if (n_wide == MAX_SPANS) {
                Py_DECREF(seq);
                PyErr_SetString(PyExc_ValueError, "too many ranges");
                return NULL;
            }
            wide[n_wide++] = (Span){lo < 128 ? 128 : (Py_UCS4)lo, (Py_UCS4)hi, cls};
        }
    }
    Py_DECREF(seq);
    memcpy(ascii_class, table, sizeof table);
    memset(field_class, 0, sizeof field_class);
    field_class[','] = field_class['\n'] = FIELD_END;
    for (int c = 0; c < 128; c++)
        if (table[c] & SEP)
            field_class[c] |= FIELD_SEP;
    memcpy(spans, wide, sizeof(Span) * n_wide);
    n_spans = n_wide;
    rule_set = 1;
    Py_RETURN_NONE;
}

static PyMethodDef methods[] = {
    {"csv_records", csv_records, METH_VARARGS,
     "csv_records(data, kinds) -> (CSV records with CRLF ends, bytes of data consumed, rows)"},
    {"json_lines", json_lines, METH_VARARGS,
     "json_lines(data, kinds, names) -> (JSON Lines, bytes of data consumed, rows)"},
    {"sheet_rows", sheet_rows, METH_VARARGS,
     "sheet_rows(data, kinds, letters, index, sheet_rows) -> (sheet XML rows a line each, bytes"
     " of data consumed, rows)"},
    {"set_rule", set_rule, METH_O, "set_rule(spans): the formula rule's character classes"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_render", "COPY's plain CSV into the export's CSV, JSON Lines and sheet XML rows.",
    -1, methods,
};

PyMODINIT_FUNC PyInit__render(void)
{
    return PyModule_Create(&module);
}
